"""The PACS link: receive studies over DICOM, analyse them, send the results back into the same study.

Data flow (each step its own module, nothing at import time)::

    listener (C-STORE SCP + C-ECHO, pynetdicom)
      -> intake (instances grouped by StudyInstanceUID in a staging folder; a study is complete after a quiet period)
      -> the service's store + worker (cxrassist.serve: the same queue, the same ``analyze_paths``, the viewer's
         worklist shows the study with its source, the calling AE title)
      -> outbox (SQLite: one row per result file and destination, written once the study is done)
      -> sender (C-STORE SCU to the configured AE, optionally DICOMweb STOW-RS), retried with back-off.

``link.PacsLink`` ties them together and runs beside the web service (``cxr serve --dicom-port``). Logs name a study
by its random id and the calling AE title only, never by anything read from its header.
"""

from __future__ import annotations

__all__ = ["DicomNode", "PacsConfig"]


def __getattr__(name: str) -> object:  # lazy: importing cxrassist.pacs must stay cheap
    if name in __all__:
        from cxrassist.pacs import config

        return getattr(config, name)
    raise AttributeError(name)

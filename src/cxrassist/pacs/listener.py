"""The DICOM listener: a C-STORE SCP (every storage SOP class, every transfer syntax pynetdicom knows) with C-ECHO.

Only the configured calling AE titles may associate, and only when they call our AE title; every other association
is rejected before any data set is sent. Each received instance is kept as sent (no decode, no re-encode) in the
intake's staging folder, except what cannot be a radiograph of the study (no pixel data: SR, presentation states,
key objects) and our own results coming back (Manufacturer "cxrassist"): those are acknowledged and dropped.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from cxrassist.pacs.config import PacsConfig
from cxrassist.pacs.intake import StudyAssembler, TooManyInstances

log = logging.getLogger(__name__)

#: C-STORE statuses (PS3.4 B.2.3).
SUCCESS = 0x0000
OUT_OF_RESOURCES = 0xA700
DATA_SET_MISMATCH = 0xA900
CANNOT_UNDERSTAND = 0xC000
VERIFICATION = "1.2.840.10008.1.1"  # the C-ECHO SOP class
_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")


class DicomListener:
    """pynetdicom's threaded association server; ``on_instance`` is called after each kept instance."""

    def __init__(self, config: PacsConfig, assembler: StudyAssembler, own_manufacturer: str) -> None:
        self.config = config
        self.assembler = assembler
        self.own_manufacturer = own_manufacturer
        self._server: Any = None
        self._lock = threading.Lock()
        self.counts = {"kept": 0, "ignored": 0, "refused": 0, "rejected_associations": 0}

    def _count(self, key: str) -> None:
        with self._lock:
            self.counts[key] += 1

    def start(self) -> None:
        """Bind and serve in background threads; OSError when the port is taken."""
        from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, evt

        # pynetdicom's INFO/DEBUG lines describe data sets, and its ERROR lines repeat, at every retry of an
        # unreachable destination, what our own log line already says: our lines are the log of the link.
        logging.getLogger("pynetdicom").setLevel(logging.CRITICAL)
        ae = AE(ae_title=self.config.ae_title)
        for context in AllStoragePresentationContexts:
            ae.add_supported_context(str(context.abstract_syntax), ALL_TRANSFER_SYNTAXES)
        ae.add_supported_context(VERIFICATION)
        ae.require_calling_aet = list(self.config.allowed_aes)
        ae.require_called_aet = True
        ae.maximum_associations = 16
        ae.network_timeout = ae.acse_timeout = ae.dimse_timeout = self.config.network_timeout_s
        handlers: list[Any] = [(evt.EVT_C_STORE, self._on_store), (evt.EVT_REJECTED, self._on_rejected)]
        self._server = ae.start_server((self.config.host, self.config.port), block=False, evt_handlers=handlers)
        log.info(
            "DICOM listener %s on %s:%d; accepts %s",
            self.config.ae_title,
            self.config.host,
            self.port,
            ", ".join(self.config.allowed_aes),
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1]) if self._server is not None else self.config.port

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None

    # -- handlers (run in pynetdicom's association threads; they never raise) ----------------------------------
    def _on_rejected(self, event: Any) -> None:
        self._count("rejected_associations")
        requestor = event.assoc.requestor
        log.warning(
            "association from AE %r at %s rejected (not an allowed calling AE title, or not calling %s)",
            _ae(requestor.ae_title),
            requestor.address,
            self.config.ae_title,
        )

    def _on_store(self, event: Any) -> int:
        source = _ae(event.assoc.requestor.ae_title)
        try:
            ds = event.dataset
            study_uid = str(ds.get("StudyInstanceUID", "") or "").strip()
            sop_uid = str(event.request.AffectedSOPInstanceUID or ds.get("SOPInstanceUID", "") or "").strip()
            has_pixels = any(k in ds for k in _PIXEL_KEYWORDS)
            manufacturer = str(ds.get("Manufacturer", "") or "").strip()
        except Exception as exc:  # noqa: BLE001 - a data set pydicom cannot parse: refuse it, say what kind
            self._count("refused")
            log.warning("instance from AE %r refused: unreadable data set (%s)", source, type(exc).__name__)
            return CANNOT_UNDERSTAND
        if not study_uid or not sop_uid:
            self._count("refused")
            log.warning("instance from AE %r refused: no Study or SOP Instance UID", source)
            return DATA_SET_MISMATCH
        if not has_pixels or manufacturer == self.own_manufacturer:
            self._count("ignored")  # acknowledged: a PACS pushing a whole study must not fail on its SR or ours
            return SUCCESS
        try:
            self.assembler.receive(study_uid, sop_uid, event.encoded_dataset(include_meta=True), source)
        except TooManyInstances as exc:
            self._count("refused")
            log.warning("instance from AE %r refused: %s", source, exc)
            return OUT_OF_RESOURCES
        except OSError as exc:
            self._count("refused")
            log.error("instance from AE %r refused: cannot write it (%s)", source, exc.strerror or type(exc).__name__)
            return OUT_OF_RESOURCES
        except Exception as exc:  # noqa: BLE001
            self._count("refused")
            log.error("instance from AE %r refused: unexpected %s", source, type(exc).__name__)
            return CANNOT_UNDERSTAND
        self._count("kept")
        return SUCCESS


def _ae(value: Any) -> str:
    """An AE title as text (pynetdicom gives str; older versions bytes)."""
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    return str(value).strip()

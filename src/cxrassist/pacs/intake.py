"""Instances -> studies: a staging folder per StudyInstanceUID, complete after a quiet period.

Layout under ``<data_dir>/pacs/incoming``::

    <key>/source            the calling AE title of the first association that sent an instance of the study
    <key>/<sop key>.dcm     each instance as received (Part-10 bytes, the sender's transfer syntax)

``key`` is a hash of the StudyInstanceUID and ``sop key`` one of the SOPInstanceUID: no UID, name or other header
value is ever part of a path or a log line. An instance is written to a temporary name and renamed, so a kill
leaves either the whole file or none; a study left in staging by a stopped process is picked up again at start
(its quiet period starts over). An instance sent twice replaces itself.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

SOURCE_FILE = "source"


def uid_key(uid: str) -> str:
    """A path-safe stand-in for a UID (sha256, 32 hex characters)."""
    return hashlib.sha256(uid.strip().encode("ascii", "replace")).hexdigest()[:32]


@dataclass
class PendingStudy:
    """A study being received: its staging folder, who sent it, when its last instance came."""

    key: str
    folder: Path
    source: str
    last_rx: float  # monotonic clock: the quiet period
    instances: int
    last_rx_at: float = 0.0  # wall clock (time.time()): the latency figures

    def files(self) -> list[Path]:
        return sorted(p for p in self.folder.glob("*.dcm") if p.is_file())


class TooManyInstances(Exception):
    """The study already holds the configured maximum of instances."""


class StudyAssembler:
    """Thread-safe: ``receive`` runs in the listener's association threads, ``due``/``done`` in the intake thread."""

    def __init__(
        self, staging: Path, quiet_s: float, max_instances: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.staging = Path(staging)
        self.staging.mkdir(parents=True, exist_ok=True)
        self.quiet_s = quiet_s
        self.max_instances = max_instances
        self._clock = clock
        self._lock = threading.Lock()
        self._pending: dict[str, PendingStudy] = {}

    def recover(self) -> int:
        """Take up the studies a stopped process left in staging (half-written temporary files are removed)."""
        now = self._clock()
        with self._lock:
            for folder in sorted(p for p in self.staging.iterdir() if p.is_dir()):
                for tmp in folder.glob(".tmp-*"):
                    tmp.unlink(missing_ok=True)
                files = list(folder.glob("*.dcm"))
                if not files:
                    shutil.rmtree(folder, ignore_errors=True)
                    continue
                source = _read_source(folder)
                wall = max(f.stat().st_mtime for f in files)
                self._pending[folder.name] = PendingStudy(folder.name, folder, source, now, len(files), wall)
            return len(self._pending)

    def receive(self, study_uid: str, sop_uid: str, data: bytes, source: str) -> PendingStudy:
        """Keep one instance (``data``: Part-10 bytes); raises TooManyInstances or OSError (disk).

        Under the lock: the write is milliseconds, and the intake thread must never delete a folder being written.
        """
        key = uid_key(study_uid)
        name = f"{uid_key(sop_uid)}.dcm"
        with self._lock:
            study = self._pending.get(key)
            if study is None:
                folder = self.staging / key
                folder.mkdir(parents=True, exist_ok=True)
                if not (folder / SOURCE_FILE).exists():
                    (folder / SOURCE_FILE).write_text(source, encoding="ascii", errors="replace")
                study = PendingStudy(key, folder, _read_source(folder), self._clock(), 0)
                self._pending[key] = study
            target = study.folder / name
            if not target.exists() and study.instances >= self.max_instances:
                raise TooManyInstances(f"a study holds at most {self.max_instances} instances")
            tmp = study.folder / f".tmp-{name}"
            with open(tmp, "wb") as fh:
                fh.write(data)
            os.replace(tmp, target)
            study.instances = len(study.files())
            study.last_rx = self._clock()
            study.last_rx_at = time.time()
            return study

    def due(self) -> list[tuple[PendingStudy, list[Path]]]:
        """The studies whose quiet period is over (oldest first) with the files they hold now.

        They stay pending until :meth:`done`.
        """
        now = self._clock()
        with self._lock:
            ready = [(s, s.files()) for s in self._pending.values() if now - s.last_rx >= self.quiet_s]
        return sorted(ready, key=lambda item: item[0].last_rx)

    def done(self, study: PendingStudy, taken: list[Path]) -> None:
        """The files ``taken`` were handed over to the store: delete them, and the study's folder unless an
        instance came meanwhile (after the quiet period: it waits for a quiet period of its own, a new study)."""
        with self._lock:
            for f in taken:
                f.unlink(missing_ok=True)
            left = study.files()
            if left:
                study.instances = len(left)
                return
            self._pending.pop(study.key, None)
            shutil.rmtree(study.folder, ignore_errors=True)

    def discard(self, key: str) -> None:
        """Drop a staged study by key (recovery found it already handed over before a stop)."""
        with self._lock:
            self._pending.pop(key, None)
            shutil.rmtree(self.staging / key, ignore_errors=True)

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._pending)


def _read_source(folder: Path) -> str:
    try:
        return (folder / SOURCE_FILE).read_text(encoding="ascii", errors="replace").strip() or "?"
    except OSError:
        return "?"

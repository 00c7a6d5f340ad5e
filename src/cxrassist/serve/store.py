"""Persistent study store: one SQLite file (WAL) for the worklist, one folder per study for the files.

Layout under ``data_dir``::

    studies.db                      the worklist (this module)
    studies/<uuid>/input/frontal.*  the uploaded radiograph(s), original bytes (the name never kept: it may
    studies/<uuid>/input/lateral.*  carry a patient identifier)
    studies/<uuid>/view/            radiograph.png, lateral.png: 8-bit pictures for the viewer (worker)
    studies/<uuid>/out/             report.json and its PNGs (written by cxrassist.analysis.analyze_paths)

A status only moves forward ``queued -> running -> done | refused | failed``. At start-up, studies left ``running``
by a process that stopped are put back to ``queued`` (``requeue_interrupted``), so a restart loses nothing.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cxrassist.report import remove_leftover

STATUSES = ("queued", "running", "done", "refused", "failed")
#: Analyses a study may start before it is given up: a study that brings the server down every time (a crash, an
#: out-of-memory kill) would otherwise be requeued at every restart, forever.
MAX_ATTEMPTS = 3
FINAL_STATUSES = frozenset({"done", "refused", "failed"})

_SCHEMA = """
CREATE TABLE IF NOT EXISTS studies (
    id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    received_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    attempts INTEGER NOT NULL DEFAULT 0,
    inputs TEXT NOT NULL,
    priority TEXT,
    priority_score REAL,
    abnormal_probability REAL,
    top_findings TEXT,
    reason TEXT
);
CREATE INDEX IF NOT EXISTS studies_status ON studies(status);
"""
#: Columns added after the first release (ALTER TABLE on an older studies.db): name -> SQL type.
#: header: what the reader needs to identify a study (patient name/ID, study date/time, description, accession,
#: views), JSON, read from the DICOM header; served behind the API token only, never logged.
#: source: the calling AE title of a study received over DICOM (cxrassist.pacs); NULL for uploads.
_ADDED_COLUMNS = {"header": "TEXT", "priority_reason": "TEXT", "source": "TEXT"}


def parse_study_id(value: str) -> str | None:
    """The canonical form of a study id, or None when ``value`` is not a UUID (so it never reaches a path)."""
    try:
        parsed = uuid.UUID(value)
    except (ValueError, AttributeError, TypeError):
        return None
    canonical = str(parsed)
    return canonical if canonical == value.lower() else None


@dataclass
class Study:
    """One row of the worklist."""

    id: str
    status: str
    received_at: float
    inputs: dict[str, str]
    started_at: float | None = None
    finished_at: float | None = None
    attempts: int = 0
    priority: str | None = None
    priority_score: float | None = None
    abnormal_probability: float | None = None
    top_findings: list[dict[str, Any]] = field(default_factory=list)
    reason: str | None = None
    header: dict[str, Any] = field(default_factory=dict)
    priority_reason: str | None = None
    source: str | None = None

    @property
    def has_lateral(self) -> bool:
        return "lateral" in self.inputs


class StudyStore:
    """Thread-safe access to the worklist (one connection guarded by a lock; SQLite in WAL mode)."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        self.studies_dir = self.data_dir / "studies"
        self.studies_dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = sqlite3.connect(
            self.data_dir / "studies.db", check_same_thread=False, isolation_level=None, timeout=30
        )
        self._conn.row_factory = sqlite3.Row
        with self._lock:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.executescript(_SCHEMA)
            have = {r["name"] for r in self._conn.execute("PRAGMA table_info(studies)").fetchall()}
            for name, sql_type in _ADDED_COLUMNS.items():
                if name not in have:
                    self._conn.execute(f"ALTER TABLE studies ADD COLUMN {name} {sql_type}")

    # -- plumbing ----------------------------------------------------------------------------------------------
    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError("the study store is closed")
        return self._conn

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    @property
    def closed(self) -> bool:
        return self._conn is None

    @staticmethod
    def _row(row: sqlite3.Row) -> Study:
        return Study(
            id=row["id"],
            status=row["status"],
            received_at=row["received_at"],
            inputs=json.loads(row["inputs"]),
            started_at=row["started_at"],
            finished_at=row["finished_at"],
            attempts=row["attempts"],
            priority=row["priority"],
            priority_score=row["priority_score"],
            abnormal_probability=row["abnormal_probability"],
            top_findings=json.loads(row["top_findings"]) if row["top_findings"] else [],
            reason=row["reason"],
            # sqlite3.Row: "in row" would test the values, the column names need keys()
            header=json.loads(row["header"]) if "header" in row.keys() and row["header"] else {},  # noqa: SIM118
            priority_reason=row["priority_reason"] if "priority_reason" in row.keys() else None,  # noqa: SIM118
            source=row["source"],  # the column is added at open (_ADDED_COLUMNS)
        )

    # -- paths -------------------------------------------------------------------------------------------------
    def study_dir(self, study_id: str) -> Path:
        canonical = parse_study_id(study_id)
        if canonical is None:
            raise ValueError(f"not a study id: {study_id!r}")
        return self.studies_dir / canonical

    def input_dir(self, study_id: str) -> Path:
        return self.study_dir(study_id) / "input"

    def out_dir(self, study_id: str) -> Path:
        """The analysis' report folder (report.json + its PNGs), written by ``analyze_paths`` only."""
        return self.study_dir(study_id) / "out"

    def view_dir(self, study_id: str) -> Path:
        """The viewer's own pictures (radiograph.png, lateral.png), written before the analysis."""
        return self.study_dir(study_id) / "view"

    def new_study_dir(self) -> tuple[str, Path]:
        """A fresh id and its (created) input folder; the row is added by :meth:`add` once the files are valid."""
        study_id = str(uuid.uuid4())
        path = self.input_dir(study_id)
        path.mkdir(parents=True)
        return study_id, path

    # -- writes ------------------------------------------------------------------------------------------------
    def add(self, study_id: str, inputs: dict[str, str], *, source: str | None = None) -> Study:
        """Queue a study whose input files are already in place (``inputs`` maps role -> path under the study;
        ``source``: the calling AE title of a study received over DICOM)."""
        now = time.time()
        with self._lock:
            self._db().execute(
                "INSERT INTO studies (id, status, received_at, inputs, source) VALUES (?, 'queued', ?, ?, ?)",
                (study_id, now, json.dumps(inputs), source),
            )
        return Study(id=study_id, status="queued", received_at=now, inputs=dict(inputs), source=source)

    def set_header(self, study_id: str, header: dict[str, Any]) -> None:
        """Record what identifies a study for the reader (``study_header``); never logged."""
        with self._lock:
            self._db().execute("UPDATE studies SET header = ? WHERE id = ?", (json.dumps(header), study_id))

    def claim_next(self) -> Study | None:
        """Atomically move the oldest queued study to ``running`` and return it (None when the queue is empty)."""
        with self._lock:
            row = (
                self._db()
                .execute(
                    "UPDATE studies SET status = 'running', started_at = ?, attempts = attempts + 1 "
                    "WHERE id = (SELECT id FROM studies WHERE status = 'queued' ORDER BY received_at LIMIT 1) "
                    "AND status = 'queued' RETURNING *",
                    (time.time(),),
                )
                .fetchone()
            )
        return self._row(row) if row is not None else None

    def finish(
        self,
        study_id: str,
        status: str,
        *,
        reason: str | None = None,
        summary: dict[str, Any] | None = None,
    ) -> None:
        """Record the outcome of an analysis (``done`` with its worklist summary, ``refused``/``failed`` + reason)."""
        if status not in FINAL_STATUSES:
            raise ValueError(f"not a final status: {status!r}")
        s = summary or {}
        with self._lock:
            self._db().execute(
                "UPDATE studies SET status = ?, finished_at = ?, reason = ?, priority = ?, priority_score = ?, "
                "abnormal_probability = ?, top_findings = ?, priority_reason = ? WHERE id = ? AND status = 'running'",
                (
                    status,
                    time.time(),
                    reason,
                    s.get("priority"),
                    s.get("priority_score"),
                    s.get("abnormal_probability"),
                    json.dumps(s.get("top_findings") or []),
                    s.get("priority_reason"),
                    study_id,
                ),
            )

    def fail_exhausted(self, max_attempts: int = MAX_ATTEMPTS) -> list[str]:
        """Mark ``failed`` the studies left ``running`` that already started ``max_attempts`` analyses; their ids.

        Run at start-up before :meth:`requeue_interrupted`: each of those attempts ended with the process gone.
        """
        with self._lock:
            rows = (
                self._db()
                .execute(
                    "UPDATE studies SET status = 'failed', finished_at = ?, "
                    "reason = 'the analysis was interrupted ' || attempts || ' times (the server stopped or crashed "
                    "while analysing this study); not retried' "
                    "WHERE status = 'running' AND attempts >= ? RETURNING id",
                    (time.time(), max_attempts),
                )
                .fetchall()
            )
        return [r["id"] for r in rows]

    def remove_partial_outputs(self) -> int:
        """Delete the temporary folders of report writes that a killed process left in study folders.

        The report writer builds ``.out.tmp-*`` next to ``out/`` and swaps it in (``.out.old-*`` is the previous
        report during the swap): after a kill -9 they hold a half report (tens of MB of images) nothing else removes.
        Run at start-up, before the worker starts.
        """
        removed = 0
        for study in self.studies_dir.iterdir():
            if not study.is_dir():
                continue
            for leftover in study.glob(".out.*-*"):
                if not leftover.name.startswith((".out.tmp-", ".out.old-")):
                    continue
                remove_leftover(leftover)
                removed += 1
        return removed

    def requeue_interrupted(self) -> list[str]:
        """Put studies left ``running`` by a stopped process back in the queue; returns their ids."""
        with self._lock:
            rows = (
                self._db()
                .execute(
                    "UPDATE studies SET status = 'queued', started_at = NULL WHERE status = 'running' RETURNING id"
                )
                .fetchall()
            )
        return [r["id"] for r in rows]

    def delete(self, study_id: str) -> str:
        """Remove a study's row and files unless it is being analysed: "deleted", "running" or "missing"."""
        with self._lock:
            row = self._db().execute("SELECT status FROM studies WHERE id = ?", (study_id,)).fetchone()
            if row is None:
                return "missing"
            if row["status"] == "running":
                return "running"
            self._db().execute("DELETE FROM studies WHERE id = ?", (study_id,))
        shutil.rmtree(self.study_dir(study_id), ignore_errors=True)
        return "deleted"

    def remove_orphans(self) -> int:
        """Delete study folders without a row (an upload interrupted between saving and queueing)."""
        with self._lock:
            known = {r["id"] for r in self._db().execute("SELECT id FROM studies").fetchall()}
        removed = 0
        for path in self.studies_dir.iterdir():
            if path.is_dir() and path.name not in known:
                shutil.rmtree(path, ignore_errors=True)
                removed += 1
        return removed

    # -- reads -------------------------------------------------------------------------------------------------
    def get(self, study_id: str) -> Study | None:
        with self._lock:
            row = self._db().execute("SELECT * FROM studies WHERE id = ?", (study_id,)).fetchone()
        return self._row(row) if row is not None else None

    def list(self, status: str | None = None, limit: int = 1000) -> list[Study]:
        """The worklist: highest priority score first, then unscored studies oldest first."""
        query = "SELECT * FROM studies"
        args: tuple[Any, ...] = ()
        if status is not None:
            query += " WHERE status = ?"
            args = (status,)
        query += " ORDER BY priority_score IS NULL, priority_score DESC, received_at ASC LIMIT ?"
        with self._lock:
            rows = self._db().execute(query, (*args, limit)).fetchall()
        return [self._row(r) for r in rows]

    def counts(self) -> dict[str, int]:
        with self._lock:
            rows = self._db().execute("SELECT status, COUNT(*) AS n FROM studies GROUP BY status").fetchall()
        out = dict.fromkeys(STATUSES, 0)
        out.update({r["status"]: r["n"] for r in rows})
        return out

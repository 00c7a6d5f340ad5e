"""The PACS link's persistent state (``<data_dir>/pacs/pacs.db``, SQLite WAL): which store studies came over DICOM,
and the outbox of their results.

``pacs_studies`` follows a study received over DICOM: ``promoting`` (being handed to the store) -> ``queued``
(waiting for the analysis) -> ``results`` (its SR + SCs are in the outbox) | ``refused`` | ``failed`` | ``deleted``.

``outbox`` holds one row per result file and target ("dicom": C-STORE, "stow": STOW-RS): ``pending`` -> ``sent``,
or ``failed`` after the configured number of attempts. Rows are written once, in the same transaction that moves
the study to ``results`` (a restart neither loses nor duplicates them), and a row is marked ``sent`` as soon as the
receiver confirmed it. The files keep their SOP Instance UIDs, so the one case of a second send (the process killed
between the receiver's answer and that mark, a few milliseconds) stores nothing twice at a PACS.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS pacs_studies (
    study_id TEXT PRIMARY KEY,
    staging_key TEXT NOT NULL,
    source TEXT NOT NULL,
    state TEXT NOT NULL,
    last_rx_at REAL,
    promoted_at REAL NOT NULL,
    finished_at REAL,
    reason TEXT
);
CREATE INDEX IF NOT EXISTS pacs_studies_state ON pacs_studies(state);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY,
    study_id TEXT NOT NULL,
    target TEXT NOT NULL,
    path TEXT NOT NULL,
    sop_instance_uid TEXT NOT NULL,
    kind TEXT,
    state TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    next_at REAL NOT NULL,
    last_error TEXT,
    created_at REAL NOT NULL,
    sent_at REAL,
    UNIQUE (study_id, target, path)
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox(state, next_at);
"""


@dataclass(frozen=True)
class OutboxItem:
    """One result file to send to one target."""

    id: int
    study_id: str
    target: str
    path: str  # relative to the study's folder in the store
    sop_instance_uid: str
    kind: str | None
    attempts: int


class Outbox:
    """Thread-safe (one connection under a lock)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = sqlite3.connect(
            path, check_same_thread=False, isolation_level=None, timeout=30
        )
        self._conn.row_factory = sqlite3.Row
        with self._lock:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.executescript(_SCHEMA)

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError("the outbox is closed")
        return self._conn

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    # -- studies -----------------------------------------------------------------------------------------------
    def begin_study(self, study_id: str, staging_key: str, source: str, last_rx_at: float) -> None:
        with self._lock:
            self._db().execute(
                "INSERT INTO pacs_studies (study_id, staging_key, source, state, last_rx_at, promoted_at) "
                "VALUES (?, ?, ?, 'promoting', ?, ?)",
                (study_id, staging_key, source, last_rx_at, time.time()),
            )

    def set_state(self, study_id: str, state: str, reason: str | None = None) -> None:
        final = state in ("results", "refused", "failed", "deleted")
        with self._lock:
            self._db().execute(
                "UPDATE pacs_studies SET state = ?, reason = COALESCE(?, reason), "
                "finished_at = CASE WHEN ? THEN ? ELSE finished_at END WHERE study_id = ?",
                (state, reason, final, time.time(), study_id),
            )

    def forget_study(self, study_id: str) -> None:
        with self._lock:
            self._db().execute("DELETE FROM pacs_studies WHERE study_id = ?", (study_id,))

    def studies(self, state: str) -> list[dict[str, Any]]:
        with self._lock:
            rows = (
                self._db()
                .execute("SELECT * FROM pacs_studies WHERE state = ? ORDER BY promoted_at", (state,))
                .fetchall()
            )
        return [dict(r) for r in rows]

    def state(self, study_id: str) -> str | None:
        """The state of a study received over DICOM (None for any other study)."""
        with self._lock:
            row = self._db().execute("SELECT state FROM pacs_studies WHERE study_id = ?", (study_id,)).fetchone()
        return None if row is None else str(row["state"])

    def owns(self, study_id: str) -> bool:
        """True for a store study that came over DICOM."""
        with self._lock:
            return (
                self._db().execute("SELECT 1 FROM pacs_studies WHERE study_id = ?", (study_id,)).fetchone() is not None
            )

    # -- results -----------------------------------------------------------------------------------------------
    def enqueue(self, study_id: str, entries: list[dict[str, Any]], targets: tuple[str, ...]) -> int:
        """Queue every result file of a study for every target and mark the study ``results``, atomically."""
        now = time.time()
        added = 0
        with self._lock:
            db = self._db()
            db.execute("BEGIN IMMEDIATE")
            try:
                for target in targets:
                    for e in entries:
                        cur = db.execute(
                            "INSERT OR IGNORE INTO outbox (study_id, target, path, sop_instance_uid, kind, next_at, "
                            "created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                            (study_id, target, e["path"], e["sop_instance_uid"], e.get("kind"), now, now),
                        )
                        added += cur.rowcount
                db.execute(
                    "UPDATE pacs_studies SET state = 'results', finished_at = ? WHERE study_id = ?", (now, study_id)
                )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return added

    def due(self, targets: tuple[str, ...], now: float | None = None, limit: int = 200) -> list[OutboxItem]:
        """Pending rows for ``targets`` whose retry time has come, oldest first (rows of a target configured off
        since they were queued wait until it is configured again)."""
        marks = ",".join("?" * len(targets))
        with self._lock:
            rows = (
                self._db()
                .execute(
                    f"SELECT * FROM outbox WHERE state = 'pending' AND next_at <= ? AND target IN ({marks}) "
                    "ORDER BY id LIMIT ?",
                    (time.time() if now is None else now, *targets, limit),
                )
                .fetchall()
            )
        return [
            OutboxItem(r["id"], r["study_id"], r["target"], r["path"], r["sop_instance_uid"], r["kind"], r["attempts"])
            for r in rows
        ]

    def next_due_at(self, targets: tuple[str, ...]) -> float | None:
        marks = ",".join("?" * len(targets))
        with self._lock:
            row = (
                self._db()
                .execute(
                    f"SELECT MIN(next_at) AS t FROM outbox WHERE state = 'pending' AND target IN ({marks})", targets
                )
                .fetchone()
            )
        return row["t"] if row is not None else None

    def mark_sent(self, item_id: int) -> None:
        with self._lock:
            self._db().execute(
                "UPDATE outbox SET state = 'sent', sent_at = ?, attempts = attempts + 1, "
                "last_error = NULL WHERE id = ? AND state = 'pending'",
                (time.time(), item_id),
            )

    def mark_retry(self, item_id: int, error: str, next_at: float) -> None:
        with self._lock:
            self._db().execute(
                "UPDATE outbox SET attempts = attempts + 1, last_error = ?, next_at = ? "
                "WHERE id = ? AND state = 'pending'",
                (error[:500], next_at, item_id),
            )

    def mark_failed(self, item_id: int, error: str) -> None:
        with self._lock:
            self._db().execute(
                "UPDATE outbox SET state = 'failed', attempts = attempts + 1, last_error = ? "
                "WHERE id = ? AND state = 'pending'",
                (error[:500], item_id),
            )

    def retry_now(self) -> int:
        """Make every pending row due (at start-up: a restart is a fresh try, whatever the back-off said)."""
        with self._lock:
            return self._db().execute("UPDATE outbox SET next_at = ? WHERE state = 'pending'", (time.time(),)).rowcount

    def counts(self) -> dict[str, int]:
        with self._lock:
            rows = self._db().execute("SELECT state, COUNT(*) AS n FROM outbox GROUP BY state").fetchall()
        out = {"pending": 0, "sent": 0, "failed": 0}
        out.update({r["state"]: r["n"] for r in rows})
        return out

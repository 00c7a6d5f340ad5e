"""PacsLink: the listener, the intake, the outbox and the sender around the service's store and worker.

Two threads besides the listener's: ``pacs-intake`` hands complete studies to the store (and finished ones to the
outbox), ``pacs-sender`` empties the outbox. Start-up first finishes what a stopped process left half done:
studies handed to the store but not yet forgotten by the staging area, and pending results (sent again at once).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

from cxrassist.pacs.config import PacsConfig
from cxrassist.pacs.intake import PendingStudy, StudyAssembler
from cxrassist.pacs.listener import DicomListener
from cxrassist.pacs.outbox import Outbox, OutboxItem
from cxrassist.serve.store import StudyStore
from cxrassist.serve.worker import AnalysisWorker

log = logging.getLogger(__name__)

TICK_S = 0.1
#: How long a study's pictures (PNGs) wait for the first sending of its results: on 2 cores, writing them meanwhile
#: took the CPU the sending needs (13 MB took 1.5 s instead of 0.6 s). Bounded: a slow PACS delays the viewer by
#: this much at most (the outbox goes on retrying as before).
SEND_FIRST_S = 10.0
#: The report format a study received over DICOM gets on top of the service's (its SR and SCs go back).
RESULT_FORMAT = "dicom"


class PacsLink:
    """Owns its threads; ``start()`` binds the DICOM port (OSError when taken), ``stop()`` joins everything."""

    def __init__(self, config: PacsConfig, store: StudyStore, worker: AnalysisWorker | None = None) -> None:
        from cxrassist.report.dicom_out import MANUFACTURER

        self.config = config.validate()
        self.store = store
        self.worker = worker
        root = Path(store.data_dir) / "pacs"
        self.outbox = Outbox(root / "pacs.db")
        self.assembler = StudyAssembler(root / "incoming", config.quiet_s, config.max_instances)
        self.listener = DicomListener(config, self.assembler, MANUFACTURER)
        self._stop = threading.Event()
        self._send_wake = threading.Event()
        self._threads: list[threading.Thread] = []
        self._first_send: dict[str, threading.Event] = {}  # study id -> set once its results had a first sending
        self._first_lock = threading.Lock()

    # -- lifecycle ---------------------------------------------------------------------------------------------
    def start(self) -> PacsLink:
        self._recover()
        if self.worker is not None:
            self.worker.extra_formats = self.formats_for
            self.worker.results_ready = self.results_ready
        self.listener.start()
        for name, target in (("pacs-intake", self._intake_loop), ("pacs-sender", self._sender_loop)):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def stop(self, timeout: float = 30.0) -> None:
        self.listener.stop()
        self._stop.set()
        self._send_wake.set()
        with self._first_lock:
            for waiting in self._first_send.values():
                waiting.set()
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        self.outbox.close()

    def formats_for(self, study: Any) -> tuple[str, ...]:
        """The worker's hook: studies received over DICOM also get their DICOM SR + SCs written."""
        try:
            return (RESULT_FORMAT,) if self.outbox.owns(study.id) else ()
        except Exception:  # noqa: BLE001 - outbox closed at shutdown: DICOM files for an upload are harmless,
            return (RESULT_FORMAT,)  # a study from the PACS without them could not be sent back

    def results_ready(self, study: Any, report: dict[str, Any]) -> None:
        """The worker's hook, called as soon as a study's SR and SCs are written (before its PNGs): they go into
        the outbox now and the sender starts at once. ``_collect`` does the same for a study found done (a hook
        that failed), and handles refusals and failures."""
        if self._stop.is_set() or self.outbox.state(study.id) != "queued":
            return  # not from the PACS, or its results are already queued (a rerun keeps the same files)
        sent_once = threading.Event()
        with self._first_lock:
            self._first_send[study.id] = sent_once
        try:
            if self._queue_results(study.id, study.source or "?", self._entries(study.id, report)):
                sent_once.wait(SEND_FIRST_S)  # the worker's pictures wait for it (see SEND_FIRST_S)
        finally:
            with self._first_lock:
                self._first_send.pop(study.id, None)

    def _queue_results(self, study_id: str, source: str, entries: list[dict[str, Any]]) -> int:
        """Queue a study's results for every target; how many outbox rows were added."""
        if not entries:
            self.outbox.set_state(study_id, "failed", "the report has no DICOM results")
            log.error("study %s from AE %r: the report has no DICOM results; nothing sent", study_id, source)
            return 0
        added = self.outbox.enqueue(study_id, entries, self.config.targets)
        self._send_wake.set()
        where = ", ".join(self._describe(t) for t in self.config.targets) or "no destination configured"
        log.info("study %s from AE %r analysed: %d result file(s) queued (%s)", study_id, source, added, where)
        return added

    def _recover(self) -> None:
        for row in self.outbox.studies("promoting"):
            if self.store.get(row["study_id"]) is not None:  # handed over; the staging copy was not yet removed
                self.outbox.set_state(row["study_id"], "queued")
                self.assembler.discard(row["staging_key"])
            else:  # stopped before the store knew it: the staging copy is still there and is handed over again
                self.outbox.forget_study(row["study_id"])
        staged = self.assembler.recover()
        resent = self.outbox.retry_now()
        if staged or resent:
            log.info("PACS link: %d studies being received and %d pending results taken up again", staged, resent)

    # -- intake: staging -> store, store -> outbox --------------------------------------------------------------
    def _intake_loop(self) -> None:
        while not self._stop.wait(TICK_S):
            try:
                for study, files in self.assembler.due():
                    self._hand_over(study, files)
                self._collect()
            except Exception:
                if self._stop.is_set():
                    return
                log.exception("PACS intake error")

    def _hand_over(self, pending: PendingStudy, files: list[Path]) -> None:
        """Give one complete study to the store (queued for the worker), crash-safe (see _recover)."""
        if not files:
            self.assembler.done(pending, files)
            return
        study_id, input_dir = self.store.new_study_dir()
        self.outbox.begin_study(study_id, pending.key, pending.source, pending.last_rx_at)
        try:
            inputs = _place_inputs(files, input_dir)
            self.store.add(study_id, inputs, source=pending.source)
        except Exception as exc:  # noqa: BLE001 - e.g. a full disk: retried after another quiet period
            self.outbox.forget_study(study_id)
            shutil.rmtree(input_dir.parent, ignore_errors=True)
            pending.last_rx = time.monotonic()
            log.error("study from AE %r could not be queued (%s); retried later", pending.source, type(exc).__name__)
            return
        self.outbox.set_state(study_id, "queued")
        self.assembler.done(pending, files)
        if self.worker is not None:
            self.worker.notify()
        log.info(
            "study %s received from AE %r (%d image instance(s)); queued for analysis",
            study_id,
            pending.source,
            len(files),
        )

    def _collect(self) -> None:
        """Studies received over DICOM whose analysis ended: results into the outbox, refusals logged."""
        for row in self.outbox.studies("queued"):
            study_id, source = row["study_id"], row["source"]
            study = self.store.get(study_id)
            if study is None:
                self.outbox.set_state(study_id, "deleted", "deleted from the worklist before its analysis ended")
                log.info("study %s from AE %r deleted before its analysis ended; nothing sent", study_id, source)
            elif study.status == "done":
                self._queue_results(study_id, source, self._result_entries(study_id))
            elif study.status in ("refused", "failed"):
                self.outbox.set_state(study_id, study.status, study.reason)
                log.warning(
                    "study %s from AE %r %s: %s; no results sent",
                    study_id,
                    source,
                    study.status,
                    study.reason or "no reason recorded",
                )

    def _result_entries(self, study_id: str) -> list[dict[str, Any]]:
        """The report's DICOM outputs (SR first, then the SCs), with paths relative to the study's folder."""
        report_path = self.store.out_dir(study_id) / "report.json"
        try:
            report = json.loads(report_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return []
        return self._entries(study_id, report)

    def _entries(self, study_id: str, report: dict[str, Any]) -> list[dict[str, Any]]:
        out_name = self.store.out_dir(study_id).relative_to(self.store.study_dir(study_id)).as_posix()
        entries = (report.get("outputs") or {}).get("dicom") or []
        return [
            {"path": f"{out_name}/{e['path']}", "sop_instance_uid": e["sop_instance_uid"], "kind": e.get("kind")}
            for e in entries
            if e.get("path") and e.get("sop_instance_uid")
        ]

    def _describe(self, target: str) -> str:
        if target == "dicom":
            return f"C-STORE to {self.config.destination}"
        from cxrassist.pacs.sender import _safe_url

        return f"STOW-RS to {_safe_url(self.config.stow_url or '')}"

    # -- sender ------------------------------------------------------------------------------------------------
    def _sender_loop(self) -> None:
        while not self._stop.is_set():
            try:
                items = self.outbox.due(self.config.targets)
                if not items:
                    nxt = self.outbox.next_due_at(self.config.targets)
                    wait = 1.0 if nxt is None else min(1.0, max(0.0, nxt - time.time()))
                    self._send_wake.wait(wait)
                    self._send_wake.clear()
                    continue
                groups: dict[tuple[str, str], list[OutboxItem]] = {}
                for item in items:
                    groups.setdefault((item.study_id, item.target), []).append(item)
                for (study_id, target), group in groups.items():
                    if self._stop.is_set():
                        return
                    self._send_group(study_id, target, group)
                with self._first_lock:
                    for study_id, _ in groups:
                        if study_id in self._first_send:
                            self._first_send[study_id].set()
            except Exception:
                if self._stop.is_set():
                    return
                log.exception("PACS sender error")
                self._stop.wait(1.0)

    def _send_group(self, study_id: str, target: str, group: list[OutboxItem]) -> None:
        from cxrassist.pacs import sender

        base = self.store.study_dir(study_id)
        by_path: dict[Path, OutboxItem] = {}
        for item in group:
            path = base / item.path
            if not path.is_file():
                self.outbox.mark_failed(item.id, "the result file is gone (study deleted from the worklist?)")
                log.error("study %s: a result file is gone; not sent to %s", study_id, target)
                continue
            by_path[path] = item
        if not by_path:
            return
        outcome = {"sent": 0, "retry": 0, "failed": 0}
        errors: list[str] = []

        def on_result(path: Path, error: str | None) -> None:
            item = by_path[path]
            if error is None:
                self.outbox.mark_sent(item.id)
                outcome["sent"] += 1
                return
            errors.append(error)
            if item.attempts + 1 >= self.config.max_attempts:
                self.outbox.mark_failed(item.id, error)
                outcome["failed"] += 1
            else:
                delay = min(self.config.retry_max_s, self.config.retry_base_s * 2**item.attempts)
                self.outbox.mark_retry(item.id, error, time.time() + delay)
                outcome["retry"] += 1

        files = list(by_path)
        timeout = self.config.network_timeout_s
        if target == "dicom" and self.config.destination is not None:
            sender.cstore(self.config.destination, self.config.ae_title, files, on_result, timeout)
        elif target == "stow" and self.config.stow_url:
            sender.stow(self.config.stow_url, files, on_result, self.config.stow_token, timeout)
        where = self._describe(target)
        if outcome["sent"]:
            log.info("study %s: %d result file(s) sent (%s)", study_id, outcome["sent"], where)
        if outcome["retry"]:
            log.warning(
                "study %s: %d result file(s) not sent (%s): %s; retried with back-off",
                study_id,
                outcome["retry"],
                where,
                errors[0],
            )
        if outcome["failed"]:
            log.error(
                "study %s: %d result file(s) given up after %d attempts (%s): %s",
                study_id,
                outcome["failed"],
                self.config.max_attempts,
                where,
                errors[-1],
            )


def _place_inputs(files: list[Path], input_dir: Path) -> dict[str, str]:
    """Put the study's frontal (and lateral) into the store's input folder; roles as ``cxrassist.study`` chooses.

    One image is the frontal. Among several, ``load_study`` tells the views apart (DICOM view, then the image
    check); if it cannot read them, the first is the frontal and the worker's analysis says what is wrong with it.
    """
    chosen: dict[str, Path] = {"frontal": files[0]}
    if len(files) > 1:
        from cxrassist.errors import InputError
        from cxrassist.study import load_study

        try:
            images = load_study(files)
        except InputError:
            images = None
        if images is not None and images.frontal.source_path is not None:
            chosen = {"frontal": Path(images.frontal.source_path)}
            if images.lateral is not None and images.lateral.source_path is not None:
                chosen["lateral"] = Path(images.lateral.source_path)
    inputs: dict[str, str] = {}
    for role, src in chosen.items():
        dst = input_dir / f"{role}.dcm"
        try:
            os.link(src, dst)  # same file system: instant; the staging copy is removed once the store has it
        except OSError:
            shutil.copyfile(src, dst)
        inputs[role] = dst.relative_to(input_dir.parent).as_posix()
    return inputs


@contextmanager
def _running(config: PacsConfig, store: StudyStore, worker: AnalysisWorker) -> Iterator[PacsLink]:
    link = PacsLink(config, store, worker).start()
    try:
        yield link
    finally:
        link.stop()


def pacs_companion(config: PacsConfig) -> Callable[[StudyStore, AnalysisWorker], AbstractContextManager[PacsLink]]:
    """What ``create_app(companions=[...])`` runs beside the web service: the PACS link on its store and worker."""
    config = config.validate()

    def companion(store: StudyStore, worker: AnalysisWorker) -> AbstractContextManager[PacsLink]:
        return _running(config, store, worker)

    return companion

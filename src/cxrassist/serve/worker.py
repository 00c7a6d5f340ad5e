"""Background analysis: threads that take queued studies from the store and run the real analysis on them.

Requests never wait for a model: an upload is queued and answered 202 at once; the worker moves the study to
``running`` and then ``done`` (report.json + PNGs in its ``out/`` folder), ``refused`` (the input is not something
the models may read, e.g. not a chest radiograph: the reason is kept) or ``failed`` (our fault; logged).
Logs name studies by their random id only, never by anything read from the image.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from cxrassist.errors import CxrError, InputError
from cxrassist.serve.store import Study, StudyStore

log = logging.getLogger(__name__)

AnalyzeFn = Callable[..., dict[str, Any]]
PipelineFactory = Callable[[], Any]

#: Viewer images the worker writes next to the report (8-bit, XRay.pixels [0, 1] -> 0..255).
VIEWER_IMAGES = {"frontal": "radiograph.png", "lateral": "lateral.png"}
TOP_FINDINGS = 3


def write_viewer_png(pixels: np.ndarray, path: Path) -> None:
    """XRay.pixels (float [0, 1], 1 = bone white) as an 8-bit grey PNG: the viewer windows it with apply_level."""
    from PIL import Image

    from cxrassist.postprocess import as_uint8

    # fast zlib (as the report's PNGs): level 6 took 0.6 s for RG1 (2.3x level 1), for a file 15 % smaller (1.28 MB)
    Image.fromarray(as_uint8(np.asarray(pixels, dtype=np.float32)), mode="L").save(path, compress_level=1)


def summarize(report: dict[str, Any]) -> dict[str, Any]:
    """The worklist columns of a finished report: triage priority/score and the most probable findings."""
    triage = report.get("triage") or {}
    findings = [f for f in report.get("findings") or [] if isinstance(f, dict) and f.get("probability") is not None]
    # validated findings first (a reader acts on those), each group by probability
    findings.sort(key=lambda f: (not f.get("validated"), not f.get("positive"), -float(f["probability"])))
    return {
        "priority": triage.get("priority"),
        "priority_score": _float_or_none(triage.get("priority_score")),
        "abnormal_probability": _float_or_none(triage.get("abnormal_probability")),
        "priority_reason": triage.get("reason"),
        "top_findings": [
            {
                "code": f.get("code"),
                "name": f.get("name"),
                "probability": float(f["probability"]),
                "positive": bool(f.get("positive")),
                "validated": bool(f.get("validated")),
            }
            for f in findings[:TOP_FINDINGS]
        ],
    }


def _float_or_none(value: Any) -> float | None:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


def _default_analyze(*args: Any, **kwargs: Any) -> dict[str, Any]:
    from cxrassist.analysis import analyze_paths

    return analyze_paths(*args, **kwargs)


class AnalysisWorker:
    """A small pool of threads (``n_threads``, usually 1: the models already use every core) over the queue."""

    def __init__(
        self,
        store: StudyStore,
        pipeline_factory: PipelineFactory,
        *,
        n_threads: int = 1,
        formats: tuple[str, ...] = ("json", "png"),
        analyze: AnalyzeFn | None = None,
        poll_s: float = 1.0,
    ) -> None:
        self.store = store
        #: Extra report formats per study (e.g. the DICOM SR + SCs a study received over DICOM goes back with);
        #: set by a companion (cxrassist.pacs) before :meth:`start`.
        self.extra_formats: Callable[[Study], tuple[str, ...]] | None = None
        #: Called with (study, report) as soon as a study's DICOM results are written, before its pictures (PNGs,
        #: viewer images): the PACS link queues and sends them then (it may hold the worker until their first
        #: sending, so the pictures do not take the CPU the sending needs). The study stays ``running`` until
        #: everything is written.
        self.results_ready: Callable[[Study, dict[str, Any]], None] | None = None
        self._factory = pipeline_factory
        self._analyze = analyze or _default_analyze
        self.formats = tuple(formats)
        self.n_threads = n_threads
        self.poll_s = poll_s
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._threads: list[threading.Thread] = []
        self._pipeline: Any = None
        self._pipeline_lock = threading.Lock()
        self.pipeline_state = "not loaded"  # "loading" | "ready" | "error"
        self.pipeline_error: str | None = None
        self.current: set[str] = set()

    # -- lifecycle ---------------------------------------------------------------------------------------------
    def start(self) -> None:
        for i in range(self.n_threads):
            t = threading.Thread(target=self._run, name=f"cxr-analysis-{i}", daemon=True)
            t.start()
            self._threads.append(t)

    def notify(self) -> None:
        """Wake the threads: a study was queued."""
        self._wake.set()

    def stop(self, timeout: float = 60.0) -> bool:
        """Let the running analyses finish (up to ``timeout`` s), then return; queued studies stay queued.

        Returns False when a thread was still busy: its study stays ``running`` in the store and is queued again
        at the next start.
        """
        self._stop.set()
        self._wake.set()
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        alive = any(t.is_alive() for t in self._threads)
        if alive:
            log.warning("analysis still running at shutdown (%s); it will be queued again at next start", self.current)
        return not alive

    @property
    def pipeline(self) -> Any:
        """The loaded pipeline, or None while it is loading (or failed to load)."""
        return self._pipeline

    def load_pipeline(self) -> Any:
        """Build the pipeline once (the first thread to need it does the work)."""
        with self._pipeline_lock:
            if self._pipeline is None and self.pipeline_state != "error":
                self.pipeline_state = "loading"
                t0 = time.perf_counter()
                try:
                    self._pipeline = self._factory()
                except Exception as exc:  # noqa: BLE001 - reported in /api/health; studies stay queued
                    self.pipeline_state = "error"
                    self.pipeline_error = f"{type(exc).__name__}: {exc}" if not isinstance(exc, CxrError) else str(exc)
                    log.error("could not load the analysis pipeline: %s", self.pipeline_error)
                    return None
                self.pipeline_state = "ready"
                log.info("analysis pipeline ready in %.1f s", time.perf_counter() - t0)
            return self._pipeline

    # -- the loop ----------------------------------------------------------------------------------------------
    def _run(self) -> None:
        pipeline = self.load_pipeline()
        if pipeline is None:
            return  # pipeline broken: leave the queue untouched for a restart with working weights
        while not self._stop.is_set():
            try:
                study = self.store.claim_next()
            except Exception:  # store closed under us at shutdown
                if self._stop.is_set():
                    return
                log.exception("could not read the queue")
                self._stop.wait(self.poll_s)
                continue
            if study is None:
                self._wake.wait(self.poll_s)
                self._wake.clear()
                continue
            self.process(study, pipeline)

    def process(self, study: Study, pipeline: Any) -> str:
        """Analyse one claimed study and record its outcome; returns the final status."""
        self.current.add(study.id)
        t0 = time.perf_counter()
        status, reason, summary = "failed", None, None
        try:
            report = self._analyze_study(study, pipeline)
            status, summary = "done", summarize(report)
        except InputError as exc:
            status, reason = "refused", str(exc)
        except CxrError as exc:
            status, reason = "failed", str(exc)
            log.error("study %s failed: %s", study.id, type(exc).__name__)
        except Exception as exc:  # a bug must not kill the worker thread
            status, reason = "failed", f"internal error ({type(exc).__name__}); see the server log"
            log.exception("study %s failed with an unexpected error", study.id)
        finally:
            self.current.discard(study.id)
        try:
            self.store.finish(study.id, status, reason=reason, summary=summary)
        except Exception:  # noqa: BLE001 - the store was closed by a shutdown: the study is re-run next start
            log.warning("could not record the outcome of study %s; it will be analysed again", study.id)
            return "running"
        log.info("study %s %s in %.2f s", study.id, status, time.perf_counter() - t0)
        return status

    def _analyze_study(self, study: Study, pipeline: Any) -> dict[str, Any]:
        base = self.store.study_dir(study.id)
        view_dir = self.store.view_dir(study.id)
        out_dir = self.store.out_dir(study.id)
        view_dir.mkdir(parents=True, exist_ok=True)
        formats = self.formats
        if self.extra_formats is not None:
            formats = tuple(dict.fromkeys((*formats, *self.extra_formats(study))))
        hook = self.results_ready
        early = hook is not None and "dicom" in formats
        # A rerun after an interruption keeps the DICOM results a previous run wrote: they may be queued for the
        # PACS or already there, and must stay what was sent (new files would carry new UIDs).
        keep = written_dicom(out_dir) if early else None
        if out_dir.exists() and not keep:  # partial output of an interrupted run: the report writer only replaces
            shutil.rmtree(out_dir)  # its own
        frontal = base / study.inputs["frontal"]
        lateral = base / study.inputs["lateral"] if "lateral" in study.inputs else None
        if not study.header:  # studies not queued by an upload (e.g. received over DICOM) get theirs here
            from cxrassist.serve.viewimage import study_header

            header = study_header(frontal)
            if header:
                self.store.set_header(study.id, header)
        if hook is None or not early:
            # The viewer's pictures first, so that a refused study can still be looked at.
            self._viewer_pictures(frontal, lateral, view_dir)
            return self._analyze(frontal, lateral, out_dir, pipeline=pipeline, formats=formats, force=False)
        pictures = {"written": False}

        def results_first(report: dict[str, Any]) -> None:
            try:
                hook(study, report)
            except Exception:  # the link also collects finished studies: nothing is lost
                log.exception("study %s: the results hook failed", study.id)
            self._viewer_pictures(frontal, lateral, view_dir)
            pictures["written"] = True

        try:
            return self._analyze(
                frontal,
                lateral,
                out_dir,
                pipeline=pipeline,
                formats=formats,
                force=False,
                early=results_first,
                keep_dicom=keep,
            )
        except BaseException:
            if not pictures["written"]:  # a refused or failed study can still be looked at
                with contextlib.suppress(Exception):
                    self._viewer_pictures(frontal, lateral, view_dir)
            raise

    @staticmethod
    def _viewer_pictures(frontal: Path, lateral: Path | None, view_dir: Path) -> None:
        """The viewer's pictures: an 8-bit PNG and the stored values at full bit depth (the page windows those)."""
        from cxrassist.io import read_xray
        from cxrassist.serve.viewimage import write_view_pixels

        for role, path in (("frontal", frontal), ("lateral", lateral)):
            if path is None:
                continue
            xray = read_xray(path)
            write_viewer_png(xray.pixels, view_dir / VIEWER_IMAGES[role])
            write_view_pixels(path, xray, view_dir, role)


def written_dicom(out_dir: Path) -> list[dict[str, Any]] | None:
    """The DICOM entries of the report in ``out_dir`` when every one of their files is there, else None."""
    import json

    try:
        report = json.loads((out_dir / "report.json").read_text(encoding="utf-8"))
        entries = [dict(e) for e in (report.get("outputs") or {}).get("dicom") or []]
    except (OSError, ValueError, AttributeError, TypeError):
        return None
    if not entries or not all(isinstance(e.get("path"), str) and (out_dir / e["path"]).is_file() for e in entries):
        return None
    return entries

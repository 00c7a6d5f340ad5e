"""``cxr batch``: every study under a folder -> one report folder each + ``worklist.csv`` sorted by priority.

Resumable: a study whose ``report.json`` exists (it is written last, atomically) is skipped and its row is rebuilt
from that report. A failing study is recorded (status ``refused`` for an input refusal, ``failed`` otherwise, in
``worklist.csv`` and ``failures.csv``) and the others carry on; failed studies are retried on the next run.

Workers: ``workers > 1`` runs a process pool ("spawn": no forked OpenMP state) in which each worker loads the
pipeline once and uses ``max(1, cpu_count // workers)`` torch threads. Each worker holds its own copy of the models
and one study's images, so memory grows with the worker count (about 0.5-1 GB each at full size).
"""

from __future__ import annotations

import csv
import json
import logging
import os
import re
import time
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cxrassist.errors import CxrError, InputError
from cxrassist.report import DEFAULT_FORMATS, REPORT_NAME, parse_formats, remove_leftover
from cxrassist.study import Study, discover_studies

log = logging.getLogger(__name__)

WORKLIST_NAME = "worklist.csv"
FAILURES_NAME = "failures.csv"
WORKLIST_COLUMNS = (
    "rank",
    "study",
    "status",
    "priority",
    "priority_score",
    "abnormal_probability",
    "critical_findings",
    "top_findings",
    "forced",
    "untrained",
    "report",
    "files",
    "error",
)
_STATUS_ORDER = {"done": 0, "skipped": 0, "refused": 1, "failed": 2}


@dataclass
class StudyOutcome:
    key: str
    folder: str
    files: list[str]
    status: str  # "done" | "skipped" | "refused" | "failed"
    error: str = ""
    report: dict[str, Any] | None = None
    seconds: float = 0.0


@dataclass
class BatchSummary:
    outcomes: list[StudyOutcome] = field(default_factory=list)
    seconds: float = 0.0
    worklist: Path | None = None

    def count(self, *statuses: str) -> int:
        return sum(o.status in statuses for o in self.outcomes)

    @property
    def studies_per_minute(self) -> float:
        analysed = self.count("done", "refused", "failed")
        return 60.0 * analysed / self.seconds if self.seconds > 0 and analysed else 0.0


_WORKER: dict[str, Any] = {}


def _init_worker(spec: dict[str, Any], threads: int | None) -> None:
    """Process-pool initializer: load the pipeline once per worker (from its load() arguments)."""
    import torch

    from cxrassist.pipeline import Pipeline

    if threads:
        torch.set_num_threads(threads)
    weights_dir = spec.pop("weights_dir", None)
    _WORKER["pipeline"] = Pipeline.load(weights_dir, **spec)


def _analyze_study(study: Study, root: str, out_root: str, formats: tuple[str, ...], force: bool) -> StudyOutcome:
    from cxrassist.analysis import analyze_paths

    files = [str(Path(f).relative_to(root)) for f in study.files]
    t0 = time.perf_counter()
    try:
        report = analyze_paths(
            study.files,
            None,
            Path(out_root) / study.folder_name,
            pipeline=_WORKER["pipeline"],
            formats=formats,
            force=force,
        )
        status, error = "done", ""
    except InputError as exc:
        report, status, error = None, "refused", str(exc)
    except CxrError as exc:
        report, status, error = None, "failed", str(exc)
    except Exception as exc:  # one study's crash must not stop the batch
        log.exception("study %s failed", study.key)
        report, status, error = None, "failed", f"unexpected {type(exc).__name__}: {exc}"
    return StudyOutcome(study.key, study.folder_name, files, status, error, report, time.perf_counter() - t0)


def _existing_report(out_root: Path, study: Study) -> dict[str, Any] | None:
    path = out_root / study.folder_name / REPORT_NAME
    if not path.is_file():
        return None
    try:
        from cxrassist.report.schema import validate_report

        report = json.loads(path.read_text(encoding="utf-8"))
        validate_report(report)
        return report
    except Exception:  # noqa: BLE001 - unreadable or outdated: analyse again
        return None


def run_batch(
    input_dir: Path | str,
    out_dir: Path | str,
    *,
    pipeline: Any = None,
    weights_dir: Path | str | None = None,
    allow_untrained: bool = False,
    workers: int = 1,
    force: bool = False,
    formats: Iterable[str] | str = DEFAULT_FORMATS,
    progress: bool = True,
) -> BatchSummary:
    """Analyse every study under ``input_dir`` into ``out_dir/<study>/`` and write the worklist."""
    from cxrassist.io.quiet import install

    install()  # discover_studies reads DICOM headers: their warnings must not print header values
    root, out_root = Path(input_dir).absolute(), Path(out_dir).absolute()
    if not root.is_dir():
        raise InputError(f"{root}: not a folder")
    fmts = parse_formats(formats)
    out_root.mkdir(parents=True, exist_ok=True)
    leftovers = remove_partial_outputs(out_root)
    if leftovers:
        log.info("removed %d partial report folder(s) of an interrupted run", leftovers)
    studies = [s for s in discover_studies(root) if not _inside(s.files[0], out_root)]
    summary = BatchSummary()
    t0 = time.perf_counter()
    todo: list[Study] = []
    for study in studies:
        existing = _existing_report(out_root, study)
        if existing is not None:
            files = [str(Path(f).relative_to(root)) for f in study.files]
            summary.outcomes.append(StudyOutcome(study.key, study.folder_name, files, "skipped", report=existing))
        else:
            todo.append(study)

    from tqdm import tqdm

    bar = tqdm(total=len(todo), desc="studies", unit="study", disable=not progress, leave=True)
    try:
        if workers <= 1:
            if pipeline is None:
                from cxrassist.analysis import default_pipeline

                pipeline = default_pipeline(weights_dir, allow_untrained)
            _WORKER["pipeline"] = pipeline
            for study in todo:
                summary.outcomes.append(_analyze_study(study, str(root), str(out_root), fmts, force))
                bar.update(1)
        else:
            import multiprocessing as mp

            threads = max(1, (os.cpu_count() or 1) // workers)
            if pipeline is not None:
                if pipeline.spec is None:
                    raise ValueError(
                        "a Pipeline built in memory cannot be sent to worker processes; use "
                        "Pipeline.load(...) or pass weights_dir"
                    )
                spec = dict(pipeline.spec)
            else:
                spec = {"weights_dir": str(weights_dir) if weights_dir else None, "allow_untrained": allow_untrained}
            init = (spec, threads)
            with ProcessPoolExecutor(
                max_workers=workers, mp_context=mp.get_context("spawn"), initializer=_init_worker, initargs=init
            ) as pool:
                futures = [pool.submit(_analyze_study, s, str(root), str(out_root), fmts, force) for s in todo]
                for fut in as_completed(futures):
                    summary.outcomes.append(fut.result())
                    bar.update(1)
    finally:
        bar.close()
    summary.seconds = time.perf_counter() - t0
    summary.worklist = write_worklist(summary.outcomes, out_root)
    return summary


_PARTIAL = re.compile(r"\..+\.(tmp|old)-[^/]+")


def remove_partial_outputs(out_root: Path) -> int:
    """Delete what an interrupted run left half-written in ``out_root``: the report writer's ``.<study>.tmp-*``
    folders (a half report, tens of MB of images), its ``.<study>.old-*`` swap backups and the worklist's
    ``.worklist.csv.tmp-*`` files. One batch per output folder at a time: a concurrent run's are removed too."""
    removed = 0
    for path in out_root.glob(".*"):
        if not _PARTIAL.fullmatch(path.name):
            continue
        remove_leftover(path)
        removed += 1
    return removed


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.absolute().relative_to(folder)
        return True
    except ValueError:
        return False


def _row(o: StudyOutcome) -> dict[str, Any]:
    row: dict[str, Any] = {"study": o.key, "status": o.status, "files": ";".join(o.files), "error": o.error}
    r = o.report
    if r is not None:
        t = r["triage"]
        ranked = sorted(r["findings"], key=lambda f: f["probability"], reverse=True)
        shown = [f for f in ranked if f["positive"]] or ranked[:3]
        report_file = r["outputs"].get("html") or REPORT_NAME
        row |= {
            "priority": t["priority"],
            "priority_score": f"{t['priority_score']:.4f}",
            "abnormal_probability": f"{t['abnormal_probability']:.4f}",
            "critical_findings": ";".join(t["critical_findings"]),
            "top_findings": "; ".join(f"{f['name']} {f['probability']:.2f}" for f in shown),
            "forced": str(r["forced"]).lower(),
            "untrained": str(r["untrained"]).lower(),
            "report": f"{o.folder}/{report_file}",
        }
    return row


def write_worklist(outcomes: list[StudyOutcome], out_root: Path) -> Path:
    """``worklist.csv`` (analysed studies by priority_score, then refusals and failures) and ``failures.csv``."""
    rows = [_row(o) for o in outcomes]
    rows.sort(key=lambda r: (_STATUS_ORDER.get(r["status"], 3), -float(r.get("priority_score") or 0), r["study"]))
    for rank, row in enumerate(rows, start=1):
        row["rank"] = rank
    path = out_root / WORKLIST_NAME
    _write_csv(path, WORKLIST_COLUMNS, rows)
    failures = [r for r in rows if r["status"] in ("refused", "failed")]
    _write_csv(out_root / FAILURES_NAME, ("study", "status", "files", "error"), failures)
    return path


def _write_csv(path: Path, columns: Iterable[str], rows: list[dict[str, Any]]) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)

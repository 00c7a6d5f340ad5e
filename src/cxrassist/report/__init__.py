"""AnalysisResult -> a report folder: report.json (versioned schema), report.html, PNGs, DICOM SR + SC.

``write_outputs`` writes everything into a temporary sibling folder and swaps it into place at the end, so a
failure never leaves a half report and never destroys the previous one.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from cxrassist.errors import OutputError

log = logging.getLogger(__name__)

FORMATS: tuple[str, ...] = ("json", "html", "png", "dicom")
DEFAULT_FORMATS: tuple[str, ...] = ("json", "html", "png")
REPORT_NAME = "report.json"


def parse_formats(spec: str | Iterable[str]) -> tuple[str, ...]:
    """ "json,html" or ["json", "html"] -> ("json", "html"); json is always included (it indexes the rest)."""
    items = [s.strip().lower() for s in (spec.split(",") if isinstance(spec, str) else spec) if s.strip()]
    unknown = [s for s in items if s not in FORMATS]
    if unknown:
        raise OutputError(f"unknown output format(s) {', '.join(unknown)}; choose from {', '.join(FORMATS)}")
    return tuple(f for f in FORMATS if f in items or f == "json")


def _check_target(out_dir: Path) -> None:
    """Refuse to replace a folder that is not ours (a non-empty folder without report.json)."""
    if out_dir.exists():
        if not out_dir.is_dir():
            raise OutputError(f"output path {out_dir} exists and is not a folder")
        if any(out_dir.iterdir()) and not (out_dir / REPORT_NAME).exists():
            raise OutputError(
                f"output folder {out_dir} is not empty and holds no {REPORT_NAME}; "
                "choose a new or empty folder (a previous report folder is replaced)"
            )


def check_output_dir(out_dir: Path | str) -> Path:
    """Refuse, before any model runs, a report folder that could not be written (one line naming the problem).

    Why: the analysis takes tens of seconds and its result would be lost at the end (``--out /proc/x``). Checks
    that the target is ours or new and that the nearest existing folder above it accepts a new folder (probed by
    creating and removing one: permission bits alone say nothing for root or read-only mounts). Creates nothing.
    """
    target = Path(out_dir).absolute()
    _check_target(target)
    anchor = target.parent
    while not anchor.exists() and anchor != anchor.parent:
        anchor = anchor.parent
    if not anchor.is_dir():
        raise OutputError(f"cannot write the report to {target}: {anchor} is not a folder")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".cxr-write-probe-", dir=anchor))
    except OSError as exc:
        raise OutputError(
            f"cannot write the report to {target}: {anchor} is not writable ({exc.strerror or type(exc).__name__})"
        ) from None
    return target


def remove_leftover(path: Path) -> None:
    """Delete one leftover of an interrupted write (a half-written ``.tmp-`` folder or an ``.old-`` swap backup)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _swap_into_place(tmp: Path, out_dir: Path) -> None:
    backup = None
    if out_dir.exists():
        backup = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}-{time.monotonic_ns()}")
        os.rename(out_dir, backup)
    try:
        os.rename(tmp, out_dir)
    except BaseException:
        if backup is not None:
            os.rename(backup, out_dir)
        raise
    if backup is not None:
        shutil.rmtree(backup, ignore_errors=True)


def write_outputs(
    result: Any,
    out_dir: Path | str,
    formats: Iterable[str] | str = DEFAULT_FORMATS,
    *,
    extra_timings: dict[str, float] | None = None,
    early: Callable[[dict[str, Any]], None] | None = None,
    keep_dicom: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Write the requested formats of one AnalysisResult into ``out_dir``; return the report.json content.

    ``early``: write the report with json and dicom first (a complete report folder, swapped into place), call
    ``early(report)``, then add the PNGs and the HTML page and replace report.json by the full one. The PACS link
    sends the SR and SCs meanwhile: the pictures (most of the writing time) are off the path to the PACS.
    ``keep_dicom``: report.json ``outputs.dicom`` entries of DICOM files already in ``out_dir`` to keep instead of
    writing new ones (a rerun of an interrupted analysis whose results may already be queued or at the PACS).
    """
    fmts = parse_formats(formats)
    later = tuple(f for f in fmts if f in ("png", "html")) if early is not None else ()
    first = tuple(f for f in fmts if f not in later)
    report = _write_folder(result, Path(out_dir).absolute(), first, extra_timings, keep_dicom)
    if early is not None:
        early(report)
        if later:
            report = _add_pictures(result, Path(out_dir).absolute(), later, report)
    return report


def _write_folder(
    result: Any,
    out_dir: Path,
    fmts: tuple[str, ...],
    extra_timings: dict[str, float] | None,
    keep_dicom: list[dict[str, Any]] | None,
) -> dict[str, Any]:
    """A complete report folder of ``fmts``, built beside ``out_dir`` and swapped into place."""
    from cxrassist.report.html_report import render_html
    from cxrassist.report.images import render_images
    from cxrassist.report.json_report import build_report, write_json
    from cxrassist.report.schema import validate_report

    _check_target(out_dir)
    t0 = time.perf_counter()
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    except OSError as exc:
        raise OutputError(f"cannot write the report to {out_dir} ({exc.strerror or type(exc).__name__})") from None
    try:
        rendered = render_images(result, tmp, write_png="png" in fmts, previews="html" in fmts)
        dicom_entries = []
        if "dicom" in fmts and keep_dicom:
            dicom_entries = _keep_files(keep_dicom, out_dir, tmp)
        elif "dicom" in fmts:
            from cxrassist.report.dicom_out import write_dicom

            dicom_entries = write_dicom(result, tmp)
        report = build_report(
            result, rendered.files, html="report.html" if "html" in fmts else None, dicom=dicom_entries
        )
        report["timings_ms"].update({k: float(v) for k, v in (extra_timings or {}).items()})
        report["timings_ms"]["write"] = round((time.perf_counter() - t0) * 1000.0, 1)
        validate_report(report)
        if "html" in fmts:
            (tmp / "report.html").write_text(render_html(report, rendered.previews), encoding="utf-8")
        write_json(report, tmp / REPORT_NAME)  # last: its presence marks a complete report
        os.chmod(tmp, 0o755)
        _swap_into_place(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("report written to %s", out_dir)
    return report


def _keep_files(entries: list[dict[str, Any]], out_dir: Path, tmp: Path) -> list[dict[str, Any]]:
    """Hard-link (else copy) the kept DICOM files of the previous report into the new folder."""
    for e in entries:
        src, dst = out_dir / e["path"], tmp / e["path"]
        dst.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)
    return [dict(e) for e in entries]


def _add_pictures(result: Any, out_dir: Path, fmts: tuple[str, ...], report: dict[str, Any]) -> dict[str, Any]:
    """The second step of an ``early`` write: PNGs and HTML into the report folder, then the full report.json
    replaces the first (atomically: a reader sees one or the other, each complete)."""
    from cxrassist.report.html_report import render_html
    from cxrassist.report.images import render_images
    from cxrassist.report.json_report import build_report, write_json
    from cxrassist.report.schema import validate_report

    t0 = time.perf_counter()
    rendered = render_images(result, out_dir, write_png="png" in fmts, previews="html" in fmts)
    full = build_report(
        result, rendered.files, html="report.html" if "html" in fmts else None, dicom=report["outputs"]["dicom"]
    )
    full["created"] = report["created"]
    full["timings_ms"] = {**report["timings_ms"], "pictures": round((time.perf_counter() - t0) * 1000.0, 1)}
    validate_report(full)
    if "html" in fmts:
        _replace_text(out_dir / "report.html", render_html(full, rendered.previews))
    tmp = out_dir / f".{REPORT_NAME}.tmp-{os.getpid()}"
    write_json(full, tmp)
    os.replace(tmp, out_dir / REPORT_NAME)
    log.info("report pictures added to %s", out_dir)
    return full


def _replace_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


__all__ = [
    "DEFAULT_FORMATS",
    "FORMATS",
    "REPORT_NAME",
    "check_output_dir",
    "parse_formats",
    "remove_leftover",
    "write_outputs",
]

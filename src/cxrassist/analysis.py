"""``analyze_paths``: the one entry point that the CLI, the batch runner and the web service call.

read -> (choose views) -> Pipeline.analyze -> write_outputs. Refusals surface as ``InputError`` subclasses
(``NotChestXRayError`` for the chest check) before any report file is touched.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from cxrassist.types import XRay

log = logging.getLogger(__name__)


def analyze_paths(
    frontal: Path | str | XRay | Sequence[Path | str],
    lateral: Path | str | XRay | None,
    out_dir: Path | str,
    *,
    pipeline: Any = None,
    formats: Iterable[str] | str = ("json", "html", "png"),
    force: bool = False,
    weights_dir: Path | str | None = None,
    allow_untrained: bool = False,
    early: Callable[[dict[str, Any]], None] | None = None,
    keep_dicom: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Analyse one study and write its report folder; return the report.json content.

    ``frontal`` may be a file, an XRay, a DICOM study folder or a list of files of one study (views are then told
    apart as :mod:`cxrassist.study` describes). ``pipeline`` is a loaded :class:`~cxrassist.pipeline.Pipeline`
    (pass one when analysing many studies); without it the models are loaded from ``weights_dir`` (default:
    shipped) once per process. ``early`` and ``keep_dicom``: see :func:`cxrassist.report.write_outputs`.
    """
    from cxrassist.report import write_outputs
    from cxrassist.study import load_study

    t0 = time.perf_counter()
    notes: list[str] = []
    if isinstance(frontal, XRay):
        front = frontal
        lat = _as_xray(lateral)
    else:
        paths = [frontal] if isinstance(frontal, (str, Path)) else list(frontal)
        chosen = load_study(paths, lateral if not isinstance(lateral, XRay) else None)
        front, lat, notes = chosen.frontal, chosen.lateral, chosen.notes
        if isinstance(lateral, XRay):
            lat = lateral
    read_ms = round((time.perf_counter() - t0) * 1000.0, 1)
    pipe = pipeline if pipeline is not None else default_pipeline(weights_dir, allow_untrained)
    result = pipe.analyze(front, lat, force=force)
    result.warnings.extend(notes)
    return write_outputs(result, out_dir, formats, extra_timings={"read": read_ms}, early=early, keep_dicom=keep_dicom)


def _as_xray(value: Path | str | XRay | None) -> XRay | None:
    if value is None or isinstance(value, XRay):
        return value
    from cxrassist.study import _read

    return _read(Path(value))


_PIPELINES: dict[tuple[str | None, bool], Any] = {}


def default_pipeline(weights_dir: Path | str | None = None, allow_untrained: bool = False) -> Any:
    """A Pipeline loaded once per process per (weights_dir, allow_untrained)."""
    from cxrassist.pipeline import Pipeline

    key = (str(Path(weights_dir).absolute()) if weights_dir else None, allow_untrained)
    if key not in _PIPELINES:
        _PIPELINES[key] = Pipeline.load(weights_dir, allow_untrained=allow_untrained)
    return _PIPELINES[key]

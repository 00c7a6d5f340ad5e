"""Accepting an upload: cheap checks only (count, size, can the file be read at all), then queue it.

The chest check and the models run later in the worker; a radiograph that is readable but not a chest X-ray is
accepted here and ends ``refused`` with its reason. Original file names are never stored or logged (they often
contain patient names); only an allowed suffix is kept.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from starlette.datastructures import UploadFile

from cxrassist.errors import FileTooLargeError, InputError
from cxrassist.serve.errors import ApiError
from cxrassist.serve.settings import Settings
from cxrassist.serve.store import Study, StudyStore

_SUFFIXES = {".dcm", ".dicom", ".dic", ".png", ".jpg", ".jpeg", ".tif", ".tiff"}
_CHUNK = 1024 * 1024
FILE_FIELDS = ("files", "file", "frontal", "lateral")


@dataclass
class Part:
    """One uploaded file as the form gave it: its field name, suffix and stream."""

    field: str
    filename: str
    file: BinaryIO


def safe_suffix(filename: str | None) -> str:
    """A known image suffix of the client's file name (lower case), or "" (read_xray sniffs the content)."""
    suffix = Path(filename or "").suffix.lower()
    return suffix if suffix in _SUFFIXES else ""


def parts_from_form(items: list[tuple[str, object]]) -> tuple[list[Part], str | None]:
    """The uploaded files and the optional ``lateral`` designation (index or file name) of a parsed form."""
    parts: list[Part] = []
    lateral_hint: str | None = None
    for key, value in items:
        if isinstance(value, UploadFile):
            if key not in FILE_FIELDS:
                raise ApiError(
                    400, "unknown_field", f"unexpected file field {key!r}; use 'files' (or 'frontal'/'lateral')"
                )
            parts.append(Part(key, value.filename or "", value.file))
        elif key == "lateral" and str(value).strip():
            lateral_hint = str(value).strip()
    return parts, lateral_hint


def _copy_limited(src: BinaryIO, dst: Path, budget: int) -> int:
    """Copy ``src`` to ``dst``; refuses once more than ``budget`` bytes came (the rest of the upload limit)."""
    written = 0
    src.seek(0)
    with open(dst, "wb") as out:
        while chunk := src.read(_CHUNK):
            written += len(chunk)
            if written > budget:
                raise FileTooLargeError(f"upload larger than the limit ({budget} bytes left of the total allowed)")
            out.write(chunk)
    return written


def _lateral_index(parts: list[Part], hint: str | None, views: list[str]) -> int | None:
    """Which part is the lateral: a 'lateral' file field, else the form's hint, else DICOM metadata, else the 2nd."""
    fields = [p.field for p in parts]
    if "lateral" in fields:
        if fields.count("lateral") > 1:
            raise ApiError(400, "too_many_laterals", "more than one file in the 'lateral' field")
        return fields.index("lateral")
    if hint is not None:
        if re.fullmatch(r"\d+", hint):
            idx = int(hint)
            if idx >= len(parts):
                raise ApiError(400, "bad_lateral", f"lateral={idx} but only {len(parts)} file(s) were sent")
            return idx
        if hint.lower() in ("none", "false", "no"):
            return None
        names = [p.filename for p in parts]
        if hint in names:
            return names.index(hint)
        raise ApiError(400, "bad_lateral", "the 'lateral' field names no uploaded file (give its index or file name)")
    if len(parts) < 2:
        return None
    laterals = [i for i, v in enumerate(views) if v == "LATERAL"]
    if len(laterals) == 1:
        return laterals[0]
    if len(laterals) > 1:
        raise ApiError(422, "no_frontal", "every uploaded image is a lateral view; a frontal radiograph is required")
    frontal_field = fields.index("frontal") if "frontal" in fields else None
    return 1 if frontal_field in (None, 0) else 0


def accept_upload(store: StudyStore, settings: Settings, parts: list[Part], lateral_hint: str | None) -> Study:
    """Save, check and queue one study (blocking; run it in a thread). Raises ApiError / InputError for 4xx."""
    from cxrassist.io import read_xray

    if not parts:
        raise ApiError(400, "no_files", "no file uploaded: send one frontal radiograph (and optionally a lateral)")
    if len(parts) > settings.max_files:
        raise ApiError(400, "too_many_files", f"{len(parts)} files uploaded; at most {settings.max_files} per study")
    if len(parts) > 2:
        raise ApiError(400, "too_many_files", "a study is one frontal radiograph and at most one lateral")
    study_id, input_dir = store.new_study_dir()
    try:
        budget = settings.max_upload_bytes
        saved: list[Path] = []
        views: list[str] = []
        for i, part in enumerate(parts):
            path = input_dir / f"upload-{i}{safe_suffix(part.filename)}"
            try:
                budget -= _copy_limited(part.file, path, budget)
                xray = read_xray(path)  # InputError -> 4xx with the foundation's message
            except InputError as exc:  # name the client's file, not our temporary one, in the answer
                shown = Path(part.filename).name[:100] or f"file {i + 1}"
                raise type(exc)(str(exc).replace(path.name, shown)) from None
            saved.append(path)
            views.append(getattr(xray.view, "value", str(xray.view)))
        lateral_idx = _lateral_index(parts, lateral_hint, views)
        inputs: dict[str, str] = {}
        for i, path in enumerate(saved):
            role = "lateral" if i == lateral_idx else "frontal"
            if role in inputs:
                raise ApiError(
                    400, "two_frontals", "two frontal images: mark the lateral one (form field lateral=INDEX)"
                )
            final = input_dir / f"{role}{path.suffix}"
            path.rename(final)
            inputs[role] = str(final.relative_to(input_dir.parent))
        if "frontal" not in inputs:
            raise ApiError(422, "no_frontal", "no frontal image: a study needs one frontal radiograph")
        study = store.add(study_id, inputs)
        from cxrassist.serve.viewimage import study_header

        header = study_header(input_dir.parent / inputs["frontal"])
        header["views"] = {("lateral" if i == lateral_idx else "frontal"): v for i, v in enumerate(views)}
        store.set_header(study.id, header)
        study.header = header
        return study
    except BaseException:  # nothing of a refused upload stays on disk
        shutil.rmtree(input_dir.parent, ignore_errors=True)
        raise

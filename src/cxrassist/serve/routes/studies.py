"""/api/studies: upload, worklist, report, images, delete."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import FileResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.formparsers import MultiPartException

from cxrassist.serve.errors import ApiError
from cxrassist.serve.schemas import ErrorResponse, Status, StudyCreated, StudyDetail, StudySummary, Worklist
from cxrassist.serve.store import Study, StudyStore, parse_study_id
from cxrassist.serve.upload import accept_upload, parts_from_form
from cxrassist.serve.worker import VIEWER_IMAGES

router = APIRouter(prefix="/api/studies", tags=["studies"])

_ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorResponse} for code in (400, 401, 404, 409, 413, 422)}
_PATH_PART = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,120}$")  # no "..", no hidden files, no separators

_UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "files": {
                            "type": "array",
                            "items": {"type": "string", "format": "binary"},
                            "description": "the frontal radiograph and optionally a lateral (DICOM, PNG or JPEG)",
                        },
                        "lateral": {
                            "type": "string",
                            "description": "which file is the lateral: its 0-based index or file name "
                            "(default: DICOM ViewPosition, else the second file)",
                        },
                    },
                    "required": ["files"],
                }
            }
        },
    }
}


def _store(request: Request) -> StudyStore:
    return request.app.state.store


def _study_or_404(request: Request, study_id: str) -> Study:
    canonical = parse_study_id(study_id)
    study = _store(request).get(canonical) if canonical else None
    if study is None:
        raise ApiError(404, "not_found", "no such study")
    return study


def _read_report(store: StudyStore, study: Study) -> dict[str, Any] | None:
    path = store.out_dir(study.id) / "report.json"
    if study.status != "done" or not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def _png_names(node: Any, out: set[str]) -> None:
    """Every relative ``*.png`` path mentioned anywhere in the report (heatmaps, masks, bone images...)."""
    if isinstance(node, dict):
        for value in node.values():
            _png_names(value, out)
    elif isinstance(node, list):
        for value in node:
            _png_names(value, out)
    elif isinstance(node, str) and node.lower().endswith(".png"):
        parts = node.replace("\\", "/").split("/")
        if all(_PATH_PART.match(p) for p in parts):
            out.add("/".join(parts))


def image_path(store: StudyStore, study: Study, name: str, report: dict[str, Any] | None = None) -> Path | None:
    """Where an image name of a study lives, or None when the name is not one this study may serve.

    Only the viewer's pictures (radiograph.png, lateral.png) and the PNGs the report lists are servable; the
    resolved path must stay inside the study's folder (no traversal, no symlink escape).
    """
    if name in VIEWER_IMAGES.values():
        root = store.view_dir(study.id)
    else:
        names: set[str] = set()
        _png_names(report if report is not None else _read_report(store, study), names)
        if name not in names:
            return None
        root = store.out_dir(study.id)
    root = root.resolve()
    path = (root / name).resolve()
    return path if path.is_relative_to(root) and path.is_file() else None


def allowed_images(store: StudyStore, study: Study, report: dict[str, Any] | None = None) -> list[str]:
    """The image names of a study that exist on disk: the viewer's radiograph(s) and those the report lists."""
    names: set[str] = set(VIEWER_IMAGES.values())
    if report is None:
        report = _read_report(store, study)
    _png_names(report, names)
    return sorted(n for n in names if image_path(store, study, n, report) is not None)


@router.post(
    "",
    status_code=202,
    response_model=StudyCreated,
    responses=_ERRORS,
    openapi_extra=_UPLOAD_BODY,
    summary="Upload a study (frontal + optional lateral); analysis runs in the background",
)
async def create_study(request: Request) -> StudyCreated:
    settings = request.app.state.settings
    ctype = request.headers.get("content-type", "")
    if not ctype.startswith("multipart/form-data"):
        raise ApiError(415, "unsupported_media_type", "send the radiograph(s) as multipart/form-data (field 'files')")
    try:
        form = await request.form(max_files=settings.max_files, max_fields=16)
    except (MultiPartException, StarletteHTTPException) as exc:  # Starlette turns parser errors into a 400
        detail = str(getattr(exc, "detail", None) or getattr(exc, "message", None) or exc)
        code = "too_many_files" if "too many files" in detail.lower() else "bad_multipart"
        raise ApiError(400, code, detail) from None
    except ValueError as exc:  # malformed boundary etc.
        raise ApiError(400, "bad_multipart", f"malformed multipart body: {exc}") from None
    try:
        parts, lateral_hint = parts_from_form(list(form.multi_items()))
        study = await run_in_threadpool(accept_upload, _store(request), settings, parts, lateral_hint)
    finally:
        await form.close()
    request.app.state.worker_notify()
    return StudyCreated(id=study.id, status="queued", url=f"/api/studies/{study.id}", has_lateral=study.has_lateral)


@router.get("", response_model=Worklist, summary="The worklist, highest priority first")
def list_studies(
    request: Request,
    status: Status | None = Query(None, description="only studies with this status"),
    limit: int = Query(500, ge=1, le=5000),
) -> Worklist:
    store = _store(request)
    return Worklist(studies=[StudySummary.of(s) for s in store.list(status, limit)], counts=store.counts())


@router.get(
    "/{study_id}",
    response_model=StudyDetail,
    responses=_ERRORS,
    summary="A study's status; once done, its report (report.json) merged in",
)
def get_study(request: Request, study_id: str) -> dict[str, Any]:
    store = _store(request)
    study = _study_or_404(request, study_id)
    report = _read_report(store, study)
    body: dict[str, Any] = dict(report) if report else {}
    body.update(
        study=StudySummary.of(study).model_dump(mode="json"),
        status=study.status,
        reason=study.reason,
        image_names=allowed_images(store, study, report),
        view_pixels=_view_pixels(store, study),
    )
    return body


_ROLES = ("frontal", "lateral")


def _view_pixels(store: StudyStore, study: Study) -> dict[str, Any]:
    """Per view role, the meta of its full-bit-depth pixels (shape, dtype, window presets; serve/viewimage.py)."""
    out: dict[str, Any] = {}
    for role in _ROLES:
        meta = store.view_dir(study.id) / f"{role}.json"
        if meta.is_file() and (store.view_dir(study.id) / f"{role}.pixels").is_file():
            out[role] = {**json.loads(meta.read_text(encoding="utf-8")), "url": f"{study.id}/pixels/{role}"}
    return out


@router.get(
    "/{study_id}/pixels/{role}",
    responses={200: {"content": {"application/octet-stream": {}}}, 404: {"model": ErrorResponse}},
    summary="A view's stored pixel values, raw little-endian (shape, dtype and windows in the study's view_pixels)",
)
def get_pixels(request: Request, study_id: str, role: str) -> FileResponse:
    store = _store(request)
    study = _study_or_404(request, study_id)
    path = store.view_dir(study.id) / f"{role}.pixels"
    if role not in _ROLES or not path.is_file():
        raise ApiError(404, "not_found", "no such view for this study")
    return FileResponse(path, media_type="application/octet-stream", headers={"Cache-Control": "private, max-age=60"})


@router.get(
    "/{study_id}/images/{name:path}",
    response_class=FileResponse,
    responses={200: {"content": {"image/png": {}}}, 404: {"model": ErrorResponse}},
    summary="A PNG of the study: radiograph.png, lateral.png, or one the report lists (heatmaps, mask, bones)",
)
def get_image(request: Request, study_id: str, name: str) -> FileResponse:
    store = _store(request)
    study = _study_or_404(request, study_id)
    path = image_path(store, study, name)
    if path is None:
        raise ApiError(404, "not_found", "no such image for this study")
    return FileResponse(path, media_type="image/png", headers={"Cache-Control": "private, max-age=60"})


@router.delete("/{study_id}", status_code=204, responses=_ERRORS, summary="Delete a study and its files")
def delete_study(request: Request, study_id: str) -> Response:
    study = _study_or_404(request, study_id)
    outcome = _store(request).delete(study.id)
    if outcome == "running":
        raise ApiError(409, "running", "the study is being analysed; delete it once the analysis has finished")
    if outcome == "missing":
        raise ApiError(404, "not_found", "no such study")
    return Response(status_code=204)

"""/api/health (model versions from the cards, queue counts) and /api/presets (window/level presets)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from cxrassist import DISCLAIMER, __version__
from cxrassist.serve.schemas import Health, Preset, Presets, model_infos

router = APIRouter(prefix="/api", tags=["system"])


def describe_pipeline(pipeline: Any) -> list[dict[str, Any]]:
    """What each loaded model's card says (role, name, version, sha256, status, metrics), as reports give it."""
    if pipeline is None:
        return []
    from cxrassist.pipeline import model_summary

    return [model_summary(role, card) for role, (_, card) in getattr(pipeline, "models", {}).items()]


@router.get("/health", response_model=Health, summary="Liveness, the loaded models (name, version, sha256, status)")
def health(request: Request) -> Health:
    state = request.app.state
    worker = state.worker
    return Health(
        status="ok",
        version=__version__,
        pipeline=worker.pipeline_state if worker is not None else "not loaded",
        pipeline_error=worker.pipeline_error if worker is not None else None,
        models=model_infos(describe_pipeline(worker.pipeline if worker is not None else None)),
        queue=state.store.counts(),
        disclaimer=DISCLAIMER,
        token_required=state.settings.token_required,
        max_upload_bytes=state.settings.max_upload_bytes,
        max_files=state.settings.max_files,
    )


@router.get("/presets", response_model=Presets, summary="Window/level presets (center, width) in the [0, 1] domain")
def presets() -> Presets:
    from cxrassist.preprocess import LEVEL_PRESETS

    return Presets(presets={k: Preset(center=c, width=w) for k, (c, w) in LEVEL_PRESETS.items()})

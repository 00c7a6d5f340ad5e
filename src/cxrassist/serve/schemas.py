"""Wire models of the REST API (they also document it in /openapi.json)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Literal

from pydantic import BaseModel, Field

from cxrassist.serve.store import Study

Status = Literal["queued", "running", "done", "refused", "failed"]


class ErrorResponse(BaseModel):
    """Every 4xx/5xx answer: a machine-readable code and one line naming the problem."""

    error: str = Field(description="error code, e.g. NotAnImageError, too_many_files, not_found")
    detail: str = Field(description="one human-readable line")


class TopFinding(BaseModel):
    code: str | None
    name: str | None
    probability: float
    positive: bool
    validated: bool | None = None


class StudyHeader(BaseModel):
    """What identifies a study for the reader, from the DICOM header (empty for PNG/JPEG uploads). Carries patient
    identifiers: served behind the API token off loopback, never logged."""

    patient_name: str | None = None
    patient_id: str | None = None
    study_date: str | None = Field(None, description="DICOM DA, YYYYMMDD")
    study_time: str | None = Field(None, description="DICOM TM, HHMMSS[.frac]")
    description: str | None = None
    accession: str | None = None
    modality: str | None = None
    views: dict[str, str] = Field({}, description="role (frontal/lateral) -> view (PA, AP, LATERAL, UNKNOWN)")


class StudySummary(BaseModel):
    """One worklist row."""

    id: str
    status: Status
    received_at: datetime
    finished_at: datetime | None = None
    priority: str | None = None
    priority_score: float | None = None
    abnormal_probability: float | None = None
    top_findings: list[TopFinding] = []
    reason: str | None = Field(None, description="why the study was refused or failed")
    has_lateral: bool = False
    source: str | None = Field(
        None, description="the calling AE title of a study received over DICOM; null for uploads"
    )
    url: str
    header: StudyHeader = StudyHeader()
    priority_reason: str | None = Field(None, description="which finding or triage score set the priority")

    @classmethod
    def of(cls, study: Study) -> StudySummary:
        return cls(
            id=study.id,
            status=study.status,
            received_at=_ts(study.received_at),
            finished_at=_ts(study.finished_at) if study.finished_at else None,
            priority=study.priority,
            priority_score=study.priority_score,
            abnormal_probability=study.abnormal_probability,
            top_findings=[TopFinding(**f) for f in study.top_findings],
            reason=study.reason,
            has_lateral=study.has_lateral,
            source=study.source,
            url=f"/api/studies/{study.id}",
            header=StudyHeader(**{k: v for k, v in (study.header or {}).items() if k in StudyHeader.model_fields}),
            priority_reason=study.priority_reason,
        )


class Worklist(BaseModel):
    studies: list[StudySummary]
    counts: dict[str, int]


class StudyCreated(BaseModel):
    id: str
    status: Status
    url: str
    has_lateral: bool


class StudyDetail(BaseModel):
    """The study's status; when ``done``, the report.json content is merged in at the top level."""

    model_config = {"extra": "allow"}

    study: StudySummary
    status: Status
    reason: str | None = None
    image_names: list[str] = Field([], description="image names servable under /api/studies/{id}/images/")
    view_pixels: dict[str, Any] = Field(
        {},
        description="per view role: the stored pixels' shape, dtype, DICOM VOI "
        "and window presets (stored units); raw data at "
        "/api/studies/{id}/pixels/{role}",
    )


class ModelInfo(BaseModel):
    model_config = {"extra": "allow", "protected_namespaces": ()}

    role: str | None = None
    name: str | None = None
    version: str | None = None
    sha256: str | None = None
    status: str | None = None


class Health(BaseModel):
    status: Literal["ok"]
    version: str
    pipeline: str = Field(description="not loaded | loading | ready | error")
    pipeline_error: str | None = None
    models: list[ModelInfo]
    queue: dict[str, int]
    disclaimer: str
    token_required: bool
    max_upload_bytes: int
    max_files: int


class Preset(BaseModel):
    center: float
    width: float


class Presets(BaseModel):
    """Window/level presets in the [0, 1] domain of the radiograph (``cxrassist.preprocess.LEVEL_PRESETS``)."""

    presets: dict[str, Preset]
    formula: str = "out = clip((v - (center - width/2)) / width, 0, 1), v = pixel/255"


def _ts(value: float) -> datetime:
    return datetime.fromtimestamp(value, tz=timezone.utc)


def model_infos(models: list[dict[str, Any]]) -> list[ModelInfo]:
    """``pipeline.model_summary`` dicts -> wire models (identity, status and the card's measured metrics)."""
    keep = ("role", "name", "version", "architecture", "sha256", "status", "metrics", "intended_use")
    return [ModelInfo(**{k: v for k, v in m.items() if k in keep}) for m in models or []]

"""Grouping input files into studies, and telling the frontal from the lateral view.

A study is one frontal radiograph and at most one lateral. DICOM files are grouped by StudyInstanceUID; raster files
(PNG/JPEG/TIFF) are one study each. The frontal and the lateral are told apart by, in order: what the user said
(``--lateral``), the DICOM view (ViewPosition / ViewCodeSequence as read by ``cxrassist.io``), the image check
(``check_chest(...).is_frontal``); an image nothing can place is taken as the frontal and the chest check decides.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cxrassist.errors import InputError, NoPixelDataError
from cxrassist.types import View, XRay

log = logging.getLogger(__name__)

RASTER_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff"})


@dataclass
class Study:
    """Files of one study, before any pixel is read."""

    key: str  # StudyInstanceUID, or the file's path relative to the batch root
    files: list[Path]
    is_dicom: bool = False

    @property
    def folder_name(self) -> str:
        """A file-system-safe, stable folder name for the study's report."""
        name = re.sub(r"[^A-Za-z0-9._-]+", "_", self.key.replace("/", "__").replace("\\", "__")).strip("._")
        return name[:150] or "study"


@dataclass
class StudyImages:
    """The chosen views of a study and the notes on how they were chosen."""

    frontal: XRay
    lateral: XRay | None = None
    notes: list[str] = field(default_factory=list)


def is_dicom_file(path: Path) -> bool:
    """DICOM Part 10 files carry "DICM" at byte 128; ``.dcm`` files without a preamble count too."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return head[128:132] == b"DICM" or path.suffix.lower() in (".dcm", ".dicom")


def _candidate_files(folder: Path) -> list[Path]:
    return sorted(
        p
        for p in folder.rglob("*")
        if p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
        and (is_dicom_file(p) or p.suffix.lower() in RASTER_SUFFIXES)
    )


def expand_inputs(paths: Iterable[Path | str]) -> list[Path]:
    """Files given on the command line; a folder stands for the DICOM/raster files under it."""
    out: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            found = _candidate_files(p)
            if not found:
                raise InputError(f"{p}: no DICOM or image files in this folder")
            out += found
        elif p.exists():
            out.append(p)
        else:
            raise InputError(f"{p}: no such file or folder")
    return out


def _read(path: Path) -> XRay:
    from cxrassist.io import read_xray

    try:
        return read_xray(path)
    except InputError as exc:
        if path.name in str(exc):
            raise
        try:
            named = type(exc)(f"{path.name}: {exc}")
        except Exception:  # noqa: BLE001 - an exception type with a custom constructor: keep the original
            raise exc from None
        raise named from exc


def _frontal_guess(xray: XRay) -> bool | None:
    """True / False when the DICOM view or the image check places the image, None when nothing does."""
    if xray.view.is_frontal:
        return True
    if xray.view == View.LATERAL:
        return False
    from cxrassist.io import check_chest

    return check_chest(xray).is_frontal


def choose_views(images: Sequence[XRay], lateral: XRay | None = None) -> StudyImages:
    """Pick the frontal (and the lateral) among the images of one study."""
    if not images:
        raise InputError("no image to analyse")
    studies = {x.study_uid for x in list(images) + ([lateral] if lateral else []) if x.study_uid}
    if len(studies) > 1:
        raise InputError(
            f"the inputs belong to {len(studies)} different studies; analyse them one at a time or use `cxr batch`"
        )
    notes: list[str] = []
    frontals: list[XRay] = []
    laterals: list[XRay] = []
    unknown: list[XRay] = []
    for x in images:
        guess = _frontal_guess(x)
        (frontals if guess else laterals if guess is False else unknown).append(x)
    if frontals and unknown and not laterals and lateral is None:
        # One image is surely frontal and a study has at most one frontal: an image the check cannot place is then
        # the other view (a lateral rarely looks "frontal" to the statistics, but need not look "lateral" either).
        laterals = unknown
        notes.append(f"{_name(unknown[0])} taken as the lateral view (the frontal is {_name(frontals[0])})")
    else:
        frontals += unknown
    if lateral is not None:
        laterals = [lateral]
    if not frontals:
        # Only laterals (or what looks like one): analyse it as given and let the chest check refuse it.
        frontals, laterals = laterals[:1], laterals[1:]
        notes.append("no frontal view found; the first image was taken as the frontal")
    if len(frontals) > 1:
        notes.append(f"{len(frontals)} frontal candidates; using {_name(frontals[0])}")
    if len(laterals) > 1:
        notes.append(f"{len(laterals)} lateral candidates; using {_name(laterals[0])}")
    return StudyImages(frontals[0], laterals[0] if laterals else None, notes)


def _name(x: XRay) -> str:
    return x.source_path.name if x.source_path else "image"


def load_study(paths: Sequence[Path | str], lateral: Path | str | None = None) -> StudyImages:
    """Read the given files/folders (one study) and choose its views."""
    files = expand_inputs(paths)
    from_folder = any(Path(p).is_dir() for p in paths)
    images = []
    for f in files:
        try:
            images.append(_read(f))
        except NoPixelDataError:
            if not from_folder:
                raise
            log.info("skipping %s: no pixel data (SR, presentation state...)", f.name)
    lat = _read(Path(lateral)) if lateral is not None else None
    return choose_views(images, lat)


def discover_studies(root: Path) -> list[Study]:
    """Every study under ``root``: DICOMs grouped by StudyInstanceUID, any other file a study of its own.

    Unreadable files become single-file studies too, so that the batch records them as failures instead of
    silently dropping them.
    """
    import pydicom

    groups: dict[str, Study] = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root)
        if any(part.startswith(".") for part in rel.parts):
            continue
        uid = None
        if is_dicom_file(path):
            try:
                uid = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["StudyInstanceUID"]).get(
                    "StudyInstanceUID"
                )
            except Exception:  # noqa: BLE001 - unreadable: its own study, the analysis will say why
                uid = None
        key = str(uid) if uid else rel.as_posix()
        study = groups.setdefault(key, Study(key=key, files=[], is_dicom=bool(uid)))
        study.files.append(path)
    return list(groups.values())

"""Acceptance lines / required features of the analysis issue that had no test of their own.

- ``cxr batch`` groups DICOM files by StudyInstanceUID (frontal + lateral in different folders -> ONE study whose
  report has the lateral), raster files one study each;
- frontal and lateral told apart by the image check when there is no DICOM view (an image the check cannot place
  never wins over one it calls frontal, whatever the order).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pydicom
from pydicom.uid import generate_uid

from cxrassist.batch import run_batch
from cxrassist.io import check_chest
from cxrassist.study import choose_views
from cxrassist.types import XRay


def test_batch_groups_dicoms_by_study_uid(tiny_pipeline, make_dicom, make_phantom, tmp_path: Path) -> None:
    from PIL import Image

    uid = generate_uid()
    root = tmp_path / "in"
    (root / "lat").mkdir(parents=True)
    (root / "pa").mkdir()
    (root / "other").mkdir()
    # files come back under make_dicom's tmp_path; 'in/...' names put them in the batch folder
    lat = make_dicom(
        (make_phantom(260, 240, 3) * 4095).astype("uint16"),
        name="in/lat/1.dcm",
        view_position="LL",
        extra={"StudyInstanceUID": uid},
    )
    front = make_dicom(
        (make_phantom(300, 280) * 4095).astype("uint16"),
        name="in/pa/2.dcm",
        view_position="PA",
        extra={"StudyInstanceUID": uid},
    )
    Image.fromarray((make_phantom(280, 260, 5) * 255).astype("uint8")).save(root / "other" / "x.png")
    out = tmp_path / "out"
    summary = run_batch(root, out, pipeline=tiny_pipeline, formats="json", progress=False)
    assert summary.count("done") == 2  # one DICOM study (two files) + one raster study
    with open(out / "worklist.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 2
    dicom_row = next(r for r in rows if ".dcm" in r["files"])
    assert "lat/1.dcm" in dicom_row["files"] and "pa/2.dcm" in dicom_row["files"]
    report = json.loads((out / Path(dicom_row["report"]).parent / "report.json").read_text())
    assert report["input"]["frontal"]["sop_uid"] == str(pydicom.dcmread(front).SOPInstanceUID)
    assert report["input"]["lateral"]["sop_uid"] == str(pydicom.dcmread(lat).SOPInstanceUID)


def test_image_check_places_the_frontal_whatever_the_order(make_phantom) -> None:
    import numpy as np

    frontal = XRay(pixels=make_phantom(300, 280))
    other = XRay(pixels=np.rot90(make_phantom(300, 280)).copy())  # no metadata; not a frontal chest by statistics
    assert check_chest(frontal).is_frontal is True and check_chest(other).is_frontal is not True  # premises
    for images in ([other, frontal], [frontal, other]):
        chosen = choose_views(images)
        assert chosen.frontal is frontal
    told = choose_views([frontal], lateral=other)  # the user says which is the lateral
    assert told.frontal is frontal and told.lateral is other


def test_an_unplaceable_second_image_becomes_the_lateral() -> None:
    """Two raster files, no --lateral: beside a sure frontal, an image the check cannot place is the lateral."""
    import numpy as np

    from cxrassist.io import check_chest
    from cxrassist.study import choose_views
    from cxrassist.types import View, XRay

    rng = np.random.default_rng(0)
    unplaced = XRay(pixels=rng.random((300, 200)).astype("float32"))
    assert check_chest(unplaced).is_frontal is None  # the premise: the image check cannot place it
    frontal = XRay(pixels=rng.random((300, 300)).astype("float32"), view=View.PA)
    for order in ([unplaced, frontal], [frontal, unplaced]):
        study = choose_views(order)
        assert study.frontal is frontal and study.lateral is unplaced
        assert any("lateral" in n for n in study.notes)
    # With nothing sure, the unplaced image stays a frontal candidate (and the chest check decides).
    alone = choose_views([unplaced])
    assert alone.frontal is unplaced and alone.lateral is None

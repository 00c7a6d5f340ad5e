"""The worker's results hook (what the PACS link uses): the DICOM results are handed over before the pictures are
written and the study is still ``running``; a rerun after an interruption keeps those same files."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pydicom

from cxrassist.serve.store import StudyStore
from cxrassist.serve.worker import AnalysisWorker


def test_results_hook_runs_before_the_pictures_and_a_rerun_keeps_the_dicom(
    tmp_path: Path, tiny_pipeline: Any, small_chest_png: Path
) -> None:
    store = StudyStore(tmp_path / "data")
    study_id, input_dir = store.new_study_dir()
    shutil.copyfile(small_chest_png, input_dir / "frontal.png")
    store.add(study_id, {"frontal": "input/frontal.png"})
    worker = AnalysisWorker(store, lambda: tiny_pipeline, formats=("json", "png"))
    worker.extra_formats = lambda study: ("dicom",)
    seen: list[dict[str, Any]] = []

    def hook(study: Any, report: dict[str, Any]) -> None:
        out, view = store.out_dir(study.id), store.view_dir(study.id)
        seen.append(
            {
                "status": store.get(study.id).status,
                "dicom": report["outputs"]["dicom"],
                "files": all((out / e["path"]).is_file() for e in report["outputs"]["dicom"]),
                "pngs": sorted(p.name for p in out.rglob("*.png")) + sorted(p.name for p in view.glob("*.png")),
            }
        )

    worker.results_ready = hook
    study = store.claim_next()
    assert worker.process(study, tiny_pipeline) == "done"
    (first,) = seen
    assert first["status"] == "running" and first["files"] and first["pngs"] == []  # results first, pictures after
    assert (store.view_dir(study_id) / "radiograph.png").is_file()  # the viewer's pictures are written all the same
    out = store.out_dir(study_id)
    assert (out / "images" / "radiograph.png").is_file()
    uids = {e["path"]: pydicom.dcmread(out / e["path"]).SOPInstanceUID for e in first["dicom"]}

    # the process stopped after the results were handed over: the study is analysed again, its DICOM files kept
    assert worker._analyze_study(study, tiny_pipeline)["outputs"]["dicom"] == first["dicom"]
    assert seen[-1]["dicom"] == first["dicom"]
    assert {p: pydicom.dcmread(out / p).SOPInstanceUID for p in uids} == uids
    # a half-written folder (no report.json) is not ours to keep: new results, new UIDs
    (out / "report.json").unlink()
    fresh = worker._analyze_study(study, tiny_pipeline)["outputs"]["dicom"]
    assert {e["sop_instance_uid"] for e in fresh}.isdisjoint(uids.values())
    store.close()

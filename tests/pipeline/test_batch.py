"""``cxr batch``: a good, a corrupt and a non-chest study -> one report, two recorded failures, a worklist."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from cxrassist.batch import run_batch
from cxrassist.cli import main


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture
def batch_dir(tmp_path: Path, make_phantom, rg3_file: Path, copy_to) -> Path:
    from PIL import Image

    root = tmp_path / "in"
    (root / "ward").mkdir(parents=True)
    Image.fromarray((make_phantom() * 255).astype("uint8")).save(root / "ward" / "good.png")
    (root / "corrupt.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00\x10\x00UI\x40\x00" + b"1.2" * 5)
    copy_to(rg3_file, "in/tibia.dcm")
    return root


def test_batch_records_failures_and_resumes(
    tiny_weights_dir: Path, batch_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "out"
    try:
        main(
            [
                "batch",
                str(batch_dir),
                "--out",
                str(out),
                "--weights",
                str(tiny_weights_dir),
                "--format",
                "json,html",
                "--no-progress",
            ]
        )
    except SystemExit as exc:  # pragma: no cover - a failure here is the test failing
        pytest.fail(f"cxr batch exited {exc.code}: {capsys.readouterr().err}")
    stdout = capsys.readouterr().out
    assert "1 analysed" in stdout and "2 refused" in stdout
    rows = _rows(out / "worklist.csv")
    assert [r["status"] for r in rows] == ["done", "refused", "refused"]
    assert [int(r["rank"]) for r in rows] == [1, 2, 3]
    good = rows[0]
    assert good["files"] == "ward/good.png" and good["priority"] in ("critical", "high", "routine")
    assert good["top_findings"] and (out / good["report"]).is_file()
    report = json.loads((out / Path(good["report"]).parent / "report.json").read_text())
    assert float(good["priority_score"]) == pytest.approx(report["triage"]["priority_score"], abs=1e-4)
    errors = {r["files"]: r["error"] for r in rows[1:]}
    assert "EXTREMITY" in errors["tibia.dcm"] and "corrupt.dcm" in errors["corrupt.dcm"]
    failures = _rows(out / "failures.csv")
    assert sorted(f["files"] for f in failures) == ["corrupt.dcm", "tibia.dcm"]
    assert len([p for p in out.iterdir() if p.is_dir()]) == 1  # one report folder, none for the failures

    # Resume: the finished study is skipped (its report untouched), the failures are tried again.
    report_json = out / Path(good["report"]).parent / "report.json"
    stamp = report_json.stat().st_mtime_ns
    summary = run_batch(batch_dir, out, weights_dir=tiny_weights_dir, formats="json,html", progress=False)
    assert summary.count("skipped") == 1 and summary.count("refused") == 2 and summary.count("done") == 0
    assert report_json.stat().st_mtime_ns == stamp
    assert [r["status"] for r in _rows(out / "worklist.csv")] == ["skipped", "refused", "refused"]


def test_batch_sorts_by_priority_and_force(tiny_pipeline, tmp_path: Path, make_phantom) -> None:
    from PIL import Image

    root = tmp_path / "in"
    root.mkdir()
    for i in range(3):
        Image.fromarray((make_phantom(300 + 20 * i, 280, seed=i) * 255).astype("uint8")).save(root / f"s{i}.png")
    summary = run_batch(root, tmp_path / "out", pipeline=tiny_pipeline, formats="json", progress=False)
    rows = _rows(tmp_path / "out" / "worklist.csv")
    scores = [float(r["priority_score"]) for r in rows]
    assert summary.count("done") == 3 and scores == sorted(scores, reverse=True)
    assert summary.studies_per_minute > 0


@pytest.mark.slow
def test_batch_process_pool(tiny_pipeline, tmp_path: Path, make_phantom) -> None:
    from PIL import Image

    root = tmp_path / "in"
    root.mkdir()
    for i in range(2):
        Image.fromarray((make_phantom(seed=i) * 255).astype("uint8")).save(root / f"s{i}.png")
    summary = run_batch(root, tmp_path / "out", pipeline=tiny_pipeline, workers=2, formats="json", progress=False)
    assert summary.count("done") == 2
    assert all((tmp_path / "out" / o.folder / "report.json").is_file() for o in summary.outcomes)

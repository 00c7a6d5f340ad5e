"""Issue 15: every file pydicom and pydicom-data ship (their own test corpus: good, odd and broken DICOMs, plus a few
non-DICOM files) is either read or refused in one line through ``cxr info`` - never 'unexpected', never a traceback,
never a library warning on stderr."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest


def corpus_files() -> list[Path]:
    import pydicom

    roots = [Path(pydicom.__file__).parent / "data" / "test_files"]
    try:
        import data_store  # pydicom-data

        roots.append(Path(data_store.__file__).parent / "data")
    except ImportError:
        pass
    return sorted(
        p
        for root in roots
        if root.is_dir()
        for p in root.rglob("*")
        if p.is_file() and not p.name.startswith(".") and p.suffix not in (".py", ".pyc", ".json", ".txt", ".md")
    )


@pytest.mark.slow
def test_pydicom_corpus_is_read_or_refused_in_one_line(cxr_info_outcome):
    files = corpus_files()
    assert len(files) >= 150, len(files)  # pydicom 3 + pydicom-data: ~230 files
    outcome: Counter[str] = Counter()
    bad: list[str] = []
    for path in files:
        kind, code, _out, err = cxr_info_outcome(path)
        if kind == "other":
            bad.append(f"{path.name}: exit {code}, stderr {err[:200]!r}")
        else:
            outcome[kind] += 1
        if "unexpected" in err or "Traceback" in err or "site-packages" in err:
            bad.append(f"{path.name}: {err[:200]!r}")
    assert not bad, bad[:8]
    assert outcome["read"] >= 15 and outcome["refused"] >= 100, outcome

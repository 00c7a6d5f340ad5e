"""Nothing is lost across restarts: the SQLite store, and a server stopped while studies are queued."""

from __future__ import annotations

import time
from pathlib import Path

from serve_helpers import upload, wait_final

from cxrassist.serve.store import StudyStore, parse_study_id


def _queue(store: StudyStore, n: int) -> list[str]:
    ids = []
    for _ in range(n):
        sid, input_dir = store.new_study_dir()
        (input_dir / "frontal.png").write_bytes(b"x")
        store.add(sid, {"frontal": "input/frontal.png"})
        ids.append(sid)
        time.sleep(0.002)  # distinct received times
    return ids


def test_store_claims_in_order_and_requeues_interrupted(tmp_path: Path):
    store = StudyStore(tmp_path)
    ids = _queue(store, 3)
    first = store.claim_next()
    assert first is not None and first.id == ids[0] and first.status == "running" and first.attempts == 1
    store.finish(
        first.id,
        "done",
        summary={
            "priority": "high",
            "priority_score": 1.7,
            "abnormal_probability": 0.7,
            "top_findings": [{"code": "PE", "name": "Pleural Effusion", "probability": 0.9, "positive": True}],
        },
    )
    second = store.claim_next()
    assert second is not None and second.id == ids[1]
    store.close()  # the process "dies" with ids[1] running

    store = StudyStore(tmp_path)
    assert store.requeue_interrupted() == [ids[1]]
    rows = {s.id: s for s in store.list()}
    assert [s.status for s in (rows[i] for i in ids)] == ["done", "queued", "queued"]
    assert rows[ids[0]].top_findings[0]["code"] == "PE" and rows[ids[0]].priority_score == 1.7
    assert store.list()[0].id == ids[0]  # scored first
    assert [s.id for s in store.list("queued")] == ids[1:]
    again = store.claim_next()
    assert again is not None and again.id == ids[1] and again.attempts == 2
    assert store.delete(ids[1]) == "running" and store.delete(ids[2]) == "deleted"
    assert store.delete(ids[2]) == "missing" and not store.study_dir(ids[2]).exists()
    # a folder without a row (upload interrupted before queueing) is cleaned up
    orphan, _ = store.new_study_dir()
    assert store.remove_orphans() == 1 and not store.study_dir(orphan).exists()
    store.close()


def test_study_ids_are_validated():
    assert parse_study_id("0b6f3a52-8a0e-4a4e-9d55-3f0d1d3c9a10") == "0b6f3a52-8a0e-4a4e-9d55-3f0d1d3c9a10"
    for bad in ("..", "../x", "0b6f3a528a0e4a4e9d553f0d1d3c9a10", "{0b6f3a52-8a0e-4a4e-9d55-3f0d1d3c9a10}", "", "x"):
        assert parse_study_id(bad) is None


def test_restart_mid_queue_loses_nothing(start_server, tmp_path: Path, small_chest_png: Path):
    # The first process only queues (workers=0): with a worker, tiny models may finish all three before the stop,
    # and the test would no longer stop anything mid-queue.
    a = start_server(tmp_path, workers=0)
    with a.client() as c:
        ids = [upload(c, small_chest_png).json()["id"] for _ in range(3)]
    a.stop()
    store = StudyStore(tmp_path)
    status = {s.id: s.status for s in store.list()}
    assert status == dict.fromkeys(ids, "queued"), status
    # and as if the next process had been killed mid-analysis: one study left "running"
    crashed = store.claim_next()
    assert crashed is not None
    store.close()

    b = start_server(tmp_path, workers=1)
    with b.client() as c:
        finals = [wait_final(c, sid) for sid in ids]
        assert [f["status"] for f in finals] == ["done"] * 3
        assert {s["id"] for s in c.get("/api/studies").json()["studies"]} == set(ids)
        assert all(len(f["findings"]) == 13 for f in finals)

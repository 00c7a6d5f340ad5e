"""The PACS link under a burst: 50 studies from ``storescu`` into ``cxr serve --dicom-port``, results back into a
real Orthanc (prints a table; not a test).

Needs Debian's ``orthanc`` and ``dcmtk`` (``.ci/run`` installs them). Starts Orthanc (tests/pacs/orthanc_server.py:
generated configuration, own loopback ports, a Lua hook counting every stored instance) and the listener with the
shipped models, warms it with one study, then measures:

- single studies, one at a time (warm, nothing queued): time from the last instance received to the last result
  confirmed by Orthanc, quiet period excluded, split into stages (from the listener's own timestamps and each
  report's timings): handing over, waiting for the worker, reading, the models, writing the SR + SCs, sending
  (with the bytes sent and their transfer syntaxes), and when the viewer has the study (its PNGs written after
  the results were queued);
- the burst: N copies of RG1 with new UIDs in one ``storescu`` association: studies/min from the first instance
  sent to the last result confirmed, every result in Orthanc exactly once (counted by Orthanc's own hook), and the
  listener's peak resident memory (VmHWM of the process).

    python benchmarks/bench_pacs.py [--studies 50] [--single 5] [--quiet 2] [--stow] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "pacs"))

from orthanc_server import Orthanc, available, free_port  # noqa: E402

AET = "CXRASSIST"
GOALS = {"rss_gb": 2.0, "latency_s": 3.0}


def _copies(src: Path, folder: Path, n: int) -> list[Path]:
    import pydicom
    from pydicom.uid import generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    ds = pydicom.dcmread(src)
    out = []
    for i in range(n):
        ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        path = folder / f"study{i:03d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        out.append(path)
    return out


def _rows(db: Path, query: str, params: tuple[object, ...] = ()) -> list[sqlite3.Row]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    con.row_factory = sqlite3.Row
    try:
        return con.execute(query, params).fetchall()
    finally:
        con.close()


def _vm(pid: int, key: str) -> float:
    """VmRSS / VmHWM of a process in GB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024 / 1024
    return float("nan")


class Run:
    def __init__(self, work: Path, quiet: float, stow: bool) -> None:
        self.work = work
        self.quiet = quiet
        self.dicom_port, self.http_port = free_port(), free_port()
        self.orthanc = Orthanc(work / "orthanc", {"cxr": (AET, "127.0.0.1", self.dicom_port)}).start()
        self.data = work / "data"
        cxr = Path(sys.executable).with_name("cxr")
        cmd = [
            str(cxr),
            "serve",
            "--port",
            str(self.http_port),
            "--data-dir",
            str(self.data),
            "--dicom-port",
            str(self.dicom_port),
            "--dicom-aet",
            AET,
            "--dicom-allow",
            "BENCH",
            "--dicom-quiet",
            str(quiet),
            "--send-to",
            f"ORTHANC@127.0.0.1:{self.orthanc.dicom_port}",
        ]
        if stow and self.orthanc.dicomweb:
            cmd += ["--stow-url", self.orthanc.dicomweb_url]
        self.targets = 2 if (stow and self.orthanc.dicomweb) else 1
        self.log = open(work / "listener.log", "wb")  # noqa: SIM115 - open for the whole run
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, cwd=REPO)
        import httpx

        deadline = time.monotonic() + 600
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{self.http_port}/api/health").json().get("pipeline") == "ready":
                    break
            except Exception:  # noqa: BLE001 - not up yet
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"listener did not start; see {work / 'listener.log'}")
            time.sleep(0.3)

    def send(self, files: list[Path]) -> None:
        r = subprocess.run(
            ["storescu", "-aet", "BENCH", "-aec", AET, "127.0.0.1", str(self.dicom_port), *map(str, files)],
            capture_output=True,
            text=True,
        )
        if r.returncode != 0:
            raise SystemExit(f"storescu failed: {r.stderr[-500:]}")

    def results(self) -> list[sqlite3.Row]:
        """Per PACS study: last instance at, analysis start/end, results queued at, last result sent, counts."""
        db = self.data / "pacs" / "pacs.db"
        if not db.exists():
            return []
        rows = _rows(
            db,
            "SELECT p.study_id, p.state, p.last_rx_at, p.promoted_at, p.finished_at AS queued_at, "
            "COUNT(o.id) AS n, SUM(o.state = 'sent') AS sent, MIN(o.sent_at) AS first_sent, "
            "MAX(o.sent_at) AS last_sent "
            "FROM pacs_studies p LEFT JOIN outbox o ON o.study_id = p.study_id GROUP BY p.study_id",
        )
        return rows

    def wait(self, n_studies: int, timeout: float) -> list[sqlite3.Row]:
        deadline = time.monotonic() + timeout
        while True:
            rows = self.results()
            done = [
                r
                for r in rows
                if r["state"] != "queued" and r["state"] != "promoting" and r["n"] and r["sent"] == r["n"]
            ]
            bad = [r for r in rows if r["state"] in ("refused", "failed", "deleted")]
            if bad:
                raise SystemExit(f"{len(bad)} studies {bad[0]['state']}; see {self.work / 'listener.log'}")
            if len(done) >= n_studies:
                return rows
            if time.monotonic() > deadline:
                raise SystemExit(f"only {len(done)}/{n_studies} studies back after {timeout} s")
            time.sleep(0.2)

    def wait_done(self, study_id: str, timeout: float) -> None:
        """Until the study is done in the worklist (its PNGs are written after its results were queued)."""
        deadline = time.monotonic() + timeout
        query = "SELECT 1 FROM studies WHERE id = ? AND status = 'done'"
        while not _rows(self.data / "studies.db", query, (study_id,)):
            if time.monotonic() > deadline:
                raise SystemExit(f"study not done after {timeout} s; see {self.work / 'listener.log'}")
            time.sleep(0.1)

    def analysis_times(self) -> dict[str, tuple[float, float]]:
        rows = _rows(self.data / "studies.db", "SELECT id, started_at, finished_at FROM studies")
        return {r["id"]: (r["started_at"], r["finished_at"]) for r in rows}

    def breakdown(self, row: sqlite3.Row) -> dict[str, float | str]:
        """Seconds per stage of one single study (see the module docstring), and what was sent."""
        import json

        import pydicom

        sid = row["study_id"]
        (st,) = _rows(self.data / "studies.db", "SELECT started_at, finished_at FROM studies WHERE id = ?", (sid,))
        folder = self.data / "studies" / sid
        report = json.loads((folder / "out" / "report.json").read_text())
        t = report["timings_ms"]
        paths = [
            r["path"]
            for r in _rows(self.data / "pacs" / "pacs.db", "SELECT path FROM outbox WHERE study_id = ?", (sid,))
        ]
        syntaxes = {
            pydicom.dcmread(folder / p, stop_before_pixels=True).file_meta.TransferSyntaxUID.name for p in set(paths)
        }
        rx = row["last_rx_at"] + self.quiet
        return {
            "hand-over (staging -> worklist)": row["promoted_at"] - rx,
            "waiting for the worker": st["started_at"] - row["promoted_at"],
            "analysis: read + models": (t.get("read", 0) + t.get("total", 0)) / 1000,
            "  of which the models": t.get("total", 0) / 1000,
            "analysis: writing report.json + SR + SCs": t.get("write", 0) / 1000,
            "results queued (analysis start -> outbox)": row["queued_at"] - st["started_at"],
            "outbox -> first result confirmed": row["first_sent"] - row["queued_at"],
            "outbox -> last result confirmed (sending)": row["last_sent"] - row["queued_at"],
            "TOTAL last instance -> last result in Orthanc": row["last_sent"] - rx,
            "viewer ready (study done: PNGs written)": st["finished_at"] - rx,
            "  of which the PNGs after the results (pictures)": t.get("pictures", 0) / 1000,
            "MB sent per study": sum((folder / p).stat().st_size for p in set(paths)) / 1e6,
            "instances": float(len(set(paths))),
            "syntaxes": ", ".join(sorted(str(x) for x in syntaxes)),
        }

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()
        self.orthanc.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--studies", type=int, default=50, help="studies in the burst")
    ap.add_argument("--single", type=int, default=5, help="single studies timed one at a time (after 1 warm-up)")
    ap.add_argument("--quiet", type=float, default=2.0, help="quiet period of the listener (s)")
    ap.add_argument("--stow", action="store_true", help="also send by STOW-RS (Orthanc's DICOMweb plugin)")
    ap.add_argument("--keep", type=Path, default=None, help="work folder to keep (default: a temporary one)")
    args = ap.parse_args()
    if not available():
        raise SystemExit("needs Debian's orthanc and dcmtk (apt-get install orthanc orthanc-dicomweb dcmtk)")
    from pydicom.data import get_testdata_file

    work = args.keep or Path(tempfile.mkdtemp(prefix="bench-pacs-"))
    work.mkdir(parents=True, exist_ok=True)
    rg1 = Path(get_testdata_file("RG1_UNCI.dcm"))
    files = _copies(rg1, work / "in", 1 + args.single + args.studies)
    run = Run(work, args.quiet, args.stow)
    try:
        t0 = time.time()
        run.send(files[:1])
        (warm,) = run.wait(1, 600)
        run.wait_done(warm["study_id"], 600)
        print(f"warm-up study back in {time.time() - t0:.1f} s (first analysis; quiet period {args.quiet} s)")
        singles = []
        for i, f in enumerate(files[1 : 1 + args.single], start=2):
            run.send([f])
            rows = run.wait(i, 600)
            singles.append(max(rows, key=lambda r: r["last_rx_at"] or 0))
            run.wait_done(singles[-1]["study_id"], 600)  # its PNGs too: the next one starts on idle cores
        analysis = run.analysis_times()
        stages = [run.breakdown(r) for r in singles]
        lat = [r["last_sent"] - r["last_rx_at"] - args.quiet for r in singles]
        ana = [analysis[r["study_id"]][1] - analysis[r["study_id"]][0] for r in singles]
        before = {r["study_id"] for r in run.results()}
        load0 = os.getloadavg()[0]
        t_burst = time.time()
        run.send(files[1 + args.single :])
        t_sent = time.time()
        rss_samples = []
        deadline = time.monotonic() + 3600
        while True:
            rss_samples.append(_vm(run.proc.pid, "VmRSS"))
            rows = run.results()
            burst = [r for r in rows if r["study_id"] not in before]
            if len(burst) >= args.studies and all(
                r["state"] == "results" and r["n"] and r["sent"] == r["n"] for r in burst
            ):
                break
            if any(r["state"] in ("refused", "failed", "deleted") for r in burst) or time.monotonic() > deadline:
                raise SystemExit(f"burst did not complete; see {work / 'listener.log'}")
            time.sleep(0.5)
        t_end = max(r["last_sent"] for r in burst)
        for r in burst:  # their PNGs may still be being written after the last result was confirmed
            run.wait_done(r["study_id"], 600)
        load1 = os.getloadavg()[0]
        peak = _vm(run.proc.pid, "VmHWM")
        stored = run.orthanc.stored()
        uids = [
            r["sop_instance_uid"]
            for r in _rows(run.data / "pacs" / "pacs.db", "SELECT DISTINCT sop_instance_uid FROM outbox")
        ]
        per_uid = [sum(n for (s, _), n in stored.items() if s == u) for u in uids]
        exactly_once = all(n == run.targets for n in per_uid)
        twice = sum(1 for n in per_uid if n > run.targets)
        burst_lat = sorted(r["last_sent"] - r["last_rx_at"] - args.quiet for r in burst)
        analysis = run.analysis_times()
        burst_ana = [analysis[r["study_id"]][1] - analysis[r["study_id"]][0] for r in burst]
        minutes = (t_end - t_burst) / 60
        n_results = sum(r["n"] for r in burst)
    finally:
        run.close()
    print(
        f"\nPACS link on {os.cpu_count()} CPUs (load average {load0:.1f} at the burst's start, {load1:.1f} at its "
        f"end; other processes share these cores), quiet period {args.quiet} s, "
        f"targets: C-STORE{' + STOW-RS' if run.targets == 2 else ''}\n"
    )
    print("| what | measured | target |")
    print("|---|---|---|")
    print(f"| burst: studies sent by storescu (one association) | {args.studies} in {t_sent - t_burst:.1f} s | |")
    print(
        f"| burst: results in Orthanc | {len(burst)} studies, {n_results} result instances; each stored exactly "
        f"once: {'yes' if exactly_once else 'NO'} ({twice} twice) | all 50, none twice |"
    )
    print(
        f"| burst: throughput (first instance sent -> last result in Orthanc) | {args.studies / minutes:.1f} "
        f"studies/min ({(t_end - t_burst):.0f} s) | reported |"
    )
    print(f"| burst: analysis per study incl. the PNGs (median) | {statistics.median(burst_ana):.1f} s | |")
    print(
        f"| burst: last instance -> result in Orthanc, quiet excluded (median / max; queued behind the others) | "
        f"{statistics.median(burst_lat):.0f} s / {burst_lat[-1]:.0f} s | |"
    )
    print(
        f"| listener peak RSS (VmHWM, whole run) | {peak:.2f} GB (max sampled during burst "
        f"{max(rss_samples):.2f} GB) | <= {GOALS['rss_gb']} GB |"
    )
    if lat:
        print(
            f"| single study, warm: last instance -> result in Orthanc, quiet excluded (median / max of "
            f"{len(lat)}) | {statistics.median(lat):.1f} s / {max(lat):.1f} s | <= {GOALS['latency_s']} s |"
        )
        print(
            f"| single study, warm: analysis start -> study done in the worklist (all writing, PNGs too) (median) | "
            f"{statistics.median(ana):.1f} s | |"
        )
    if stages:
        print(f"\nsingle study, warm, per stage (median of {len(stages)}; seconds unless said):\n")
        print("| stage | median | max |")
        print("|---|---|---|")
        for key, value in stages[0].items():
            if isinstance(value, str):
                print(f"| {key} | {value} | |")
                continue
            values = [float(s[key]) for s in stages]
            print(f"| {key} | {statistics.median(values):.2f} | {max(values):.2f} |")
    print(f"\nwork folder: {work}" + ("" if args.keep else " (removed)"))
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

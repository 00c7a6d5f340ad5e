"""``cxr train TASK --config FILE [--set key=value ...]``: train one of the four models.

Multi-GPU / multi-node: ``torchrun --nproc_per_node=N -m cxrassist.cli train TASK --config FILE``.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import typer

TASK_HELP = "segmentation | bone | triage | classifier"


def register(app: typer.Typer) -> None:
    @app.command("train")
    def train_cmd(
        task: str = typer.Argument(..., help=TASK_HELP),
        config: Path = typer.Option(None, "--config", "-c", help="YAML config (see configs/)."),
        set_: list[str] = typer.Option([], "--set", help="Override a config key: --set optim.lr=1e-3 (repeatable)."),
        manifest: list[Path] = typer.Option([], "--manifest", "-m", help="Manifest CSV(s); replaces data.manifests."),
        name: str = typer.Option(None, "--name", help="Run name (runs/<name>/)."),
        out_dir: Path = typer.Option(None, "--out-dir", help="Parent folder of runs (default: runs)."),
        epochs: int = typer.Option(None, "--epochs", help="Shortcut for --set run.epochs=N."),
        threads: int = typer.Option(None, "--threads", help="torch.set_num_threads (CPU)."),
        resume: bool = typer.Option(False, "--resume", help="Continue runs/<name>/checkpoints/last.pt exactly."),
    ) -> None:
        """Train a model; checkpoints every epoch, exports the best epoch as weights + model card."""
        import logging

        from cxrassist.training.config import load_config
        from cxrassist.training.engine import train

        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
        lg = logging.getLogger("cxrassist")
        if not any(isinstance(h, logging.StreamHandler) for h in lg.handlers):
            lg.addHandler(handler)
        lg.setLevel(logging.DEBUG if "--debug" in sys.argv else logging.INFO)
        lg.propagate = False
        top = {
            "task": task,
            "name": name,
            "out_dir": str(out_dir) if out_dir else None,
            "run.epochs": epochs,
            "run.threads": threads,
            "data.manifests": [str(m) for m in manifest] or None,
        }
        cfg = load_config(config, set_, **top)
        command = " ".join(["cxr", *(shlex.quote(a) for a in sys.argv[1:])])
        result = train(cfg, resume=resume, command=command)
        typer.echo(f"run: {result.run_dir}  steps: {result.global_step}  best {cfg.task} metric: {result.best}")
        if result.export_dir:
            typer.echo(f"weights: {result.export_dir}")

"""``cxr evaluate TASK --manifest CSV [--weights DIR | --model NAME] [--json OUT]``: measure saved weights."""

from __future__ import annotations

import json
from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command("evaluate")
    def evaluate_cmd(
        task: str = typer.Argument(..., help="segmentation | bone | triage | classifier"),
        manifest: list[Path] = typer.Option(..., "--manifest", "-m", help="Manifest CSV(s) to evaluate on."),
        weights: Path = typer.Option(
            None, "--weights", "-w", help="Weights directory (model.safetensors + card.json)."
        ),
        model: str = typer.Option(None, "--model", help="Shipped weights by name (instead of --weights)."),
        split: str = typer.Option("val", "--split", help="Split to evaluate ('all' = every row)."),
        json_out: Path = typer.Option(None, "--json", help="Write the metrics as JSON here."),
        limit: int = typer.Option(None, "--limit", help="Evaluate only the first N cases."),
        postprocess: bool = typer.Option(
            False, "--postprocess", help="Segmentation: keep 2 largest parts, fill holes."
        ),
        roc_dir: Path = typer.Option(None, "--roc-dir", help="Triage/classifier: write ROC curve PNGs here."),
        bootstrap: int = typer.Option(1000, "--bootstrap", help="Bootstrap resamples for the AUROC 95% CI (0 = off)."),
        write_thresholds: str = typer.Option(
            None,
            "--write-thresholds",
            help="Write operating points, calibration and validated flags into the card beside --weights: "
            "'operating' (findings spec=0.90, triage sens=0.95, chosen on NIH-source films by 2-fold "
            "cross-fitting), or a rule 'spec=0.9' / 'sens=0.95' / 'youden'.",
        ),
        teacher: Path = typer.Option(
            None,
            "--teacher",
            help="Classifier: a reference model's probabilities (id + prob_<NIH label> columns, e.g. "
            "nih_cxr14_sample/teacher_chexnet_preds.csv), reported beside the model on the same films.",
        ),
        lung_weights: str = typer.Option(None, "--lung-weights", help="Classifier: lung model for derived channels."),
        bone_weights: str = typer.Option(None, "--bone-weights", help="Classifier: bone model for derived channels."),
        cache_dir: Path = typer.Option(None, "--cache-dir", help="Classifier: derived-channel cache folder."),
        threads: int = typer.Option(None, "--threads", help="torch.set_num_threads."),
        device: str = typer.Option("auto", "--device", help="auto | cpu | cuda"),
        tta: bool = typer.Option(
            True,
            "--tta/--no-tta",
            help="Triage: average over the card's test-time zooms, as `cxr analyze` does "
            "(--no-tta: the plain view alone).",
        ),
    ) -> None:
        """Evaluate saved weights on a manifest; prints a table, optionally writes JSON and ROC PNGs."""
        from cxrassist.errors import ConfigError
        from cxrassist.evaluation.runner import evaluate

        if (weights is None) == (model is None):
            raise ConfigError("give exactly one of --weights DIR or --model NAME")
        result = evaluate(
            task,
            [str(m) for m in manifest],
            weights=str(weights) if weights else model,
            split=split,
            limit=limit,
            postprocess=postprocess,
            roc_dir=roc_dir,
            bootstrap=bootstrap,
            write_thresholds=write_thresholds,
            lung_weights=lung_weights,
            bone_weights=bone_weights,
            cache_dir=cache_dir,
            threads=threads,
            device=device,
            tta=tta,
            teacher=str(teacher) if teacher else None,
        )
        typer.echo(result.pop("_table"))
        if json_out:
            json_out.parent.mkdir(parents=True, exist_ok=True)
            json_out.write_text(json.dumps(result, indent=2) + "\n")
            typer.echo(f"metrics written to {json_out}")

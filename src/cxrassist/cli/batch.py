"""``cxr batch``: every study under a folder -> reports + worklist.csv sorted by priority (resumable)."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command("batch")
    def batch(
        input_dir: Path = typer.Argument(
            ..., help="Folder of studies (DICOMs grouped by StudyInstanceUID; each PNG/JPEG/TIFF is a study)."
        ),
        out: Path = typer.Option(
            ..., "--out", "-o", help="Output folder: one report folder per study + worklist.csv + failures.csv."
        ),
        workers: int = typer.Option(1, "--workers", "-j", min=1, help="Processes; each loads the models once."),
        force: bool = typer.Option(False, "--force", help="Analyse studies the chest check refuses (marked)."),
        fmt: str = typer.Option("json,html,png", "--format", "-f", help="Comma list of json,html,png,dicom."),
        weights: Path | None = typer.Option(None, "--weights", help="Folder with the model folders."),
        allow_untrained: bool = typer.Option(
            False, "--allow-untrained", help="Random models where weights are missing (outputs are MEANINGLESS)."
        ),
        progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
    ) -> None:
        """Analyse a folder of studies and write a worklist sorted by priority. Decision support only."""
        from cxrassist.batch import run_batch
        from cxrassist.cli.analyze import load_models_with_status
        from cxrassist.errors import InputError
        from cxrassist.report import parse_formats

        if not input_dir.is_dir():  # the cheap checks before seconds of model loading
            raise InputError(f"{input_dir.absolute()}: not a folder")
        parse_formats(fmt)
        if workers <= 1:  # one process: load here, with a status line (worker processes load their own)
            pipeline = load_models_with_status(weights, allow_untrained, show=progress)
        else:
            if progress:
                typer.echo(f"starting {workers} worker processes; each loads the models…", err=True)
            pipeline = None
        summary = run_batch(
            input_dir,
            out,
            pipeline=pipeline,
            weights_dir=weights,
            allow_untrained=allow_untrained,
            workers=workers,
            force=force,
            formats=fmt,
            progress=progress,
        )
        typer.echo(
            f"{summary.count('done')} analysed, {summary.count('skipped')} already done, "
            f"{summary.count('refused')} refused, {summary.count('failed')} failed "
            f"in {summary.seconds:.1f} s ({summary.studies_per_minute:.1f} studies/min)"
        )
        typer.echo(f"worklist: {summary.worklist}")
        if allow_untrained and any(o.report and o.report["untrained"] for o in summary.outcomes):
            typer.secho("warning: UNTRAINED MODEL — outputs are meaningless", err=True, fg="red")
        if summary.count("refused", "failed"):
            typer.echo(f"failures: {Path(out) / 'failures.csv'}", err=True)

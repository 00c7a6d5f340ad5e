"""``cxr analyze``: one study -> a report folder (JSON, HTML, PNGs, DICOM SR + Secondary Capture)."""

from __future__ import annotations

import sys
from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command("analyze")
    def analyze(
        inputs: list[Path] = typer.Argument(
            ...,
            help="Frontal radiograph (DICOM/PNG/JPEG/TIFF), a DICOM study "
            "folder, or several files of one study (views told apart by DICOM "
            "view, else an image check).",
        ),
        out: Path = typer.Option(..., "--out", "-o", help="Report folder (created; a previous report is replaced)."),
        lateral: Path | None = typer.Option(None, "--lateral", help="The lateral view of the same study."),
        fmt: str = typer.Option("json,html,png", "--format", "-f", help="Comma list of json,html,png,dicom."),
        force: bool = typer.Option(
            False, "--force", help="Analyse even when the chest check refuses the image (marked in the report)."
        ),
        weights: Path | None = typer.Option(
            None,
            "--weights",
            help="Folder with lungseg/, bone/, classifier/, triage/ model folders (default: the shipped weights).",
        ),
        allow_untrained: bool = typer.Option(
            False,
            "--allow-untrained",
            help="Use random models where weights are missing (outputs are MEANINGLESS; for trying the program).",
        ),
        threads: int | None = typer.Option(None, "--threads", help="torch CPU threads (default: torch's choice)."),
        progress: bool | None = typer.Option(
            None,
            "--progress/--no-progress",
            help="Status lines on stderr while the models load (default: when stderr is a terminal).",
        ),
    ) -> None:
        """Analyse one chest X-ray study. Decision support for a qualified reader, not a diagnosis."""
        from cxrassist.analysis import analyze_paths
        from cxrassist.report import check_output_dir, parse_formats

        formats = parse_formats(fmt)
        check_output_dir(out)  # before any model runs: a lost 40-s analysis helps no one
        if threads:
            import torch

            torch.set_num_threads(threads)
        show = sys.stderr.isatty() if progress is None else progress
        pipeline = load_models_with_status(weights, allow_untrained, show=show)
        if show:
            typer.echo(f"analysing {len(inputs) + (lateral is not None)} file(s)…", err=True)
        report = analyze_paths(
            inputs,
            lateral,
            out,
            pipeline=pipeline,
            formats=formats,
            force=force,
            weights_dir=weights,
            allow_untrained=allow_untrained,
        )
        print_summary(report, out)


def load_models_with_status(weights: Path | None, allow_untrained: bool, *, show: bool = True) -> object:
    """Load the models with status lines on stderr (they take seconds: say so instead of hanging silently)."""
    import time

    from cxrassist.analysis import default_pipeline

    if show:
        typer.echo(f"loading models ({weights or 'shipped weights'})…", err=True)
    t0 = time.perf_counter()
    pipeline = default_pipeline(weights, allow_untrained)
    if show:
        typer.echo(f"models loaded in {time.perf_counter() - t0:.1f} s", err=True)
    return pipeline


def print_summary(report: dict, out: Path) -> None:
    """A few lines on stdout; the loud warnings on stderr."""
    for warning in report["warnings"]:
        typer.secho(
            f"warning: {warning}", err=True, fg="red" if "UNTRAINED" in warning or "FORCED" in warning else "yellow"
        )
    t = report["triage"]
    typer.echo(
        f"triage: {t['priority']} (abnormal probability {t['abnormal_probability']:.3f}, "
        f"threshold {t['threshold']:.3f})"
    )
    ranked = sorted(report["findings"], key=lambda f: f["probability"], reverse=True)
    for f in ranked[:5]:
        tags = (" POSITIVE" if f["positive"] else "") + ("" if f["validated"] else " [not validated]")
        typer.echo(f"  {f['name']:<28} {f['probability']:.3f}{tags}")
    typer.echo(f"report: {out / (report['outputs']['html'] or 'report.json')}")
    typer.echo(report["disclaimer"])

"""``cxr models``: the registered network configurations and the shipped weights with their cards' key figures."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer


def register(app: typer.Typer) -> None:
    app.command("models")(models_command)


def models_command(
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
    weights_dir: Optional[Path] = typer.Option(
        None, "--weights-dir", help="List cards under this directory instead of the shipped weights."
    ),
) -> None:
    """List the model configurations and the shipped weights (status, metrics, sha256 prefix)."""
    # torch-free: the registry and the card reader do not import torch.
    from cxrassist.models.registry import get_model_spec, list_models
    from cxrassist.weights.catalog import list_shipped

    registry = [
        {"name": n, "task": (s := get_model_spec(n)).task, "family": s.family, "description": s.description}
        for n in list_models()
    ]
    cards = list_shipped(weights_dir)
    shipped = [card.summary() for card in cards]
    if as_json:
        typer.echo(json.dumps({"registry": registry, "shipped": shipped}, indent=2))
        return
    from rich import box
    from rich.console import Console
    from rich.table import Table

    console = Console()
    # Names never wrap (a name split mid-word cannot be copied into --model); descriptions wrap at words.
    table = Table(title="Model configurations (create_model names)", box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("name", no_wrap=True)
    table.add_column("task / family", no_wrap=True)
    table.add_column("description", overflow="fold", ratio=1)
    for spec_row in registry:
        table.add_row(spec_row["name"], f"{spec_row['task']}\n{spec_row['family']}", spec_row["description"])
    console.print(table)
    if not shipped:
        console.print("No shipped weights found" + (f" under {weights_dir}" if weights_dir else "") + ".")
        return
    table = Table(
        title="Shipped weights (decision support for qualified readers; not a diagnosis)",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    for col in ("name (--model)", "version", "status", "sha256"):
        table.add_column(col, no_wrap=True)
    table.add_column("runs at (card input)", overflow="fold", ratio=1)
    for row in shipped:
        table.add_row(row["name"], row["version"], row["status"], (row["sha256"] or "-")[:12] + "…", row["runs_at"])
    console.print(table)
    for row in shipped:
        console.print(
            f"[bold]{row['name']}[/bold] ({row['architecture']}): {_metrics_line(row['metrics'])}", highlight=False
        )


def _metrics_line(metrics: dict) -> str:
    """The card's own summary sentence when it has one, else its first scalar figures."""
    if isinstance(metrics.get("summary"), str):
        return metrics["summary"]
    return ", ".join(f"{k}={_fmt(v)}" for k, v in _flat(metrics)[:6]) or "no measured figures"


def _flat(metrics: dict, prefix: str = "") -> list[tuple[str, object]]:
    """Nested metrics ({"val": {"auroc": ...}}) as dotted scalar pairs; per-label dicts are left to --json."""
    out: list[tuple[str, object]] = []
    for key, value in metrics.items():
        if isinstance(value, dict):
            out.extend(_flat(value, f"{prefix}{key}."))
        elif isinstance(value, (int, float, str)) or value is None:
            out.append((f"{prefix}{key}", value))
    return out


def _fmt(value: object) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)

"""``cxr info FILE...``: what was read from each file, and whether it looks like a frontal chest radiograph."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from cxrassist.errors import InputError


def register(app: typer.Typer) -> None:
    app.command("info")(info)


def info(
    files: list[Path] = typer.Argument(..., help="DICOM, PNG, JPEG or TIFF files.", show_default=False),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document (a list, one entry per file)."),
    no_voi: bool = typer.Option(False, "--no-voi", help="Ignore the DICOM VOI LUT / window; scale the full range."),
) -> None:
    """Describe each radiograph: modality, view, size, bits, photometric, spacing, and the chest check."""
    from cxrassist.io import check_chest, read_xray

    entries: list[dict[str, Any]] = []
    worst = 0
    for path in files:
        entry: dict[str, Any] = {"path": str(path)}
        try:
            xray = read_xray(path, apply_voi=not no_voi)
        except InputError as exc:
            if len(files) == 1 and not as_json:
                raise  # one file: the CLI's one-line error and its exit code
            entry.update(ok=False, error={"type": type(exc).__name__, "message": str(exc)})
            worst = max(worst, exc.exit_code)
            if not as_json:
                typer.echo(f"error: {exc}", err=True)
            entries.append(entry)
            continue
        check = check_chest(xray)
        entry.update(
            ok=True,
            xray=xray.summary(),
            pixel_spacing_note=xray.extra.get("pixel_spacing_note"),
            chest_check={
                "is_chest": check.is_chest,
                "is_frontal": check.is_frontal,
                "reason": check.reason,
                "evidence": check.evidence,
            },
        )
        entries.append(entry)
        if not as_json:
            typer.echo(_text(entry))
    if as_json:
        from cxrassist._jsonsafe import jsonable

        typer.echo(json.dumps(jsonable(entries), indent=2, default=str))
    if worst:
        refused = sum(1 for e in entries if not e["ok"])
        summary = FilesRefused(f"{refused} of {len(entries)} file(s) refused")
        summary.exit_code = worst
        raise summary


class FilesRefused(InputError):
    """Raised after every file was printed: one summary line on stderr and a non-zero exit code."""


def _unknown_spacing(entry: dict[str, Any]) -> str:
    """'unknown' with the reason: the DICOM tags' state, or that the format carries no spacing."""
    x = entry["xray"]
    note = entry.get("pixel_spacing_note")
    if note:
        return f"unknown ({note}; areas in pixels only)"
    if x["source_format"] != "dicom":
        return f"unknown ({x['source_format'].upper()} files carry no pixel spacing; areas in pixels only)"
    return "unknown"


def _text(entry: dict[str, Any]) -> str:
    x, c = entry["xray"], entry["chest_check"]
    spacing = x["pixel_spacing_mm"]
    verdict = (
        "frontal chest"
        if c["is_chest"] and c["is_frontal"] is not False
        else ("chest, not frontal" if c["is_chest"] else "NOT a frontal chest radiograph")
    )
    lines = [
        f"{entry['path']}",
        f"  format      {x['source_format']}   modality {x['modality'] or '-'}   view {x['view']}   "
        f"body part {x['body_part'] or '-'}",
        f"  size        {x['width']} x {x['height']} px   bits {x['bits_stored']}   photometric {x['photometric']}"
        f"   window {'applied' if x['window_applied'] else 'not applied'}",
        f"  spacing     {f'{spacing[0]:.3f} x {spacing[1]:.3f} mm' if spacing else _unknown_spacing(entry)}",
        f"  chest check {verdict}: {c['reason']}",
    ]
    return "\n".join(lines)

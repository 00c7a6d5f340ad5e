"""``cxr serve``: the web viewer and REST API (FastAPI + uvicorn)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)


def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind. Anything but loopback needs CXR_API_TOKEN."),
    port: int = typer.Option(8000, "--port", help="TCP port."),
    data_dir: Optional[Path] = typer.Option(
        None, "--data-dir", help="Where studies are kept (SQLite + files). Default: $CXR_DATA_DIR or ~/.local/share/cxrassist/serve."
    ),
    weights: Optional[Path] = typer.Option(None, "--weights", help="Folder of model weights (default: the shipped ones)."),
    allow_untrained: bool = typer.Option(
        False, "--allow-untrained", help="Run with models whose card says 'untrained' (the viewer shows a red banner)."
    ),
    max_upload_mb: float = typer.Option(100.0, "--max-upload-mb", help="Largest upload (all files of a study) in MB."),
    workers: int = typer.Option(1, "--workers", help="Analysis threads (0: queue only)."),
) -> None:
    """Serve the radiologist's worklist and study viewer at http://HOST:PORT/ and the REST API under /api."""
    import logging

    import uvicorn

    from cxrassist.serve.app import create_app, default_pipeline_factory
    from cxrassist.serve.settings import Settings

    settings = Settings.from_env(
        host=host,
        port=port,
        data_dir=data_dir,
        weights_dir=weights,
        allow_untrained=allow_untrained,
        max_upload_bytes=int(max_upload_mb * 1024 * 1024),
        workers=workers,
    ).validate()  # ServeConfigError (e.g. 0.0.0.0 without a token) before anything is loaded or bound
    logging.getLogger("cxrassist").setLevel(logging.INFO)
    pipeline = default_pipeline_factory(settings)() if workers > 0 else None  # fail fast on missing/bad weights
    app = create_app(settings, pipeline_factory=lambda: pipeline)
    typer.echo(f"cxrassist viewer on http://{host}:{port}/ (API docs at /docs); data in {settings.data_dir}")
    uvicorn.run(app, host=host, port=port, log_level="info", server_header=False)

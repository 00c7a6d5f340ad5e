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
        None,
        "--data-dir",
        help="Where studies are kept (SQLite + files). Default: $CXR_DATA_DIR or ~/.local/share/cxrassist/serve.",
    ),
    weights: Optional[Path] = typer.Option(
        None, "--weights", help="Folder of model weights (default: the shipped ones)."
    ),
    allow_untrained: bool = typer.Option(
        False, "--allow-untrained", help="Run with models whose card says 'untrained' (the viewer shows a red banner)."
    ),
    max_upload_mb: float = typer.Option(100.0, "--max-upload-mb", help="Largest upload (all files of a study) in MB."),
    workers: int = typer.Option(1, "--workers", help="Analysis threads (0: queue only)."),
    dicom_port: Optional[int] = typer.Option(
        None, "--dicom-port", help="Also listen for DICOM (C-STORE, C-ECHO) on this port: studies from your PACS."
    ),
    dicom_host: Optional[str] = typer.Option(
        None, "--dicom-host", help="Address of the DICOM listener (default: --host)."
    ),
    dicom_aet: str = typer.Option("CXRASSIST", "--dicom-aet", help="Our AE title (the called AE title we accept)."),
    dicom_allow: Optional[list[str]] = typer.Option(
        None, "--dicom-allow", help="A calling AE title allowed to send studies (repeatable); others are rejected."
    ),
    dicom_quiet: float = typer.Option(
        5.0, "--dicom-quiet", help="Seconds without a new instance after which a received study is analysed."
    ),
    send_to: Optional[str] = typer.Option(
        None, "--send-to", help="Where the results (SR + SCs) go by C-STORE: AET@HOST:PORT, e.g. ORTHANC@pacs:4242."
    ),
    stow_url: Optional[str] = typer.Option(
        None, "--stow-url", help="Also send the results by DICOMweb STOW-RS to this base URL (token: $CXR_STOW_TOKEN)."
    ),
) -> None:
    """Serve the radiologist's worklist and study viewer at http://HOST:PORT/ and the REST API under /api;
    with --dicom-port, also receive studies from a PACS and send the results back (README: "Connect it to your
    PACS")."""
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
    companions = []
    if dicom_port is not None:
        from cxrassist.pacs.config import DicomNode, PacsConfig
        from cxrassist.pacs.link import pacs_companion

        pacs = PacsConfig.from_env(
            port=dicom_port,
            host=dicom_host or host,
            ae_title=dicom_aet,
            allowed_aes=tuple(dicom_allow or ()),
            quiet_s=dicom_quiet,
            destination=DicomNode.parse(send_to) if send_to else None,
            stow_url=stow_url,
        ).validate()
        _check_port_free(pacs.host, pacs.port)
        companions.append(pacs_companion(pacs))
    elif dicom_allow or send_to or stow_url:
        from cxrassist.errors import ServeConfigError

        raise ServeConfigError("--dicom-allow, --send-to and --stow-url need --dicom-port (the DICOM listener)")
    logging.getLogger("cxrassist").setLevel(logging.INFO)
    pipeline = default_pipeline_factory(settings)() if workers > 0 else None  # fail fast on missing/bad weights
    app = create_app(settings, pipeline_factory=lambda: pipeline, companions=companions)
    typer.echo(f"cxrassist viewer on http://{host}:{port}/ (API docs at /docs); data in {settings.data_dir}")
    if dicom_port is not None:
        typer.echo(
            f"DICOM listener {dicom_aet} on {dicom_host or host}:{dicom_port}; results to "
            f"{', '.join(filter(None, [send_to, stow_url])) or 'nowhere (no --send-to / --stow-url)'}"
        )
    uvicorn.run(app, host=host, port=port, log_level="info", server_header=False)


def _check_port_free(host: str, port: int) -> None:
    """One line naming the problem when the DICOM port cannot be bound (before the models load)."""
    import socket

    from cxrassist.errors import ServeConfigError

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise ServeConfigError(f"cannot listen for DICOM on {host}:{port} ({exc.strerror or exc})") from None

"""``cxr serve``: the radiologist's web viewer and REST service.

``create_app(settings, pipeline_factory)`` builds the FastAPI application; nothing happens at import time (no
torch, no files, no threads). The app keeps its studies in SQLite + files under ``settings.data_dir`` and runs the
analysis in a background worker, so uploads answer at once and a restart loses nothing.
"""

from __future__ import annotations

__all__ = ["Settings", "create_app"]


def __getattr__(name: str) -> object:  # lazy: importing cxrassist.serve must stay cheap
    if name == "create_app":
        from cxrassist.serve.app import create_app

        return create_app
    if name == "Settings":
        from cxrassist.serve.settings import Settings

        return Settings
    raise AttributeError(name)

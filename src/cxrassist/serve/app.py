"""The application factory. ``create_app()`` builds the app; the store and the worker start with its lifespan.

Nothing happens at import: the pipeline (torch, weights) is built by ``pipeline_factory`` in the worker thread
after start-up, so the server answers (and /api/health says "loading") while the models load.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cxrassist import DISCLAIMER, __version__
from cxrassist.serve.errors import ApiError, UploadTooLarge, error_json, install_error_handlers, too_large_detail
from cxrassist.serve.settings import Settings
from cxrassist.serve.store import StudyStore
from cxrassist.serve.worker import AnalysisWorker, AnalyzeFn

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static"
#: Room for the multipart boundaries and headers on top of the file bytes.
_MULTIPART_OVERHEAD = 64 * 1024
# The viewer loads nothing from elsewhere; /docs (swagger from a CDN) is left out of this policy.
_CSP = (
    "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)


def default_pipeline_factory(settings: Settings) -> Callable[[], Any]:
    """Load the shipped (or ``--weights``) models, the same as ``cxr analyze`` does."""

    def factory() -> Any:
        from cxrassist.pipeline import Pipeline

        return Pipeline.load(settings.weights_dir, allow_untrained=settings.allow_untrained)

    return factory


class _BodyLimit:
    """Refuse request bodies above the upload limit with 413, before or while they are read (no disk filling)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        allowed = self.limit + _MULTIPART_OVERHEAD
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > allowed):
            response = error_json(413, "too_large", too_large_detail(self.limit), {"Connection": "close"})
            await response(scope, receive, send)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > allowed:
                    raise UploadTooLarge(self.limit)
            return message

        await self.app(scope, counted, send)


class _SecurityHeaders:
    """No sniffing, no framing, and a content policy that keeps the viewer from loading anything external."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        docs = path.startswith(("/docs", "/redoc"))

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((b"x-content-type-options", b"nosniff"))
                headers.append((b"referrer-policy", b"no-referrer"))
                if not docs:
                    headers.append((b"content-security-policy", _CSP.encode()))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, with_headers)


def _token_dependency(settings: Settings) -> Callable[[Request], None]:
    expected = (settings.api_token or "").encode()

    def require_token(request: Request) -> None:
        if not expected:
            return
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected):
            raise ApiError(401, "unauthorized", "missing or wrong API token (send 'Authorization: Bearer <token>')",
                           {"WWW-Authenticate": "Bearer"})

    return require_token


def create_app(
    settings: Settings | None = None,
    pipeline_factory: Callable[[], Any] | None = None,
    *,
    analyze: AnalyzeFn | None = None,
) -> FastAPI:
    """Build the service. ``settings`` default to ``Settings.from_env()``; ``pipeline_factory()`` returns the
    Pipeline the worker passes to ``analyze`` (default ``cxrassist.analysis.analyze_paths``).

    Raises ``ServeConfigError`` for unsafe settings (a non-loopback host without an API token).
    """
    from cxrassist.serve.routes import studies, system

    settings = (settings or Settings.from_env()).validate()
    factory = pipeline_factory or default_pipeline_factory(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = StudyStore(settings.data_dir)
        requeued = store.requeue_interrupted()
        if requeued:
            log.info("%d interrupted studies queued again", len(requeued))
        store.remove_orphans()
        worker = AnalysisWorker(store, factory, n_threads=settings.workers, formats=settings.formats, analyze=analyze)
        app.state.store, app.state.worker = store, worker
        app.state.worker_notify = worker.notify
        worker.start()
        try:
            yield
        finally:
            worker.stop()
            store.close()

    app = FastAPI(
        title="cxrassist",
        version=__version__,
        description=f"Chest X-ray decision support: worklist, reports and images. {DISCLAIMER}",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.worker = None
    install_error_handlers(app)
    auth = [Depends(_token_dependency(settings))]
    app.include_router(system.router, dependencies=auth)
    app.include_router(studies.router, dependencies=auth)
    app.add_middleware(_BodyLimit, limit=settings.max_upload_bytes)
    app.add_middleware(_SecurityHeaders)
    app.mount("/", StaticFiles(directory=STATIC_DIR, html=True), name="viewer")
    return app

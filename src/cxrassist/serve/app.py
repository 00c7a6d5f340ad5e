"""The application factory. ``create_app()`` builds the app; the store and the worker start with its lifespan.

Nothing happens at import: the pipeline (torch, weights) is built by ``pipeline_factory`` in the worker thread
after start-up, so the server answers (and /api/health says "loading") while the models load.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractContextManager, ExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cxrassist import DISCLAIMER, __version__
from cxrassist.serve.errors import ApiError, UploadTooLarge, error_json, install_error_handlers, too_large_detail
from cxrassist.serve.settings import Settings
from cxrassist.serve.store import MAX_ATTEMPTS, StudyStore
from cxrassist.serve.worker import AnalysisWorker, AnalyzeFn

log = logging.getLogger(__name__)

#: Something that runs beside the web service on the same store and worker (the DICOM link of cxrassist.pacs):
#: called at start-up before the worker starts, entered as a context manager, exited at shutdown before the worker
#: stops.
Companion = Callable[[StudyStore, AnalysisWorker], AbstractContextManager[Any]]

STATIC_DIR = Path(__file__).parent / "static"
#: Room for the multipart boundaries and headers on top of the file bytes.
_MULTIPART_OVERHEAD = 64 * 1024
# The viewer loads nothing from elsewhere. The API docs pages (/docs, /redoc) load Swagger UI / ReDoc from the CDN
# FastAPI names and run one inline script each: their own policy allows exactly that (the script by its hash).
_CSP = (
    "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
_DOCS_CDN = "https://cdn.jsdelivr.net"
#: API answers carry sex, age and findings: no cache (browser or proxy) may keep them.
_NO_STORE = b"no-store"


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
    """No sniffing, no framing, a content policy on every page, and no caching of API answers.

    A response that set its own Content-Security-Policy (the docs pages) or Cache-Control (images) keeps it.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        api = path.startswith("/api/") or path == "/api" or path == "/openapi.json"

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {k.lower() for k, _ in headers}
                headers.append((b"x-content-type-options", b"nosniff"))
                headers.append((b"referrer-policy", b"no-referrer"))
                if b"content-security-policy" not in names:
                    headers.append((b"content-security-policy", _CSP.encode()))
                if api and b"cache-control" not in names:
                    headers.append((b"cache-control", _NO_STORE))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, with_headers)


def docs_csp(html: str) -> str:
    """The policy of one API docs page: its CDN, its inline scripts by sha256, nothing else."""
    import base64
    import hashlib
    import re

    hashes = " ".join(
        f"'sha256-{base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()}'"
        for body in re.findall(r"<script>(.*?)</script>", html, flags=re.S)
    )
    return (
        f"default-src 'none'; script-src {_DOCS_CDN} {hashes}; style-src {_DOCS_CDN} https://fonts.googleapis.com "
        "'unsafe-inline'; img-src 'self' data: https://fastapi.tiangolo.com https://cdn.redoc.ly; "
        "font-src https://fonts.gstatic.com; connect-src 'self'; worker-src blob:; frame-ancestors 'none'; "
        "base-uri 'none'; form-action 'none'"
    )


def _docs_routes(app: FastAPI, auth: list[Any]) -> None:
    """/openapi.json, /docs and /redoc behind the same token as the API (FastAPI's own routes take no dependency)."""
    from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
    from fastapi.responses import HTMLResponse, JSONResponse

    @app.get("/openapi.json", include_in_schema=False, dependencies=auth)
    def openapi() -> JSONResponse:
        return JSONResponse(app.openapi())

    def page(response: HTMLResponse) -> HTMLResponse:
        html = bytes(response.body).decode()
        return HTMLResponse(html, headers={"Content-Security-Policy": docs_csp(html)})

    @app.get("/docs", include_in_schema=False, dependencies=auth)
    def docs() -> HTMLResponse:
        return page(get_swagger_ui_html(openapi_url="/openapi.json", title=f"{app.title} - API docs"))

    @app.get("/redoc", include_in_schema=False, dependencies=auth)
    def redoc() -> HTMLResponse:
        return page(get_redoc_html(openapi_url="/openapi.json", title=f"{app.title} - API docs"))


def _token_dependency(settings: Settings) -> Callable[[Request], None]:
    expected = (settings.api_token or "").encode()

    def require_token(request: Request) -> None:
        if not expected:
            return
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected):
            raise ApiError(
                401,
                "unauthorized",
                "missing or wrong API token (send 'Authorization: Bearer <token>')",
                {"WWW-Authenticate": "Bearer"},
            )

    return require_token


def create_app(
    settings: Settings | None = None,
    pipeline_factory: Callable[[], Any] | None = None,
    *,
    analyze: AnalyzeFn | None = None,
    companions: Sequence[Companion] = (),
) -> FastAPI:
    """Build the service. ``settings`` default to ``Settings.from_env()``; ``pipeline_factory()`` returns the
    Pipeline the worker passes to ``analyze`` (default ``cxrassist.analysis.analyze_paths``). ``companions`` run
    beside it on the same store (``cxrassist.pacs.link.pacs_companion``: the DICOM listener and its outbox).

    Raises ``ServeConfigError`` for unsafe settings (a non-loopback host without an API token).
    """
    from cxrassist.serve.routes import studies, system

    settings = (settings or Settings.from_env()).validate()
    from cxrassist.io.quiet import install

    install()  # library warnings about uploaded headers never reach the server log with their values
    factory = pipeline_factory or default_pipeline_factory(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = StudyStore(settings.data_dir)
        given_up = store.fail_exhausted()
        if given_up:
            log.warning(
                "%d studies interrupted %d times are marked failed, not retried: %s",
                len(given_up),
                MAX_ATTEMPTS,
                ", ".join(given_up),
            )
        leftovers = store.remove_partial_outputs()
        if leftovers:
            log.info("%d partial report folders of interrupted analyses removed", leftovers)
        requeued = store.requeue_interrupted()
        if requeued:
            log.info("%d interrupted studies queued again", len(requeued))
        store.remove_orphans()
        worker = AnalysisWorker(store, factory, n_threads=settings.workers, formats=settings.formats, analyze=analyze)
        app.state.store, app.state.worker = store, worker
        app.state.worker_notify = worker.notify
        running = ExitStack()
        try:
            for companion in companions:
                running.enter_context(companion(store, worker))
            worker.start()
            yield
        finally:
            running.close()
            worker.stop()
            store.close()

    app = FastAPI(
        title="cxrassist",
        version=__version__,
        description=f"Chest X-ray decision support: worklist, reports and images. {DISCLAIMER}",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.settings = settings
    app.state.worker = None
    install_error_handlers(app)
    auth = [Depends(_token_dependency(settings))]
    app.include_router(system.router, dependencies=auth)
    app.include_router(studies.router, dependencies=auth)
    _docs_routes(app, auth)
    app.add_middleware(_BodyLimit, limit=settings.max_upload_bytes)
    app.add_middleware(_SecurityHeaders)
    app.mount("/", StaticFiles(directory=STATIC_DIR, html=True), name="viewer")
    return app

"""Helpers of the service tests: a real uvicorn server in a thread, upload and poll functions."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from typing import Any

import httpx

# Tiny versions of the four default architectures: the analysis is real, only the networks are small.
TINY_UNTRAINED = {
    "lung": {"size": 64, "width": 0.0625},
    "bone": {"size": 64, "base_channels": 4, "depth": 3, "attention_level": 2},
    "classifier": {
        "size": 256,
        "growth_rate": 4,
        "block_config": (1, 1, 1, 1),
        "num_init_features": 8,
        "branch_blocks": 2,
    },
    "triage": {"size": 128, "growth_rate": 4, "block_config": (1, 1, 1, 1), "num_init_features": 8},
}
FINAL = {"done", "refused", "failed"}


class LiveServer:
    """uvicorn serving ``app`` in a thread on a free 127.0.0.1 port (lifespan included: store + worker)."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        self.app = app
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=5)
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self._sock]}, daemon=True)

    def start(self) -> LiveServer:
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(90)
        self._sock.close()
        assert not self._thread.is_alive(), "the test server did not stop"

    def client(self, **kw: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30, **kw)


def upload(client: httpx.Client, *paths: Path, lateral: str | None = None, **kw: Any) -> httpx.Response:
    files = [("files", (p.name, p.read_bytes(), "application/octet-stream")) for p in paths]
    data = {"lateral": lateral} if lateral is not None else None
    return client.post("/api/studies", files=files, data=data, **kw)


def wait_final(client: httpx.Client, study_id: str, timeout: float = 120.0, **kw: Any) -> dict[str, Any]:
    """Poll a study until it is done/refused/failed; returns its detail JSON."""
    deadline = time.monotonic() + timeout
    while True:
        body = client.get(f"/api/studies/{study_id}", **kw).json()
        if body["status"] in FINAL:
            return body
        if time.monotonic() > deadline:
            raise AssertionError(f"study {study_id} still {body['status']} after {timeout} s")
        time.sleep(0.2)

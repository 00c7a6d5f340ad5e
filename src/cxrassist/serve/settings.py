"""Configuration of the service, and the one safety rule that is checked before anything binds a socket.

The rule: a server reachable from other machines (any host that is not loopback) must require an API token
(``CXR_API_TOKEN``), because the studies it holds are medical images.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from cxrassist.errors import ServeConfigError

TOKEN_ENV = "CXR_API_TOKEN"
DATA_DIR_ENV = "CXR_DATA_DIR"
DEFAULT_MAX_UPLOAD_BYTES = 100 * 1024 * 1024
#: A study is one frontal radiograph and at most one lateral.
DEFAULT_MAX_FILES = 2
_LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"}


def default_data_dir() -> Path:
    """``$CXR_DATA_DIR``, else ``$XDG_DATA_HOME/cxrassist/serve`` (``~/.local/share/...``)."""
    if os.environ.get(DATA_DIR_ENV):
        return Path(os.environ[DATA_DIR_ENV]).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "cxrassist" / "serve"


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach (127.0.0.0/8, ::1, "localhost").

    The unspecified addresses (0.0.0.0, ::) and every other name count as reachable from outside.
    """
    name = host.strip().strip("[]").lower()
    if name in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Settings:
    """Everything ``create_app`` needs; ``from_env`` fills the token and data dir from the environment."""

    host: str = "127.0.0.1"
    port: int = 8000
    data_dir: Path = field(default_factory=default_data_dir)
    weights_dir: Path | None = None
    allow_untrained: bool = False
    api_token: str | None = None
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES
    max_files: int = DEFAULT_MAX_FILES
    #: Analysis threads. 0 = accept and queue uploads but analyse nothing (maintenance mode).
    workers: int = 1
    formats: tuple[str, ...] = ("json", "png")

    @classmethod
    def from_env(cls, **overrides: object) -> Settings:
        """Defaults, then ``CXR_API_TOKEN`` / ``CXR_DATA_DIR`` from the environment, then explicit overrides."""
        values: dict[str, object] = {}
        token = os.environ.get(TOKEN_ENV)
        if token:
            values["api_token"] = token
        values.update({k: v for k, v in overrides.items() if v is not None})
        if "data_dir" in values:
            values["data_dir"] = Path(str(values["data_dir"])).expanduser()
        if values.get("weights_dir") is not None:
            values["weights_dir"] = Path(str(values["weights_dir"])).expanduser()
        return cls(**values)  # type: ignore[arg-type]

    def with_(self, **changes: object) -> Settings:
        return replace(self, **changes)  # type: ignore[arg-type]

    @property
    def token_required(self) -> bool:
        return bool(self.api_token)

    def validate(self) -> Settings:
        """Refuse unsafe or impossible configurations with one line naming the problem."""
        if not is_loopback(self.host) and not self.api_token:
            raise ServeConfigError(
                f"refusing to listen on {self.host!r} without an API token: set {TOKEN_ENV} "
                "(clients then send 'Authorization: Bearer <token>'), or bind to 127.0.0.1"
            )
        if self.api_token is not None and len(self.api_token) < 16:
            raise ServeConfigError(f"{TOKEN_ENV} is too short ({len(self.api_token)} characters); use at least 16")
        if self.max_upload_bytes <= 0:
            raise ServeConfigError(f"max upload size must be > 0 bytes, got {self.max_upload_bytes}")
        if self.max_files < 1:
            raise ServeConfigError(f"max files per upload must be >= 1, got {self.max_files}")
        if self.workers < 0:
            raise ServeConfigError(f"workers must be >= 0, got {self.workers}")
        if not 0 <= self.port <= 65535:
            raise ServeConfigError(f"port must be in 0..65535, got {self.port}")
        return self

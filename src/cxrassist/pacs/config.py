"""Configuration of the PACS link and its checks (one line naming the problem, before any socket is bound)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from cxrassist.errors import ServeConfigError

STOW_TOKEN_ENV = "CXR_STOW_TOKEN"
DEFAULT_AE_TITLE = "CXRASSIST"
#: An AE title: 1-16 characters of the default character repertoire, no backslash, not only spaces (PS3.5 AE VR).
_AE = re.compile(r"^[\x20-\x5b\x5d-\x7e]{1,16}$")


def check_ae_title(value: str, what: str) -> str:
    """The AE title stripped of padding spaces, or ServeConfigError naming ``what``."""
    title = str(value).strip()
    if not title or not _AE.match(title):
        raise ServeConfigError(f"{what} {value!r} is not a DICOM AE title (1-16 printable ASCII characters, no '\\')")
    return title


@dataclass(frozen=True)
class DicomNode:
    """A DICOM application entity on the network: AE title, host, port."""

    ae_title: str
    host: str
    port: int

    @classmethod
    def parse(cls, spec: str) -> DicomNode:
        """``AET@HOST:PORT`` (e.g. ``ORTHANC@pacs.local:4242``) -> DicomNode."""
        match = re.fullmatch(r"(?P<aet>[^@]+)@(?P<host>\[[^\]]+\]|[^:]+):(?P<port>\d{1,5})", spec.strip())
        if match is None:
            raise ServeConfigError(f"destination {spec!r} is not AET@HOST:PORT (e.g. ORTHANC@127.0.0.1:4242)")
        port = int(match["port"])
        if not 1 <= port <= 65535:
            raise ServeConfigError(f"destination port must be in 1..65535, got {port}")
        return cls(check_ae_title(match["aet"], "destination AE title"), match["host"].strip("[]"), port)

    def __str__(self) -> str:
        return f"{self.ae_title}@{self.host}:{self.port}"


@dataclass(frozen=True)
class PacsConfig:
    """Everything the PACS link needs. ``validate()`` refuses impossible or unsafe settings."""

    port: int
    host: str = "127.0.0.1"
    ae_title: str = DEFAULT_AE_TITLE
    #: Calling AE titles allowed to associate (C-ECHO and C-STORE); every other one is rejected at association.
    allowed_aes: tuple[str, ...] = ()
    #: A study is complete (and analysed) once no instance of it arrived for this long.
    quiet_s: float = 5.0
    #: Where the SR and the SCs go (C-STORE SCU); None: not sent over DIMSE.
    destination: DicomNode | None = None
    #: DICOMweb base URL for STOW-RS (POST {url}/studies); None: no STOW.
    stow_url: str | None = None
    stow_token: str | None = field(default=None, repr=False)
    #: Back-off of the outbox: first retry after ``retry_base_s``, doubling up to ``retry_max_s``; a result that
    #: failed ``max_attempts`` times is given up (``failed``, logged).
    retry_base_s: float = 2.0
    retry_max_s: float = 300.0
    max_attempts: int = 100
    #: Instances kept per study (a chest study is 1-4 images; a CT pushed by mistake is refused instead of filling
    #: the disk).
    max_instances: int = 32
    #: Timeouts of the outgoing association / HTTP request (seconds).
    network_timeout_s: float = 30.0

    @classmethod
    def from_env(cls, **values: object) -> PacsConfig:
        """Explicit values, plus the STOW bearer token from ``CXR_STOW_TOKEN`` when set."""
        token = os.environ.get(STOW_TOKEN_ENV)
        if token and values.get("stow_token") is None:
            values["stow_token"] = token
        return cls(**{k: v for k, v in values.items() if v is not None})  # type: ignore[arg-type]

    @property
    def targets(self) -> tuple[str, ...]:
        """The outbox targets this configuration sends to: "dicom" (C-STORE) and/or "stow"."""
        return tuple(t for t, on in (("dicom", self.destination is not None), ("stow", bool(self.stow_url))) if on)

    def validate(self) -> PacsConfig:
        check_ae_title(self.ae_title, "our AE title (--dicom-aet)")
        if not 1 <= self.port <= 65535:
            raise ServeConfigError(f"DICOM port must be in 1..65535, got {self.port}")
        if not self.allowed_aes:
            raise ServeConfigError(
                "name the calling AE titles allowed to send studies (--dicom-allow AET, "
                "repeatable); the listener accepts no one else"
            )
        for ae in self.allowed_aes:
            check_ae_title(ae, "allowed calling AE title")
        if not 0 <= self.quiet_s <= 3600:
            raise ServeConfigError(f"quiet period must be 0..3600 s, got {self.quiet_s}")
        if self.stow_url is not None:
            parts = urlsplit(self.stow_url)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise ServeConfigError(f"STOW-RS URL {self.stow_url!r} is not an http(s) URL")
        if self.retry_base_s <= 0 or self.retry_max_s < self.retry_base_s:
            raise ServeConfigError("retry back-off must satisfy 0 < base <= max")
        if self.max_attempts < 1 or self.max_instances < 1:
            raise ServeConfigError("max attempts and max instances per study must be >= 1")
        return self

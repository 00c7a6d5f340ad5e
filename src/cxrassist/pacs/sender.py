"""Sending result files: C-STORE SCU to one AE (pynetdicom) and DICOMweb STOW-RS (httpx).

Both send the files of one study in one go (one association, one request) and report per file: ``None`` when the
receiver confirmed it, else one line saying why not. They raise nothing for a network or protocol failure: every
file then carries the reason, and the outbox retries.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from cxrassist.pacs.config import DicomNode

#: Called once per file as soon as its outcome is known (the outbox records it at once).
OnResult = Callable[[Path, "str | None"], None]


def _file_meta(path: Path) -> tuple[str, str, str]:
    """(SOP Class UID, SOP Instance UID, transfer syntax) from a Part-10 file's meta header."""
    from pydicom.filereader import read_file_meta_info

    meta = read_file_meta_info(path)
    return (str(meta.MediaStorageSOPClassUID), str(meta.MediaStorageSOPInstanceUID), str(meta.TransferSyntaxUID))


def cstore(node: DicomNode, calling_ae: str, files: list[Path], on_result: OnResult, timeout_s: float = 30.0) -> None:
    """Send ``files`` to ``node`` in one association; ``on_result(file, error_or_None)`` for each file.

    A compressed file (our SCs are JPEG-LS Lossless) is proposed in its own presentation context, beside an
    uncompressed one for its SOP class: it goes as written when the receiver accepts its transfer syntax, else it is
    decompressed here and sent uncompressed (same SOP Instance UID, same pixels). One context offering both would
    let the receiver pick the uncompressed syntax, and the file could then not be sent as it is.
    """
    from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian
    from pynetdicom import AE

    metas: dict[Path, tuple[str, str, str]] = {}
    for f in files:
        try:
            metas[f] = _file_meta(f)
        except Exception as exc:  # noqa: BLE001 - a result file we cannot read: it cannot be sent, say so
            on_result(f, f"cannot read the result file ({type(exc).__name__})")
    if not metas:
        return
    ae = AE(ae_title=calling_ae)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout_s
    ae.connection_timeout = timeout_s
    plain = [ExplicitVRLittleEndian, ImplicitVRLittleEndian]
    contexts: dict[tuple[str, tuple[str, ...]], None] = {}
    for sop_class, _, syntax in metas.values():
        if UID(syntax).is_compressed:
            contexts[(sop_class, (syntax,))] = None
            contexts[(sop_class, tuple(plain))] = None
        else:
            contexts[(sop_class, tuple(dict.fromkeys([syntax, *plain])))] = None
    for sop_class, syntaxes in contexts:
        ae.add_requested_context(sop_class, list(syntaxes))
    try:
        assoc = ae.associate(node.host, node.port, ae_title=node.ae_title)
    except Exception as exc:  # noqa: BLE001
        _all(metas, on_result, f"cannot associate with {node} ({type(exc).__name__})")
        return
    if not assoc.is_established:
        why = (
            "rejected the association (is our AE title declared there?)"
            if assoc.is_rejected
            else "unreachable, or it aborted the association"
        )
        _all(metas, on_result, f"{node} {why}")
        return
    accepted = {(str(c.abstract_syntax), str(c.transfer_syntax[0])) for c in assoc.accepted_contexts}
    try:
        for i, (f, (sop_class, _, syntax)) in enumerate(metas.items()):
            try:
                status = assoc.send_c_store(_as_accepted(f, sop_class, syntax, accepted))
            except Exception as exc:  # noqa: BLE001 - no accepted context for this SOP class / syntax, I/O...
                on_result(f, f"not sent to {node}: {type(exc).__name__}: {str(exc)[:200]}")
                continue
            code = getattr(status, "Status", None) if status else None
            if code is None:
                _all(dict(list(metas.items())[i:]), on_result, f"no answer from {node} (connection lost or timeout)")
                return
            if code == 0x0000 or 0xB000 <= code <= 0xBFFF:  # success, or a warning: the instance is stored
                on_result(f, None)
            else:
                on_result(f, f"{node} answered C-STORE status 0x{code:04X}")
    finally:
        if assoc.is_established:
            assoc.release()


def _as_accepted(path: Path, sop_class: str, syntax: str, accepted: set[tuple[str, str]]) -> Any:
    """The file itself when its transfer syntax was accepted; a compressed one the receiver did not accept as a
    decompressed dataset (Explicit VR Little Endian; pynetdicom converts it to Implicit if only that was accepted)."""
    from pydicom.uid import UID

    if (sop_class, syntax) in accepted or not UID(syntax).is_compressed:
        return path
    import pydicom

    ds = pydicom.dcmread(path)
    ds.decompress()
    return ds


def _all(files: dict[Path, Any], on_result: OnResult, error: str) -> None:
    for f in files:
        on_result(f, error)


def stow(url: str, files: list[Path], on_result: OnResult, token: str | None = None, timeout_s: float = 30.0) -> None:
    """POST ``files`` to ``{url}/studies`` as one multipart/related request (PS3.18 STOW-RS)."""
    import httpx

    boundary = uuid.uuid4().hex
    sop_uids: dict[Path, str] = {}
    for f in files:
        try:
            sop_uids[f] = _file_meta(f)[1]
        except Exception as exc:  # noqa: BLE001
            on_result(f, f"cannot read the result file ({type(exc).__name__})")
    if not sop_uids:
        return

    def body() -> Iterator[bytes]:
        for f in sop_uids:
            yield f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
            yield f.read_bytes()
            yield b"\r\n"
        yield f"--{boundary}--\r\n".encode()

    headers = {
        "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
        "Accept": "application/dicom+json",
    }
    if token:
        headers["Authorization"] = f"Bearer {token}"
    target = url.rstrip("/") + "/studies"
    try:
        with httpx.Client(timeout=timeout_s) as client:
            response = client.post(target, content=body(), headers=headers)
    except httpx.HTTPError as exc:
        _all(sop_uids, on_result, f"STOW-RS to {_safe_url(url)} failed ({type(exc).__name__})")
        return
    stored, failed = _stow_outcome(response)
    for f, uid in sop_uids.items():
        if uid in failed:
            on_result(f, f"STOW-RS refused the instance (failure reason {failed[uid]})")
        elif uid in stored or (response.status_code == 200 and not stored and not failed):
            on_result(f, None)
        else:
            on_result(f, f"STOW-RS to {_safe_url(url)} answered HTTP {response.status_code}")


def _stow_outcome(response: Any) -> tuple[set[str], dict[str, str]]:
    """SOP Instance UIDs the STOW-RS answer lists as stored (ReferencedSOPSequence) and as failed (with reason)."""
    if response.status_code not in (200, 202, 409):
        return set(), {}
    try:
        body = response.json()
    except (json.JSONDecodeError, ValueError):
        return set(), {}
    if isinstance(body, list):
        body = body[0] if body else {}
    if not isinstance(body, dict):
        return set(), {}

    def items(tag: str) -> list[dict[str, Any]]:
        value = (body.get(tag) or {}).get("Value") or []
        return [v for v in value if isinstance(v, dict)]

    def uid(item: dict[str, Any]) -> str | None:
        values = (item.get("00081155") or {}).get("Value") or []
        return str(values[0]) if values else None

    stored = {u for u in (uid(i) for i in items("00081199")) if u}
    failed = {}
    for item in items("00081198"):
        u = uid(item)
        if u:
            reason = ((item.get("00081197") or {}).get("Value") or ["?"])[0]
            failed[u] = f"0x{reason:04X}" if isinstance(reason, int) else str(reason)
    return stored, failed


def _safe_url(url: str) -> str:
    """The URL without credentials (never logged)."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))

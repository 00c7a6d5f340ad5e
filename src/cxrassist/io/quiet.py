"""Keep what the image libraries say about a file's header out of stderr and the logs.

Why: pydicom reports a malformed header with warnings that quote the raw value (``Invalid value for VR UI:
b'...'``); in a corrupt file that value can hold the patient's name, ID or birth date, and a fuzzed header can emit
thousands of them. pydicom sends each one twice: ``warnings.warn`` and the ``pydicom`` logger (which, without a
handler of its own, reaches stderr or the server log through the root logger).

What this module does, once, when :func:`install` is first called (no work at import):
- a ``warnings.showwarning`` hook that takes over the warnings raised inside pydicom and Pillow: while a
  :func:`collecting` block is open in the current thread they are counted there (text reduced to what is wrong,
  never the value); outside one they are logged at DEBUG, reduced the same way. Every other warning goes to the
  previous hook unchanged.
- a filter on the ``pydicom`` logger that reduces every record the same way and drops the repeats of a read.

Thread-safe: the hook is installed once under a lock and never swapped back (``warnings.catch_warnings`` is not
thread-safe); the collector is per thread.
"""

from __future__ import annotations

import logging
import re
import threading
import warnings
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

log = logging.getLogger(__name__)

#: Distinct notes kept per read (the rest are only counted), and the longest note.
MAX_NOTES = 8
MAX_NOTE_CHARS = 100
#: Path fragments of the libraries whose warnings describe the file being read.
_LIBRARY_PATHS = ("/pydicom/", "\\pydicom\\", "/PIL/", "\\PIL\\")

_install_lock = threading.Lock()
_installed = False
_hook: Any = None
_local = threading.local()
_VALUE_START = re.compile(r"[:'\"=]|\bb'|\bb\"")
_LONG_NUMBER = re.compile(r"\d{7,}")
_SPACES = re.compile(r"\s+")
_TAG = re.compile(r"\([0-9A-Fa-f]{4}, ?[0-9A-Fa-f]{4}\)")


def reduce_message(text: Any) -> str:
    """The part of a library message that says what is wrong, without the value it quotes.

    Cut at the first ``:``, quote or ``=`` (pydicom puts the offending value after them), long digit runs masked,
    one line, at most MAX_NOTE_CHARS characters. "Invalid value for VR UI: b'..'" -> "Invalid value for VR UI".
    """
    full = _SPACES.sub(" ", str(text)).strip()
    match = _VALUE_START.search(full)
    line = full[: match.start()] if match else full
    line = _LONG_NUMBER.sub("N", line).strip(" .,;-(")[:MAX_NOTE_CHARS].rstrip() or "malformed value"
    tags = [t for t in dict.fromkeys(m.group(0).replace(" ", "") for m in _TAG.finditer(full)) if t not in line]
    return line + (f" in {', '.join(tags[:2])}" if tags else "")


class ReadNotes:
    """The reduced warnings of one read: distinct texts with their counts."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.total = 0

    def add(self, text: Any) -> None:
        self.total += 1
        note = reduce_message(text)
        if note in self.counts or len(self.counts) < MAX_NOTES:
            self.counts[note] += 1

    def summary(self) -> list[str]:
        """One short line per distinct problem, with a repeat count; the number left out at the end."""
        out = [f"{text} (x{n})" if n > 1 else text for text, n in self.counts.most_common()]
        listed = sum(self.counts.values())
        if self.total > listed:
            out.append(f"{self.total - listed} more warning(s) of other kinds")
        return out


@contextmanager
def collecting() -> Iterator[ReadNotes]:
    """Count, in this thread, the library warnings raised inside the block (see module docstring)."""
    install()
    previous = getattr(_local, "notes", None)
    notes = ReadNotes()
    _local.notes = notes
    try:
        yield notes
    finally:
        _local.notes = previous


def _from_library(filename: str) -> bool:
    return any(part in (filename or "") for part in _LIBRARY_PATHS)


def _route(
    message: Any, category: type[Warning], filename: str, lineno: int, file: Any = None, line: str | None = None
) -> bool:
    """True when the warning was taken care of here (a library warning about a file)."""
    if not _from_library(filename):
        return False
    notes: ReadNotes | None = getattr(_local, "notes", None)
    if notes is not None:
        notes.add(message)
    else:
        log.debug("%s: %s", category.__name__, reduce_message(message))
    return True


class _PydicomLogFilter(logging.Filter):
    """Reduce every pydicom log record to what is wrong; inside a read the warnings path already counts it."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            text = record.getMessage()
        except Exception:  # noqa: BLE001 - a malformed record: say nothing of its content
            text = "unreadable log record"
        if getattr(_local, "notes", None) is not None and record.levelno <= logging.WARNING:
            return False  # counted by the warnings hook; never printed
        record.msg, record.args = reduce_message(text), ()
        return True


def install() -> None:
    """Install the warnings hook and the pydicom log filter (idempotent, thread-safe, cheap)."""
    global _installed, _hook
    if _installed:
        return
    with _install_lock:
        if _installed:
            return
        previous = warnings.showwarning

        def showwarning(
            message: Any, category: type[Warning], filename: str, lineno: int, file: Any = None, line: str | None = None
        ) -> None:
            if not _route(message, category, filename, lineno, file, line):
                previous(message, category, filename, lineno, file, line)

        showwarning.__cxrassist_quiet__ = True  # type: ignore[attr-defined]
        warnings.showwarning = _hook = showwarning
        logging.getLogger("pydicom").addFilter(_PydicomLogFilter())
        _installed = True


def hook_installed() -> bool:
    """Whether :func:`install` has run in this process (tests)."""
    return _installed


def showwarning_hook() -> Any:
    """The hook :func:`install` put in place (tests re-install it inside pytest's own warning capture)."""
    install()
    return _hook

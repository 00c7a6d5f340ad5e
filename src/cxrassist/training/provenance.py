"""Where a run came from: git revision, command line, package version (saved with the run and in model cards)."""

from __future__ import annotations

import datetime as _dt
import subprocess
import sys
from pathlib import Path
from typing import Any

from cxrassist._version import __version__


def git_revision() -> str | None:
    """``<sha>`` or ``<sha>-dirty`` of the source tree this package runs from; None outside a git checkout."""
    here = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        if sha.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=10,
        )
        return sha.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def command_line(command: str | None = None) -> str:
    """The given command, else this process's argv as a ``cxr ...`` line."""
    if command:
        return command
    return " ".join(["cxr", *sys.argv[1:]])


def run_info(command: str | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "git_revision": git_revision(),
        "code_version": __version__,
        "command": command_line(command),
        "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        **extra,
    }

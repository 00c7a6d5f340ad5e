"""The ``cxr`` command. Thin: parse arguments, call the library, print the result.

Each command lives in its own module with a ``register(app)`` function; heavy imports (torch, pydicom) happen
inside the command functions so that ``cxr --help`` stays fast.
"""

from __future__ import annotations

import importlib
import logging
import sys

import typer

from cxrassist._version import __version__
from cxrassist.errors import CxrError

app = typer.Typer(
    name="cxr",
    no_args_is_help=True,
    add_completion=False,
    help="cxrassist: chest X-ray decision support for qualified readers (not a diagnosis).",
)

# Command modules, in the order they appear in --help. A module that is missing is skipped, so the shell works
# while features land one by one.
_COMMAND_MODULES = ("info", "analyze", "batch", "models", "train", "evaluate", "serve")

_state = {"debug": False}


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"cxrassist {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version_callback, is_eager=True, help="Print the version."
    ),
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks and debug logs."),
) -> None:
    """cxrassist: chest X-ray decision support for qualified readers (not a diagnosis)."""
    _state["debug"] = debug
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


def _register_commands() -> None:
    for name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(f"cxrassist.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"cxrassist.cli.{name}":
                continue
            raise
        module.register(app)


_register_commands()


def main(argv: list[str] | None = None) -> None:
    """Console entry point: known errors become one line on stderr and a non-zero exit code."""
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    from cxrassist.io.quiet import install

    install()  # pydicom's warnings quote header values (patient names): counted, never printed (io/quiet.py)
    try:
        app(args=args, standalone_mode=False)
    except CxrError as exc:
        if debug:
            raise
        typer.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        typer.echo("aborted", err=True)
        sys.exit(130)
    except Exception as exc:
        import click

        if isinstance(exc, click.exceptions.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        if isinstance(exc, click.exceptions.Exit):
            sys.exit(exc.exit_code)
        if debug:
            raise
        typer.echo(f"error: unexpected {type(exc).__name__}: {exc} (run with --debug for the traceback)", err=True)
        sys.exit(1)

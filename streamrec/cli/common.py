"""Helpers every command module shares: the consoles, failing with one clear line,
and getting the settings object the app callback built."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from streamrec.config import InvalidSettings, Settings, load_settings, unknown_variables

#: Errors go to stderr and never wrap: off a terminal rich would fold them at 80 columns,
#: splitting one-line errors across lines in logs and captured output.
console = Console(stderr=True, soft_wrap=True)

#: Width of tables printed off a terminal (rich's default there is 80 columns, which folds
#: every cell of a wide table and breaks `streamrec settings | grep NAME`).
PIPED_WIDTH = 240


def stdout_console() -> Console:
    """A console for tables on stdout: the terminal's width, or a wide one off a terminal."""
    return Console(width=None if sys.stdout.isatty() else PIPED_WIDTH)


def error(message: str) -> None:
    """Print one error line; the message is plain text (brackets in it stay as they are)."""
    console.print(f"[bold red]error:[/] {escape(message)}", highlight=False)


def fail(message: str, code: int = 1) -> NoReturn:
    """Print a one-line error and exit non-zero; no traceback for expected failures."""
    error(message)
    raise typer.Exit(code)


def warn(message: str) -> None:
    """Print a one-line warning (the command goes on)."""
    console.print(f"[yellow]warning:[/] {escape(message)}", highlight=False)


def about(path: Path, exc: BaseException) -> str:
    """``PATH: reason`` for an error about one file, without naming the file twice."""
    text = str(exc)
    return text if text.startswith(str(path)) else f"{path}: {text}"


def read_settings() -> Settings:
    """The settings from the environment (and ``.env``): a warning per ``STREAMREC_*``
    variable that is no setting, and one error line per bad value (exit 1) instead of a
    validation dump."""
    for line in unknown_variables():
        warn(line)
    try:
        return load_settings()
    except InvalidSettings as exc:
        for line in exc.lines:
            error(line)
        raise typer.Exit(1) from None


def settings_of(ctx: typer.Context) -> Settings:
    """The settings the app callback read for this invocation."""
    root = ctx.find_root()
    if not isinstance(root.obj, Settings):  # a command invoked without the app callback
        root.obj = read_settings()
    return root.obj

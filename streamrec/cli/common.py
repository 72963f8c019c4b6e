"""Helpers every command module shares: the console, failing with one clear line,
and getting the settings object the app callback built."""

from __future__ import annotations

from typing import NoReturn

import typer
from rich.console import Console

from streamrec.config import Settings

#: Errors go to stderr and never wrap: off a terminal rich would fold them at 80 columns,
#: splitting one-line errors across lines in logs and captured output.
console = Console(stderr=True, soft_wrap=True)


def fail(message: str, code: int = 1) -> NoReturn:
    """Print a one-line error and exit non-zero; no traceback for expected failures."""
    console.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


def settings_of(ctx: typer.Context) -> Settings:
    """The settings the app callback read for this invocation."""
    root = ctx.find_root()
    if not isinstance(root.obj, Settings):  # a command invoked without the app callback
        root.obj = Settings()
    return root.obj

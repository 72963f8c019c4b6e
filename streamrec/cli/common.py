"""Helpers every command module shares: the console, failing with one clear line,
and getting the settings object the app callback built."""

from __future__ import annotations

from typing import NoReturn

import typer
from rich.console import Console

from streamrec.config import Settings

console = Console(stderr=True)


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

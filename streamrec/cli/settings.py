"""``streamrec settings``: every setting with its environment variable, default and meaning."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from streamrec.cli.common import settings_of, stdout_console
from streamrec.config import Settings

#: What a secret setting (SASL password, HTTP token) shows, set or not.
MASK = "********"


def shown(value: Any) -> str:
    """A value as it is written in the environment (a list as ``64,32``)."""
    if value is None:
        return ""
    if isinstance(value, tuple | list):
        return ",".join(map(str, value))
    return str(value)


def settings_rows() -> list[tuple[str, str, str]]:
    """(environment variable, default, description) for every field of ``Settings``."""
    rows = []
    for name, field in Settings.model_fields.items():
        default = field.get_default(call_default_factory=True)
        text = (
            MASK if Settings.is_secret(name) else shown(default).replace(str(Path.home()), "~", 1)
        )
        rows.append((f"STREAMREC_{name.upper()}", text, field.description or ""))
    return rows


def markdown_table() -> str:
    """The README's settings table."""
    lines = ["| variable | default | meaning |", "| --- | --- | --- |"]
    lines += [f"| `{var}` | `{default}` | {desc} |" for var, default, desc in settings_rows()]
    return "\n".join(lines)


def show(
    ctx: typer.Context,
    markdown: bool = typer.Option(False, "--markdown", help="Print the README's markdown table."),
) -> None:
    """Show every setting: environment variable, default, current value and meaning."""
    if markdown:
        print(markdown_table())
        return
    current = settings_of(ctx)
    table = Table(title="streamrec settings (environment prefix STREAMREC_)")
    for column in ("variable", "default", "current", "meaning"):
        table.add_column(column, overflow="fold")
    for (var, default, desc), name in zip(settings_rows(), Settings.model_fields, strict=True):
        value = getattr(current, name)
        table.add_row(var, default, MASK if Settings.is_secret(name) else shown(value), desc)
    stdout_console().print(table)

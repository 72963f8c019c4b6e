"""Keep the README's generated blocks (command list, settings table) in step with the code.

``python -m streamrec.cli.readme`` rewrites the blocks between ``<!-- NAME:start -->`` and
``<!-- NAME:end -->``; ``tests/test_docs.py`` fails when they are stale, so a new setting
or command cannot land undocumented.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import typer.main

from streamrec.cli.settings import markdown_table

README = Path(__file__).resolve().parents[2] / "README.md"


def command_table() -> str:
    """Markdown table of every command and subcommand with its one-line help."""
    from streamrec.cli import app

    rows = ["| command | what it does |", "| --- | --- |"]

    def walk(group: typer.main.TyperGroup | typer.main.TyperCommand, prefix: str) -> None:
        commands = getattr(group, "commands", None)
        if commands is None:
            summary = " ".join((group.help or "").strip().split("\n\n")[0].split())
            rows.append(f"| `{prefix}` | {summary} |")
            return
        for name in sorted(commands):
            walk(commands[name], f"{prefix} {name}")

    walk(typer.main.get_command(app), "streamrec")  # type: ignore[arg-type]
    return "\n".join(rows)


def blocks() -> dict[str, str]:
    """The generated README blocks by marker name."""
    return {"commands": command_table(), "settings": markdown_table()}


def render(text: str) -> str:
    """``text`` with every generated block replaced by its current content."""
    for name, body in blocks().items():
        pattern = re.compile(rf"(<!-- {name}:start -->\n).*?(<!-- {name}:end -->)", re.S)
        if not pattern.search(text):
            raise ValueError(f"README has no '{name}' block markers")
        text = pattern.sub(lambda m: f"{m.group(1)}{body}\n{m.group(2)}", text)  # noqa: B023
    return text


def main() -> int:
    """Rewrite README.md in place."""
    README.write_text(render(README.read_text()))
    print(f"updated {README}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

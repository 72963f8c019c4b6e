"""The ``streamrec`` command line.

One typer app; each command group lives in its own module of this package and is
registered below. Heavy libraries (faiss, onnxruntime, torch) are imported inside the
commands that need them, so ``streamrec --help`` stays instant.
"""

from __future__ import annotations

import typer

from streamrec.cli import data as data_cmd
from streamrec.cli import evaluate as evaluate_cmd
from streamrec.cli import index as index_cmd
from streamrec.cli import kafka as kafka_cmd
from streamrec.cli import live as live_cmd
from streamrec.cli import settings as settings_cmd
from streamrec.cli import stream as stream_cmd
from streamrec.cli import train as train_cmd
from streamrec.cli import worker as worker_cmd
from streamrec.cli.common import console, read_settings

app = typer.Typer(
    name="streamrec",
    help="Real-time streaming personalization: Kafka events in, fresh recommendations out.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_show_locals=False,
)


@app.callback()
def _load_settings(ctx: typer.Context) -> None:
    """Read the settings once (environment, prefix STREAMREC_, or .env) for every command."""
    ctx.obj = read_settings()


app.command("settings")(settings_cmd.show)
app.command("worker")(worker_cmd.run)
app.add_typer(kafka_cmd.app, name="kafka")
app.add_typer(kafka_cmd.topics_app, name="topics")
app.add_typer(index_cmd.app, name="index")
app.add_typer(data_cmd.app, name="data")
app.command("replay")(stream_cmd.replay)
app.command("record")(stream_cmd.record)
app.command("import")(stream_cmd.import_)
app.command("train")(train_cmd.train)
app.command("evaluate")(evaluate_cmd.evaluate)
app.command("live-report")(live_cmd.live_report)


def main() -> None:
    """Console-script entry point."""
    app()


__all__ = ["app", "console", "main"]

"""``streamrec kafka start|stop|status`` and ``streamrec topics create``.

The local broker is Apache Kafka assembled from Maven Central and run on 127.0.0.1 (see
:mod:`streamrec.localkafka`); with ``STREAMREC_KAFKA_BOOTSTRAP`` set, these commands start
and stop nothing and report on that cluster instead.
"""

from __future__ import annotations

import typer
from rich.markup import escape

from streamrec.cli.common import console, fail, settings_of
from streamrec.localkafka import KafkaStatus, LocalKafka, LocalKafkaError

app = typer.Typer(
    help="Run streamrec's own single-node Kafka (KRaft) on 127.0.0.1, or report on the "
    "cluster named by STREAMREC_KAFKA_BOOTSTRAP.",
    no_args_is_help=True,
)
topics_app = typer.Typer(help="Manage streamrec's Kafka topics.", no_args_is_help=True)

#: Exit code of ``kafka status`` for a stopped broker (the LSB code for "not running").
EXIT_NOT_RUNNING = 3


def _say(status: KafkaStatus, verb: str = "") -> None:
    """Print the status line to stdout (scripts read it), with an optional leading verb."""
    line = status.describe()
    typer.echo(f"{verb} {line}".strip() if verb else line)


@app.command()
def start(ctx: typer.Context) -> None:
    """Start the local broker (download Kafka on first use, format storage once) and wait
    until it answers; harmless when it is already running."""
    broker = LocalKafka(settings_of(ctx))
    if broker.external:
        _say(broker.status(), "nothing to start:")
        return
    try:
        with console.status("starting Kafka") as spinner:
            status = broker.start(on_step=lambda step: spinner.update(escape(step)))
    except LocalKafkaError as exc:
        fail(str(exc))
    _say(status, "already" if status.already_running else "")


@app.command()
def stop(ctx: typer.Context) -> None:
    """Stop the local broker cleanly and wait until it has exited."""
    broker = LocalKafka(settings_of(ctx))
    if broker.external:
        _say(broker.status(), "nothing to stop:")
        return
    was_running = broker.pid() is not None
    with console.status("stopping Kafka"):
        status = broker.stop()
    _say(status, "" if was_running else "already")


@app.command()
def status(ctx: typer.Context) -> None:
    """Say whether the broker runs and where (bootstrap, pid, log, data); exit code 3 when
    stopped or, for an external cluster, when it does not answer."""
    current = LocalKafka(settings_of(ctx)).status()
    _say(current)
    if not current.running:
        raise typer.Exit(EXIT_NOT_RUNNING)


@topics_app.command("create")
def create(ctx: typer.Context) -> None:
    """Create the events, items, recommendations and DLQ topics (names and partition count
    from the settings); existing ones are left as they are."""
    from kafka.errors import KafkaError

    from streamrec.streams.connection import KafkaConnectError
    from streamrec.streams.topics import TopicCreationError, create_app_topics

    settings = settings_of(ctx)
    try:
        with console.status(f"creating topics on {settings.bootstrap_servers}"):
            results = create_app_topics(settings)
    except KafkaConnectError as exc:
        fail(escape(str(exc)))
    except (KafkaError, TopicCreationError) as exc:
        fail(f"cannot create topics on {settings.bootstrap_servers}: {exc}")
    for topic in results:
        state = "created" if topic.created else "exists"
        typer.echo(f"{topic.name}: {state} ({topic.partitions} partitions)")

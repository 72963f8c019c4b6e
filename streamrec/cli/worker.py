"""``streamrec worker``: run one stream-processing worker (Faust) in the foreground.

Start as many as there are partitions, on one host or many: workers with the same app
id share the partitions of ``events`` and each serves HTTP on its own port.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from streamrec.cli.common import console, fail, settings_of

#: Libraries that size thread pools from these at import time; one compute thread per
#: worker process (DESIGN.md "Speed"), scale out with processes and partitions.
_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def run(
    ctx: typer.Context,
    artifacts: Annotated[
        Path | None, typer.Option(help="Artifacts directory of `streamrec train` (index + model).")
    ] = None,
    web_port: Annotated[int | None, typer.Option(help="HTTP port of this worker.")] = None,
    app_id: Annotated[
        str | None,
        typer.Option(help="Faust app id (consumer group); workers with one id share the work."),
    ] = None,
    data_dir: Annotated[
        Path | None, typer.Option(help="Where this worker keeps its RocksDB tables.")
    ] = None,
    create_topics: Annotated[
        bool, typer.Option(help="Create missing streamrec topics before starting.")
    ] = True,
    loglevel: Annotated[str, typer.Option(help="Faust log level.")] = "warning",
) -> None:
    """Consume events, emit fresh recommendations, serve them over HTTP (Ctrl-C stops)."""
    settings = settings_of(ctx)
    updates = {
        "worker_artifacts_dir": artifacts,
        "worker_web_port": web_port,
        "worker_app_id": app_id,
        "worker_data_dir": data_dir,
    }
    settings = settings.model_copy(update={k: v for k, v in updates.items() if v is not None})
    if not (settings.worker_artifacts_dir / "index").is_dir():
        fail(f"{settings.worker_artifacts_dir}: no index/ (run `streamrec train` first)")
    for var in _THREAD_VARS:
        os.environ.setdefault(var, str(settings.engine_threads))

    import faust
    from kafka.errors import KafkaError

    from streamrec.streams.app import create_app
    from streamrec.streams.connection import KafkaConnectError
    from streamrec.streams.topics import (
        TopicCreationError,
        admin_client,
        create_app_topics,
        describe_topics,
    )

    try:
        app = create_app(settings)  # creates the tables' changelog topics as it starts
        if create_topics:
            create_app_topics(settings)
        with admin_client(settings.kafka_connection) as admin:
            found = describe_topics(admin, [settings.topic_events]).get(settings.topic_events)
    except KafkaConnectError as exc:
        fail(escape(str(exc)))
    except (TopicCreationError, KafkaError, OSError) as exc:
        fail(f"cannot reach or set up topics on {settings.bootstrap_servers}: {exc}")
    if found != settings.partitions:
        fail(
            f"topic {settings.topic_events!r} has {found or 'no'} partitions but "
            f"STREAMREC_PARTITIONS is {settings.partitions}: they must match"
        )
    console.print(
        f"worker [bold]{settings.worker_app_id}[/] on {settings.bootstrap_servers}, "
        f"HTTP on {settings.worker_web_host}:{settings.worker_web_port}, "
        f"artifacts {settings.worker_artifacts_dir}",
        highlight=False,
    )
    faust.Worker(app, loglevel=loglevel.upper(), quiet=True).execute_from_commandline()

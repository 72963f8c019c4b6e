"""``streamrec worker``: run one stream-processing worker (Faust) in the foreground.

Start as many as there are partitions, on one host or many: workers with the same app
id share the partitions of ``events`` and each serves HTTP on its own port.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from streamrec.cli.common import console, fail, settings_of, warn
from streamrec.config import Settings

if TYPE_CHECKING:
    import faust

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
    allow_failed_model: Annotated[
        bool,
        typer.Option(
            "--allow-failed-model",
            help="Serve a reranker whose training missed its gate or used another update "
            "rule, with a warning (STREAMREC_ALLOW_FAILED_MODEL); without it the worker "
            "refuses to start.",
        ),
    ] = False,
) -> None:
    """Consume events, emit fresh recommendations, serve them over HTTP (Ctrl-C stops)."""
    settings = settings_of(ctx)
    updates = {
        "worker_artifacts_dir": artifacts,
        "worker_web_port": web_port,
        "worker_app_id": app_id,
        "worker_data_dir": data_dir,
        "allow_failed_model": allow_failed_model or None,
    }
    settings = settings.model_copy(update={k: v for k, v in updates.items() if v is not None})
    check_artifacts(settings)
    for var in _THREAD_VARS:
        os.environ.setdefault(var, str(settings.engine_threads))

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
    faust_worker(app, loglevel).execute_from_commandline()


def faust_worker(app: faust.App, loglevel: str) -> faust.Worker:
    """Faust's worker for ``app``, without its progress spinner off a terminal: the spinner
    writes cursor escapes (``ESC[?25l``) into logs and captured output."""
    import faust

    worker = faust.Worker(app, loglevel=loglevel.upper(), quiet=True)
    if not sys.stdout.isatty():
        worker.spinner = None
    return worker


def check_artifacts(settings: Settings) -> None:
    """Fail in one line, before anything starts, when the artifacts cannot serve: inside
    Faust a missing index file crashes every agent, each with its own traceback."""
    from streamrec.index.persist import INDEX_FILE, META_FILE, ROWS_FILE, read_meta
    from streamrec.streams.core.artifacts import Artifacts

    artifacts = settings.worker_artifacts_dir
    index_dir = Artifacts(artifacts).index
    make = (
        f"make it with `streamrec train --events FILE --out {artifacts}` (or just the index: "
        f"`streamrec index build --vectors FILE --out {index_dir}`)"
    )
    if not artifacts.is_dir():
        fail(f"{artifacts}: no such artifacts directory; {make}")
    for name in (META_FILE, INDEX_FILE, ROWS_FILE):
        if not (index_dir / name).is_file():
            fail(f"{index_dir / name}: missing, the worker needs a saved index; {make}")
    try:
        read_meta(index_dir)
    except json.JSONDecodeError as exc:
        fail(f"{index_dir / META_FILE}: not JSON ({exc}); {make}")
    except ValueError as exc:  # another format or version
        fail(f"{exc}; {make}")
    reranker = Artifacts(artifacts).for_rule(settings.engine_rule).model(settings.engine_reranker)
    if reranker is not None and not reranker.is_file():
        warn(
            f"{reranker}: no such reranker, serving in retrieval "
            "order (STREAMREC_ENGINE_RERANKER names the file)"
        )
    check_served_model(settings)


def check_served_model(settings: Settings) -> None:
    """Refuse in one line a reranker (the worker's or an A/B variant's) whose training run
    missed its gate or that was trained for another update rule than the one it would
    rerank for, unless ``allow_failed_model`` (then one warning line)."""
    from streamrec.streams.core.artifacts import Artifacts
    from streamrec.streams.core.loader import FailedModelError, check_gate

    artifacts = settings.worker_artifacts_dir
    served = [(settings.engine_reranker, settings.engine_rule)] + [
        (
            settings.engine_reranker if v.reranker is None else v.reranker,
            str(v.engine.get("rule", settings.engine_rule)),
        )
        for v in settings.variants
    ]
    rules = [
        rule
        for name, rule in served
        if (file := Artifacts(artifacts).for_rule(rule).model(name)) is not None and file.is_file()
    ]
    if not rules:
        return  # retrieval order only: no trained model is served
    try:
        check_gate(artifacts, settings.allow_failed_model, warn=warn, rules=rules)
    except FailedModelError as exc:
        fail(str(exc))

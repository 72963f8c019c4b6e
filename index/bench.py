"""``streamrec index bench``: build each index kind on a synthetic catalog and measure it.

Figures, not asserts: recall@k against exact search, per-query latency at batch 1, and
throughput in micro-batches (the way the engine calls it). Pin threads before calling
(the CLI does) so numbers mean "per worker core". Wall-clock figures are what the issue
asks for; on a shared machine they include waiting for a CPU, so the process CPU time
(``cpu_*``) and the load average are printed beside them.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import faiss
import numpy as np

from streamrec.index.candidate import build_index
from streamrec.index.synthetic import clustered_catalog, queries_near

Report = Callable[[str], None]


def exact_topk(vectors: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Row numbers of the true top-k by inner product (faiss brute force, BLAS)."""
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(vectors)
    return index.search(queries, k)[1]


def recall(found: Sequence[Sequence[str]], truth_rows: np.ndarray, ids: Sequence[str]) -> float:
    """Mean share of the true top-k ids that a search returned."""
    k = truth_rows.shape[1]
    hits = sum(len(set(f) & {ids[r] for r in t}) for f, t in zip(found, truth_rows, strict=True))
    return hits / (k * len(found))


def run_bench(
    items: int,
    dim: int,
    n_queries: int,
    *,
    batch: int = 64,
    kinds: Sequence[str] = ("flat", "hnsw", "ivf"),
    k: int = 200,
    device: str = "auto",
    seed: int = 0,
    latency_queries: int = 1000,
    params: dict[str, Any] | None = None,
    report: Report | None = None,
) -> Iterator[dict[str, Any]]:
    """Yield one figures dict per index kind (built one after another, freed in between)."""
    say = report or (lambda _msg: None)
    say(f"generating {items} x {dim} clustered catalog (seed {seed})")
    ids, vectors = clustered_catalog(items, dim, seed=seed)
    queries = queries_near(vectors, n_queries, seed=seed + 1)
    say("exact top-k for recall")
    truth = exact_topk(vectors, queries, k)
    for kind in kinds:
        say(f"building {kind}")
        t0 = time.perf_counter()
        index = build_index(ids, vectors, kind=kind, device=device, **(params or {}))
        build_s = time.perf_counter() - t0
        say(f"measuring {kind} on {index.device}")
        lat, cpu_lat = [], []
        for i in range(min(latency_queries, n_queries)):
            t, c = time.perf_counter(), time.process_time()
            index.search(queries[i : i + 1], k)
            lat.append((time.perf_counter() - t) * 1000)
            cpu_lat.append((time.process_time() - c) * 1000)
        found: list[list[str]] = []
        t0, c0 = time.perf_counter(), time.process_time()
        for start in range(0, n_queries, batch):
            found.extend(index.search(queries[start : start + batch], k).ids)
        batched_s, batched_cpu_s = time.perf_counter() - t0, time.process_time() - c0
        yield {
            "kind": kind,
            "device": index.device,
            "items": items,
            "dim": dim,
            "k": k,
            "build_s": round(build_s, 2),
            f"recall_at_{k}": round(recall(found, truth, ids), 4),
            "p50_ms": round(float(np.percentile(lat, 50)), 4),
            "p99_ms": round(float(np.percentile(lat, 99)), 4),
            "batch": batch,
            "qps_batch": round(n_queries / batched_s, 1),
            "ms_per_query_batch": round(batched_s * 1000 / n_queries, 4),
            # CPU time of this process: what the figures would be on a core of its own
            # (on a shared machine wall time also counts waiting for the CPU)
            "cpu_p50_ms": round(float(np.percentile(cpu_lat, 50)), 4),
            "cpu_ms_per_query_batch": round(batched_cpu_s * 1000 / n_queries, 4),
            "load_avg_1m": round(os.getloadavg()[0], 2),
            "params": _kind_params(index.params.to_dict(), kind),
        }
        del index


def _kind_params(all_params: dict[str, Any], kind: str) -> dict[str, Any]:
    """The parameters that shaped this kind (for the record next to its figures)."""
    return {k: v for k, v in all_params.items() if k.startswith(kind) or k == "blas_threshold"}

"""Index tuned on real catalogs: recall@200 and CPU cost per query of IVF-Flat, IVF-SQ8 and
IVF fast-scan PQ with a flat refine (and HNSW) at a sweep of nprobe / efSearch, side by side
in one run, on ML-1M item embeddings and on ``make bench``'s synthetic 1M catalog.

Per catalog every IVF variant shares one coarse quantizer (``nlist`` as the engine picks it,
:func:`streamrec.index.backends.ivf_nlist`) and one assignment of the items to lists, so the
variants differ only in how a list stores its vectors. Queries are the ones the engine
itself searches with (users' embeddings): the catalog's engine replays a stream (ML-1M: the
held-out 20 %; synthetic: its own event stream), warmed up on ``--warmup`` events, and its
index searches are recorded (:class:`loadtest.floor.CallRecorder`); items plus noise
(:func:`streamrec.index.synthetic.queries_near`) for a bare ``.npz``. Recall is against
exact inner-product search; cost is this process's CPU milliseconds per query in
micro-batches of ``--batch`` at k = 200, one thread (CPU time, because the machine may be
shared: the ``uptime`` load averages are printed before and after).

For each catalog the table marks the fastest configuration whose recall@200 reaches
``--target``; ``loadtest/out/tune-index.json`` keeps every row.

Catalogs (built when missing, see ``--help``): ML-1M item vectors from ``streamrec train``
(``streamrec data movielens --variant 1m``, ``data split``, ``train --quick``), and
``out/bench-engine``'s synthetic catalog with its saved IVF index (its trained quantizer is
reused: training 4,000 lists over 256k points takes minutes on one thread).

Run: ``python -m loadtest.tune_index`` (``--hnsw-synthetic`` adds HNSW on the 1M catalog:
its build takes many minutes).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import faiss
import numpy as np
from rich.console import Console
from rich.table import Table

from loadtest.floor import CallRecorder
from loadtest.machine import MachineRecord
from streamrec.config import Settings
from streamrec.demo import step, streamrec
from streamrec.index.backends import _training_sample, ivf_nlist
from streamrec.index.bench import exact_topk
from streamrec.index.params import IndexParams
from streamrec.index.persist import INDEX_FILE, ROWS_FILE
from streamrec.index.synthetic import clustered_catalog, queries_near
from streamrec.streams.core.artifacts import Artifacts
from streamrec.streams.core.loader import load_engine
from streamrec.streams.core.state import UserState
from streamrec.streams.recorded import read_events

REPORT = Path("loadtest/out/tune-index.json").absolute()
ML1M = Path("out/ml1m").absolute()
SYNTH = Path("out/bench-engine").absolute()
K = 200
#: A configuration's search: (queries) -> labels [n, K], cost measured around it.
Search = Callable[[np.ndarray], np.ndarray]


def npz_vectors(path: Path) -> np.ndarray:
    """The ``vectors`` of an item-vector file (``streamrec train``'s item_vectors.npz)."""
    with np.load(path, allow_pickle=False) as f:
        return np.ascontiguousarray(f["vectors"], dtype=np.float32)


def ml1m_vectors() -> np.ndarray:
    """ML-1M item embeddings of ``streamrec train --quick`` (trained once into out/ml1m)."""
    vectors = Artifacts(ML1M / "artifacts").item_vectors
    if not vectors.is_file():
        data, train_part = ML1M / "ml1m.msgpack", ML1M / "ml1m.train.msgpack"
        if not train_part.is_file():
            streamrec(["data", "movielens", "--variant", "1m", "--out", str(data)])
            streamrec(["data", "split", str(data), "--train", "0.8", "--out-dir", str(ML1M)])
        # the gate judges rerankers; only the embeddings are used here
        streamrec(["train", "--quick", "--events", str(train_part),
                   "--out", str(ML1M / "artifacts")], check=False)  # fmt: skip
    return npz_vectors(vectors)


def served_queries(artifacts: Path, events: Path, n: int, warmup: int) -> np.ndarray:
    """The first ``n`` query vectors the engine of ``artifacts`` searches with while it
    processes ``events`` after ``warmup`` of them (no reranker: only retrieval matters)."""
    engine = load_engine(artifacts, Settings(engine_reranker="", engine_threads=1))
    recorder = CallRecorder()
    recorder.attach(engine)
    states: dict[str, UserState] = {}
    batch: list[Any] = []
    seen = 0
    for event in read_events(events):
        batch.append(event)
        if len(batch) < 256:
            continue
        recorder.active = seen >= warmup
        (engine.process if recorder.active else engine.apply)(batch, states)
        seen += len(batch)
        batch = []
        if sum(len(q) for q, _, _ in recorder.searches) >= n:
            break
    return np.vstack([q for q, _, _ in recorder.searches])[:n]


def synthetic_catalog(items: int) -> tuple[np.ndarray, Any]:
    """``make bench``'s synthetic item vectors and its saved IVF-Flat index (built by
    :func:`loadtest.bench_engine.artifacts` when missing)."""
    from loadtest.bench_engine import artifacts

    art = artifacts(items, reranker=False)
    vectors = npz_vectors(SYNTH / f"synth-{items}.items.npz")
    index_dir = Artifacts(art).index
    saved = faiss.read_index(str(index_dir / INDEX_FILE))
    with np.load(index_dir / ROWS_FILE, allow_pickle=False) as f:
        if len(f["ids"]) != len(vectors):
            raise SystemExit(f"{art}: index rows do not match {len(vectors)} catalog vectors")
    return vectors, saved


def ivf_flat(vectors: np.ndarray) -> Any:
    """An IVF-Flat index trained and filled the way ``build_index`` does it."""
    nlist = ivf_nlist(len(vectors), IndexParams())
    quantizer = faiss.IndexFlatIP(vectors.shape[1])
    index = faiss.IndexIVFFlat(quantizer, vectors.shape[1], nlist, faiss.METRIC_INNER_PRODUCT)
    index.train(_training_sample(vectors, nlist))
    index.add(vectors)
    return index


def assignments(index: Any) -> np.ndarray:
    """Each row's inverted list in ``index`` (read from its lists: no second assignment)."""
    ivf = faiss.extract_index_ivf(index)
    invlists = ivf.invlists
    assert invlists is not None  # a filled IVF index has its lists
    lists = np.empty(ivf.ntotal, dtype=np.int64)
    for li in range(ivf.nlist):
        n = invlists.list_size(li)
        if n:
            lists[faiss.rev_swig_ptr(invlists.get_ids(li), n)] = li
    return lists


def filled(index: Any, vectors: np.ndarray, lists: np.ndarray, nlist: int) -> Any:
    """Train ``index``'s codec on the engine's training sample and add every row to the
    list it already has in IVF-Flat."""
    index.train(_training_sample(vectors, nlist))
    index.add_core(len(vectors), faiss.swig_ptr(vectors), None, faiss.swig_ptr(lists))
    return index


def ivf_variants(
    vectors: np.ndarray, flat: Any, nprobes: list[int], refine_factors: list[float]
) -> Iterator[tuple[str, str, Search]]:
    """(config, knob, search) of IVF-Flat, IVF-SQ8 and IVF-PQ fast-scan + flat refine."""
    d = vectors.shape[1]
    ivf = faiss.extract_index_ivf(flat)
    nlist, quantizer, lists = ivf.nlist, ivf.quantizer, assignments(flat)
    ip = faiss.METRIC_INNER_PRODUCT
    for nprobe in nprobes:
        sp = faiss.SearchParametersIVF()
        sp.nprobe = nprobe
        yield f"IVF{nlist},Flat", f"nprobe {nprobe}", _searcher(flat, sp)
    sq8 = faiss.IndexIVFScalarQuantizer(quantizer, d, nlist, faiss.ScalarQuantizer.QT_8bit, ip)
    sq8 = filled(sq8, vectors, lists, nlist)
    for nprobe in nprobes:
        sp = faiss.SearchParametersIVF()
        sp.nprobe = nprobe
        yield f"IVF{nlist},SQ8", f"nprobe {nprobe}", _searcher(sq8, sp)
    del sq8
    # fast-scan lists are packed blocks that IndexIVF's add_core does not fill: plain add
    pq = faiss.IndexIVFPQFastScan(quantizer, d, nlist, d // 2, 4, ip)
    pq.train(_training_sample(vectors, nlist))
    pq.add(vectors)
    refined = faiss.IndexRefineFlat(pq, faiss.swig_ptr(vectors))
    for factor in refine_factors:
        for nprobe in nprobes:
            base = faiss.SearchParametersIVF()
            base.nprobe = nprobe
            rp = faiss.IndexRefineSearchParameters()
            rp.k_factor, rp.base_index_params = factor, base
            yield (f"IVF{nlist},PQ{d // 2}x4fs,RFlat", f"nprobe {nprobe} k×{factor:g}",
                   _searcher(refined, rp, keep=base))  # fmt: skip


def hnsw_variants(vectors: np.ndarray, efs: list[int]) -> Iterator[tuple[str, str, Search]]:
    """(config, knob, search) of HNSW at the engine's M / efConstruction."""
    p = IndexParams()
    index = faiss.IndexHNSWFlat(vectors.shape[1], p.hnsw_m, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = p.hnsw_ef_construction
    index.add(vectors)
    for ef in efs:
        sp = faiss.SearchParametersHNSW()  # type: ignore[attr-defined]  # missing from stubs
        sp.efSearch = max(ef, K)  # as the engine asks (fewer than k hits otherwise)
        yield f"HNSW{p.hnsw_m},Flat", f"efSearch {sp.efSearch}", _searcher(index, sp)


def _searcher(index: Any, sp: Any, keep: Any = None) -> Search:
    """A search of ``index`` with parameters ``sp`` (``keep``: an object ``sp`` points to,
    held alive as long as the search)."""

    def search(queries: np.ndarray) -> np.ndarray:
        _ = keep
        return index.search(queries, K, params=sp)[1]

    return search


def measure(search: Search, queries: np.ndarray, truth: np.ndarray, batch: int) -> dict[str, float]:
    """recall@K and CPU / wall ms per query of ``search`` in micro-batches of ``batch``."""
    search(queries[:batch])  # warm-up
    found = []
    cpu, wall = time.process_time(), time.perf_counter()
    for start in range(0, len(queries), batch):
        found.append(search(queries[start : start + batch]))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    labels = np.vstack(found)
    hits = sum(len(np.intersect1d(f, t)) for f, t in zip(labels, truth, strict=True))
    return {
        f"recall_at_{K}": round(hits / truth.size, 4),
        "cpu_ms_per_query": round(1000 * cpu / len(queries), 4),
        "wall_ms_per_query": round(1000 * wall / len(queries), 4),
    }


def tune(
    name: str,
    vectors: np.ndarray,
    flat: Any,
    queries: np.ndarray,
    args: argparse.Namespace,
    hnsw: bool,
) -> list[dict[str, Any]]:
    """Every configuration's figures on one catalog."""
    step(f"{name}: {len(vectors):,} x {vectors.shape[1]}, exact top-{K} of {len(queries)} queries")
    truth = exact_topk(vectors, queries, K)
    configs = ivf_variants(vectors, flat, args.nprobe_list, args.refine_list)
    rows = []
    for config, knob, search in configs:
        rows.append({"catalog": name, "config": config, "knob": knob,
                     **measure(search, queries, truth, args.batch)})  # fmt: skip
    if hnsw:
        step(f"{name}: HNSW build")
        for config, knob, search in hnsw_variants(vectors, args.ef_list):
            rows.append({"catalog": name, "config": config, "knob": knob,
                         **measure(search, queries, truth, args.batch)})  # fmt: skip
    return rows


def fastest(rows: list[dict[str, Any]], target: float) -> dict[str, Any] | None:
    """The cheapest row (CPU ms per query) with recall@K >= ``target``."""
    good = [r for r in rows if r[f"recall_at_{K}"] >= target]
    return min(good, key=lambda r: r["cpu_ms_per_query"]) if good else None


def table(
    name: str, rows: list[dict[str, Any]], best: dict[str, Any] | None, target: float
) -> Table:
    """One catalog's rows, the fastest at the target marked."""
    t = Table(title=f"{name}: recall@{K} vs CPU ms/query, batch of queries, 1 thread "
                    f"(* = fastest at recall >= {target})")  # fmt: skip
    for column in ("config", "knob", f"recall@{K}", "CPU ms/query", "wall ms/query", ""):
        t.add_column(column, justify="right")
    for r in rows:
        mark = "*" if r is best else ""
        cost = f"{r['cpu_ms_per_query']:.3f}", f"{r['wall_ms_per_query']:.3f}"
        t.add_row(r["config"], r["knob"], f"{r[f'recall_at_{K}']:.4f}", *cost, mark)
    return t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=1_000_000, help="Synthetic catalog size.")
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument(
        "--warmup", type=int, default=20_000, help="Events the engine applies before its queries."
    )
    parser.add_argument("--batch", type=int, default=64, help="Queries per search call.")
    parser.add_argument("--nprobes", default="5,10,15,20,30,40,60")
    parser.add_argument("--refine", default="2,4", help="Refine k factors of the PQ index.")
    parser.add_argument("--efs", default="200,256,320,400", help="HNSW efSearch values.")
    parser.add_argument("--target", type=float, default=0.95, help="recall@200 to reach.")
    parser.add_argument(
        "--catalogs",
        default="ml1m,synthetic",
        help="ml1m, synthetic, clustered (index bench's; its IVF trains for minutes), .npz files.",
    )
    parser.add_argument("--hnsw-synthetic", action="store_true", help="HNSW on the 1M catalog.")
    parser.add_argument("--out", type=Path, default=REPORT)
    args = parser.parse_args()
    args.nprobe_list = [int(x) for x in args.nprobes.split(",")]
    args.refine_list = [float(x) for x in args.refine.split(",")]
    args.ef_list = [int(x) for x in args.efs.split(",")]
    faiss.omp_set_num_threads(1)
    faiss.cvar.distance_compute_blas_threshold = IndexParams().blas_threshold
    console = Console(width=140)
    machine = MachineRecord(say=console.print)
    result: dict[str, Any] = {"target": args.target, "k": K, "batch": args.batch, "catalogs": {}}
    tables = []
    for name in args.catalogs.split(","):
        step(f"{name}: catalog and the engine's queries")
        if name == "ml1m":
            vectors = ml1m_vectors()
            queries = served_queries(ML1M / "artifacts", ML1M / "ml1m.test.msgpack",
                                     args.queries, args.warmup)  # fmt: skip
            rows = tune("ML-1M items", vectors, ivf_flat(vectors), queries, args, hnsw=True)
        elif name.endswith(".npz") or name == "clustered":
            # ``clustered``: the harder catalog of ``streamrec index bench`` (issue 5's basis)
            vectors = (
                npz_vectors(Path(name)) if name != "clustered"
                else clustered_catalog(args.items, 64, seed=0)[1]
            )  # fmt: skip
            queries = queries_near(vectors, args.queries, seed=1)
            label = name if name != "clustered" else f"index-bench clustered {args.items:,}"
            rows = tune(label, vectors, ivf_flat(vectors), queries, args, hnsw=name != "clustered")
        else:
            vectors, saved = synthetic_catalog(args.items)
            queries = served_queries(SYNTH / f"artifacts-{args.items}",
                                     SYNTH / f"synth-{args.items}.msgpack",
                                     args.queries, args.warmup)  # fmt: skip
            label = f"synthetic {args.items:,}"
            rows = tune(label, vectors, saved, queries, args, args.hnsw_synthetic)
        best = fastest(rows, args.target)
        result["catalogs"][name] = {"rows": rows, "fastest": best}
        tables.append(table(rows[0]["catalog"], rows, best, args.target))
    result["machine"] = machine.finish()
    for t in tables:
        console.print(t)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    console.print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

"""``streamrec index build|bench`` end to end through the real typer app."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from streamrec.cli import app
from streamrec.index import load_index
from streamrec.index.synthetic import clustered_catalog
from streamrec.index.vectors import save_vectors

runner = CliRunner()


def test_build_writes_a_loadable_index(tmp_path: Path) -> None:
    ids, vectors = clustered_catalog(2000, 16, seed=3)
    npz = save_vectors(tmp_path / "items.npz", ids, vectors)
    out = tmp_path / "index"
    result = runner.invoke(
        app, ["index", "build", "--vectors", str(npz), "--out", str(out), "--kind", "hnsw"]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["kind"] == "hnsw" and summary["items"] == 2000 and summary["dim"] == 16
    index = load_index(out, dim=16, metric="ip")
    assert index.kind == "hnsw" and len(index) == 2000 and index.source == str(npz)
    assert index.search(vectors[:1], 1).ids == [[ids[0]]]


def test_build_reports_a_bad_file_in_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    result = runner.invoke(app, ["index", "build", "--vectors", str(bad), "--out", str(tmp_path)])
    assert result.exit_code == 1
    assert "cannot read" in result.output and "Traceback" not in result.output


def test_bench_prints_one_json_object_per_kind() -> None:
    result = runner.invoke(
        app,
        ["index", "bench", "--items", "3000", "--dim", "16", "--queries", "64", "--batch", "16"]
        + ["--latency-queries", "10", "--kinds", "flat,ivf", "--param", "ivf_nprobe=8"],
    )
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert [r["kind"] for r in rows] == ["flat", "ivf"]
    for row in rows:
        assert {
            "device",
            "items",
            "build_s",
            "recall_at_200",
            "p50_ms",
            "p99_ms",
            "qps_batch",
        } <= set(row)
        assert row["items"] == 3000 and 0 <= row["recall_at_200"] <= 1
    assert rows[0]["recall_at_200"] == 1.0  # exact search is its own ground truth
    assert rows[1]["params"]["ivf_nprobe"] == 8

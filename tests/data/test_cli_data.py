"""The ``streamrec data`` commands end to end through the real typer app."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from streamrec.cli import app
from streamrec.streams.recorded import read_events

runner = CliRunner()


def test_synth_then_split_from_the_command_line(tmp_path: Path) -> None:
    out = tmp_path / "world.msgpack.zst"
    args = ["data", "synth", "--users", "50", "--items", "200", "--events", "1000", "--seed",
            "5", "--out", str(out)]  # fmt: skip
    done = runner.invoke(app, args)
    assert done.exit_code == 0, done.output
    assert "1,000 events" in done.output
    for suffix in (".items.npz", ".truth.npz", ".drift.jsonl", ".manifest.json"):
        assert (tmp_path / f"world{suffix}").is_file()

    done = runner.invoke(app, ["data", "split", str(out), "--train", "0.9"])
    assert done.exit_code == 0, done.output
    assert "train: 900 events" in done.output and "test:  100 events" in done.output
    assert len(list(read_events(tmp_path / "world.test.msgpack.zst"))) == 100


def test_bad_options_fail_with_one_line(tmp_path: Path) -> None:
    done = runner.invoke(app, ["data", "movielens", "--variant", "20m", "--out", "x.msgpack"])
    assert done.exit_code == 1 and "unknown variant '20m'" in done.output
    done = runner.invoke(app, ["data", "split", str(tmp_path / "missing.msgpack")])
    assert done.exit_code == 1 and "no such file" in done.output


def test_split_of_an_empty_stream_fails_with_one_line(tmp_path: Path) -> None:
    empty = tmp_path / "empty.msgpack"
    empty.write_bytes(b"")
    done = runner.invoke(app, ["data", "split", str(empty)])
    assert done.exit_code == 1
    assert [line for line in done.output.splitlines() if "error" in line] == [
        f"error: {empty}: no events to split"
    ]
    assert not (tmp_path / "empty.train.msgpack").exists()

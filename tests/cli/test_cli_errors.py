"""Expected failures of the commands are one line that says what is wrong and what to do,
with a non-zero exit and no traceback; output read by scripts is never folded at 80 columns."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from streamrec.cli import app
from streamrec.cli.common import fail
from streamrec.cli.stream import pace_of
from streamrec.streams.pacing import AsFastAsPossible, Rate, Speed

#: No COLUMNS: rich must not fall back to folding at 80 columns off a terminal.
runner = CliRunner(env={"COLUMNS": None})


def one_error(output: str) -> str:
    """The only line of ``output``, which must be an error line."""
    lines = output.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), output
    return lines[0]


def test_a_worker_on_an_empty_index_dir_names_the_missing_file_and_the_fix(
    tmp_path: Path,
) -> None:
    artifacts = tmp_path / "artifacts"
    (artifacts / "index").mkdir(parents=True)
    done = runner.invoke(app, ["worker", "--artifacts", str(artifacts)])
    assert done.exit_code == 1
    line = one_error(done.output)
    assert f"{artifacts}/index/meta.json: missing" in line
    assert f"`streamrec train --events FILE --out {artifacts}`" in line
    assert "`streamrec index build" in line


def test_a_worker_on_a_damaged_index_or_no_artifacts_says_so(tmp_path: Path) -> None:
    index = tmp_path / "index"
    index.mkdir()
    for name in ("meta.json", "index.faiss", "rows.npz"):
        (index / name).write_text("{not json")
    done = runner.invoke(app, ["worker", "--artifacts", str(tmp_path)])
    assert done.exit_code == 1
    assert f"{index}/meta.json: not JSON" in one_error(done.output)

    done = runner.invoke(app, ["worker", "--artifacts", str(tmp_path / "nope")])
    assert done.exit_code == 1
    assert "no such artifacts directory" in one_error(done.output)


def test_index_build_on_object_arrays_never_mentions_pickles(tmp_path: Path) -> None:
    objects = tmp_path / "objects.npz"
    np.savez(objects, ids=np.array([{"id": 1}], dtype=object), vectors=np.zeros((1, 4)))
    text = tmp_path / "items.npz"
    text.write_text("id,vector\n")
    for path, says in (
        (objects, "arrays of Python objects"),
        (text, "not a .npz archive"),
        (tmp_path / "missing.npz", "no such file"),
    ):
        done = runner.invoke(app, ["index", "build", "--vectors", str(path), "--out", "x"])
        assert done.exit_code == 1
        line = one_error(done.output)
        assert f"cannot read {path}: {says}; expected an item-vector file" in line
        assert "pickle" not in line


def test_index_build_names_the_file_once(tmp_path: Path) -> None:
    bad = tmp_path / "v.npz"
    np.savez(bad, ids=np.array(["a"]), other=np.zeros((1, 4)))
    done = runner.invoke(app, ["index", "build", "--vectors", str(bad), "--out", "x"])
    assert done.exit_code == 1
    line = one_error(done.output)
    assert line.count(str(bad)) == 1 and "needs arrays 'ids' and 'vectors'" in line


def test_an_error_with_brackets_prints_as_it_is(capsys: pytest.CaptureFixture[str]) -> None:
    """Kafka and JSON messages hold brackets; rich must not read them as markup."""
    with pytest.raises(BaseException):  # noqa: B017 (typer.Exit)
        fail("[bold]x[/bold] [Error 7] RequestTimedOutError " + "y" * 150)
    assert capsys.readouterr().err == (
        "error: [bold]x[/bold] [Error 7] RequestTimedOutError " + "y" * 150 + "\n"
    )


def test_the_settings_table_off_a_terminal_keeps_each_variable_on_one_line() -> None:
    done = runner.invoke(app, ["settings"])
    assert done.exit_code == 0
    rows = [line for line in done.output.splitlines() if "STREAMREC_" in line]
    assert any("STREAMREC_WORKER_STREAM_PROCESSING_TIMEOUT_S" in row for row in rows)
    assert any("STREAMREC_KAFKA_BOOTSTRAP" in row and "Bootstrap servers" in row for row in rows)


def test_replay_is_as_fast_as_possible_unless_paced() -> None:
    """A real-time default looked hung: a test split's events can be minutes apart."""
    assert pace_of(None, None) == AsFastAsPossible()  # also what --max asks for
    assert pace_of(60.0, None) == Speed(60.0)
    assert pace_of(None, 500.0) == Rate(500.0)


def test_replay_rejects_two_paces_or_a_bad_one_in_one_line(tmp_path: Path) -> None:
    stream = tmp_path / "s.msgpack"
    stream.write_bytes(b"")
    for args, says in (
        (["--speed", "2", "--max"], "choose one pace: --speed, --rate or --max"),
        (["--rate", "0"], "rate must be > 0 events/s, got 0.0"),
    ):
        done = runner.invoke(app, ["replay", str(stream), *args])
        assert done.exit_code == 1
        assert one_error(done.output) == f"error: {says}"


def test_the_worker_has_no_spinner_off_a_terminal() -> None:
    """Faust's spinner wrote cursor escapes (ESC[?25l) into every log of a worker."""
    import faust

    from streamrec.cli.worker import faust_worker

    app = faust.App("spinner-test", broker="kafka://127.0.0.1:1", store="memory://")
    assert faust_worker(app, "warning").spinner is None  # pytest's stdout is no terminal

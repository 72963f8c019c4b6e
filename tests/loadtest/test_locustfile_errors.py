"""The locust file's --events-file: a missing or wrong file stops locust at start with one line.

Run through the locust command in a subprocess (locust patches sockets and threads with
gevent, which must not leak into the test session). No broker is needed: the file is read
before any user starts.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LOCUSTFILE = ROOT / "loadtest" / "locustfile.py"


def locust(events_file: Path) -> subprocess.CompletedProcess[str]:
    command = [str(Path(sys.executable).with_name("locust")), "-f", str(LOCUSTFILE)]
    command += ["--headless", "-u", "1", "-r", "1", "-t", "1s", "--host", "http://127.0.0.1:1"]
    command += ["--events-file", str(events_file)]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=ROOT)


def error_lines(done: subprocess.CompletedProcess[str]) -> list[str]:
    assert "Traceback" not in done.stderr, done.stderr
    return [line for line in done.stderr.splitlines() if line.startswith("error:")]


def test_the_documented_example_file_is_made_by_the_command_beside_it() -> None:
    doc = LOCUSTFILE.read_text()
    assert "--events-file data/ml100k.msgpack" in doc
    assert "streamrec data movielens --variant 100k --out data/ml100k.msgpack" in doc


@pytest.mark.slow
def test_a_missing_events_file_is_one_line_naming_the_command_that_makes_it(
    tmp_path: Path,
) -> None:
    missing = tmp_path / "ml100k.msgpack"
    done = locust(missing)
    assert done.returncode == 1
    assert error_lines(done) == [
        f"error: --events-file {missing}: no such file; write one with `streamrec data "
        f"movielens --variant 100k --out {missing}` or `streamrec record`"
    ]


@pytest.mark.slow
def test_an_events_file_that_is_no_recorded_stream_is_one_line(tmp_path: Path) -> None:
    ratings = tmp_path / "ratings.csv"
    ratings.write_text("user_id,item_id\nu1,i1\n")
    done = locust(ratings)
    assert done.returncode == 1
    (line,) = error_lines(done)
    assert line.startswith(f"error: --events-file {ratings}: record 0 (byte 0): not_a_map")

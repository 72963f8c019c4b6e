"""The worker profiler's accounting (loadtest/profile_worker.py) on a made-up sample file;
the live path is what ``make profile-worker`` runs. In a subprocess from the repository
root, where ``loadtest`` imports (here the name is this test folder's)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LOOP = "/x/asyncio/base_events.py:_run_once"
SELECT = "/x/selectors.py:select"
AGENT = "/x/streamrec/streams/personalize.py:_handle"
STACKS = {
    "decode": [LOOP, AGENT, "/x/streamrec/streams/personalize.py:_validate"],
    "maps": [LOOP, "/x/streams/personalize.py:_write_back", "/x/streams/core/state.py:to_map"],
    "faust": [LOOP, "/x/site-packages/faust/streams.py:_write_back"],
    "aiokafka": [LOOP, "/x/site-packages/aiokafka/producer/sender.py:send"],
    "idle": [LOOP, SELECT],
}


def run_profiler(tmp_path: Path, samples: dict) -> dict:
    (tmp_path / "samples.json").write_text(json.dumps(samples))
    script = textwrap.dedent(
        f"""
        import json, sys
        from pathlib import Path
        from loadtest.profile_worker import analyze, bucket, callbacks
        where = Path({str(tmp_path)!r})
        stacks = json.loads({json.dumps(json.dumps(STACKS))})
        print(json.dumps({{
            "buckets": {{name: bucket(stack) for name, stack in stacks.items()}},
            "stages": analyze(where, events=1000),
            "owners": callbacks(where, events=1000),
        }}))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_cpu_goes_to_the_innermost_stage_else_the_library_per_event(tmp_path):
    samples = {
        "loop_thread": "MainThread",
        "threads_s": {"MainThread": 2.0, "streamrec-engine_0": 3.0},
        "process_s": 5.5,
        "stacks_s": {
            f"{LOOP};{AGENT};/x/streamrec/streams/live.py:record": 1.0,
            f"{LOOP};{SELECT}": 1.0,
        },
        "callbacks_s": {"task personalize": 1.5},
    }
    out = run_profiler(tmp_path, samples)
    assert out["buckets"] == {
        "decode": "decode",
        "maps": "maps (to_map)",
        "faust": "loop: faust",
        "aiokafka": "loop: aiokafka",
        "idle": "idle",
    }
    stages = out["stages"]
    assert stages["live"] == pytest.approx(1.0)  # ms per event
    assert stages["loop: unattributed (sampled in the selector)"] == pytest.approx(1.0)
    assert stages["thread: loop thread"] == pytest.approx(2.0)
    assert stages["thread: streamrec-engine"] == pytest.approx(3.0)
    assert stages["process total"] == pytest.approx(5.5)
    assert out["owners"]["task personalize"] == pytest.approx(1.5)
    assert out["owners"]["the loop itself"] == pytest.approx(0.5)

"""``make load``'s report (loadtest/load.py): from a real locust run's CSV to ``load.json``
and the summary table, with the schema the issue asks for.

A short headless locust session (GET-only mode, as ``make load`` runs it) against a stub
HTTP server in this process writes real locust CSV; the report code then runs in a
subprocess from the repository root (``loadtest`` is imported from there, and locust's
gevent patching stays out of the test session). Nothing here looks at how fast it was.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LOCUSTFILE = ROOT / "loadtest" / "locustfile.py"

REPORT = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from rich.console import Console
    from loadtest.load import MODES, mode_figures, summary_table, write_report

    stats, out = Path(sys.argv[1]), Path(sys.argv[2])
    modes = {m: {"target_rate": 10.0, **mode_figures(stats, MODES[m][0])} for m in MODES}
    # the same run as the stream alone and beside GETs, there with a made-up half of its
    # requests failed (locust's rate counts them: the share must not)
    events = {**modes["get_recommendations"], "target_rate": 10.0}
    half = events["requests"] // 2
    failed = {**events, "failures": half, "requests": 2 * half}
    beside = {"get_recommendations": modes["get_recommendations"],
              "event_to_recommendation": failed}
    modes["event_to_recommendation"] = events
    result = write_report(out, modes, {"cpu_count": 2}, together=beside)
    console = Console(width=200, record=True)
    console.print(summary_table(result))
    print(console.export_text())
    """
)


class Feed(BaseHTTPRequestHandler):
    """Answers every GET with an empty feed."""

    def do_GET(self) -> None:  # noqa: N802  (http.server's name)
        body = b'{"items": [], "scores": []}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def feed_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Feed)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.slow
def test_a_get_only_locust_run_becomes_load_json_with_both_modes(
    tmp_path: Path, feed_url: str
) -> None:
    prefix = tmp_path / "load-get"
    locust = [str(Path(sys.executable).with_name("locust")), "-f", str(LOCUSTFILE)]
    locust += ["--headless", "--only-summary", "-u", "2", "-r", "2", "-t", "3s"]
    locust += ["--host", feed_url, "--user-rate", "5", "--csv", str(prefix)]
    locust += ["--html", f"{prefix}.html", "HttpFeedUser", "--tags", "read"]
    done = subprocess.run(locust, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "load-get.html").is_file()

    out = tmp_path / "load.json"
    report = subprocess.run(
        [sys.executable, "-c", REPORT, f"{prefix}_stats.csv", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert report.returncode == 0, report.stderr[-3000:]
    result = json.loads(out.read_text())
    keys = {"rate", "p50_ms", "p99_ms", "failures", "requests", "target_rate"}
    assert keys <= result["get_recommendations"].keys()
    assert keys <= result["event_to_recommendation"].keys()
    get = result["get_recommendations"]
    assert get["requests"] > 0 and get["failures"] == 0
    assert "/events" not in Path(f"{prefix}_stats.csv").read_text()  # --tags read: GET-only
    assert isinstance(get["p50_ms"], float) and isinstance(get["p99_ms"], float)
    assert result["machine"] == {"cpu_count": 2}
    assert "get_recommendations" in report.stdout
    assert "event_to_recommendation" in report.stdout
    # --together: both modes' figures then, and the stream's share of its rate alone
    assert result["stream_share_under_http"] == 0.5
    assert keys <= result["together"]["event_to_recommendation"].keys()
    assert "event_to_recommendation (together)" in report.stdout

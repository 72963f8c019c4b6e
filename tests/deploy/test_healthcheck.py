"""deploy/healthcheck.py, the images' health check, against a real HTTP server."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from deploy_files import healthcheck


class _Worker(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status if self.path == "/healthz" else 404)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[HTTPServer]:
    httpd = HTTPServer(("127.0.0.1", 0), _Worker)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def test_url_follows_the_worker_port_setting():
    probe = healthcheck()
    assert probe.url({}) == "http://127.0.0.1:6066/healthz"
    assert probe.url({"STREAMREC_WORKER_WEB_PORT": "6067"}) == "http://127.0.0.1:6067/healthz"


def test_healthy_when_the_worker_answers_on_its_port(server, monkeypatch):
    monkeypatch.setenv("STREAMREC_WORKER_WEB_PORT", str(server.server_port))
    assert healthcheck().main() == 0


def test_unhealthy_when_the_worker_answers_an_error(server, monkeypatch, capsys):
    monkeypatch.setattr(_Worker, "status", 503)
    monkeypatch.setenv("STREAMREC_WORKER_WEB_PORT", str(server.server_port))
    assert healthcheck().main() == 1
    assert capsys.readouterr().err.startswith("unhealthy: http://127.0.0.1:")


def test_unhealthy_when_nothing_listens_on_the_port(monkeypatch, capsys):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("STREAMREC_WORKER_WEB_PORT", str(port))
    assert healthcheck().main() == 1
    assert f":{port}/healthz" in capsys.readouterr().err

"""``streamrec settings`` never prints a secret: the SASL password and the HTTP tokens show
as ******** whether they are set or not; nor does a dump of the settings object."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from streamrec.config import Settings

SECRET_ROWS = (
    "STREAMREC_KAFKA_SASL_PASSWORD",
    "STREAMREC_WORKER_AUTH_TOKEN",
    "STREAMREC_WORKER_METRICS_TOKEN",
)


def settings_output(**env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("STREAMREC_")}
    done = subprocess.run(
        [sys.executable, "-c", "from streamrec.cli import main; main()", "settings"],
        env={**clean, "COLUMNS": "400", **env}, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return done.stdout + done.stderr


def rows(output: str) -> dict[str, list[str]]:
    """variable -> its cells (default, current, ...), from the table's first line per row."""
    out = {}
    for line in output.splitlines():
        cells = [cell.strip() for cell in line.split("│")[1:-1]]
        if cells and cells[0] in SECRET_ROWS:
            out[cells[0]] = cells[1:]
    return out


def test_secrets_show_masked_when_set_and_when_not() -> None:
    password, token = "pw-7c1d0a9e2b", "tok-5e8f3a1c4d"
    shown = settings_output(
        STREAMREC_KAFKA_SECURITY_PROTOCOL="SASL_SSL",
        STREAMREC_KAFKA_SASL_USERNAME="alice",
        STREAMREC_KAFKA_SASL_PASSWORD=password,
        STREAMREC_WORKER_AUTH_TOKEN=token,
        STREAMREC_WORKER_METRICS_TOKEN=f"{token}-metrics",
    )
    assert password not in shown and token not in shown
    assert {var: cells[:2] for var, cells in rows(shown).items()} == dict.fromkeys(
        SECRET_ROWS, ["********", "********"]
    )
    unset = rows(settings_output())
    assert {var: cells[:2] for var, cells in unset.items()} == dict.fromkeys(
        SECRET_ROWS, ["********", "********"]
    )


def test_a_settings_dump_masks_the_tokens_and_reveal_gives_them_to_the_code_that_checks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    token, scrape = "tok-5e8f3a1c4d", "scr-9b2e7d0f6a"
    monkeypatch.setenv("STREAMREC_WORKER_AUTH_TOKEN", token)
    settings = Settings(worker_metrics_token=scrape)
    for dump in (
        repr(settings),
        str(settings),
        settings.model_dump_json(),
        str(settings.model_dump()),
    ):
        assert token not in dump and scrape not in dump
    assert settings.reveal("worker_auth_token") == token
    assert settings.reveal("worker_metrics_token") == scrape
    monkeypatch.delenv("STREAMREC_WORKER_AUTH_TOKEN")
    assert Settings().reveal("worker_auth_token") is None
    with pytest.raises(ValueError, match="not a secret"):
        settings.reveal("worker_web_host")

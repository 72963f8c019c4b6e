"""Settings are checked when they are read: a bad value is one line naming its environment
variable (never pydantic's dump or a traceback), and a mistyped variable is warned about."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from streamrec.cli import app
from streamrec.config import InvalidSettings, load_settings, unknown_variables

runner = CliRunner()


def problems(monkeypatch: pytest.MonkeyPatch, **env: str) -> list[str]:
    """The error lines of loading the settings with ``env`` set (none when they load)."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    try:
        load_settings()
    except InvalidSettings as exc:
        return exc.lines
    return []


@pytest.mark.parametrize("value", ["64,32", " 64, 32 ", "[64, 32]"])
def test_a_list_setting_reads_a_comma_list_or_json(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("STREAMREC_TRAIN_STUDENT_HIDDEN", value)
    assert load_settings().train_student_hidden == (64, 32)


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("64;32", "STREAMREC_TRAIN_STUDENT_HIDDEN=64;32: expected comma-separated whole numbers"),
        ("[64,", "STREAMREC_TRAIN_STUDENT_HIDDEN=[64,: not a JSON list"),
        ("64,0", "STREAMREC_TRAIN_STUDENT_HIDDEN: item 1 = 0: Input should be greater than"),
        ("", "STREAMREC_TRAIN_STUDENT_HIDDEN: Tuple should have at least 1 item"),
    ],
)
def test_a_bad_list_is_one_line_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, value: str, says: str
) -> None:
    (line,) = problems(monkeypatch, STREAMREC_TRAIN_STUDENT_HIDDEN=value)
    assert line.startswith(says)


def test_ports_are_checked_when_the_settings_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    # The controller takes kafka_port + 1, so 65535 is out of range too.
    assert problems(monkeypatch, STREAMREC_KAFKA_PORT="70000") == [
        "STREAMREC_KAFKA_PORT=70000: Input should be less than or equal to 65534"
    ]
    assert problems(monkeypatch, STREAMREC_KAFKA_PORT="65535") != []
    assert problems(monkeypatch, STREAMREC_KAFKA_PORT="0") != []
    monkeypatch.delenv("STREAMREC_KAFKA_PORT")
    assert problems(monkeypatch, STREAMREC_WORKER_WEB_PORT="65536") != []
    monkeypatch.delenv("STREAMREC_WORKER_WEB_PORT")
    assert problems(monkeypatch, STREAMREC_KAFKA_BOOTSTRAP="a:9092, b:70000") == [
        "STREAMREC_KAFKA_BOOTSTRAP=a:9092, b:70000: 'b:70000' is not host:port with a port 1-65535"
    ]
    assert problems(monkeypatch, STREAMREC_KAFKA_BOOTSTRAP="a:9092,b,[::1]:9093") == []


def test_every_bad_setting_gets_its_own_line_and_secrets_are_not_shown(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A field whose name says secret never has its value printed, whatever its type.
    monkeypatch.setattr("streamrec.config._SECRET", re.compile("partitions"))
    lines = problems(monkeypatch, STREAMREC_PARTITIONS="hunter2", STREAMREC_ENGINE_K="0")
    assert lines == [
        "STREAMREC_PARTITIONS: Input should be a valid integer, unable to parse string as an "
        "integer",
        "STREAMREC_ENGINE_K=0: Input should be greater than or equal to 1",
    ]


def test_a_bad_setting_fails_every_command_in_one_line_per_variable() -> None:
    env = {"STREAMREC_KAFKA_PORT": "70000", "STREAMREC_TRAIN_STUDENT_HIDDEN": "64;32"}
    done = runner.invoke(app, ["settings"], env=env)
    assert done.exit_code == 1
    assert done.output.splitlines() == [
        "error: STREAMREC_KAFKA_PORT=70000: Input should be less than or equal to 65534",
        "error: STREAMREC_TRAIN_STUDENT_HIDDEN=64;32: expected comma-separated whole numbers "
        "like 64,32",
    ]


def test_a_comma_list_in_the_environment_is_accepted_by_the_cli() -> None:
    done = runner.invoke(app, ["settings"], env={"STREAMREC_TRAIN_STUDENT_HIDDEN": "128,64,32"})
    assert done.exit_code == 0, done.output
    (row,) = [line for line in done.output.splitlines() if "STREAMREC_TRAIN_STUDENT_HIDDEN" in line]
    assert "64,32" in row and "128,64,32" in row  # default and current, as they are written


def test_a_mistyped_variable_is_warned_about_with_the_closest_setting(tmp_path: Path) -> None:
    environ = {
        "STREAMREC_KAFKA_PROT": "9093",
        "streamrec_engine_treads": "2",  # the prefix is case-insensitive, as for settings
        "STREAMREC_KAFKA_PORT": "9092",  # a real one: no warning
        "STREAMREC_TEST_ARTIFACTS": "x",  # the test suite's own
        "STREAMREC_QQQQ": "1",
        "OTHER_VAR": "1",
    }
    assert unknown_variables(environ, dotenv=tmp_path / "none") == [
        "STREAMREC_KAFKA_PROT is not a streamrec setting and is ignored (did you mean "
        "STREAMREC_KAFKA_PORT?)",
        "STREAMREC_QQQQ is not a streamrec setting and is ignored (see `streamrec settings`)",
        "streamrec_engine_treads is not a streamrec setting and is ignored (did you mean "
        "STREAMREC_ENGINE_THREADS?)",
    ]
    dotenv = tmp_path / ".env"
    dotenv.write_text("STREAMREC_PARTITION=4\n")
    (line,) = unknown_variables({}, dotenv=dotenv)
    assert "did you mean STREAMREC_PARTITIONS?" in line


def test_the_cli_warns_about_a_mistyped_variable_and_goes_on() -> None:
    done = runner.invoke(app, ["settings", "--markdown"], env={"STREAMREC_KAFKA_PROT": "1"})
    assert done.exit_code == 0
    assert (
        "warning: STREAMREC_KAFKA_PROT is not a streamrec setting and is ignored (did you mean "
        "STREAMREC_KAFKA_PORT?)" in done.output
    )

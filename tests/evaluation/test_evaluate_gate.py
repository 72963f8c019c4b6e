"""`streamrec evaluate` judges the served system, which is what `streamrec worker` runs: a
reranker whose training missed its gate is refused there too, unless allowed; a student
variant of another update rule than the one it was trained for is skipped, with why."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from streamrec.cli import app
from streamrec.config import Settings
from streamrec.evaluation.prequential import History
from streamrec.evaluation.run import EvalOptions, build_systems, load_inputs
from streamrec.evaluation.variants import parse_variants

CHECK = "student beats popularity order"


@pytest.fixture
def failed(world: dict[str, Path], tmp_path: Path) -> Path:
    art = tmp_path / "artifacts"
    shutil.copytree(world["artifacts"], art)
    gate = {"passed": False, "failed": [{"name": CHECK, "passed": False, "detail": "0.05 vs 0.06"}]}
    (art / "manifest.json").write_text(json.dumps({"model_version": "m1", "gate": gate}))
    return art


def evaluate(world: dict[str, Path], artifacts: Path, report: Path) -> tuple[int, str]:
    result = CliRunner().invoke(
        app,
        [
            "evaluate", str(world["test"]), "--artifacts", str(artifacts), "--report", str(report),
            "--variants", "decayed:none", "--baselines", "none", "--k", "10",
        ],
    )  # fmt: skip
    return result.exit_code, result.output


def test_the_served_system_refuses_a_failed_model(
    world: dict[str, Path], failed: Path, tmp_path: Path
) -> None:
    code, output = evaluate(world, failed, tmp_path / "report")
    assert code == 1
    assert output.count("\n") == 1 and CHECK in output and "STREAMREC_ALLOW_FAILED_MODEL" in output
    assert not (tmp_path / "report").exists()


def test_allowed_it_is_evaluated(
    world: dict[str, Path], failed: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STREAMREC_ALLOW_FAILED_MODEL", "true")
    code, output = evaluate(world, failed, tmp_path / "report")
    assert code == 0, output
    assert "serving it anyway" in output
    assert json.loads((tmp_path / "report" / "report.json").read_text())["served"]


def test_a_student_variant_of_another_rule_is_skipped_saying_why(
    world: dict[str, Path], tmp_path: Path
) -> None:
    art = tmp_path / "artifacts"
    shutil.copytree(world["artifacts"], art)
    (art / "manifest.json").write_text(json.dumps({"engine": {"rule": "decayed"}}))
    variants = tuple(parse_variants(["decayed:student,multi:student,multi:none"]))
    inputs = load_inputs(world["test"], world["warmup"], art)
    built = build_systems(
        inputs, art, Settings(), EvalOptions(ks=(10,), variants=variants), History()
    )
    assert [s.name for s in built.systems if built.kinds[s.name] == "engine"] == [
        "decayed:student",
        "multi:none",
    ]
    assert "trained for the 'decayed' update rule, not 'multi'" in built.skipped["multi:student"]

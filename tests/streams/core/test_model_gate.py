"""A model whose `streamrec train` run missed its gate, or that was trained for another
update rule than the engine's, is refused by ``load_engine`` in one line naming why, or
served with one warning when ``allow_failed_model``."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
import typer

from streamrec.config import Settings
from streamrec.index import CandidateIndex
from streamrec.streams.core.artifacts import Artifacts
from streamrec.streams.core.loader import FailedModelError, load_engine

SLOW = {
    "name": "student is faster than the teacher",
    "passed": False,
    "detail": "teacher (ONNX) / student CPU time per call, median of per-call ratios = 1.6x "
    "(need >= 5x)",
}
BELOW_POPULAR = {
    "name": "student beats popularity order",
    "passed": False,
    "detail": "student NDCG@10 0.0500 vs popularity order 0.0600",
}


def trained(
    tmp_path: Path,
    index: CandidateIndex,
    reranker: Path,
    gate: dict | None,
    rule: str | None = None,
    rules: dict[str, dict] | None = None,
) -> Path:
    """Artifacts as `streamrec train` writes them, with ``gate`` as the manifest's verdict
    and ``rule`` as the update rule it trained with (its ``engine.rule``); ``rules``: the
    gates of other rules' rerankers (``train_rules``), each given a copy of ``reranker``
    in ``rules/<rule>/``."""
    index.save(tmp_path / "index")
    shutil.copy(reranker, tmp_path / "reranker.onnx")
    manifest: dict = {"model_version": "core-test"}
    manifest |= {"gate": gate} if gate is not None else {}
    manifest |= {"engine": {"rule": rule}} if rule is not None else {}
    for other, other_gate in (rules or {}).items():
        layout = Artifacts(tmp_path, other)
        layout.models.mkdir(parents=True)
        shutil.copy(reranker, layout.reranker)
        manifest.setdefault("rules", {})[other] = {"dir": f"rules/{other}", "gate": other_gate}
    Artifacts(tmp_path).manifest.write_text(json.dumps(manifest))
    return tmp_path


PASSED = {"passed": True, "failed": []}


def test_a_failed_model_is_refused_in_one_line_naming_the_failed_checks(
    tmp_path: Path, index: CandidateIndex, reranker_onnx: Path
) -> None:
    art = trained(
        tmp_path, index, reranker_onnx, {"passed": False, "failed": [SLOW, BELOW_POPULAR]}
    )
    with pytest.raises(FailedModelError) as refused:
        load_engine(art, Settings(engine_device="cpu"))
    message = str(refused.value)
    assert "\n" not in message
    assert "model core-test failed its training gate" in message
    assert SLOW["name"] in message and BELOW_POPULAR["name"] in message
    assert "1.6x (need >= 5x)" in message
    assert "--allow-failed-model" in message and "STREAMREC_ALLOW_FAILED_MODEL" in message


def test_allowed_it_is_served_with_one_warning(
    tmp_path: Path,
    index: CandidateIndex,
    reranker_onnx: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    art = trained(tmp_path, index, reranker_onnx, {"passed": False, "failed": [SLOW]})
    settings = Settings(engine_device="cpu", allow_failed_model=True)
    with caplog.at_level(logging.WARNING, logger="streamrec.streams.core.loader"):
        engine = load_engine(art, settings)
        load_engine(art, settings)  # one process, one directory: one warning
    assert engine.scorer is not None and engine.model_version == "core-test"
    warnings = [r.getMessage() for r in caplog.records if "training gate" in r.getMessage()]
    assert len(warnings) == 1 and SLOW["name"] in warnings[0] and "serving it anyway" in warnings[0]


@pytest.mark.parametrize("gate", [{"passed": True, "failed": []}, None])
def test_a_passed_or_unjudged_model_is_served(
    tmp_path: Path, index: CandidateIndex, reranker_onnx: Path, gate: dict | None
) -> None:
    engine = load_engine(
        trained(tmp_path, index, reranker_onnx, gate), Settings(engine_device="cpu")
    )
    assert engine.scorer is not None


def test_retrieval_order_serves_no_trained_model_so_nothing_is_refused(
    tmp_path: Path, index: CandidateIndex, reranker_onnx: Path
) -> None:
    art = trained(tmp_path, index, reranker_onnx, {"passed": False, "failed": [SLOW]})
    engine = load_engine(art, Settings(engine_device="cpu", engine_reranker=""))
    assert engine.scorer is None


def test_a_student_trained_for_another_rule_is_refused_in_one_line(
    tmp_path: Path, index: CandidateIndex, reranker_onnx: Path
) -> None:
    art = trained(tmp_path, index, reranker_onnx, {"passed": True, "failed": []}, "decayed")
    with pytest.raises(FailedModelError) as refused:
        load_engine(art, Settings(engine_device="cpu", engine_rule="multi"))
    message = str(refused.value)
    assert "\n" not in message
    assert "trained for the 'decayed' update rule, not 'multi'" in message
    assert "STREAMREC_ENGINE_RULE=multi" in message and "--allow-failed-model" in message


def test_a_failed_gate_and_another_rule_are_named_in_the_same_line(
    tmp_path: Path, index: CandidateIndex, reranker_onnx: Path
) -> None:
    art = trained(tmp_path, index, reranker_onnx, {"passed": False, "failed": [SLOW]}, "decayed")
    with pytest.raises(FailedModelError) as refused:
        load_engine(art, Settings(engine_device="cpu", engine_rule="multi"))
    message = str(refused.value)
    assert "\n" not in message and SLOW["name"] in message and "not 'multi'" in message


@pytest.mark.parametrize("rule", ["multi", None])
def test_a_student_of_the_same_rule_or_of_an_unnamed_one_is_served(
    tmp_path: Path, index: CandidateIndex, reranker_onnx: Path, rule: str | None
) -> None:
    art = trained(tmp_path, index, reranker_onnx, {"passed": True, "failed": []}, rule)
    engine = load_engine(art, Settings(engine_device="cpu", engine_rule="multi"))
    assert engine.scorer is not None


def test_retrieval_order_under_another_rule_loads_no_student_so_nothing_is_refused(
    tmp_path: Path, index: CandidateIndex, reranker_onnx: Path
) -> None:
    art = trained(tmp_path, index, reranker_onnx, {"passed": True, "failed": []}, "decayed")
    settings = Settings(engine_device="cpu", engine_rule="multi", engine_reranker="")
    assert load_engine(art, settings).scorer is None


def test_the_worker_refuses_an_ab_variant_that_reranks_another_rule(
    tmp_path: Path,
    index: CandidateIndex,
    reranker_onnx: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from streamrec.cli.worker import check_served_model

    art = trained(tmp_path, index, reranker_onnx, {"passed": True, "failed": []}, "decayed")
    control = {"name": "control", "share": 0.5}
    multi = {"name": "multi", "share": 0.5, "engine": {"rule": "multi"}}
    check_served_model(Settings(worker_artifacts_dir=art, variants=[control]))  # served as is
    with pytest.raises(typer.Exit):
        check_served_model(Settings(worker_artifacts_dir=art, variants=[control, multi]))
    assert "not 'multi'" in capsys.readouterr().err
    # a variant that reranks nothing serves no student, so another rule is fine there
    bare = {**multi, "reranker": ""}
    check_served_model(Settings(worker_artifacts_dir=art, variants=[control, bare]))


def test_a_rule_trained_in_its_own_folder_is_served_from_that_folder(
    tmp_path: Path, index: CandidateIndex, reranker_onnx: Path
) -> None:
    art = trained(tmp_path, index, reranker_onnx, PASSED, "decayed", rules={"multi": PASSED})
    (art / "reranker.onnx").unlink()  # only rules/multi/ holds a student now
    engine = load_engine(art, Settings(engine_device="cpu", engine_rule="multi"))
    assert engine.scorer is not None
    assert Artifacts(art).for_rule("multi").reranker == art / "rules" / "multi" / "reranker.onnx"
    assert Artifacts(art).for_rule("decayed").reranker == art / "reranker.onnx"


def test_a_rule_whose_own_rerankers_failed_their_gate_is_refused_naming_the_rule(
    tmp_path: Path, index: CandidateIndex, reranker_onnx: Path
) -> None:
    failed = {"passed": False, "failed": [SLOW]}
    art = trained(tmp_path, index, reranker_onnx, PASSED, "decayed", rules={"multi": failed})
    with pytest.raises(FailedModelError) as refused:
        load_engine(art, Settings(engine_device="cpu", engine_rule="multi"))
    message = str(refused.value)
    assert "\n" not in message and "for the 'multi' rule failed" in message
    assert SLOW["name"] in message and "not 'multi'" not in message
    # the directory's own rule passed and is served
    assert load_engine(art, Settings(engine_device="cpu")).scorer is not None


def test_a_rule_served_from_its_own_folder_is_not_held_to_the_other_rules_gate(
    tmp_path: Path, index: CandidateIndex, reranker_onnx: Path
) -> None:
    failed = {"passed": False, "failed": [SLOW]}
    art = trained(tmp_path, index, reranker_onnx, failed, "decayed", rules={"multi": PASSED})
    assert load_engine(art, Settings(engine_device="cpu", engine_rule="multi")).scorer is not None
    with pytest.raises(FailedModelError, match="failed its training gate"):
        load_engine(art, Settings(engine_device="cpu"))


def test_the_worker_serves_an_ab_variant_of_another_rule_trained_for_it(
    tmp_path: Path, index: CandidateIndex, reranker_onnx: Path
) -> None:
    from streamrec.cli.worker import check_served_model

    art = trained(tmp_path, index, reranker_onnx, PASSED, "decayed", rules={"multi": PASSED})
    control = {"name": "control", "share": 0.5}
    multi = {"name": "multi", "share": 0.5, "engine": {"rule": "multi"}}
    check_served_model(Settings(worker_artifacts_dir=art, variants=[control, multi]))

"""A/B bucketing (stable, shares as declared, minimal moves) and one engine per variant."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from streamrec.config import VariantSpec
from streamrec.index import build_index
from streamrec.streams.core.artifacts import Artifacts
from streamrec.streams.core.config import EngineConfig
from streamrec.streams.core.engine import Engine
from streamrec.streams.core.features import FEATURE_NAMES
from streamrec.streams.core.loader import rule_of
from streamrec.streams.core.popular import Popular
from streamrec.streams.variants import Experiment, VariantEngines, VariantError
from streamrec.streams.wire import Event

USERS = [f"user-{i}" for i in range(100_000)]


def experiment(shares: dict[str, float], salt: str = "exp-1", **engines: dict) -> Experiment:
    specs = [
        VariantSpec(name=name, share=share, engine=engines.get(name, {}))
        for name, share in shares.items()
    ]
    return Experiment.from_specs(specs, salt)


def buckets(exp: Experiment, users: list[str]) -> list[str]:
    return [exp.bucket(u).name for u in users]


def test_bucketing_is_the_same_in_another_process_and_after_a_restart():
    shares = {"control": 0.5, "b": 0.3, "c": 0.2}
    here = buckets(experiment(shares), USERS[:5000])
    script = (
        "import json, sys\n"
        "from streamrec.config import VariantSpec\n"
        "from streamrec.streams.variants import Experiment\n"
        "shares = json.loads(sys.argv[1])\n"
        "exp = Experiment.from_specs("
        "[VariantSpec(name=n, share=s) for n, s in shares.items()], 'exp-1')\n"
        "print(json.dumps([exp.bucket(f'user-{i}').name for i in range(5000)]))\n"
    )
    # A fresh interpreter has another hash seed (PYTHONHASHSEED is random per process).
    out = subprocess.run(
        [sys.executable, "-c", script, json.dumps(shares)],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONHASHSEED": "random"},
    )
    assert json.loads(out.stdout) == here
    assert buckets(experiment(shares), USERS[:5000]) == here  # a rebuilt experiment agrees


def test_shares_match_the_declared_ones_within_sampling_error_on_100k_users():
    shares = {"control": 0.5, "b": 0.3, "c": 0.2}
    counts = Counter(buckets(experiment(shares), USERS))
    n = len(USERS)
    for name, share in shares.items():
        sigma = math.sqrt(share * (1 - share) / n)
        assert abs(counts[name] / n - share) < 4 * sigma, (name, counts[name])


def test_another_salt_reshuffles_users():
    shares = {"control": 0.5, "b": 0.5}
    first = buckets(experiment(shares, "exp-1"), USERS[:10_000])
    second = buckets(experiment(shares, "exp-2"), USERS[:10_000])
    same = sum(a == b for a, b in zip(first, second, strict=True)) / len(first)
    assert 0.45 < same < 0.55  # independent: half agree by chance


def test_growing_a_share_moves_users_only_from_the_control_into_that_variant():
    before = buckets(experiment({"control": 0.5, "b": 0.3, "c": 0.2}), USERS)
    after = buckets(experiment({"control": 0.4, "b": 0.4, "c": 0.2}), USERS)
    moves = Counter((a, b) for a, b in zip(before, after, strict=True) if a != b)
    assert set(moves) == {("control", "b")}
    assert abs(moves["control", "b"] / len(USERS) - 0.1) < 0.01


@pytest.mark.parametrize(
    ("specs", "message"),
    [
        ([("a", 0.5), ("a", 0.5)], "names repeat"),
        ([("a", 0.5), ("b", 0.4)], "sum to 0.9"),
        ([("a", 0.2), ("b", 0.6), ("c", 0.2)], "at most 0.5"),
    ],
)
def test_an_unusable_declaration_is_refused_with_the_reason(specs, message):
    with pytest.raises(VariantError, match=message):
        Experiment.from_specs([VariantSpec(name=n, share=s) for n, s in specs], "x")


def test_a_variant_may_not_change_a_shared_or_unknown_engine_setting():
    with pytest.raises(VariantError, match="shared by every variant"):
        experiment({"control": 0.5, "b": 0.5}, b={"popular_half_life_s": 10})
    with pytest.raises(VariantError, match="unknown engine setting 'nope'"):
        experiment({"control": 0.5, "b": 0.5}, b={"nope": 1})


def test_no_declaration_is_one_control_for_everyone():
    exp = Experiment.from_specs([], "x")
    assert set(buckets(exp, USERS[:100])) == {"control"}


def base_engine() -> Engine:
    config = EngineConfig(k=10, candidates=50)
    rng = np.random.default_rng(0)
    ids = [f"i{i}" for i in range(300)]
    index = build_index(ids, rng.standard_normal((300, 16)).astype(np.float32), kind="flat")
    return Engine(index, None, rule_of(config), Popular(config.popular_half_life_s), config)


def test_each_users_events_go_through_their_variants_engine_over_one_shared_index(tmp_path):
    exp = experiment({"control": 0.5, "b": 0.5}, b={"k": 5, "covis_weight": 2.0})
    engines = VariantEngines.build(base_engine(), exp, tmp_path)
    control, b = engines.engines["control"], engines.engines["b"]
    assert b.index is control.index and b.popular is control.popular
    assert b.covis is not None and b.covis is control.covis  # every variant counts into it
    rng = np.random.default_rng(1)
    events = [
        Event(f"e{j}", f"u{int(rng.integers(40))}", f"i{int(rng.integers(300))}", "click", j)
        for j in range(400)
    ]
    recs = engines.process(events, {})
    assert [r.event_id for r in recs] == [e.event_id for e in events]
    for event, rec in zip(events, recs, strict=True):
        assert rec.variant == exp.bucket(event.user_id).name
        assert len(rec.items) == (5 if rec.variant == "b" else 10)
    assert {r.variant for r in recs} == {"control", "b"}


def test_a_variant_whose_reranker_file_is_missing_stops_the_build(tmp_path):
    spec = [
        VariantSpec(name="control", share=0.5),
        VariantSpec(name="b", share=0.5, reranker="student-b.onnx"),
    ]
    with pytest.raises(FileNotFoundError, match="student-b.onnx"):
        VariantEngines.build(base_engine(), Experiment.from_specs(spec, "x"), tmp_path)


def _student(path: Path, seed: int) -> Path:
    """A tiny real student exported to ONNX with the engine's feature spec."""
    torch = pytest.importorskip("torch")  # the `train` extra
    from streamrec.models.export import export_onnx
    from streamrec.models.metadata import ModelMetadata
    from streamrec.models.student import Student, StudentConfig

    torch.manual_seed(seed)
    model = Student(len(FEATURE_NAMES), StudentConfig(hidden=(8,)))
    rows = np.random.default_rng(seed).random((64, len(FEATURE_NAMES)), np.float32)
    model.set_normalisation(rows)
    meta = ModelMetadata(FEATURE_NAMES, f"variant-test-{seed}", "00" * 32)
    path.parent.mkdir(parents=True, exist_ok=True)
    return export_onnx(model.eval(), {"features": torch.from_numpy(rows)}, path, meta)


def test_a_variant_switching_rule_reranks_with_the_student_trained_for_that_rule(tmp_path):
    from streamrec.models.scorer import Scorer

    layout = Artifacts(tmp_path)
    _student(layout.reranker, seed=0)
    _student(Artifacts(tmp_path, "multi").reranker, seed=1)
    base = base_engine()
    base.scorer = Scorer.load(layout.reranker, FEATURE_NAMES)
    exp = experiment({"control": 0.5, "b": 0.5}, b={"rule": "multi"})
    engines = VariantEngines.build(base, exp, tmp_path, layout.reranker.name)
    b = engines.engines["b"]
    assert engines.engines["control"].scorer is base.scorer
    assert b.scorer is not None and b.scorer.model_version == "variant-test-1"
    # without a folder for the rule, the directory's own file (check_gate judges it)
    (tmp_path / "rules" / "multi" / "reranker.onnx").unlink()
    (tmp_path / "rules" / "multi").rmdir()
    again = VariantEngines.build(base, exp, tmp_path, layout.reranker.name)
    assert again.engines["b"].scorer.model_version == "variant-test-0"

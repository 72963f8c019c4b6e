"""The tuning replay: one paired replay per setting value, on the evaluation's own systems."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamrec.config import Settings
from streamrec.evaluation.metrics import gains
from streamrec.evaluation.run import EvalOptions, evaluate, load_inputs
from streamrec.evaluation.tune import compare, main
from streamrec.evaluation.variants import Variant


def test_each_value_scores_as_a_run_of_its_own(world: dict[str, Path]) -> None:
    """The values share one replay, yet each one's HR@10 is what `evaluate` gives with that
    setting alone; the first value is the base of the ratios."""
    inputs = load_inputs(world["test"], world["warmup"], world["artifacts"])
    rows = compare(
        inputs, world["artifacts"], Settings(), "decayed:covis", "engine_covis_window", [3, 8]
    )
    assert [r["setting"] for r in rows] == ["engine_covis_window=3", "engine_covis_window=8"]
    assert rows[0]["HR@10 ratio"]["value"] == pytest.approx(1.0)
    options = EvalOptions(ks=(10,), variants=(Variant.parse("decayed:covis"),), baselines=())
    for row, window in zip(rows, (3, 8), strict=True):
        alone = evaluate(
            world["test"],
            world["artifacts"],
            Settings(engine_covis_window=window),
            options,
            warmup_path=world["warmup"],
        )
        ranks = alone.replay.outcomes["decayed:covis"].ranks
        assert row["HR@10"]["value"] == pytest.approx(float(gains(ranks, "HR@10").mean()))


def test_baseline_values_and_bad_values(
    world: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """A baseline is tuned the same way; a value its field forbids is refused up front."""
    args = [str(world["test"]), "--warmup", str(world["warmup"]), "--artifacts",
            str(world["artifacts"]), "--system", "windowed"]  # fmt: skip
    main([*args, "--setting", "eval_window_popular_events", "--values", "500,50"])
    table = capsys.readouterr().out
    assert "| 500 |" in table and "| 50 |" in table
    with pytest.raises(ValueError, match="greater than or equal to 1"):
        main([*args, "--setting", "eval_window_popular_events", "--values", "500,0"])

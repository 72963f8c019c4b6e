"""The report's numbers from a hand-made replay, where every figure is known exactly."""

from __future__ import annotations

import numpy as np

from streamrec.evaluation.metrics import MISS
from streamrec.evaluation.prequential import Outcome, Replay, Stream, Vocab
from streamrec.evaluation.report import summarize, to_markdown
from streamrec.evaluation.run import EvalOptions, Evaluation
from streamrec.evaluation.variants import Variant
from streamrec.streams.wire import Event


def _evaluation(ranks: dict[str, list[int]]) -> Evaluation:
    """Ten users with one event each; ``ranks[system]`` is each event's target rank."""
    users, items = Vocab(), Vocab()
    events = [
        Event(user_id=f"u{i}", item_id="a", action="click", ts=i, event_id=f"e{i}")
        for i in range(10)
    ]
    test = Stream.encode(events, users, items)
    outcomes = {
        name: Outcome(name, np.array(r, np.int32), np.zeros(10), np.zeros(1), np.zeros(1, bool), "")
        for name, r in ranks.items()
    }
    replay = Replay(test, np.zeros(10, np.int64), outcomes, users, items, 1)
    options = EvalOptions(ks=(10,), variants=tuple(Variant.parse(n) for n in ranks), baselines=())
    return Evaluation(
        replay=replay,
        options=options,
        kinds=dict.fromkeys(ranks, "engine"),
        skipped={},
        catalog_size=1,
        seconds={"load": 0.0, "replay": 0.0, "total": 0.0},
        inputs={"test": "t", "warmup": "", "artifacts": "a", "warmup_events": "0"},
    )


def test_the_student_gets_its_paired_ratio_to_the_teacher_of_its_own_rule_only() -> None:
    hit, miss = 0, MISS
    ev = _evaluation(
        {
            "decayed:student": [hit] * 6 + [miss] * 4,
            "decayed:teacher": [hit] * 3 + [miss] * 7,
            "multi:student": [hit] * 10,  # no multi teacher: no ratio for multi
        }
    )
    summary = summarize(ev, samples=200, seed=0, cold_threshold=5)
    ratios = summary["student_over_teacher"]
    assert set(ratios) == {"decayed"}
    hr = ratios["decayed"]["HR@10"]
    assert hr["value"] == 2.0 and hr["low"] <= 2.0 <= hr["high"]
    assert "## Student ÷ teacher" in to_markdown(summary, [])


def test_without_a_teacher_the_report_has_no_student_ratio() -> None:
    summary = summarize(
        _evaluation({"decayed:student": [0] * 10}), samples=50, seed=0, cold_threshold=5
    )
    assert summary["student_over_teacher"] == {}
    assert "Student ÷ teacher" not in to_markdown(summary, [])

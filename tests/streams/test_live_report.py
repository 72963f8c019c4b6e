"""``streamrec live-report``'s arithmetic: the live counters a worker exports, read back from
their text exposition, give the HR@k and MRR of the ranks that were recorded."""

from __future__ import annotations

import math

import numpy as np
from prometheus_client import CollectorRegistry, generate_latest

from streamrec.cli.live import difference_interval, parse_live, proportion_interval, report_table
from streamrec.streams.live import LiveConfig, LiveMetrics, Scored


def exported(ranks: dict[str, list[int]]) -> str:
    registry = CollectorRegistry()
    live = LiveMetrics(registry, LiveConfig((10, 20)))
    for variant, rs in ranks.items():
        source = "personalized"
        live.record([Scored(variant, source, r, 1.0) for r in rs], {})
    return generate_latest(registry).decode()


def test_hr_and_mrr_read_from_the_exposition_are_those_of_the_recorded_ranks():
    rng = np.random.default_rng(3)
    ranks = {v: [int(r) if r < 30 else -1 for r in rng.integers(0, 60, 500)] for v in "ab"}
    counts = parse_live(exported(ranks))
    for variant, rs in ranks.items():
        r = np.array(rs)
        c = counts[variant]
        assert c.scored == len(rs)
        assert c.hr(10) == np.mean((r >= 0) & (r < 10))
        assert c.hr(20) == np.mean((r >= 0) & (r < 20))
        rr = np.where((r >= 0) & (r < 20), 1.0 / np.maximum(r + 1, 1), 0.0)  # MRR to k=20
        mean, se = c.mrr()
        assert math.isclose(mean, rr.mean())
        assert math.isclose(se, rr.std() / math.sqrt(len(rr)))


def test_intervals_are_the_normal_and_two_proportion_ones():
    assert math.isclose(proportion_interval(0.2, 400), 1.959964 * 0.02)
    assert math.isclose(
        difference_interval(0.3, 1000, 0.2, 1000),
        1.959964 * math.sqrt(0.3 * 0.7 / 1000 + 0.2 * 0.8 / 1000),
    )


def test_the_report_puts_the_control_first_and_differences_beside_the_others():
    table = report_table(
        parse_live(exported({"b": [0, 1, -1], "control": [5, -1]})), "control", [10]
    )
    assert table.columns[0]._cells == ["control", "b"]
    assert table.columns[3]._cells[0] == "—"
    assert table.columns[3]._cells[1].startswith("+0.1667")

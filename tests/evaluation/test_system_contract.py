"""The contract every evaluation system keeps (``prequential.System``), checked on one replay
of every default baseline (SASRec included) and every engine variant the test world can
run, as ``tests/index/test_contract.py`` does for the index backends.

Whatever it does inside, a system's lists are compared with the others' as equals only if
each one is a full list of distinct catalog items the user has not acted on yet: a system
that padded with repeats, recommended a user's own items back or came up short would be
scored on other terms. The no-future guard over the same systems is
``test_no_future.py``; determinism is ``test_evaluate.py``'s.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from streamrec.evaluation.baselines import NAMES
from streamrec.evaluation.variants import Variant

K = 10


@pytest.fixture(scope="module")
def replayed(
    world: dict[str, Path],
    sasrec_artifacts: Path,
    replay_every_system: Callable[[Path, Path, int], Any],
) -> Any:
    """Every system replayed over the test stream in micro-batches of 64."""
    return replay_every_system(sasrec_artifacts, world["test"], 64)


def _acted_on(replayed: Any) -> list[set[int]]:
    """Per test position: the items its user had acted on up to and including that event
    (warm-up included), i.e. what the list emitted after it must leave out."""
    seen: defaultdict[int, set[int]] = defaultdict(set)
    warmup = replayed.inputs.warmup
    for user, item in zip(warmup.users.tolist(), warmup.items.tolist(), strict=True):
        seen[user].add(item)
    test = replayed.inputs.test
    out = []
    for user, item in zip(test.users.tolist(), test.items.tolist(), strict=True):
        seen[user].add(item)
        out.append(set(seen[user]))
    return out


def _assert_k_distinct_catalog_items(items: np.ndarray, catalog: int, where: object) -> None:
    top = np.asarray(items)[:K]
    assert len(top) == K, (where, top.tolist())
    assert len(set(top.tolist())) == K, (where, top.tolist())
    assert ((top >= 0) & (top < catalog)).all(), (where, top.tolist())


def test_every_system_of_the_default_report_and_every_variant_is_replayed(
    replayed: Any, every_variant: tuple[Variant, ...]
) -> None:
    assert set(replayed.replay.outcomes) == {*NAMES, *(v.name for v in every_variant)}


def test_every_list_holds_k_distinct_catalog_items(replayed: Any) -> None:
    """The world's catalog (120 items) leaves every user far more than ``K`` unseen ones,
    so a list shorter than ``K`` is a system that came up short."""
    catalog = replayed.inputs.catalog_size
    for name, outcome in replayed.replay.outcomes.items():
        assert outcome.traces, name
        for pos, items in outcome.traces.items():
            _assert_k_distinct_catalog_items(items, catalog, (name, pos))


def test_no_list_recommends_an_item_its_user_already_acted_on(replayed: Any) -> None:
    acted_on = _acted_on(replayed)
    for name, outcome in replayed.replay.outcomes.items():
        for pos, items in outcome.traces.items():
            back = acted_on[pos].intersection(items[:K].tolist())
            assert not back, (name, pos, sorted(back))


def test_the_cold_list_is_k_distinct_catalog_items(replayed: Any) -> None:
    catalog = replayed.inputs.catalog_size
    for system in replayed.systems:
        _assert_k_distinct_catalog_items(system.cold_items(), catalog, system.name)

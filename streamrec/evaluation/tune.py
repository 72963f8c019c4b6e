"""Tuning on a validation split of the training part: one paired replay per setting.

Defaults must be chosen on a stream the report never scores (never on the test split), and
choices must survive the noise: each call replays the validation stream once through the
same system under every value of one setting (all other settings as given), so the values
are compared on the same events and one paired bootstrap over users gives each one's HR@10
/ NDCG@10 and its ratio to the first value (the current default) with 95 % CIs.

Run it coordinate-wise (one setting at a time, a handful of values, the winner carried on
to the next setting), e.g. on MovieLens-1M's training part split once more::

    streamrec data split data/ml1m.train.msgpack --out-dir data/val
    STREAMREC_TRAIN_SASREC_ENABLED=false streamrec train --quick \\
        --events data/val/ml1m.train.train.msgpack --out artifacts/val
    python -m streamrec.evaluation.tune data/val/ml1m.train.test.msgpack \\
        --warmup data/val/ml1m.train.train.msgpack --artifacts artifacts/val \\
        --system decayed:covis --setting engine_covis_window --values 3,2,5,8

A system is an engine variant (``RULE:RERANKER``, see :mod:`streamrec.evaluation.variants`)
or a baseline name; the warm-up and the protocol are those of ``streamrec evaluate``.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from streamrec.config import Settings
from streamrec.evaluation.bootstrap import PairedBootstrap
from streamrec.evaluation.metrics import gains
from streamrec.evaluation.prequential import History, System, replay
from streamrec.evaluation.run import EvalOptions, Inputs, build_systems, load_inputs
from streamrec.evaluation.variants import RULES, Variant

METRICS = ("HR@10", "NDCG@10")


def _options(system: str) -> EvalOptions:
    """Evaluation options with only ``system`` in them (a baseline, or an engine variant)."""
    if system.partition(":")[0] in RULES:
        return EvalOptions(ks=(10,), variants=(Variant.parse(system),), baselines=())
    return EvalOptions(ks=(10,), baselines=(system,))


class _Renamed:
    """A system under another name (the replay keys outcomes by name; these all share one)."""

    def __init__(self, name: str, system: System) -> None:
        self.name = name
        self.system = system
        self.cold_items = system.cold_items
        self.process = system.process
        self.end_warmup = system.end_warmup
        self.digest = system.digest


def compare(
    inputs: Inputs,
    artifacts: Path,
    settings: Settings,
    system: str,
    setting: str,
    values: list[Any],
    *,
    max_batch: int | None = None,
    advance: Callable[[int], None] | None = None,
    samples: int = 1000,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """One replay of ``system`` under each value of ``setting``; per value its metrics and
    ratios to the first value's, with paired-bootstrap CIs over the stream's users."""
    history = History()
    systems: list[System] = []
    labels = [f"{setting}={v}" for v in values]
    for label, value in zip(labels, values, strict=True):
        changed = Settings.model_validate({**settings.model_dump(), setting: value})
        built = build_systems(inputs, artifacts, changed, _options(system), history)
        if built.skipped or len(built.systems) != 1:
            raise ValueError(f"{system} cannot run: {built.skipped}")
        systems.append(_Renamed(label, built.systems[0]))
    result = replay(
        systems,
        inputs.test,
        warmup=inputs.warmup,
        history=history,
        users=inputs.users,
        items=inputs.items,
        max_batch=max_batch or settings.eval_max_batch,
        max_k=10,
        advance=advance,
    )
    boot = PairedBootstrap(inputs.test.users, samples=samples, seed=seed)
    per = {label: {m: gains(result.outcomes[label].ranks, m) for m in METRICS} for label in labels}
    base = labels[0]
    return [
        {
            "setting": label,
            **{m: boot.metric(per[label][m]).to_json() for m in METRICS},
            **{f"{m} ratio": boot.ratio(per[label][m], per[base][m]).to_json() for m in METRICS},
        }
        for label in labels
    ]


def _value(text: str) -> Any:
    """``5`` → 5, ``0.7`` → 0.7, anything else stays text (pydantic checks the type)."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _ci(x: dict[str, float]) -> str:
    return f"{x['value']:.4f} [{x['low']:.4f}, {x['high']:.4f}]"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("validation", type=Path, help="Validation stream (scored).")
    parser.add_argument("--warmup", type=Path, help="Training stream replayed first.")
    parser.add_argument("--artifacts", type=Path, required=True)
    parser.add_argument("--system", required=True, help="RULE:RERANKER or a baseline name.")
    parser.add_argument("--setting", required=True, help="Settings field, e.g. engine_k.")
    parser.add_argument("--values", required=True, help="Comma-separated; the first is the base.")
    parser.add_argument("--set", action="append", default=[], help="FIELD=VALUE for all runs.")
    args = parser.parse_args(argv)
    fixed = dict(part.split("=", 1) for part in args.set)
    settings = Settings(**{f: _value(v) for f, v in fixed.items()})
    began = time.perf_counter()
    inputs = load_inputs(args.validation, args.warmup, args.artifacts)
    values = [_value(v) for v in args.values.split(",")]
    total = len(inputs.test) + (len(inputs.warmup) if inputs.warmup is not None else 0)
    done = [0, 0]

    def advance(n: int) -> None:  # a line per tenth of the replay (progress on stderr)
        done[0] += n
        if done[0] * 10 // total > done[1]:
            done[1] = done[0] * 10 // total
            print(
                f"{done[0]:,}/{total:,} events, {time.perf_counter() - began:.0f} s",
                file=sys.stderr,
                flush=True,
            )

    rows = compare(
        inputs, args.artifacts, settings, args.system, args.setting, values, advance=advance
    )
    extra = " ".join(args.set)
    print(f"{args.system} {extra} on {args.validation} ({len(inputs.test):,} events)")
    print(f"| {args.setting} | HR@10 | NDCG@10 | HR@10 ratio to first |")
    print("| --- | --- | --- | --- |")
    for row in rows:
        print(
            f"| {row['setting'].partition('=')[2]} | {_ci(row['HR@10'])} | "
            f"{_ci(row['NDCG@10'])} | {_ci(row['HR@10 ratio'])} |"
        )
    print(f"({time.perf_counter() - began:.0f} s)")


if __name__ == "__main__":
    main()

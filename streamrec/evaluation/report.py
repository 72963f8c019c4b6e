"""The evaluation report: numbers with 95% CIs (report.json) and tables (report.md).

Everything here is computed from the per-event ranks of one replay, so the JSON and the
Markdown always say the same thing. ``served`` names the system ``streamrec worker`` runs
with the same settings and artifacts; the goal line compares *that* system (not the best
variant, which is only listed) with the best baseline on the primary metric (HR@10 when 10
is a cut-off): ratio with its paired-bootstrap CI, and whether the two systems' CIs overlap.
Coverage@10 is the share of the catalog (the artifacts' ``item_vectors.npz`` items) that
appears in at least one scored top-10 list; items outside the catalog are not counted.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from streamrec.evaluation.bootstrap import Interval, PairedBootstrap
from streamrec.evaluation.metrics import gains, hr_curve
from streamrec.evaluation.run import Evaluation

#: Ratio of HR@10 the engine's best variant must reach over the best baseline.
GOAL_RATIO = 1.3


def metric_names(ks: tuple[int, ...]) -> list[str]:
    """HR@k and NDCG@k for every cut-off, then MRR."""
    return [f"HR@{k}" for k in ks] + [f"NDCG@{k}" for k in ks] + ["MRR"]


def primary_metric(ks: tuple[int, ...]) -> str:
    return "HR@10" if 10 in ks else f"HR@{min(ks)}"


def summarize(ev: Evaluation, *, samples: int, seed: int, cold_threshold: int) -> dict[str, Any]:
    """All numbers of the report as plain JSON-able data."""
    replay = ev.replay
    test = replay.test
    ks = ev.options.ks
    names = metric_names(ks)
    primary = primary_metric(ks)
    boot = PairedBootstrap(test.users, samples=samples, seed=seed)
    splits = {
        "click": ~test.saves,
        "save": test.saves,
        "cold": replay.history_length < cold_threshold,
        "warm": replay.history_length >= cold_threshold,
    }
    per_gains = {
        name: {m: gains(outcome.ranks, m) for m in names}
        for name, outcome in replay.outcomes.items()
    }
    systems: dict[str, Any] = {}
    for name, outcome in replay.outcomes.items():
        g = per_gains[name]
        latency_ms = outcome.latency_s * 1000.0
        systems[name] = {
            "kind": ev.kinds[name],
            "metrics": {m: boot.metric(g[m]).to_json() for m in names},
            "splits": {
                split: {m: boot.metric(g[m], mask).to_json() for m in names}
                for split, mask in splits.items()
                if mask.any()
            },
            "coverage@10": float(
                outcome.covered[: ev.catalog_size].sum() / max(ev.catalog_size, 1)
            ),
            "freshness_ms": {
                "p50": float(np.percentile(latency_ms, 50)),
                "p99": float(np.percentile(latency_ms, 99)),
                "max": float(latency_ms.max()),
            },
            "compute_ms_per_event": float(outcome.batch_s.sum() * 1000.0 / len(test)),
            "hr_curve": hr_curve(outcome.ranks, max(ks)).tolist(),
            "digest": outcome.digest,
        }
    baselines = [n for n, kind in ev.kinds.items() if kind == "baseline"]
    engines = [n for n, kind in ev.kinds.items() if kind == "engine"]
    served_name = ev.options.served.name if ev.options.served is not None else None
    served = served_name if served_name in engines else None
    comparison: dict[str, Any] = {}
    goal: dict[str, Any] = {"metric": primary, "target_ratio": GOAL_RATIO}
    if baselines:
        best = max(baselines, key=lambda n: systems[n]["metrics"][primary]["value"])
        comparison = {
            "best_baseline": best,
            "ratios": {
                v: {m: boot.ratio(per_gains[v][m], per_gains[best][m]).to_json() for m in names}
                for v in engines
            },
        }
        goal["best_baseline"] = best
        if engines:
            goal["best_variant"] = max(
                engines, key=lambda n: systems[n]["metrics"][primary]["value"]
            )
        if served is not None:
            ratio = comparison["ratios"][served][primary]
            mine = Interval(**systems[served]["metrics"][primary])
            theirs = Interval(**systems[best]["metrics"][primary])
            goal.update(
                served=served,
                ratio=ratio,
                cis_overlap=mine.overlaps(theirs),
                met=ratio["value"] >= GOAL_RATIO and not mine.overlaps(theirs),
                shortfall=max(0.0, GOAL_RATIO - ratio["value"]),
            )
    # the replay's student against its teacher, rule by rule (issue goal: >= 98 % NDCG@10)
    student_over_teacher: dict[str, Any] = {}
    for variant in engines:
        rule, _, reranker = variant.partition(":")
        teacher = f"{rule}:teacher"
        if reranker == "student" and teacher in per_gains:
            student_over_teacher[rule] = {
                m: boot.ratio(per_gains[variant][m], per_gains[teacher][m]).to_json() for m in names
            }
    drift, from_evidence = (
        {n: a.to_json() for n, a in found.items()} if found else None
        for found in (ev.drift, ev.drift_from_evidence)
    )
    return {
        "inputs": ev.inputs,
        "events": {
            "test": len(test),
            "users": int(len(np.unique(test.users))),
            "click": int((~test.saves).sum()),
            "save": int(test.saves.sum()),
            "cold": int(splits["cold"].sum()),
            "warm": int(splits["warm"].sum()),
            "cold_threshold": cold_threshold,
        },
        "served": served,
        "catalog_size": ev.catalog_size,
        "coverage_items": "catalog (item_vectors.npz)",
        "batches": replay.batches,
        "seconds": ev.seconds,
        "bootstrap": {"unit": "user", "samples": samples, "seed": seed, "confidence": 0.95},
        "metrics": names,
        "systems": systems,
        "comparison": comparison,
        "student_over_teacher": student_over_teacher,
        "goal": goal,
        "skipped_variants": ev.skipped,
        "engines": ev.engine_info,
        "drift": drift,
        "drift_from_evidence": from_evidence,
        "digest": ev.digest,
    }


def _ci(x: dict[str, float], digits: int = 4) -> str:
    return f"{x['value']:.{digits}f} [{x['low']:.{digits}f}, {x['high']:.{digits}f}]"


def served_line(summary: dict[str, Any]) -> str:
    """The first line of the printed summary: the served system against the best baseline."""
    served, goal = summary["served"], summary["goal"]
    if served is None:
        return "Served: not replayed (the worker's reranker is not an evaluation variant)."
    metric = goal["metric"]
    mine = summary["systems"][served]["metrics"][metric]
    line = f"Served `{served}`: {metric} {_ci(mine)}"
    if "ratio" in goal:
        met = "met" if goal["met"] else "not met"
        line += (
            f"; x{_ci(goal['ratio'], 3)} the best baseline `{goal['best_baseline']}` "
            f"(goal {goal['target_ratio']}x: {met})"
        )
    return line + "."


def to_markdown(summary: dict[str, Any], plots: list[str]) -> str:
    """The human-readable report."""
    names = summary["metrics"]
    primary = summary["goal"]["metric"]
    ev, secs = summary["events"], summary["seconds"]
    lines = [
        "# Prequential evaluation",
        "",
        served_line(summary),
        "",
        f"Test stream `{summary['inputs']['test']}`: {ev['test']:,} events, {ev['users']:,} users "
        f"({ev['click']:,} clicks, {ev['save']:,} saves); warm-up "
        f"`{summary['inputs']['warmup'] or '-'}` ({int(summary['inputs']['warmup_events']):,} "
        f"events); artifacts `{summary['inputs']['artifacts']}`; catalog "
        f"{summary['catalog_size']:,} items.",
        "",
        "Test-then-train: each event is scored against the list its user had just before it "
        "(emitted after their previous event; a never-seen user gets the system's cold list), "
        f"then applied. {summary['batches']:,} micro-batches; global statistics move between "
        "batches. 95% CIs: paired bootstrap over users "
        f"({summary['bootstrap']['samples']} resamples).",
        "",
        f"Time: load {secs['load']:.1f} s, warm-up + replay {secs['replay']:.1f} s, "
        f"total {secs['total']:.1f} s.",
        "",
        "## Quality",
        "",
        "| system | kind | " + " | ".join(names) + " | coverage@10 |",
        "|---|---|" + "---|" * len(names) + "---|",
    ]
    for name, s in summary["systems"].items():
        cells = " | ".join(_ci(s["metrics"][m]) for m in names)
        kind = "served" if name == summary["served"] else s["kind"]
        lines.append(f"| {name} | {kind} | {cells} | {s['coverage@10']:.3f} |")
    comparison = summary["comparison"]
    if comparison and comparison["ratios"]:
        title = f"## Ratio to the best baseline (`{comparison['best_baseline']}`)"
        lines += _ratio_table(title, "variant", comparison["ratios"], names)
    if summary.get("student_over_teacher"):
        title = "## Student ÷ teacher (same rule, paired)"
        lines += _ratio_table(title, "rule", summary["student_over_teacher"], names)
    goal = summary["goal"]
    if "ratio" in goal:
        verdict = "met" if goal["met"] else "NOT met"
        lines += [
            "",
            f"**Goal** ({primary} ≥ {goal['target_ratio']}× the best baseline, non-overlapping "
            f"95% CIs): {verdict}. Served `{goal['served']}` vs "
            f"`{goal['best_baseline']}`: ratio {_ci(goal['ratio'], 3)}; CIs "
            f"{'overlap' if goal['cis_overlap'] else 'do not overlap'}"
            + (f"; short of the ratio by {goal['shortfall']:.3f}." if goal["shortfall"] else ".")
            + f" (Best variant: `{goal['best_variant']}`.)",
        ]
    lines += [
        "",
        f"## Splits ({primary} and MRR)",
        "",
        f"Cold: fewer than {ev['cold_threshold']} earlier events of the user (warm-up "
        f"included): {ev['cold']:,} events; warm: {ev['warm']:,}.",
        "",
    ]
    split_names = ["click", "save", "cold", "warm"]
    lines += [
        "| system | " + " | ".join(f"{sp} {primary} | {sp} MRR" for sp in split_names) + " |",
        "|---|" + "---|" * (2 * len(split_names)),
    ]
    for name, s in summary["systems"].items():
        row: list[str] = []
        for sp in split_names:
            got = s["splits"].get(sp)
            row += [_ci(got[primary]), _ci(got["MRR"])] if got else ["-", "-"]
        lines.append(f"| {name} | " + " | ".join(row) + " |")
    lines += [
        "",
        "## Freshness and cost (in process)",
        "",
        "Freshness: time from an event entering the system (its micro-batch starting) to its "
        "recommendations existing, i.e. the batch's processing time.",
        "",
        "| system | freshness p50 ms | p99 ms | max ms | compute ms/event |",
        "|---|---|---|---|---|",
    ]
    for name, s in summary["systems"].items():
        f = s["freshness_ms"]
        lines.append(
            f"| {name} | {f['p50']:.2f} | {f['p99']:.2f} | {f['max']:.2f} | "
            f"{s['compute_ms_per_event']:.3f} |"
        )
    if summary["drift"]:
        lines += ["", "## Drift adaptation", ""]
        lines += _drift_table(
            "Events after a recorded interest switch until at least half of the user's top-10 "
            "is from the new interest (censored: never within the user's remaining events).",
            summary["drift"],
        )
    if summary.get("drift_from_evidence"):
        lines += [""]
        lines += _drift_table(
            "The same, counted from the user's first event in the new interest (the first a "
            "system can know of the switch; switches without one are left out).",
            summary["drift_from_evidence"],
        )
    if summary["skipped_variants"]:
        lines += ["", "## Variants not run", ""]
        lines += [f"- `{name}`: {why}" for name, why in summary["skipped_variants"].items()]
    lines += [
        "",
        "## Determinism",
        "",
        f"Hash of all recommendations of all systems: `{summary['digest']}`",
        "",
        "| system | sha256 of its emitted recommendations |",
        "|---|---|",
    ]
    lines += [f"| {n} | `{s['digest']}` |" for n, s in summary["systems"].items()]
    if plots:
        lines += ["", "## Plots", ""] + [f"![{p}]({p})" for p in plots]
    return "\n".join(lines) + "\n"


def write_report(summary: dict[str, Any], out: Path, plots: list[str]) -> tuple[Path, Path]:
    """Write ``OUT/report.json`` and ``OUT/report.md``."""
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / "report.json"
    json_path.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    md_path = out / "report.md"
    md_path.write_text(to_markdown(summary, plots), encoding="utf-8")
    return json_path, md_path


def _ratio_table(
    title: str, row_name: str, rows: dict[str, dict[str, dict[str, float]]], names: list[str]
) -> list[str]:
    """A table of paired ratios with their CIs (markdown lines): one row per key of
    ``rows``, one column per metric of ``names``."""
    lines = ["", title, "", f"| {row_name} | " + " | ".join(names) + " |"]
    lines.append("|---|" + "---|" * len(names))
    for row, ratios in rows.items():
        lines.append(f"| {row} | " + " | ".join(_ci(ratios[m], 3) for m in names) + " |")
    return lines


def _drift_table(caption: str, drift: dict[str, dict[str, Any]]) -> list[str]:
    """One drift adaptation table (markdown lines) under its caption."""
    lines = [
        caption,
        "",
        "| system | switches | adapted | median events (censored = never) [95% CI] | "
        "mean events if adapted |",
        "|---|---|---|---|---|",
    ]
    for name, d in drift.items():
        mean = d["mean_events_to_adapt_if_adapted"]
        low, high = (_events(v) for v in d["median_events_ci95"])
        lines.append(
            f"| {name} | {d['switches']} | {d['adapted']} "
            f"({(d['adapted_share'] or 0) * 100:.1f}%) | "
            f"{_events(d['median_events_to_adapt'])} [{low}, {high}] | "
            f"{'-' if mean is None else f'{mean:.2f}'} |"
        )
    return lines


def _events(value: float | None) -> str:
    """A count of events to adapt, or "never" (None: inf in report.json)."""
    return "never" if value is None else f"{value:.1f}"

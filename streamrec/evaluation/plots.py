"""PNG plots of an evaluation (matplotlib, Agg backend: no display needed).

* ``stream.png`` — the primary metric over the stream (trailing window) per system: where
  in the stream a system wins, and whether it degrades as time passes.
* ``hr_curve.png`` — HR@k for k = 1..max cut-off per system.
* ``latency.png`` — distribution of in-process freshness (event → recommendations) per
  engine variant.
* ``drift.png`` — mean share of the top-10 from the new interest, by events after a switch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import numpy as np  # noqa: E402

from streamrec.evaluation.metrics import gains, parse_metric, sliding  # noqa: E402
from streamrec.evaluation.run import Evaluation  # noqa: E402


def _style(name: str, kind: str) -> dict[str, Any]:
    return {"label": name, "linestyle": "--" if kind == "baseline" else "-", "linewidth": 1.4}


def write_plots(ev: Evaluation, summary: dict[str, Any], out: Path, window: int) -> list[str]:
    """Write the plots into ``out``; returns their file names (relative to ``out``)."""
    out.mkdir(parents=True, exist_ok=True)
    written = [
        _stream(ev, summary["goal"]["metric"], out / "stream.png", window),
        _hr_curve(ev, summary, out / "hr_curve.png"),
    ]
    if any(kind == "engine" for kind in ev.kinds.values()):
        written.append(_latency(ev, out / "latency.png"))
    if summary.get("drift"):
        written.append(_drift(ev, summary["drift"], out / "drift.png", "the interest switch"))
    if summary.get("drift_from_evidence"):
        written.append(
            _drift(
                ev,
                summary["drift_from_evidence"],
                out / "drift_from_evidence.png",
                "their first event in the new interest",
            )
        )
    return [p.name for p in written]


def _stream(ev: Evaluation, metric: str, path: Path, window: int) -> Path:
    parse_metric(metric)
    fig, ax = plt.subplots(figsize=(9, 4.5))
    for name, outcome in ev.replay.outcomes.items():
        curve = sliding(gains(outcome.ranks, metric), window)
        skip = min(window // 10, len(curve) - 1)  # the first few events make a noisy spike
        x = np.arange(1, len(curve) + 1)
        ax.plot(x[skip:], curve[skip:], **_style(name, ev.kinds[name]))
    ax.set_xlabel("held-out event")
    ax.set_ylabel(f"{metric} (trailing {window:,} events)")
    ax.set_title(f"{metric} over the stream")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _finish(fig: Any, ax: Any, path: Path) -> Path:
    """Grid, legend, save and close: the common end of every plot."""
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _hr_curve(ev: Evaluation, summary: dict[str, Any], path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, s in summary["systems"].items():
        curve = s["hr_curve"]
        ax.plot(np.arange(1, len(curve) + 1), curve, marker=".", **_style(name, ev.kinds[name]))
    ax.set_xlabel("k")
    ax.set_ylabel("HR@k")
    ax.set_title("Hit rate by list length")
    return _finish(fig, ax, path)


def _latency(ev: Evaluation, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    engines = [n for n, kind in ev.kinds.items() if kind == "engine"]
    ms = [ev.replay.outcomes[n].latency_s * 1000.0 for n in engines]
    low = max(min(float(m.min()) for m in ms), 1e-3)
    high = max(float(m.max()) for m in ms) * 1.01
    bins = np.geomspace(low, max(high, low * 1.1), 50).tolist()
    for name, values in zip(engines, ms, strict=True):
        ax.hist(values, bins=bins, histtype="step", linewidth=1.4, label=name)
    ax.set_xscale("log")
    ax.set_xlabel("event → recommendations, ms (micro-batch processing time)")
    ax.set_ylabel("events")
    ax.set_title("Freshness in process")
    return _finish(fig, ax, path)


def _drift(ev: Evaluation, drift: dict[str, Any], path: Path, since: str) -> Path:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, d in drift.items():
        curve = d["share_curve"]
        ax.plot(np.arange(1, len(curve) + 1), curve, marker=".", **_style(name, ev.kinds[name]))
    ax.axhline(0.5, color="grey", linewidth=0.8)
    ax.set_xlabel(f"user's events from {since}")
    ax.set_ylabel("share of top-10 from the new interest")
    ax.set_title("Adaptation to drift")
    return _finish(fig, ax, path)

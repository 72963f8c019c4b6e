"""``streamrec live-report``: live HR@k and MRR per A/B variant, from the workers' /metrics.

Every worker exports the live counters of the events it processed (streams/live.py); the
report adds them up over workers and sources and prints, per variant, HR@k (hits / scored)
and MRR (from the per-rank histogram, exact up to the largest k) with 95 % normal
intervals, and each variant's difference to the control with a two-proportion interval —
the same interval the Grafana dashboard draws. Events are treated as independent; one
user's events are correlated, so the intervals are somewhat narrow for heavy users.
"""

from __future__ import annotations

import math
import urllib.request
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Annotated
from urllib.error import HTTPError

import typer
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console
from rich.table import Table

from streamrec.cli.common import fail, settings_of

#: Two-sided 95 % normal quantile.
Z95 = 1.959964


@dataclass
class LiveCounts:
    """One variant's live counters, summed over workers and sources."""

    scored: float = 0.0
    hits: dict[int, float] = field(default_factory=lambda: defaultdict(float))
    #: Cumulative count of hits at rank <= r (the histogram's buckets).
    rank_le: dict[int, float] = field(default_factory=lambda: defaultdict(float))

    def hr(self, k: int) -> float:
        return self.hits[k] / self.scored if self.scored else 0.0

    def reciprocal_ranks(self) -> list[tuple[float, float]]:
        """(1/rank, how many events had it) for the ranks the histogram resolves."""
        out, below = [], 0.0
        for rank in sorted(self.rank_le):
            out.append((1.0 / rank, self.rank_le[rank] - below))
            below = self.rank_le[rank]
        return out

    def mrr(self) -> tuple[float, float]:
        """MRR and its standard error (misses and ranks beyond the histogram count 0)."""
        if not self.scored:
            return 0.0, 0.0
        pairs = self.reciprocal_ranks()
        mean = sum(rr * n for rr, n in pairs) / self.scored
        square = sum(rr * rr * n for rr, n in pairs) / self.scored
        return mean, math.sqrt(max(square - mean * mean, 0.0) / self.scored)


def parse_live(text: str, into: dict[str, LiveCounts] | None = None) -> dict[str, LiveCounts]:
    """Add the live counters of one /metrics text to ``into`` (per variant)."""
    counts = into if into is not None else defaultdict(LiveCounts)
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            variant = s.labels.get("variant")
            if variant is None:
                continue
            if s.name == "streamrec_live_events_scored_total":
                counts[variant].scored += s.value
            elif s.name == "streamrec_live_hits_total":
                counts[variant].hits[int(s.labels["k"])] += s.value
            elif s.name == "streamrec_live_rank_bucket" and s.labels["le"] != "+Inf":
                counts[variant].rank_le[int(float(s.labels["le"]))] += s.value
    return dict(counts)


def scrape(urls: Iterable[str], token: str | None) -> dict[str, LiveCounts]:
    """The live counters of every worker at ``urls`` (their /metrics), summed."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    counts: dict[str, LiveCounts] = defaultdict(LiveCounts)
    for url in urls:
        target = url.rstrip("/")
        target = target if target.endswith("/metrics") else f"{target}/metrics"
        try:  # the standard library: a worker-only install has no requests
            request = urllib.request.Request(target, headers=headers)
            with urllib.request.urlopen(request, timeout=10) as got:
                parse_live(got.read().decode(), counts)
        except HTTPError as exc:
            raise RuntimeError(f"{target}: HTTP {exc.code}") from None
    return dict(counts)


def proportion_interval(p: float, n: float) -> float:
    """Half-width of the 95 % normal interval of a proportion ``p`` over ``n`` events."""
    return Z95 * math.sqrt(p * (1 - p) / n) if n else math.inf


def difference_interval(p1: float, n1: float, p0: float, n0: float) -> float:
    """Half-width of the 95 % two-proportion interval of ``p1 - p0``."""
    if not (n1 and n0):
        return math.inf
    return Z95 * math.sqrt(p1 * (1 - p1) / n1 + p0 * (1 - p0) / n0)


def report_table(counts: Mapping[str, LiveCounts], control: str, ks: Iterable[int]) -> Table:
    """Per variant: events scored, HR@k and MRR with intervals, and the difference to the
    control."""
    ks = sorted(ks)
    table = Table(title=f"live quality per variant (control: {control})")
    table.add_column("variant")
    table.add_column("events", justify="right")
    for k in ks:
        table.add_column(f"HR@{k}", justify="right")
        table.add_column(f"Δ HR@{k} vs control", justify="right")
    table.add_column("MRR", justify="right")
    table.add_column("Δ MRR vs control", justify="right")
    base = counts.get(control, LiveCounts())
    base_mrr, base_se = base.mrr()
    for name in sorted(counts, key=lambda v: (v != control, v)):
        c = counts[name]
        row = [name, f"{c.scored:,.0f}"]
        for k in ks:
            p, p0 = c.hr(k), base.hr(k)
            row.append(f"{p:.4f} ± {proportion_interval(p, c.scored):.4f}")
            row.append(
                "—"
                if name == control
                else f"{p - p0:+.4f} ± {difference_interval(p, c.scored, p0, base.scored):.4f}"
            )
        mrr, se = c.mrr()
        row.append(f"{mrr:.4f} ± {Z95 * se:.4f}")
        row.append(
            "—"
            if name == control
            else f"{mrr - base_mrr:+.4f} ± {Z95 * math.hypot(se, base_se):.4f}"
        )
        table.add_row(*row)
    return table


def live_report(
    ctx: typer.Context,
    urls: Annotated[
        list[str],
        typer.Argument(help="Worker base URLs (http://host:6066) or their /metrics URLs."),
    ],
) -> None:
    """Live HR@k and MRR per A/B variant with 95 % intervals, summed over the workers given,
    and each variant's difference to the control (bearer token: STREAMREC_WORKER_AUTH_TOKEN)."""
    from streamrec.streams.variants import Experiment, VariantError

    settings = settings_of(ctx)
    try:
        control = Experiment.from_specs(settings.variants, settings.experiment_salt).control.name
        counts = scrape(urls, settings.reveal("worker_auth_token"))
    except (VariantError, RuntimeError, OSError) as exc:
        fail(str(exc))
    if not counts:
        fail("no live counters at the given URLs (are they streamrec workers?)")
    Console().print(report_table(counts, control, settings.live_ks))

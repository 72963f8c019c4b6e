"""``streamrec evaluate``: prequential replay of a held-out stream against baselines."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from streamrec.cli.common import console, fail, settings_of, warn


def evaluate(
    ctx: typer.Context,
    test_file: Annotated[
        Path, typer.Argument(help="Held-out recorded stream (.msgpack[.zst]), replayed in order.")
    ],
    artifacts: Annotated[
        Path, typer.Option(help="Artifacts directory written by `streamrec train`.")
    ],
    report: Annotated[Path, typer.Option(help="Directory for report.md, report.json and plots.")],
    warmup: Annotated[
        Path | None,
        typer.Option(help="Stream replayed first (applied, never scored) so users have state."),
    ] = None,
    variants: Annotated[
        list[str] | None,
        typer.Option(
            help="Engine variants RULE:RERANKER (rule decayed|multi; reranker student|int8|"
            "teacher|covis|none), comma-separated or repeated; `all` is the whole matrix. "
            "Default: decayed:student, decayed:none, decayed:covis; what `streamrec worker` "
            "serves with these settings and artifacts is always added and named `served`. "
            "A rule's student, int8 and teacher are those trained for it (`rules/<rule>/` "
            "with STREAMREC_TRAIN_RULES); students of a rule with none are skipped.",
        ),
    ] = None,
    baselines: Annotated[
        list[str] | None,
        typer.Option(
            help="Baselines: popular, recent, windowed, itemknn, static, sasrec (comma-separated "
            "or repeated; default all), or none."
        ),
    ] = None,
    k: Annotated[
        list[int] | None, typer.Option("--k", help="List cut-offs (repeat); default 10 and 20.")
    ] = None,
    drift: Annotated[
        Path | None,
        typer.Option(
            help="Synthetic stream from `streamrec data synth` whose .drift.jsonl/.truth.npz/"
            ".items.npz give the interest switches: adds the drift-adaptation analysis.",
        ),
    ] = None,
    jobs: Annotated[
        int,
        typer.Option(
            min=1, help="Processes to spread the systems over (same results, faster on cores)."
        ),
    ] = 1,
) -> None:
    """Replay TEST_FILE test-then-train through the engine and the baselines.

    For every event, the user's current recommendations (emitted after their previous event)
    are scored against the item they act on now, then the event is applied through
    `Engine.process`, exactly as the worker calls it. Writes HR@k, NDCG@k, MRR, coverage,
    splits by action and cold/warm, freshness, 95% paired-bootstrap CIs, plots and a hash
    of every recommendation (determinism) to REPORT.
    """
    from streamrec.evaluation.baselines import NAMES
    from streamrec.evaluation.plots import write_plots
    from streamrec.evaluation.report import served_line, summarize, write_report
    from streamrec.evaluation.run import EvalOptions, parse_baselines
    from streamrec.evaluation.run import evaluate as run_evaluation
    from streamrec.evaluation.variants import (
        DEFAULT_VARIANTS,
        RERANKERS,
        parse_variants,
        served_variant,
    )
    from streamrec.streams.core.loader import FailedModelError, check_gate

    settings = settings_of(ctx)
    for path in (test_file, warmup, drift):
        if path is not None and not path.is_file():
            fail(f"{path}: no such file")
    if not artifacts.is_dir():
        fail(f"{artifacts}: no such artifacts directory (run `streamrec train` first)")
    ks = tuple(sorted(set(k or [10, 20])))
    if min(ks) < 1:
        fail("--k must be at least 1")
    try:
        options = EvalOptions(
            ks=ks,
            variants=tuple(parse_variants(variants or list(DEFAULT_VARIANTS))),
            baselines=parse_baselines(baselines) if baselines else NAMES,
            drift_world=drift,
            served=served_variant(settings, artifacts),
        )
    except ValueError as exc:
        fail(str(exc))
    if options.served is not None and RERANKERS[options.served.reranker]:
        try:  # the served system is the worker's: it serves no model the worker refuses
            check_gate(
                artifacts, settings.allow_failed_model, warn=warn, rules=[options.served.rule]
            )
        except FailedModelError as exc:
            fail(str(exc))
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
    ) as progress:

        def track(label: str, total: int) -> Callable[[int], None]:
            task = progress.add_task(label, total=total)
            return lambda n: progress.advance(task, n)

        try:
            result = run_evaluation(
                test_file,
                artifacts,
                settings,
                options,
                warmup_path=warmup,
                progress=track,
                jobs=jobs,
            )
        except (FileNotFoundError, ValueError) as exc:
            fail(str(exc))
    summary = summarize(
        result,
        samples=settings.eval_bootstrap_samples,
        seed=settings.eval_bootstrap_seed,
        cold_threshold=settings.eval_cold_threshold,
    )
    plots = write_plots(result, summary, report, settings.eval_window_events)
    json_path, md_path = write_report(summary, report, plots)
    console.print(served_line(summary), highlight=False)
    for name, why in result.skipped.items():
        console.print(f"[yellow]skipped[/] {name}: {why}", highlight=False)
    goal = summary["goal"]
    if "best_variant" in goal:
        best = summary["systems"][goal["best_variant"]]["metrics"][goal["metric"]]
        console.print(
            f"best variant {goal['best_variant']}: {goal['metric']} {best['value']:.4f}",
            highlight=False,
        )
    console.print(f"recommendations hash {summary['digest']}", highlight=False)
    console.print(f"wrote {md_path} and {json_path} ({result.seconds['total']:.1f} s)")

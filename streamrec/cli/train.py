"""``streamrec train``: item embeddings, index, teacher, distilled student, ONNX, report."""

from __future__ import annotations

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

from streamrec.cli.common import about, console, fail, settings_of, stdout_console


def train(
    ctx: typer.Context,
    events: Annotated[
        Path,
        typer.Option(
            "--events",
            exists=True,
            dir_okay=False,
            help="Time-ordered recorded stream to learn from (.msgpack or .msgpack.zst), e.g. "
            "the train part of `streamrec data split`.",
        ),
    ],
    out: Annotated[
        Path,
        typer.Option(
            "--out", file_okay=False, help="Artifacts directory to write (created if needed)."
        ),
    ],
    quick: Annotated[
        bool,
        typer.Option(
            "--quick",
            help="Small samples and few epochs (STREAMREC_TRAIN_QUICK_*): about a minute on "
            "MovieLens-100k, for tests and the demo.",
        ),
    ] = False,
    seed: Annotated[
        int | None,
        typer.Option("--seed", help="Seed of the whole run (default: STREAMREC_TRAIN_SEED)."),
    ] = None,
) -> None:
    """Train item embeddings, the index, a teacher, a distilled student reranker and SASRec.

    Writes ARTIFACTS/{item_vectors.npz, index/, reranker.onnx, reranker.int8.onnx,
    teacher.onnx, popular.msgpack, covis.npz, sasrec.onnx, sasrec.json, report.json,
    manifest.json} (SASRec unless STREAMREC_TRAIN_SASREC_ENABLED=false) and prints the
    report. The rerankers learn from STREAMREC_ENGINE_RULE's replay; each rule of
    STREAMREC_TRAIN_RULES (e.g. multi) gets its own under ARTIFACTS/rules/<rule>/, gated
    alike, so A/B variants and `streamrec evaluate` can switch rule. Exits non-zero when the
    gate is missed: the student must keep >= 97 % of the teacher's NDCG@10, be >= 5x faster
    than the ONNX teacher for 200 candidates (median per-call ratio of thread CPU time), the
    teacher must beat retrieval order and the student every candidate source ranked alone
    (retrieval order, popularity order). A model that misses it is still written, marked
    failed in manifest.json with the checks it missed, and `streamrec worker` refuses it
    unless `--allow-failed-model`.
    """
    settings = settings_of(ctx)
    # Heavy imports (torch, faiss, onnxruntime) only once the command really runs.
    from streamrec.models.export import ParityError
    from streamrec.models.metadata import FeatureSpecMismatch, ModelFileError
    from streamrec.streams.core.artifacts import Artifacts
    from streamrec.streams.wire import InvalidRecord
    from streamrec.training.config import TrainingConfig
    from streamrec.training.pipeline import train as run
    from streamrec.training.report import report_table
    from streamrec.training.rerankers import TrainingError

    config = TrainingConfig.from_settings(settings, quick=quick, seed=seed)
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    try:
        with Progress(*columns, console=console, transient=False) as progress:
            report = run(events, out, settings, config, progress)
    except (TrainingError, ParityError, InvalidRecord, ModelFileError, FeatureSpecMismatch) as exc:
        fail(str(exc))
    except ValueError as exc:
        fail(about(events, exc))
    parts = {settings.engine_rule: report, **report.get("rules", {})}
    for rule, part in parts.items():
        stdout_console().print(report_table(part, rule))
    console.print(
        f"model {report['model_version']} → {out} ({report['seconds']['total_s']:.0f} s); "
        f"report: {Artifacts(out).report}",
        highlight=False,
    )
    failed = []
    for rule, part in parts.items():
        which = f"{rule}: " if len(parts) > 1 else ""
        for check in part["gate"]["checks"]:
            mark = "[green]pass[/]" if check["passed"] else "[red]FAIL[/]"
            console.print(f"{mark} {which}{check['name']}: {check['detail']}", highlight=False)
            if not check["passed"]:
                failed.append(which + check["detail"])
    if failed:
        fail(
            "gate missed: " + "; ".join(failed) + f" ({out} is marked failed for those rules: "
            "workers refuse them unless --allow-failed-model)"
        )

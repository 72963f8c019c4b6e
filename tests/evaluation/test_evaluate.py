"""End to end: the real engine (FAISS index, update rules) replayed against the baselines."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from streamrec.cli import app
from streamrec.config import Settings
from streamrec.evaluation.report import summarize, write_report
from streamrec.evaluation.run import EvalOptions, _groups, evaluate
from streamrec.evaluation.variants import Variant, parse_variants

VARIANTS = (
    Variant("decayed", "none"),
    Variant("multi", "none"),
    Variant("decayed", "student"),
    Variant("decayed", "teacher"),
)


def _run(world: dict[str, Path], **kw):  # type: ignore[no-untyped-def]
    options = EvalOptions(ks=(10, 20), variants=VARIANTS, **kw)
    return evaluate(
        world["test"], world["artifacts"], Settings(), options, warmup_path=world["warmup"]
    )


def test_engine_and_baselines_are_scored_on_every_held_out_event(world) -> None:  # type: ignore[no-untyped-def]
    ev = _run(world)
    assert list(ev.replay.outcomes) == [
        "popular", "recent", "windowed", "itemknn", "static",
        "decayed:none", "multi:none", "decayed:student",
    ]  # fmt: skip
    assert all(len(o.ranks) == 1200 for o in ev.replay.outcomes.values())
    # the student reranks: same retrieval, another order, so other lists
    assert ev.engine_info["decayed:student"]["provider"] == "CPUExecutionProvider"
    assert ev.engine_info["decayed:none"]["provider"] == "none"
    student, plain = ev.replay.outcomes["decayed:student"], ev.replay.outcomes["decayed:none"]
    assert student.digest != plain.digest
    # no teacher in these artifacts: that variant is reported as skipped, with the reason
    assert "teacher.onnx does not exist" in ev.skipped["decayed:teacher"]
    summary = summarize(ev, samples=200, seed=0, cold_threshold=5)
    hr = {n: s["metrics"]["HR@10"]["value"] for n, s in summary["systems"].items()}
    # users live in one item cluster of four: anything personal beats popularity clearly
    assert hr["decayed:none"] > 2 * hr["popular"]
    assert summary["comparison"]["best_baseline"] in ("itemknn", "static")
    assert set(summary["comparison"]["ratios"]) == {"decayed:none", "multi:none", "decayed:student"}


def test_same_files_and_artifacts_give_the_same_recommendation_hash(world) -> None:  # type: ignore[no-untyped-def]
    first, second = _run(world), _run(world)
    assert first.digest == second.digest
    for name, outcome in first.replay.outcomes.items():
        assert outcome.digest == second.replay.outcomes[name].digest
        assert (outcome.ranks == second.replay.outcomes[name].ranks).all()


def test_the_hash_changes_when_the_stream_does(world, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    shorter = dict(world, warmup=None)
    options = EvalOptions(ks=(10,), variants=(Variant("decayed", "none"),), baselines=())
    with_warmup = evaluate(world["test"], world["artifacts"], Settings(), options,
                           warmup_path=world["warmup"])  # fmt: skip
    without = evaluate(shorter["test"], world["artifacts"], Settings(), options)
    assert with_warmup.digest != without.digest


def test_report_files_and_cli(world, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "report"
    result = CliRunner().invoke(
        app,
        [
            "evaluate", str(world["test"]), "--artifacts", str(world["artifacts"]),
            "--report", str(out), "--warmup", str(world["warmup"]),
            "--variants", "decayed:none", "--baselines", "popular,static", "--k", "10",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "report.json").read_text())
    # the served system (what `streamrec worker` runs) is always replayed: the goal compares it
    assert set(summary["systems"]) == {"popular", "static", "decayed:none", "decayed:student"}
    assert summary["served"] == "decayed:student"
    assert summary["metrics"] == ["HR@10", "NDCG@10", "MRR"]
    md = (out / "report.md").read_text()
    assert summary["digest"] in md and "| decayed:none | engine |" in md
    for plot in ("stream.png", "hr_curve.png", "latency.png"):
        assert (out / plot).read_bytes()[:4] == b"\x89PNG"


def test_cli_rejects_unknown_variant(world, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    result = CliRunner().invoke(
        app,
        [
            "evaluate", str(world["test"]), "--artifacts", str(world["artifacts"]),
            "--report", str(tmp_path), "--variants", "decayed:magic",
        ],
    )  # fmt: skip
    assert result.exit_code == 1
    assert "reranker must be one of" in result.output


def test_write_report_roundtrips_json(world, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    options = EvalOptions(ks=(5,), variants=(), baselines=("popular",))
    ev = evaluate(world["test"], world["artifacts"], Settings(), options)
    summary = summarize(ev, samples=100, seed=0, cold_threshold=5)
    json_path, md_path = write_report(summary, tmp_path, [])
    assert json.loads(json_path.read_text())["goal"]["metric"] == "HR@5"
    assert "NOT met" not in md_path.read_text()  # no engine: no goal verdict at all


@pytest.mark.parametrize("bad", ["decayed:magic", "gru:student"])
def test_variant_parse_errors(bad: str) -> None:
    with pytest.raises(ValueError):
        Variant.parse(bad)


def test_variant_groups_expand_in_order_without_duplicates() -> None:
    names = [v.name for v in parse_variants(["decayed:none,default", "multi:none"])]
    assert names == ["decayed:none", "decayed:student", "decayed:covis", "multi:none"]
    everything = [v.name for v in parse_variants(["all"])]
    assert len(everything) == len(set(everything)) == 9
    assert {"decayed:teacher", "multi:teacher", "decayed:int8"} <= set(everything)


def test_parallel_processes_give_the_same_results_as_one(world) -> None:  # type: ignore[no-untyped-def]
    options = EvalOptions(
        ks=(10,), variants=(Variant("decayed", "none"), Variant("multi", "none")),
        baselines=("popular", "itemknn"),
    )  # fmt: skip
    one = evaluate(world["test"], world["artifacts"], Settings(), options,
                   warmup_path=world["warmup"])  # fmt: skip
    two = evaluate(world["test"], world["artifacts"], Settings(), options,
                   warmup_path=world["warmup"], jobs=2)  # fmt: skip
    assert two.inputs["jobs"] == "2"
    assert list(two.replay.outcomes) == list(one.replay.outcomes)
    assert two.digest == one.digest


def test_variants_of_one_rule_share_one_replay_with_the_lists_each_would_emit_alone(
    world,  # type: ignore[no-untyped-def]
) -> None:
    variants = tuple(Variant("decayed", r) for r in ("none", "student", "covis"))
    shared = evaluate(
        world["test"], world["artifacts"], Settings(), EvalOptions(variants=variants, baselines=()),
        warmup_path=world["warmup"],
    )  # fmt: skip
    for variant in variants:
        alone = evaluate(
            world["test"], world["artifacts"], Settings(),
            EvalOptions(variants=(variant,), baselines=()), warmup_path=world["warmup"],
        )  # fmt: skip
        mine, theirs = shared.replay.outcomes[variant.name], alone.replay.outcomes[variant.name]
        assert (mine.ranks == theirs.ranks).all(), variant.name
        assert (mine.covered == theirs.covered).all(), variant.name
        if variant.reranker != "none":  # same scores too (retrieval order's are the feature's)
            assert mine.digest == theirs.digest, variant.name
        assert shared.engine_info[variant.name] == alone.engine_info[variant.name]
    assert len({o.digest for o in shared.replay.outcomes.values()}) == 3


def test_jobs_keep_a_rules_shared_variants_together_and_baselines_in_a_free_process() -> None:
    options = EvalOptions(variants=tuple(parse_variants(["default"])))
    groups = _groups(options, 2)
    assert [[v.name for v in g.variants] for g in groups] == [
        ["decayed:student", "decayed:none"], ["decayed:covis"],
    ]  # fmt: skip
    assert [g.baselines for g in groups] == [(), options.baselines]
    two_rules = EvalOptions(variants=tuple(parse_variants(["decayed:student,multi:none"])))
    alone = _groups(two_rules, 3)
    names = [[v.name for v in g.variants] for g in alone]
    assert names == [["multi:none"], ["decayed:student"], []]
    assert alone[-1].baselines == options.baselines


def test_with_the_engines_co_visitation_on_retrieval_order_runs_its_own_replay(world) -> None:  # type: ignore[no-untyped-def]
    variants = (Variant("decayed", "student"), Variant("decayed", "none"))
    on = Settings(engine_covis_weight=4.0)
    both = evaluate(
        world["test"], world["artifacts"], on, EvalOptions(variants=variants, baselines=()),
        warmup_path=world["warmup"],
    )  # fmt: skip
    alone = evaluate(
        world["test"], world["artifacts"], on,
        EvalOptions(variants=variants[1:], baselines=()), warmup_path=world["warmup"],
    )  # fmt: skip
    plain = both.replay.outcomes["decayed:none"]
    assert plain.digest == alone.replay.outcomes["decayed:none"].digest  # the engine's ranking


def test_coverage_is_a_share_of_the_catalog_even_with_items_outside_it(
    world,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    """Test events on items the artifacts never saw make the baselines recommend them; they
    are not catalog items, so coverage stays in [0, 1]."""
    from streamrec.streams.recorded import read_events, write_events
    from streamrec.streams.wire import Event

    events = list(read_events(world["test"]))
    extra = [Event(f"x{n}", e.user_id, f"new{n % 150}", e.action, e.ts) for n, e in
             enumerate(events)]  # fmt: skip
    mixed = [e for pair in zip(events, extra, strict=True) for e in pair]
    write_events(tmp_path / "mixed.msgpack", mixed)
    options = EvalOptions(ks=(10,), variants=(Variant("decayed", "none"),))
    ev = evaluate(tmp_path / "mixed.msgpack", world["artifacts"], Settings(), options,
                  warmup_path=world["warmup"])  # fmt: skip
    summary = summarize(ev, samples=100, seed=0, cold_threshold=5)
    coverage = {n: s["coverage@10"] for n, s in summary["systems"].items()}
    assert all(0.0 <= c <= 1.0 for c in coverage.values()), coverage
    assert coverage["popular"] > 0


def test_the_report_names_the_served_system_and_compares_it_not_the_best(
    world,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    from streamrec.evaluation.report import served_line
    from streamrec.evaluation.variants import served_variant

    settings = Settings()  # reranker.onnx is in the artifacts: the worker serves the student
    served = served_variant(settings, world["artifacts"])
    assert served == Variant("decayed", "student")
    assert served_variant(Settings(engine_reranker=""), world["artifacts"]) == Variant(
        "decayed", "none"
    )
    options = EvalOptions(ks=(10,), variants=(Variant("decayed", "none"),), served=served)
    assert [v.name for v in options.variants] == ["decayed:student", "decayed:none"]
    ev = evaluate(world["test"], world["artifacts"], settings, options,
                  warmup_path=world["warmup"])  # fmt: skip
    summary = summarize(ev, samples=100, seed=0, cold_threshold=5)
    assert summary["served"] == "decayed:student"
    goal = summary["goal"]
    assert goal["served"] == "decayed:student"
    assert goal["ratio"] == summary["comparison"]["ratios"]["decayed:student"]["HR@10"]
    hr = {n: s["metrics"]["HR@10"]["value"] for n, s in summary["systems"].items()}
    assert goal["best_variant"] == max(["decayed:student", "decayed:none"], key=hr.__getitem__)
    md = write_report(summary, tmp_path, [])[1].read_text()
    assert md.splitlines()[2] == served_line(summary)
    assert served_line(summary).startswith("Served `decayed:student`: HR@10 ")
    assert "| decayed:student | served |" in md

"""The learning curve: nested subsets of the same headlines, a tiny real fine-tuning run, resume."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from finner import schemas
from finner.errors import FinnerError
from finner.evaluate import Result, evaluate
from finner.gold import DEV, GOLD_EMBEDDED, GOLD_REAL, embedded_truth, load_gold
from finner.ids import title_key
from finner.metrics import EXACT, PRF, score
from finner.learning_curve import CurveConfig, TrainingSets, curve_fingerprint, curve_sizes, markdown_curve, point_of, point_training, setting, training_sets
from finner.models.registry import ModelSpec
from finner.models.train_config import TrainConfig
from finner.testing.labelled_demo import write_labelled_demo
from finner.testing.labelled_feed import write_labelled_feed
from finner.training_data import GOLD_LABELS, LLM_LABELS
from jobs import learning_curve as job


def test_subsets_are_nested_prefixes_of_the_same_headlines(store):
    write_labelled_demo(store)
    cfg = CurveConfig(gold=GOLD_EMBEDDED, shuffle_seed=3)
    sets = training_sets(store, load_gold(store, cfg.gold), cfg)
    sample = store.read("sample").to_pylist()
    held_out = {title_key(r["title"]) for r in sample if r["split"] != "train"}
    train_ids = {r["id"] for r in sample if r["split"] == "train" and title_key(r["title"]) not in held_out}
    assert set(sets.pool) == train_ids and len(train_ids) < sum(r["split"] == "train" for r in sample)  # every train headline but the title twins of held-out ones
    small, large = sets.subset("llm", 10), sets.subset("llm", 40)
    assert set(small.column("id").to_pylist()) < set(large.column("id").to_pylist())
    # the same headlines for both label sources; only the spans differ (the stand-in drops tickers)
    gold = sets.subset("gold", 40)
    assert set(gold.column("id").to_pylist()) == set(large.column("id").to_pylist())
    truth = embedded_truth()
    assert all(row["spans"] == truth[row["id"]] for row in gold.to_pylist())
    # another seed, another order
    other = training_sets(store, load_gold(store, cfg.gold), CurveConfig(gold=GOLD_EMBEDDED, shuffle_seed=4))
    assert other.pool != sets.pool and sorted(other.pool) == sorted(sets.pool)


def test_real_gold_pools_the_dev_part_and_the_llm_curve_goes_on_with_the_feed(store, real_headlines_path, company_listings_path):
    """`--gold real`: both curves train on the dev headlines less the validation rows (human spans
    vs the store's LLM spans of the same headlines); the LLM curve then takes the feed's own
    labelled train-year headlines, none of them a gold headline or its title twin."""
    write_labelled_feed(store, real_headlines_path, company_listings_path)
    gold = load_gold(store, GOLD_REAL)
    cfg = CurveConfig(gold=GOLD_REAL, valid_rows=40)
    sets = training_sets(store, gold, cfg)
    dev = gold.subjects().split(DEV)
    dev_ids = set(dev.column("id").to_pylist())
    held_out = set(sets.valid[GOLD_LABELS].column("id").to_pylist())
    assert len(held_out) == 40 and held_out == set(sets.valid[LLM_LABELS].column("id").to_pylist())
    assert set(sets.pool) == dev_ids - held_out
    assert set(sets.subset(GOLD_LABELS, 1000).column("id").to_pylist()) == set(sets.pool)  # gold stops at the pool
    gold_keys = {title_key(t) for t in gold.table.column("title").to_pylist()}
    assert sets.extra and not {title_key(t) for t in sets.train[LLM_LABELS].filter(pc.is_in(sets.train[LLM_LABELS]["id"], pa.array(sets.extra))).column("title").to_pylist()} & gold_keys
    wanted = len(sets.pool) + 100
    llm = sets.subset(LLM_LABELS, wanted)
    assert llm.num_rows == wanted and set(sets.pool) < set(llm.column("id").to_pylist())
    # the human and the LLM spans of the same dev headline: the spans differ, the titles do not
    human = {r["id"]: r for r in sets.subset(GOLD_LABELS, len(sets.pool)).to_pylist()}
    assert all(human[r["id"]]["title"] == r["title"] for r in llm.to_pylist() if r["id"] in human)
    assert curve_sizes(CurveConfig(gold=GOLD_REAL, sizes=(25, 50_000), feed_sizes=(1000,), include_all=False), sets, LLM_LABELS) == [25, 1000]


def sets(pool: int, extra: int = 0) -> TrainingSets:
    return TrainingSets([f"p{i}" for i in range(pool)], {}, {}, [f"e{i}" for i in range(extra)])


def test_sizes_are_clipped_to_what_exists_and_all_is_added():
    assert curve_sizes(CurveConfig(sizes=(100, 250, 500, 1000)), sets(300), "gold") == [100, 250, 300]
    assert curve_sizes(CurveConfig(sizes=(100, 250), include_all=False), sets(300), "gold") == [100, 250]
    assert curve_sizes(CurveConfig(sizes=(300,)), sets(300), "llm") == [300]
    with pytest.raises(FinnerError, match="exceeds the 50 training rows"):
        curve_sizes(CurveConfig(sizes=(100,), include_all=False), sets(50), "gold")


def test_the_llm_curve_goes_on_past_the_shared_pool_with_the_feed():
    """Feed rows extend only the LLM curve; both curves share the pool's sizes."""
    both = sets(200, extra=5000)
    cfg = CurveConfig(sizes=(25, 100), feed_sizes=(1000, 3000))
    assert curve_sizes(cfg, both, "gold") == [25, 100, 200]
    assert curve_sizes(cfg, both, "llm") == [25, 100, 200, 1000, 3000, 5200]  # the whole pool too, next to gold's
    ids = [f"p{i}" for i in range(3)] + [f"e{i}" for i in range(2)]
    table = pa.table({"id": ids, "title": ids, "spans": pa.array([[]] * 5, schemas.SPANS)})
    small = TrainingSets(ids[:3], {"llm": table, "gold": table.slice(0, 3)}, {}, ids[3:])
    assert small.subset("llm", 4).column("id").to_pylist() == ["p0", "p1", "p2", "e0"]
    assert small.subset("gold", 4).column("id").to_pylist() == ["p0", "p1", "p2"]


def test_min_steps_gives_small_points_more_passes_and_changes_the_fingerprint(store):
    """A 25-headline point at batch 4 takes 7 steps a pass: `--min-steps 300` makes it 43 passes;
    a point that already takes more steps keeps `--epochs`."""
    train = TrainConfig(epochs=2, batch_size=4)
    assert point_training(CurveConfig(), train, 25) == train
    assert point_training(CurveConfig(min_steps=300), train, 25) == TrainConfig(epochs=43, batch_size=4)
    assert point_training(CurveConfig(min_steps=300), train, 3000) == train  # 750 steps a pass already
    gold = load_gold(store, GOLD_REAL)
    spec = ModelSpec(offline=True)
    assert curve_fingerprint(CurveConfig(min_steps=300), spec, train, gold) != curve_fingerprint(CurveConfig(), spec, train, gold)


def test_the_real_pipeline_draws_the_curve_in_steps_with_flags_the_job_takes(store):
    """`jobs.pipeline --real` draws the real-text curve with enough steps per point for a fresh
    head; its flags parse into the curve job's configs."""
    import argparse

    from finner.config import add_config_args, config_from_args
    from jobs.pipeline import PipelineConfig, learning_curve_argv

    cfg = PipelineConfig(real=True).with_demo_defaults()
    (argv,) = learning_curve_argv(cfg, store)
    parser = argparse.ArgumentParser()
    for config in (CurveConfig, ModelSpec, TrainConfig):
        add_config_args(parser, config)
    args = parser.parse_args(argv)
    curve, spec = config_from_args(CurveConfig, args), config_from_args(ModelSpec, args)
    assert (curve.gold, curve.sizes, curve.feed_sizes, curve.min_steps) == (GOLD_REAL, (25, 50, 100), (1000, 3000), 200)
    assert spec.offline and point_training(curve, config_from_args(TrainConfig, args), 25).epochs * 7 >= 200


def test_bad_config_is_refused():
    with pytest.raises(FinnerError, match="--labels: expected one of"):
        CurveConfig(labels=("weak",))
    with pytest.raises(FinnerError, match="--labels: name one or both"):
        CurveConfig(labels=())
    with pytest.raises(FinnerError, match="--sizes: must be at least 1"):
        CurveConfig(sizes=(0, 10))
    with pytest.raises(FinnerError, match="--min-steps: must be at least 0"):
        CurveConfig(min_steps=-1)


def test_setting_names_round_trip_and_markdown():
    assert setting("llm", 250) == "lc-llm-250" and point_of("lc-llm-250") == ("llm", 250)
    apple = [{"start": 0, "end": 5, "text": "Apple"}]
    results = [
        Result("gliner", setting("llm", 10), "test", score([apple, apple], [apple, []]), 2),  # tp1 fn1: F1 2/3
        Result("gliner", setting("gold", 10), "test", score([apple, apple], [apple, apple]), 2),
        Result("gliner", setting("gold", 20), "test", score([apple], [[]]), 1),
    ]
    assert results[0].scores[EXACT] == PRF(1, 0, 1)
    assert markdown_curve(results).splitlines() == [
        "Test-set F1 (exact match) after fine-tuning on n headlines [95% bootstrap interval over headlines]:",
        "",
        "| Training headlines | F1 (llm labels) | F1 (gold labels) | llm - gold (points) |",
        "| --: | --: | --: | --: |",
        "| 10 | 66.7% | 100.0% | N/A |",  # Results built without per-headline counts: no interval
        "| 20 | N/A | 0.0% | N/A |",
    ]
    test = pa.table({"split": ["test"] * 2, "spans": pa.array([apple, apple], schemas.SPANS)})
    (llm,) = evaluate("gliner", setting("llm", 10), test, [apple, []])
    (gold,) = evaluate("gliner", setting("gold", 10), test, [apple, apple])
    row = markdown_curve([llm, gold]).splitlines()[-1]
    assert row.startswith(f"| 10 | 66.7% [{100 * llm.intervals[EXACT].low:.1f}%, ") and row.endswith(" | -33.3 [-100.0, +0.0] |")


@pytest.mark.slow
def test_tiny_curve_on_the_packaged_encoder_resumes(store, capsys):
    write_labelled_demo(store, per_split=12)
    argv = ["--store", store.root, "--offline", "--gold", "embedded", "--sizes", "4", "8", "--no-include-all",
            "--epochs", "1", "--batch-size", "4", "--learning-rate", "5e-5", "--head-learning-rate", "1e-3", "--quiet"]  # fmt: skip
    assert job.main(argv) == 0
    details, out = capsys.readouterr().out.split("\n", 1)
    assert details == f"learning_curve: details in {store.root}/logs/learning_curve.log"
    assert out.startswith("gold: embedded demo feed's generated ground truth (36 sample rows; no human review)\n")
    assert "| Training headlines | F1 (llm labels) | F1 (gold labels) |" in out
    metrics = store.read("metrics")
    assert metrics.schema == schemas.METRICS
    assert set(metrics.column("stage").to_pylist()) == {"learning_curve"}
    assert sorted(set(metrics.column("setting").to_pylist())) == ["lc-gold-4", "lc-gold-8", "lc-llm-4", "lc-llm-8"]
    test_rows = [r for r in store.read("sample").to_pylist() if r["split"] == "test"]
    truth = embedded_truth()
    gold_spans = sum(len(truth[r["id"]]) for r in test_rows)
    exact = metrics.filter(pc.equal(metrics["match"], EXACT)).to_pylist()
    for row in exact:  # every point scored the whole gold test split
        assert row["n_headlines"] == len(test_rows) == 12
        assert row["tp"] + row["fn"] == gold_spans > 0
        assert 0.0 <= row["f1"] <= 1.0
        assert row["f1_ci_low"] <= row["f1"] <= row["f1_ci_high"]
        assert f"{100 * row['f1']:.1f}% [{100 * row['f1_ci_low']:.1f}%, {100 * row['f1_ci_high']:.1f}%]" in out
    png = store.artifact("plots", "learning_curve_gliner.png")
    with open(png, "rb") as f:
        assert f.read(4) == b"\x89PNG"
    saved = store.get_json("learning_curve-gliner")
    assert sorted(saved["points"]) == ["lc-gold-4", "lc-gold-8", "lc-llm-4", "lc-llm-8"]

    # the same command again trains nothing (no trainer logs), prints the same table (the intervals
    # from the headline counts kept with each point), and leaves the rows (and their timestamps) as they were
    assert job.main(argv) == 0
    assert capsys.readouterr().out.split("\n", 1)[1] == out[: out.index("\n") + 1] + out[out.index("Test-set F1") :]
    again = store.read("metrics")
    assert sorted(again.column("created_at").to_pylist()) == sorted(metrics.column("created_at").to_pylist())

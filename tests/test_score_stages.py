"""The scoring job's three stages called as Ray Data calls them, without Ray: a preparation task
(its own copy of the model, only for the tokenizer), the actor (handed the arrays as Arrow list
columns, it never tokenizes) and a writing task give the spans `Scorer.predict` gives in one process."""

from __future__ import annotations

import dataclasses

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from finner.ids import stable_hash
from finner.pipeline.score import ScoreActor, ScoreSummary, prepare_task, write_task
from finner.score import Prepared, ScoreConfig, Scorer, model_version, untrained_checkpoint
from finner.store import Store

THRESHOLD = 0.5  # the untrained head scores spans near 0.5: several spans per headline


def spans_by_id(table: pa.Table) -> dict[str, list[tuple]]:
    return {row["id"]: [(s["start"], s["end"], s["text"], s["score"]) for s in row["spans"]] for row in table.to_pylist()}


def test_prepare_task_then_actor_then_writer_give_scorer_spans(real_headlines_path, tmp_path):
    checkpoint = untrained_checkpoint(str(tmp_path / "gliner"))
    titles = pq.read_table(real_headlines_path, columns=["title"])["title"].to_pylist()[3::211][:40] + ["  "]
    ids = [stable_hash(t + str(i), length=16) for i, t in enumerate(titles)]
    config = ScoreConfig(model=(checkpoint,), threshold=(THRESHOLD,), forward_rows=16, threads=2, runtime="torch")
    store, version = Store(str(tmp_path / "store")), model_version(config)
    store.ensure("predictions")

    summary, actor, expected, rows = ScoreSummary(model_version=version), ScoreActor(dataclasses.asdict(config)), [], []
    for first in range(0, len(titles), 25):  # two batches, as two blocks of the job
        block = pa.table({"id": ids[first : first + 25], "title": titles[first : first + 25]})
        prepared = prepare_task(block, checkpoint, config.labels, config.forward_rows)
        assert prepared.num_rows == 1 and prepared["prepare_cpu_s"][0].as_py() > 0
        assert not [f.name for f in prepared.schema if pa.types.is_binary(f.type) or pa.types.is_large_binary(f.type)], "no pickle in a column"
        summary.add(write_task(actor(prepared), store.root, version, {}))
        expected += Scorer(config, loaded=actor.scorer.models).predict(titles[first : first + 25])  # the same forward batches
        rows.append((prepared, Scorer(config, loaded=actor.scorer.models).prepare(titles[first : first + 25])))

    # The arrays come back as `prepare` made them (dtype, shape, values), also from a row of a
    # multi-row block as Ray Data slices it.
    block = pa.concat_tables([row for row, _ in rows])
    assert sum(len(direct.batches) for _, direct in rows) == 3, "forward batches of 16, 9 and 15 rows"
    for i, (_, direct) in enumerate(rows):
        carried = Prepared.from_arrow(block.slice(i, 1))
        assert (carried.titles, carried.word_starts, carried.word_ends) == (direct.titles, direct.word_starts, direct.word_ends)
        assert len(carried.batches) == len(direct.batches)
        for ours, theirs in zip(carried.batches, direct.batches):
            assert ours.keys() == theirs.keys()
            for name, array in theirs.items():
                assert ours[name].dtype == array.dtype and ours[name].shape == array.shape and (ours[name] == array).all(), name
                assert ours[name].flags.writeable

    written = store.read("predictions", filter=pc.field("model_version") == version)
    assert sum(map(len, expected)) > 20, "the comparison would be vacuous"
    assert spans_by_id(written) == {i: [(s["start"], s["end"], s["text"], s["score"]) for s in row] for i, row in zip(ids, expected)}
    assert summary.rows == len(titles) and summary.prepare_hps_per_cpu > 0 and summary.per_actor_hps > 0


def test_steady_rate_counts_a_commit_of_several_batches_as_the_first_window():
    """Batches committed together finish at one time: the rate after the first commit must not
    count the first commit's other batches as work done inside the window."""
    summary = ScoreSummary(model_version="v")
    for finished in (10.0, 20.0):  # two commits of two 100-row batches each, one actor
        summary.add(pa.table({"actor": ["a", "a"], "rows": [100, 100], "busy_s": [1.0, 1.0], "prepare_cpu_s": [0.1, 0.1],
                              "device": ["cpu", "cpu"], "finished_at": [finished, finished]}))  # fmt: skip
    assert summary.rows == 400
    assert summary.steady_hps == 200 / 10.0

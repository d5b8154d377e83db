"""The scoring job's three stages called as Ray Data calls them, without Ray: a preparation task
(its own copy of the model, only for the tokenizer), the actor (handed pickled arrays, it never
tokenizes) and a writing task give the spans `Scorer.predict` gives in one process."""

from __future__ import annotations

import dataclasses

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from finner.ids import stable_hash
from finner.pipeline.score import ScoreActor, ScoreSummary, prepare_task, write_task
from finner.score import ScoreConfig, Scorer, model_version, untrained_checkpoint
from finner.store import Store

THRESHOLD = 0.5  # the untrained head scores spans near 0.5: several spans per headline


def spans_by_id(table: pa.Table) -> dict[str, list[tuple]]:
    return {row["id"]: [(s["start"], s["end"], s["text"], s["score"]) for s in row["spans"]] for row in table.to_pylist()}


def test_prepare_task_then_actor_then_writer_give_scorer_spans(real_headlines_path, tmp_path):
    checkpoint = untrained_checkpoint(str(tmp_path / "gliner"))
    titles = pq.read_table(real_headlines_path, columns=["title"])["title"].to_pylist()[3::211][:40] + ["  "]
    ids = [stable_hash(t + str(i), length=16) for i, t in enumerate(titles)]
    config = ScoreConfig(model=checkpoint, threshold=THRESHOLD, forward_rows=16, threads=2, runtime="torch")
    store, version = Store(str(tmp_path / "store")), model_version(config)
    store.ensure("predictions")

    summary, actor, expected = ScoreSummary(model_version=version), ScoreActor(dataclasses.asdict(config)), []
    for first in range(0, len(titles), 25):  # two batches, as two blocks of the job
        block = pa.table({"id": ids[first : first + 25], "title": titles[first : first + 25]})
        prepared = prepare_task(block, checkpoint, config.labels, config.forward_rows)
        assert prepared.num_rows == 1 and prepared["prepare_cpu_s"][0].as_py() > 0
        summary.add(write_task(actor(prepared), store.root, version, {}))
        expected += Scorer(config, gliner=actor.scorer.gliner).predict(titles[first : first + 25])  # the same forward batches

    written = store.read("predictions", filter=pc.field("model_version") == version)
    assert sum(map(len, expected)) > 20, "the comparison would be vacuous"
    assert spans_by_id(written) == {i: [(s["start"], s["end"], s["text"], s["score"]) for s in row] for i, row in zip(ids, expected)}
    assert summary.rows == len(titles) and summary.prepare_hps_per_cpu > 0 and summary.per_actor_hps > 0

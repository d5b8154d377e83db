"""The batch predictor: same spans as gliner's own inference, rows that fit `predictions`, the
model version, and the ONNX Runtime paths measured against torch."""

from __future__ import annotations

import dataclasses

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from finner import schemas
from finner.errors import FinnerError
from finner.score import (
    ScoreConfig,
    Scorer,
    check_runtime,
    model_version,
    name_map_from_spans,
    prediction_rows,
    runtime_agreement,
    untrained_checkpoint,
)

# The untrained span head scores every span near 0.5; this threshold keeps a handful per headline.
THRESHOLD = 0.5


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> str:
    return untrained_checkpoint(str(tmp_path_factory.mktemp("gliner")))


@pytest.fixture(scope="module")
def titles(real_headlines_path) -> list[str]:
    rows = pq.read_table(real_headlines_path, columns=["title"])["title"].to_pylist()
    return rows[::397][:40] + ["", "   "]  # spread over the file, plus blanks gliner skips


def spans_of(entities: list[list[dict]]) -> list[list[tuple]]:
    return [[(e["start"], e["end"], e["label"]) for e in row] for row in entities]


def test_scorer_gives_gliners_own_spans(checkpoint, titles):
    scorer = Scorer(ScoreConfig(model=checkpoint, threshold=THRESHOLD, forward_rows=8, threads=2))
    ours = scorer.predict_raw(titles)
    theirs = scorer.model.inference(titles, [schemas.COMPANY], threshold=THRESHOLD)
    assert len(ours) == len(titles)
    assert sum(map(len, ours)) > 0, "threshold too high for the untrained head: the check would be vacuous"
    assert spans_of(ours) == spans_of(theirs)
    for mine, gliners in zip(ours, theirs):
        assert [e["score"] for e in mine] == pytest.approx([e["score"] for e in gliners], abs=1e-4)
    assert ours[-1] == [] and ours[-2] == []
    spans = scorer.predict(titles[:5])
    assert all(s["text"] == titles[i][s["start"] : s["end"]] for i, row in enumerate(spans) for s in row)


def test_prediction_rows_fill_normalized_from_clusters():
    curated = pa.table(
        {"spans": pa.array([[{"start": 0, "end": 9, "text": "Apple Inc", "label": "company", "normalized": "Apple", "score": None}]], schemas.SPANS)}
    )
    names = name_map_from_spans(curated)
    predicted = [
        [{"start": 0, "end": 9, "text": "APPLE INC", "label": "company", "normalized": None, "score": 0.9}],
        [{"start": 4, "end": 8, "text": "Tesla", "label": "company", "normalized": None, "score": 0.8}],
        [],
    ]
    rows = prediction_rows(["a", "b", "c"], predicted, "gliner-test", names)
    assert rows.schema == schemas.PREDICTIONS
    got = rows.to_pylist()
    assert got[0]["normalized"] == ["Apple"] and got[0]["spans"][0]["normalized"] == "Apple"
    assert got[1]["normalized"] == ["Tesla"] and got[1]["companies"] == ["Tesla"]
    assert got[2]["companies"] == [] and got[2]["model_version"] == "gliner-test"


def test_model_version_follows_what_changes_spans(checkpoint, tmp_path):
    base = ScoreConfig(model=checkpoint)
    assert model_version(base) == model_version(dataclasses.replace(base, forward_rows=7, threads=1, precision="fp32"))
    assert model_version(base) != model_version(dataclasses.replace(base, threshold=0.3))
    assert model_version(base) != model_version(dataclasses.replace(base, runtime="onnx-int8"))
    other = untrained_checkpoint(str(tmp_path / "other"))
    (tmp_path / "other" / "pytorch_model.bin").write_bytes(b"different weights")
    assert model_version(dataclasses.replace(base, model=other)) != model_version(base)
    with pytest.raises(FinnerError, match="no GLiNER weights"):
        model_version(ScoreConfig(model=str(tmp_path)))


def test_runtime_agreement():
    a = [[{"start": 0, "end": 4}], []]
    assert runtime_agreement(a, a) == 1.0
    assert runtime_agreement([[], []], [[], []]) == 1.0
    assert runtime_agreement(a, [[{"start": 0, "end": 5}], []]) == 0.0


@pytest.mark.slow
def test_onnx_runtimes_against_torch(checkpoint, titles, tmp_path):
    config = ScoreConfig(model=checkpoint, threshold=THRESHOLD, threads=2, onnx_cache=str(tmp_path / "onnx"))
    sample = titles[:24]
    f1 = check_runtime(dataclasses.replace(config, runtime="onnx"), sample, tolerance=0.01)
    assert f1 >= 0.99
    int8 = dataclasses.replace(config, runtime="onnx-int8")
    reference = Scorer(config).predict(sample)
    int8_f1 = runtime_agreement(reference, Scorer(int8).predict(sample))
    assert 0.0 <= int8_f1 <= 1.0
    if int8_f1 < 1.0:  # the untrained head's scores sit at 0.5, so int8 noise flips spans: the guard must refuse
        with pytest.raises(FinnerError, match="span F1"):
            check_runtime(int8, sample, tolerance=0.0)

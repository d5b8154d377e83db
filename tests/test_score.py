"""The batch predictor: same spans as gliner's own inference and decoder, rows that fit
`predictions`, the model version, and the ONNX Runtime paths measured against torch."""

from __future__ import annotations

import dataclasses
import math
import shutil

import onnx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from finner import schemas
from finner.config import ConfigError
from finner.errors import FinnerError
from finner.models.base import DEFAULT_THRESHOLD, offline_encoder_dir, record_threshold
from finner.models.ensemble import MajorityVote
from finner.models.gliner import GlinerModel
from finner.models.registry import load_checkpoint
from finner.roles import subject_companies
from finner.schemas import make_span
from finner.tokens import word_tokens
from finner.score import (
    INT8_NODES,
    MODEL_INPUTS,
    ONNX_FILES,
    ScoreConfig,
    Scorer,
    choose_runtime,
    decode_spans,
    export_onnx,
    model_version,
    name_map_from_spans,
    prediction_rows,
    runtime_agreement,
    untrained_checkpoint,
)
from tests.voters import voters

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
    return [[(e["start"], e["end"], e["text"]) for e in row] for row in entities]


@pytest.fixture(scope="module")
def scorer(checkpoint) -> Scorer:
    return Scorer(ScoreConfig(model=(checkpoint,), threshold=(THRESHOLD,), forward_rows=8, threads=2, runtime="torch"))


def test_scorer_gives_gliners_own_spans(scorer, titles):
    """gliner's inference, then the guideline's subject rules (as the evaluation's `GlinerModel`)."""
    ours = scorer.predict(titles)
    found = scorer.gliner.inference(titles, [schemas.COMPANY], threshold=THRESHOLD)
    theirs = [subject_companies(t, [make_span(t, e["start"], e["end"], score=e["score"]) for e in row]) for t, row in zip(titles, found)]
    assert sum(map(len, theirs)) < sum(map(len, found)), "no span met a rule: the rules' part of the check would be vacuous"
    assert len(ours) == len(titles)
    assert sum(map(len, ours)) > 0, "threshold too high for the untrained head: the check would be vacuous"
    assert spans_of(ours) == spans_of(theirs)
    for mine, gliners in zip(ours, theirs):
        assert [e["score"] for e in mine] == pytest.approx([e["score"] for e in gliners], abs=1e-4)
    assert ours[-1] == [] and ours[-2] == []


def test_the_factored_span_head_computes_gliners_span_head(scorer, titles):
    import copy

    from gliner import GLiNER, GLiNERConfig

    from finner.models.base import offline_encoder_dir
    from finner.models.span_head import factor_span_head, factored_span_marker

    factored = copy.deepcopy(scorer.gliner)
    assert factor_span_head(factored) and isinstance(factored.model.span_rep_layer.span_rep_layer, factored_span_marker())
    for batch in scorer.prepare(titles).batches:
        inputs = {name: torch.from_numpy(batch[name]) for name in MODEL_INPUTS}
        lengths = batch["text_lengths"].reshape(-1).tolist()
        with torch.inference_mode():
            theirs = scorer.gliner.model(**inputs, word_lengths=lengths).logits
            ours = factored.model(**inputs, word_lengths=lengths).logits
        torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4)
    other_mode = GLiNER.from_config(GLiNERConfig(model_name=offline_encoder_dir(), span_mode="markerV1", max_width=4))
    assert not factor_span_head(other_mode)  # a head it does not know stays gliner's


def test_prepare_buckets_rows_by_length_into_padded_arrays(scorer, titles):
    prepared = scorer.prepare(titles)
    rows = [int(i) for batch in prepared.batches for i in batch["rows"]]
    assert sorted(rows) == list(range(len(titles) - 2)), "every non-blank title once; the two blanks left out"
    words = [int(w) for batch in prepared.batches for w in batch["text_lengths"].reshape(-1)]
    assert words == sorted(words) and all(len(batch["rows"]) <= 8 for batch in prepared.batches)
    for batch in prepared.batches:
        assert batch["input_ids"].shape == batch["attention_mask"].shape and batch["input_ids"].dtype.kind == "i"
        assert batch["span_idx"].shape[:2] == batch["span_mask"].shape
        assert batch["attention_mask"][:, -1].any(), "padded to the batch's own longest headline, no further"
    assert prepared.word_starts[-1] == [] and prepared.word_starts[0] == [start for _, start, _ in word_tokens(titles[0])]


def test_torch_decoder_gives_gliners_spans(scorer, real_headlines_path):
    """`decode_spans` against gliner's own decoder on the same logits of real headlines: the same
    spans, scores bit for bit, at thresholds from loose (long chains of overlapping candidates) to
    strict. Rounding the logits adds exact ties, which gliner breaks by position."""
    titles = pq.read_table(real_headlines_path, columns=["title"])["title"].to_pylist()[5::131][:96]
    checked = 0
    for batch in scorer.prepare(titles).batches:
        logits = scorer.forward(batch)
        words = torch.from_numpy(batch["text_lengths"]).view(-1)
        for scores in (logits, torch.round(logits, decimals=1)):
            for quantile in (0.5, 0.9, 0.99):
                threshold = float(torch.quantile(torch.sigmoid(scores).flatten(), quantile))
                theirs = scorer.gliner.decoder.decode([["w"] * int(n) for n in words], {1: schemas.COMPANY}, scores, flat_ner=True, threshold=threshold)
                ours = list(zip(*(t.tolist() for t in decode_spans(scores, words, threshold))))
                assert ours == [(row, s.start, s.end, s.score) for row, spans in enumerate(theirs) for s in spans]
                checked += len(ours)
    assert checked > 500


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


def test_a_threshold_chosen_for_the_checkpoint_is_its_default(checkpoint, tmp_path):
    """jobs.evaluate keeps the threshold it chose on gold dev with the checkpoint; scoring and loading
    use it unless told otherwise, and forget it once the weights in that directory change."""
    path = str(tmp_path / "ckpt")
    shutil.copytree(checkpoint, path)
    config = ScoreConfig(model=(path,))
    assert config.span_thresholds() == (DEFAULT_THRESHOLD,)
    record_threshold(path, 0.4, chosen_on="a test gold: dev part", f1=0.9)
    assert config.span_thresholds() == (0.4,) and dataclasses.replace(config, threshold=(0.6,)).span_thresholds() == (0.6,)
    assert model_version(config) == model_version(dataclasses.replace(config, threshold=(0.4,)))
    assert load_checkpoint("gliner", path).threshold == 0.4
    (tmp_path / "ckpt" / "pytorch_model.bin").write_bytes(b"retrained weights")
    assert config.span_thresholds() == (DEFAULT_THRESHOLD,)


def test_model_version_follows_what_changes_spans(checkpoint, tmp_path):
    base = ScoreConfig(model=(checkpoint,))
    assert model_version(base) == model_version(dataclasses.replace(base, forward_rows=7, threads=1, precision="fp32"))
    assert model_version(base) != model_version(dataclasses.replace(base, threshold=(0.3,)))
    assert model_version(base) != model_version(dataclasses.replace(base, runtime="onnx-int8"))
    other = untrained_checkpoint(str(tmp_path / "other"))
    (tmp_path / "other" / "pytorch_model.bin").write_bytes(b"different weights")
    assert model_version(dataclasses.replace(base, model=(other,))) != model_version(base)
    with pytest.raises(FinnerError, match="no weights"):
        model_version(ScoreConfig(model=(str(tmp_path),)))


@pytest.fixture(scope="module")
def three_voters(checkpoint, tmp_path_factory) -> tuple[str, ...]:
    return voters(checkpoint, tmp_path_factory.mktemp("voters"))


def test_a_vote_scores_as_the_majority_vote_of_its_models(three_voters, titles):
    """Several --model: the spans `MajorityVote` keeps from the same checkpoints, each through
    gliner's inference at its own threshold and the subject rules."""
    thresholds, models = (THRESHOLD, 0.49, 0.51), three_voters
    vote = Scorer(ScoreConfig(model=models, threshold=thresholds, forward_rows=8, threads=2, runtime="torch"))
    members = [load_checkpoint("gliner", path, threshold=threshold) for path, threshold in zip(models, thresholds)]
    ours, theirs = vote.predict(titles), MajorityVote(members).predict(titles)
    assert sum(map(len, ours)) > 20, "the comparison would be vacuous"
    assert spans_of(ours) == spans_of(theirs)
    for mine, expected in zip(ours, theirs):
        assert [s["score"] for s in mine] == pytest.approx([s["score"] for s in expected], abs=1e-4)
    alone = [spans_of(m.predict(titles)) for m in members]
    assert all(spans != spans_of(ours) for spans in alone), "a member that agrees with the vote everywhere makes the check vacuous"


def test_a_vote_is_one_model_version_whatever_its_order(three_voters):
    models = three_voters
    vote = ScoreConfig(model=models)
    assert model_version(vote).startswith("gliner-vote-")
    assert model_version(vote) == model_version(dataclasses.replace(vote, model=models[::-1]))
    assert model_version(vote) != model_version(dataclasses.replace(vote, threshold=(0.4,)))
    assert model_version(vote) != model_version(dataclasses.replace(vote, model=models[:2]))
    assert dataclasses.replace(vote, threshold=(0.4, 0.5, 0.6)).span_thresholds() == (0.4, 0.5, 0.6)
    with pytest.raises(ConfigError, match="one per --model"):
        dataclasses.replace(vote, threshold=(0.4, 0.5))


def test_a_vote_of_models_that_prepare_batches_differently_is_refused(checkpoint, tmp_path):
    wider = str(tmp_path / "wider")
    GlinerModel.from_encoder(offline_encoder_dir(), max_width=6).save(wider)
    with pytest.raises(FinnerError, match="must share one configuration"):
        Scorer(ScoreConfig(model=(checkpoint, wider), runtime="torch"))


def test_runtime_agreement():
    a = [[{"start": 0, "end": 4}], []]
    assert runtime_agreement(a, a) == 1.0
    assert runtime_agreement([[], []], [[], []]) == 1.0
    assert runtime_agreement(a, [[{"start": 0, "end": 5}], []]) == 0.0


@pytest.mark.slow
def test_onnx_runtimes_against_torch(checkpoint, titles, tmp_path):
    config = ScoreConfig(model=(checkpoint,), threshold=(THRESHOLD,), threads=2, onnx_cache=str(tmp_path / "onnx"), runtime="torch")
    sample = titles[:24]
    fp32 = choose_runtime(dataclasses.replace(config, runtime="onnx"), sample, min_f1=0.99)
    assert fp32.runtime == "onnx" and fp32.agreement_f1 >= 0.99
    int8 = dataclasses.replace(config, runtime="onnx-int8")
    int8_f1 = runtime_agreement(Scorer(config).predict(sample), Scorer(int8).predict(sample))
    # int8 only in the (factored) span head's matrix products: the encoder, the LSTM and the prompt head stay fp32.
    graph = onnx.load(str(export_onnx(checkpoint, config.onnx_cache) / ONNX_FILES["onnx-int8"])).graph
    integer = [n.name for n in graph.node if n.op_type in ("MatMulInteger", "DynamicQuantizeMatMul")]
    kept_float = [n.name for n in graph.node if n.op_type in ("MatMul", "LSTM") and INT8_NODES not in n.name]
    assert integer and all(INT8_NODES in name for name in integer) and any("out_last" in name for name in integer)
    assert any("bert_layer" in name for name in kept_float) and any("lstm" in name for name in kept_float)
    # The check accepts int8 at exactly its F1 and refuses it just above (above 1.0 when int8 agrees fully).
    assert choose_runtime(int8, sample, min_f1=int8_f1).agreement_f1 == int8_f1
    with pytest.raises(FinnerError, match=f"span F1 {int8_f1:.4f}"):
        choose_runtime(int8, sample, min_f1=math.nextafter(int8_f1, 2.0))
    assert choose_runtime(dataclasses.replace(config, runtime="auto"), sample, min_f1=0.5, gpus=True).runtime == "torch"


@pytest.mark.slow
def test_the_store_remembers_a_runtime_choice_for_the_same_checkpoint_headlines_and_bar(checkpoint, titles, tmp_path):
    from finner import artifacts
    from finner.score import remembered_runtime_choice
    from finner.store import Store

    store, config = Store(str(tmp_path / "store")), ScoreConfig(model=(checkpoint,), threshold=(THRESHOLD,), threads=2, onnx_cache=str(tmp_path / "onnx"))
    sample = titles[:8]
    first = remembered_runtime_choice(store, config, sample, min_f1=0.0)
    assert first.runtime == "onnx-int8"
    (key,) = store.get_json(artifacts.RUNTIME_CHOICES_KEY)
    store.put_json(artifacts.RUNTIME_CHOICES_KEY, {key: {**dataclasses.asdict(first), "reason": "checked before"}})
    assert remembered_runtime_choice(store, config, sample, min_f1=0.0).reason == "checked before"  # not checked again
    stricter = remembered_runtime_choice(store, config, sample, min_f1=1.01)  # another bar: another check
    assert stricter.runtime == "torch" and len(store.get_json(artifacts.RUNTIME_CHOICES_KEY)) == 2


@pytest.mark.slow
def test_auto_takes_the_fastest_runtime_that_agrees_else_torch(checkpoint, titles, tmp_path):
    config = ScoreConfig(model=(checkpoint,), threshold=(THRESHOLD,), threads=2, onnx_cache=str(tmp_path / "onnx"))
    sample = titles[:16]
    fastest = choose_runtime(config, sample, min_f1=0.0)
    assert fastest.runtime == "onnx-int8" and "span F1" in fastest.reason
    fallback = choose_runtime(config, sample, min_f1=1.01)  # no runtime can agree better than exactly
    assert fallback.runtime == "torch" and fallback.agreement_f1 is None
    assert "onnx-int8 fell short" in fallback.reason and "onnx fell short" in fallback.reason

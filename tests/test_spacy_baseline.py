"""The spaCy baseline: real pretrained en_core_web_sm weights, ORG entities as companies, offline."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from finner import schemas
from finner.errors import FinnerError
from finner.models.spacy_baseline import SpacyBaseline


@pytest.fixture(scope="module")
def baseline() -> SpacyBaseline:
    return SpacyBaseline.load()


def test_org_entities_become_company_spans(baseline):
    titles = ["Goldman Sachs, JPMorgan Report Earnings", "Analyst Upgrades Tesla To Buy, Raises PT To $300", ""]
    spans = baseline.predict(titles)
    assert len(spans) == 3
    assert {"start": 0, "end": 13, "text": "Goldman Sachs", "label": schemas.COMPANY, "normalized": None, "score": None, "role": None} in spans[0]
    # spaCy reads "Upgrades Tesla" and "Raises" as PERSON and "$300" as MONEY: none is an ORG
    assert spans[1] == [] and spans[2] == []
    stored = pa.array(spans, type=schemas.SPANS)  # the predictions fit the span schema
    assert len(stored) == 3


def test_spans_align_with_real_headlines(baseline, real_headlines_path):
    titles = pq.read_table(real_headlines_path, columns=["title"]).column("title").to_pylist()[:300]
    predicted = baseline.predict(titles)
    found = [s for title, spans in zip(titles, predicted) for s in spans if title[s["start"] : s["end"]] == s["text"]]
    assert len(found) == sum(map(len, predicted)) > 20


def test_save_load_predicts_the_same(baseline, tmp_path):
    titles = ["Dun & Bradstreet Acquires Avention", "Walmart, Amazon Battle Over Grocery Delivery"]
    baseline.save(str(tmp_path / "spacy"))
    assert SpacyBaseline.load(str(tmp_path / "spacy")).predict(titles) == baseline.predict(titles)


def test_a_missing_pipeline_is_a_clear_error(tmp_path):
    with pytest.raises(FinnerError, match="cannot load spaCy pipeline"):
        SpacyBaseline.load(str(tmp_path / "nowhere"))

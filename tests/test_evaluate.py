"""Entity P/R/F1 on hand-made cases whose counts are worked out by hand in each test."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest

from finner import schemas
from finner.errors import FinnerError
from finner.evaluate import (
    FINE_TUNED,
    ZERO_SHOT,
    Result,
    choose_pooled_threshold,
    choose_threshold,
    evaluate,
    llm_predictions,
    markdown_details,
    markdown_table,
    metrics_table,
    plot_f1,
    write_metrics,
)
from finner.gold import GOLD_EMBEDDED, GOLD_REVIEW, embedded_truth, load_gold
from finner.metrics import COMPANY, EXACT, OVERLAP, PRF, company_prf, exact_prf, name_key, overlap_prf, score
from tests.scored_spans import ScoredSpans


def span(start: int, end: int, text: str = "") -> dict:
    return {"start": start, "end": end, "text": text, "label": schemas.COMPANY, "normalized": None, "score": None}


# Headline: "Apple And Microsoft Rally"  (Apple 0..5, Microsoft 10..19)
APPLE, MSFT = span(0, 5, "Apple"), span(10, 19, "Microsoft")


def test_exact_partial_hits_and_misses():
    gold = [[APPLE, MSFT]]
    predicted = [[APPLE, span(11, 19, "icrosoft"), span(20, 25, "Rally")]]
    # exact: Apple found (tp 1); "icrosoft" and "Rally" wrong (fp 2); Microsoft missed (fn 1)
    prf = exact_prf(gold, predicted)
    assert (prf.tp, prf.fp, prf.fn) == (1, 2, 1)
    assert prf.precision == pytest.approx(1 / 3)
    assert prf.recall == pytest.approx(1 / 2)
    assert prf.f1 == pytest.approx(2 * (1 / 3) * (1 / 2) / (1 / 3 + 1 / 2))  # = 0.4
    assert prf.f1 == pytest.approx(0.4)


def test_overlap_is_lenient_but_one_to_one():
    gold = [[APPLE, MSFT]]
    # "icrosoft" overlaps Microsoft: found under overlap; "Rally" overlaps nothing
    prf = overlap_prf(gold, [[APPLE, span(11, 19), span(20, 25)]])
    assert (prf.tp, prf.fp, prf.fn) == (2, 1, 0)
    assert (prf.precision, prf.recall) == (pytest.approx(2 / 3), 1.0)
    assert prf.f1 == pytest.approx(0.8)
    # one prediction over both companies ("Apple And Microsoft", 0..19) finds one of them, not two
    wide = overlap_prf(gold, [[span(0, 19)]])
    assert (wide.tp, wide.fp, wide.fn) == (1, 0, 1)
    # two predictions inside one gold span: one matches it, the other is a false positive
    split = overlap_prf([[MSFT]], [[span(10, 14), span(14, 19)]])
    assert (split.tp, split.fp, split.fn) == (1, 1, 0)
    # touching is not overlapping (end is exclusive)
    assert overlap_prf([[APPLE]], [[span(5, 9)]]) == PRF(0, 1, 1)


def test_overlap_takes_the_best_assignment_not_the_first():
    # prediction A (0..12) overlaps gold 0..5 and 10..19; prediction B (3..5) overlaps only 0..5.
    # Greedy A->0..5 would leave B unmatched; the maximum matching pairs A->10..19, B->0..5.
    prf = overlap_prf([[APPLE, MSFT]], [[span(0, 12), span(3, 5)]])
    assert (prf.tp, prf.fp, prf.fn) == (2, 0, 0)


def test_duplicates_count_once():
    gold = [[APPLE, APPLE]]
    predicted = [[APPLE, APPLE, APPLE]]
    for match in (exact_prf, overlap_prf, company_prf):
        assert match(gold, predicted) == PRF(1, 0, 0), match.__name__


def test_empty_predictions_empty_gold_and_both_empty():
    gold = [[APPLE, MSFT], [], []]
    predicted = [[], [span(3, 8, "le An")], []]
    # row 1: 2 misses; row 2: 1 false alarm; row 3: nothing on either side adds nothing
    for match in (exact_prf, overlap_prf, company_prf):
        prf = match(gold, predicted)
        assert prf == PRF(0, 1, 2), match.__name__
        assert (prf.precision, prf.recall, prf.f1) == (0.0, 0.0, 0.0)
    # only empty predictions: precision's denominator is zero -> reported 0.0
    assert exact_prf([[APPLE]], [[]]) == PRF(0, 0, 1)
    # only empty gold: recall's denominator is zero -> 0.0
    assert exact_prf([[]], [[APPLE]]) == PRF(0, 1, 0)
    # both empty everywhere: all counts zero, every figure 0.0 (not a perfect score)
    both = exact_prf([[], []], [[], []])
    assert both == PRF(0, 0, 0) and both.f1 == 0.0
    # a both-empty row next to a scored row changes nothing
    assert exact_prf([[APPLE], []], [[APPLE], []]) == exact_prf([[APPLE]], [[APPLE]]) == PRF(1, 0, 0)
    # missing spans (null in the table) read as no spans
    assert exact_prf([None], [[APPLE]]) == PRF(0, 1, 0)


def test_micro_average_pools_counts_over_headlines():
    gold = [[APPLE], [APPLE, MSFT], [MSFT]]
    predicted = [[APPLE], [APPLE], [span(10, 15), span(0, 5)]]
    # exact: row1 tp1; row2 tp1 fn1; row3 fp2 fn1 -> tp2 fp2 fn2: P = R = F1 = 0.5
    prf = exact_prf(gold, predicted)
    assert prf == PRF(2, 2, 2)
    assert (prf.precision, prf.recall, prf.f1) == (0.5, 0.5, 0.5)
    # overlap: row3's 10..15 overlaps Microsoft -> tp3 fp1 fn1: P = R = F1 = 0.75
    assert overlap_prf(gold, predicted) == PRF(3, 1, 1)
    assert overlap_prf(gold, predicted).f1 == 0.75


def test_company_match_is_per_headline_names_not_positions():
    # "Apple Rises; APPLE's Rival Microsoft Falls" — Apple twice, in two cases
    gold = [[span(0, 5, "Apple"), span(13, 18, "APPLE"), span(27, 36, "Microsoft")]]
    predicted = [[span(13, 18, "APPLE"), span(27, 36, "Micro-soft"), span(37, 42, "Falls")]]
    # names: gold {apple, microsoft}; predicted {apple, microsoft, falls} -> tp2 fp1 fn0
    assert company_prf(gold, predicted) == PRF(2, 1, 0)
    # exact counts positions: 13..18 and 27..36 found, 0..5 missed, 37..42 wrong
    assert exact_prf(gold, predicted) == PRF(2, 1, 1)
    assert name_key("AT&T") == name_key("at&t") == name_key("AT T") == "att"
    assert name_key("Coca-Cola") == name_key("Coca Cola")
    assert name_key("L'Oréal") == name_key("l’oréal") == "loréal"
    assert name_key("  &  ") == ""
    # a name that is only punctuation is no company at all
    assert company_prf([[span(0, 1, "&")]], [[]]) == PRF(0, 0, 0)


def test_rows_must_align():
    with pytest.raises(ValueError, match="2 gold rows but 1 predicted"):
        exact_prf([[], []], [[]])


def test_evaluate_scores_each_split_separately():
    gold = pa.table({"split": ["train", "test", "test"], "spans": [[APPLE], [APPLE], [MSFT]]})
    results = evaluate("m", ZERO_SHOT, gold, [[], [APPLE], []])
    assert [(r.split, r.n_headlines) for r in results] == [("train", 1), ("test", 2)]
    test = results[1].scores
    assert test[EXACT] == PRF(1, 0, 1) and test[EXACT].f1 == pytest.approx(2 / 3)
    assert set(test) == {EXACT, OVERLAP, COMPANY}


def results_fixture() -> list[Result]:
    gold, predicted = [[APPLE, MSFT]], [[APPLE, span(11, 19, "icrosoft")]]
    return [
        Result("gliner", ZERO_SHOT, "test", score(gold, predicted), 1, note="head untrained (built on a local encoder)"),
        Result("gliner", FINE_TUNED, "test", score(gold, gold), 1),
        Result("llm", ZERO_SHOT, "test", score(gold, [[APPLE]]), 1),
    ]


def test_markdown_table_has_the_case_study_shape():
    text = markdown_table(results_fixture())
    lines = text.splitlines()
    assert lines[0] == "F1 on the `test` gold split, exact match, subject companies, micro-averaged over 1 headlines [95% paired-bootstrap interval over headlines]."
    assert lines[2] == "| Model | F1 (zero-shot) | F1 (fine-tuned) |"
    # gliner zero-shot: tp1 fp1 fn1 -> 50%; fine-tuned perfect; llm: tp1 fn1 -> P 1, R .5, F1 2/3
    assert "| gliner | 50.0% | 100.0% |" in lines
    assert "| llm | 66.7% | N/A |" in lines
    overlap = markdown_table(results_fixture(), match=OVERLAP)
    assert "| gliner | 100.0% | 100.0% |" in overlap.splitlines()
    details = markdown_details(results_fixture())
    assert "| gliner | zero-shot | test | exact | 50.0% | 50.0% | 50.0% | 1 | 1 | 1 | 1 |" in details
    assert "- gliner (zero-shot): head untrained (built on a local encoder)" in text.splitlines()


def test_metrics_rows_conform_to_the_schema_and_append_per_model(store):
    results = results_fixture()
    table = metrics_table(results, created_at=dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc))
    assert table.schema == schemas.METRICS
    assert table.num_rows == 3 * 3  # 3 results x 3 matches
    row = table.filter(pa.compute.equal(table["setting"], ZERO_SHOT)).to_pylist()[0]
    assert row | {"created_at": None} == {
        "stage": "evaluate", "model": "gliner", "setting": ZERO_SHOT, "split": "test", "match": EXACT,
        "precision": 0.5, "recall": 0.5, "f1": 0.5, "tp": 1, "fp": 1, "fn": 1, "n_headlines": 1, "created_at": None,
        "f1_ci_low": None, "f1_ci_high": None, "f1_sd": None, "seeds": None,  # a Result built without per-headline counts
    }  # fmt: skip
    write_metrics(store, results)
    write_metrics(store, results[:1])  # re-running one model replaces its rows, keeps the others
    stored = store.read("metrics")
    assert stored.num_rows == 9
    assert sorted({(m, s) for m, s in zip(stored["model"].to_pylist(), stored["setting"].to_pylist())}) == [
        ("gliner", FINE_TUNED), ("gliner", ZERO_SHOT), ("llm", ZERO_SHOT)
    ]  # fmt: skip


def test_plot_is_a_png(store):
    path = plot_f1(results_fixture(), store)
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


# -- gold sources ----------------------------------------------------------------------------------

DAY = dt.datetime(2019, 6, 1, tzinfo=dt.timezone.utc)


def sample_rows(ids_titles: list[tuple[str, str, str]], spans: dict[str, list] | None = None) -> pa.Table:
    rows = [
        {"id": i, "title": t, "date": DAY, "symbol": None, "split": s, "cluster": None, "spans": (spans or {}).get(i, []),
         "tokens": None, "token_spans": None, "llm_status": schemas.LABEL_OK}
        for i, t, s in ids_titles
    ]  # fmt: skip
    return pa.Table.from_pylist(rows, schema=schemas.SAMPLE)


def test_review_gold_keeps_submitted_rows_only(store):
    title = "Apple And Microsoft Rally"
    store.write("sample", sample_rows([("a", title, "test"), ("b", title + "!", "train"), ("c", "x y z", "test")], {"a": [APPLE]}))
    gold = [
        {"id": "a", "split": "test", "title": title, "status": schemas.GOLD_SUBMITTED, "spans": [APPLE, MSFT], "annotator": "r", "submitted_at": DAY},
        {"id": "b", "split": None, "title": None, "status": schemas.GOLD_SUBMITTED, "spans": [], "annotator": "r", "submitted_at": DAY},
        {"id": "c", "split": "test", "title": "x y z", "status": schemas.GOLD_DISCARDED, "spans": [], "annotator": "r", "submitted_at": DAY},
    ]  # fmt: skip
    store.write("gold", pa.Table.from_pylist(gold, schema=schemas.GOLD))
    result = load_gold(store)
    assert result.source == GOLD_REVIEW
    assert result.table.column("id").to_pylist() == ["a", "b"]  # discarded c is not gold
    assert result.table.column("split").to_pylist() == ["test", "train"]  # b's split from the sample
    test = result.split("test")
    # the LLM row is scored with the same code: its curated spans [Apple] vs gold [Apple, Microsoft]
    sample = store.read("sample").select(["id", "title", "date", "symbol", "spans", "tokens", "token_spans"])
    store.write("spans", sample.append_column("not_found", pa.nulls(3, schemas.STRINGS)).append_column("clusters", pa.nulls(3, schemas.STRINGS)))
    predicted = llm_predictions(store, test.column("id").to_pylist())
    assert exact_prf(test.column("spans").to_pylist(), predicted) == PRF(1, 0, 1)


def test_llm_row_of_a_failed_label_is_empty_and_a_headline_never_labelled_is_named(store):
    store.write("sample", sample_rows([("a", "Apple and Microsoft", "test"), ("x", "x y z", "train")], spans={"a": [APPLE]}))
    sample = store.read("sample").select(["id", "title", "date", "symbol", "spans", "tokens", "token_spans"])
    store.write("spans", sample.append_column("not_found", pa.nulls(2, schemas.STRINGS)).append_column("clusters", pa.nulls(2, schemas.STRINGS)))
    store.write("llm_labels", pa.Table.from_pylist([{"id": "b", "status": schemas.LABEL_INVALID}], schema=schemas.LLM_LABELS))
    predicted = llm_predictions(store, ["b", "a"])
    assert [[(s["start"], s["end"]) for s in row] for row in predicted] == [[], [(0, 5)]]  # b's label was invalid: it predicts nothing
    with pytest.raises(FinnerError, match="1 of 3 gold headlines were never labelled \\(first: 'z'\\)"):
        llm_predictions(store, ["a", "z", "b"])


def test_gold_spans_outside_the_title_fail_naming_the_row(store):
    store.write("sample", sample_rows([("a", "Apple", "test")]))
    bad = {"id": "a", "split": "test", "title": "Apple", "status": schemas.GOLD_SUBMITTED, "spans": [span(0, 9)], "annotator": None, "submitted_at": None}
    store.write("gold", pa.Table.from_pylist([bad], schema=schemas.GOLD))
    with pytest.raises(FinnerError, match="gold row 'a': span 0..9 is outside its title"):
        load_gold(store)


def test_embedded_gold_is_the_demo_feeds_ground_truth(store):
    from jobs import ingest

    assert ingest.main(["--store", store.root, "--quiet"]) == 0
    headlines = store.read("headlines").to_pylist()
    truth = embedded_truth()
    assert {h["id"] for h in headlines} == set(truth)  # every ingested demo row has its truth
    by_title = {h["title"]: h["id"] for h in headlines}
    dnb = next(t for t in by_title if t.startswith("Dun & Bradstreet ") or " Dun & Bradstreet" in t)
    assert "Dun & Bradstreet" in [s["text"] for s in truth[by_title[dnb]]]
    chosen = [(h["id"], h["title"], "test" if n % 2 else "train") for n, h in enumerate(headlines[:20])]
    store.write("sample", sample_rows(chosen))
    # no submitted reviews: auto takes the embedded truth and says so; review alone refuses
    gold = load_gold(store)
    assert gold.source == GOLD_EMBEDDED and "no human review" in gold.description
    assert gold.table.num_rows == 20
    for row in gold.table.to_pylist():
        assert all(row["title"][s["start"] : s["end"]] == s["text"] for s in row["spans"])
    with pytest.raises(FinnerError, match="no submitted rows"):
        load_gold(store, GOLD_REVIEW)


def test_embedded_gold_refuses_a_sample_from_another_feed(store):
    store.write("sample", sample_rows([("not-a-demo-row", "Apple Shares Rise", "test")]))
    with pytest.raises(FinnerError, match="only applies to the embedded demo feed"):
        load_gold(store, GOLD_EMBEDDED)
    with pytest.raises(FinnerError, match="no gold"):
        load_gold(store)


def test_pooled_threshold_is_chosen_over_every_part_together():
    """Fold A's model needs a threshold of 0.6 to drop a wrong span, fold B's loses two right spans
    above 0.4: alone each part prefers its own threshold; pooled, B's two spans outweigh A's one."""

    def part(*rows):
        return pa.Table.from_pylist([{"title": t, "spans": [schemas.make_span(t, t.index(w), t.index(w) + len(w)) for w in words]} for t, words in rows])

    a_title, b_title = "Apple Beats, Dow Falls", "Intel And AMD Rise"
    fold_a, fold_b = part((a_title, ["Apple"])), part((b_title, ["Intel", "AMD"]))
    model_a = ScoredSpans({a_title: [("Apple", 0.9), ("Dow", 0.55)]})  # scores either side of the thresholds
    model_b = ScoredSpans({b_title: [("Intel", 0.45), ("AMD", 0.45)]})
    assert choose_threshold(model_a, fold_a).threshold == 0.7
    assert choose_threshold(model_b, fold_b).threshold == 0.4
    pooled = choose_pooled_threshold([(model_a, fold_a), (model_b, fold_b)])
    assert pooled.threshold == 0.4 and pooled.prf.f1 == pytest.approx(6 / 7)  # 3 right, Dow wrong, none missed

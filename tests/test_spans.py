"""Spans of the LLM's strings: the case study's examples, real headlines, and offset round-trips."""

from __future__ import annotations

import unicodedata

import pyarrow.parquet as pq
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from finner.schemas import COMPANY
from finner.spans import company_names, find_spans, occurrences
from finner.tokens import token_to_char_span, word_tokens


def texts(found) -> list[tuple[str, str | None]]:
    return [(s["text"], s["normalized"]) for s in found.spans]


def test_dun_and_bradstreet_is_two_companies():
    title = "Dun & Bradstreet Acquires Avention For $150M"
    found = find_spans(title, ["Dun & Bradstreet", "Avention"], ["Dun & Bradstreet", "Avention"])
    assert [(s["start"], s["end"]) for s in found.spans] == [(0, 16), (26, 34)]
    assert texts(found) == [("Dun & Bradstreet", "Dun & Bradstreet"), ("Avention", "Avention")]
    assert {s["label"] for s in found.spans} == {COMPANY}
    assert found.not_found == []
    # "Dun & Bradstreet" is three word tokens, "Avention" the fifth
    assert found.token_spans == [{"start": 0, "end": 2}, {"start": 4, "end": 4}]
    assert found.misaligned == 0


def test_fast_money_picks_has_no_company():
    found = find_spans("Fast Money Picks For April 27", [], [])
    assert found.spans == [] and found.not_found == [] and found.token_spans == []
    assert found.tokens == ["Fast", "Money", "Picks", "For", "April", "27"]


def test_black_diamond_tickers_from_the_case_study_prompt():
    title = "Black Diamond: The New North Face? (BDE, VFC, JAH, AGPDY.PK)"
    result = ["Black Diamond", "North Face", "BDE", "VFC", "JAH", "AGPDY.PK"]
    normalized = ["Black Diamond", "The North Face", "BPER Banca", "VF Corporation", "Jarden Corporation", "AGP Diagnostics"]
    found = find_spans(title, result, normalized)
    assert texts(found) == list(zip(result, normalized))
    assert found.misaligned == 0
    ticker = found.spans[-1]
    assert title[ticker["start"] : ticker["end"]] == "AGPDY.PK"
    first, last = found.token_spans[-1]["start"], found.token_spans[-1]["end"]
    assert first == last and found.tokens[first] == "AGPDY.PK"


def test_every_occurrence_and_share_class_tickers():
    title = "Berkshire Hathaway (BRK.B) Buys More Apple; Apple Up 2%, BRK.B Flat"
    found = find_spans(title, ["Berkshire Hathaway", "BRK.B", "Apple"], ["Berkshire Hathaway Inc.", "Berkshire Hathaway Inc.", "Apple Inc."])
    assert [s["text"] for s in found.spans] == ["Berkshire Hathaway", "BRK.B", "Apple", "Apple", "BRK.B"]
    assert [s["start"] for s in found.spans] == sorted(s["start"] for s in found.spans)


def test_longest_match_wins_on_overlap():
    found = find_spans("Black Diamond Stock Falling After Tweet", ["Diamond", "Black Diamond"], ["Diamond", "Black Diamond"])
    assert texts(found) == [("Black Diamond", "Black Diamond")]
    assert found.not_found == []  # covered by the longer span, not missing


def test_a_ticker_never_matches_inside_a_word():
    title = "Agilent Technologies (A) Announces A Dividend"
    found = find_spans(title, ["A"], ["Agilent Technologies"])
    # both standalone "A"s are occurrences of the string; the "A" of "Agilent" and "Announces" is not
    assert [s["start"] for s in found.spans] == [22, 35]


def test_exact_case_first_then_case_insensitive_fallback():
    exact = find_spans("Apple Beats; APPLE Shares Rise", ["Apple"], ["Apple Inc."])
    assert [s["start"] for s in exact.spans] == [0]
    fallback = find_spans("NVIDIA Shares Rise", ["Nvidia"], ["NVIDIA Corporation"])
    assert texts(fallback) == [("NVIDIA", "NVIDIA Corporation")]


def test_apostrophes_and_unicode():
    curly = find_spans("McDonald’s Raises Dividend", ["McDonald's"], ["McDonald's Corporation"])
    assert texts(curly) == [("McDonald’s", "McDonald's Corporation")]
    possessive = find_spans("Apple's iPhone Sales Slow", ["Apple"], ["Apple Inc."])
    assert texts(possessive) == [("Apple", "Apple Inc.")]
    decomposed = unicodedata.normalize("NFD", "Nestlé Buys Stake In L'Oréal")
    found = find_spans(decomposed, ["Nestlé", "L'Oréal"], ["Nestlé S.A.", "L'Oréal S.A."])
    assert [s["normalized"] for s in found.spans] == ["Nestlé S.A.", "L'Oréal S.A."]
    assert all(decomposed[s["start"] : s["end"]] == s["text"] for s in found.spans)


def test_strings_not_found_are_reported():
    found = find_spans("Tesla Shares Rise", ["Tesla", "Microsoft", "  "], ["Tesla Inc.", "Microsoft", ""])
    assert texts(found) == [("Tesla", "Tesla Inc.")]
    assert found.not_found == ["Microsoft", ""]


def test_span_cutting_a_joined_token_is_counted_misaligned():
    found = find_spans("Apple-Samsung Patent Battle Heats Up", ["Apple", "Samsung"], ["Apple Inc.", "Samsung"])
    assert [s["text"] for s in found.spans] == ["Apple", "Samsung"]
    assert found.misaligned == 2  # the tokenizer keeps "Apple-Samsung" as one word
    assert found.token_spans == [{"start": 0, "end": 0}, {"start": 0, "end": 0}]


def test_company_names_prefer_normalized_and_fall_back_to_the_string():
    assert company_names(["AAPL", "Tesla", "AAPL"], ["Apple", " ", "Apple"]) == ["Apple", "Tesla"]
    assert company_names(None, None) == []


def test_real_headlines(real_headlines_path):
    titles = set(pq.read_table(real_headlines_path, columns=["title"])["title"].to_pylist())
    cases = {
        "Fast Money Picks For December 15th (ABX, CLX, GOOG, CLF)": (["ABX", "CLX", "GOOG", "CLF"], ["Barrick Gold", "Clorox", "Alphabet", "Cliffs Natural Resources"]),
        "AmerisourceBergen Shares Spike to $104.49 Following Dow Jones Report of Takeover Talks with Walgreens": (
            ["AmerisourceBergen", "Walgreens"],
            ["AmerisourceBergen", "Walgreens Boots Alliance"],
        ),
    }
    for title, (result, normalized) in cases.items():
        assert title in titles  # the real feed row, not a paraphrase
        found = find_spans(title, result, normalized)
        assert [s["text"] for s in found.spans] == result
        assert not any("Dow Jones" in s["text"] for s in found.spans)
        assert found.misaligned == 0


# -- properties ----------------------------------------------------------------------------------

ALPHABET = st.sampled_from(list("abcXYZé&'’.-0 ") + ["ß", "İ", "Ö"])
WORD = st.text(alphabet=st.sampled_from(list("abcdefgxyzé")), min_size=1, max_size=6)
NAME = st.text(alphabet=st.sampled_from(list("ABCDEFGHQZ&'.É")), min_size=1, max_size=7).filter(lambda n: n[0].isalnum() and n[-1].isalnum())


@settings(max_examples=300, deadline=None, derandomize=True)  # the same examples in CI every run
@given(title=st.text(alphabet=ALPHABET, max_size=40), cuts=st.lists(st.tuples(st.integers(0, 40), st.integers(1, 8)), max_size=4))
def test_spans_round_trip_offsets_and_tokens(title, cuts):
    result = [title[a : a + n] for a, n in cuts]
    found = find_spans(title, result, [f"n{i}" for i in range(len(result))])
    previous_end = 0
    tokens = word_tokens(title)
    for span, token_span in zip(found.spans, found.token_spans, strict=True):
        assert title[span["start"] : span["end"]] == span["text"]
        assert span["start"] >= previous_end  # sorted, never overlapping
        previous_end = span["end"]
        start, end = token_to_char_span(tokens, token_span["start"], token_span["end"])
        assert start <= span["start"] and span["end"] <= end  # the token range covers the span
    assert found.tokens == [t for t, _, _ in tokens]
    for surface in {r.strip() for r in result}:
        places = occurrences(title, surface) if surface else []
        if surface in found.not_found:
            assert places == []
        else:  # found: at least one of its occurrences is a span or lies under a longer one
            assert places and any(s["start"] < e and b < s["end"] for b, e in places for s in found.spans)


@settings(max_examples=300, deadline=None, derandomize=True)  # the same examples in CI every run
@given(words=st.lists(WORD, min_size=1, max_size=8), names=st.lists(NAME, min_size=1, max_size=3, unique=True), data=st.data())
def test_placed_names_come_back_at_their_offsets(words, names, data):
    slots = [data.draw(st.integers(0, len(words))) for _ in names]
    pieces = list(words)
    for name, slot in sorted(zip(names, slots), key=lambda p: -p[1]):
        pieces.insert(slot, name)
    title = " ".join(pieces)
    # each name must occur only where we put it (not inside another name, not as a different-case twin)
    assume(all(sum(p.lower() == n.lower() for p in pieces) == 1 and sum(n.lower() in p.lower() for p in pieces) == 1 for n in names))
    expected, cursor = [], 0
    for piece in pieces:
        if piece in names:
            expected.append((cursor, cursor + len(piece), piece))
        cursor += len(piece) + 1
    found = find_spans(title, names, names)
    assert [(s["start"], s["end"], s["text"]) for s in found.spans] == expected
    assert [s["normalized"] for s in found.spans] == [e[2] for e in expected]
    assert found.not_found == []

"""The majority vote of several models (`finner.models.ensemble`): which spans it keeps, their
scores, and a saved vote that loads back voting the same."""

from __future__ import annotations

import pytest

from finner.errors import FinnerError
from finner.models.ensemble import MajorityVote
from finner.models.registry import ModelSpec, build_model
from tests.scored_spans import ScoredSpans

TITLE = "Apple And Microsoft Beat, Intel Misses"


def title_model(*scored_words: tuple[str, float]) -> ScoredSpans:
    """A model that predicts given words of `TITLE` with given scores."""
    return ScoredSpans({TITLE: list(scored_words)})


def test_vote_keeps_the_spans_most_members_predict_with_their_mean_score():
    vote = MajorityVote([title_model(("Apple", 0.9), ("Intel", 0.4)), title_model(("Apple", 0.7), ("Microsoft", 0.8)), title_model(("Microsoft", 0.6), ("Intel", 0.5))])
    voted = vote.predict([TITLE, "Nothing here"])
    assert [(s["text"], round(s["score"], 6)) for s in voted[0]] == [("Apple", 0.8), ("Microsoft", 0.7), ("Intel", 0.45)]
    assert voted[1] == []


def test_a_span_needs_more_than_half_the_members():
    two = MajorityVote([title_model(("Apple", 0.9)), title_model(("Microsoft", 0.8))])
    assert two.predict([TITLE]) == [[]]  # one vote of two is not a majority
    four = MajorityVote([title_model(("Apple", 0.9))] * 2 + [title_model(("Apple", 0.9), ("Intel", 0.5))] * 2)
    assert [s["text"] for s in four.predict([TITLE])[0]] == ["Apple"]  # two votes of four are not either


def test_a_vote_without_members_or_without_its_file_is_a_clear_error(tmp_path):
    with pytest.raises(FinnerError, match="at least one member"):
        MajorityVote([])
    with pytest.raises(FinnerError, match="no majority vote at .*finner_vote.json is missing"):
        MajorityVote.load(str(tmp_path))


@pytest.mark.slow
def test_saved_vote_of_gliner_models_loads_back_voting_the_same(tmp_path):
    """Three offline GLiNERs with different untrained heads, at threshold 0 so they predict
    spans: the vote keeps exactly those two of them predict, and reloads voting the same, each
    member at its threshold and with its subject rules."""
    import torch

    titles = ["AT&T, Apple's Suppliers And Johnson & Johnson Rally", "Berkshire Hathaway (BRK.B) Raises Stake In Coca-Cola", TITLE]
    members = []
    for seed in range(3):
        torch.manual_seed(seed)
        members.append(build_model(ModelSpec("gliner", offline=True, threshold=0.0)))
    members[2].subject_rules = False
    vote = MajorityVote(members)
    voted = vote.predict(titles)
    each = [m.predict(titles) for m in members]
    for i, spans in enumerate(voted):
        counts: dict[tuple[int, int], int] = {}
        for predicted in each:
            for s in predicted[i]:
                counts[(s["start"], s["end"])] = counts.get((s["start"], s["end"]), 0) + 1
        assert [(s["start"], s["end"]) for s in spans] == sorted(k for k, n in counts.items() if n >= 2)
    assert any(voted)

    vote.save(str(tmp_path / "vote"))
    again = MajorityVote.load(str(tmp_path / "vote"))
    assert [m.subject_rules for m in again.members] == [True, True, False]
    assert again.predict(titles) == voted

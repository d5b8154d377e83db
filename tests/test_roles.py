"""The guideline's subject rules on model spans: brokers acting on a stock and words that are never
a company are dropped; a company about itself, or a name with a capital, stays."""

from __future__ import annotations

from pathlib import Path

import pytest

from finner.roles import RULES_VERSION, never_a_company, subject_companies
from finner.schemas import make_span
from finner.score import title_spans


def spans_of(title: str, *texts: str) -> list[dict]:
    """Spans of `texts`, found left to right."""
    out, at = [], 0
    for text in texts:
        start = title.index(text, at)
        out.append(make_span(title, start, start + len(text), score=0.9))
        at = start + len(text)
    return out


def kept(title: str, *texts: str) -> list[str]:
    return [s["text"] for s in subject_companies(title, spans_of(title, *texts))]


@pytest.mark.parametrize(
    ("title", "predicted", "subjects"),
    [
        ("Citigroup Downgrades Acme Brands To Neutral", ("Citigroup", "Acme Brands"), ["Acme Brands"]),
        ("Stifel On Atlas Air: Company Has Lingering Pilot Union Issues", ("Stifel", "Atlas Air"), ["Atlas Air"]),
        ("Apple Price Target Raised At Wedbush", ("Apple", "Wedbush"), ["Apple"]),
        ("JPMorgan (JPM) Upgrades Apple", ("JPMorgan", "JPM", "Apple"), ["Apple"]),
        ("Northwind Capital Markets Initiates Coverage On Acme", ("Northwind", "Acme"), ["Acme"]),
        # a firm about itself is a subject; a rating verb with no company after it rates nothing
        ("Citigroup Reports Third-Quarter Earnings", ("Citigroup",), ["Citigroup"]),
        ("Acme Brands Downgrades Its Outlook", ("Acme Brands",), ["Acme Brands"]),
        # never a company on its own
        ("FTC Approves Final Consent Orders with CarMax, Asbury", ("FTC", "CarMax", "Asbury"), ["CarMax", "Asbury"]),
        ("15 Industrial Stocks Moving In Monday's Pre-Market Session", ("Monday",), []),
        ("Patients showed improvements in pruritus (itch) at week 32, AbbVie says", ("itch", "AbbVie"), ["AbbVie"]),
        ("China Telecom, STMicroelectronics Rise", ("China Telecom", "STMicroelectronics"), ["China Telecom", "STMicroelectronics"]),
    ],
)
def test_subject_companies(title, predicted, subjects):
    assert kept(title, *predicted) == subjects


def test_never_a_company_reads_the_span_only():
    assert never_a_company("bars") and never_a_company("China") and never_a_company("Tuesday")
    assert not never_a_company("eBay") and not never_a_company("May") and not never_a_company("3M")


def test_scored_spans_pass_through_the_rules():
    """The scoring stage's spans (what the predictions table stores) follow the same rules."""
    titles = ["Citigroup Downgrades Acme Brands", "Acme Brands Soars"]
    found = title_spans(titles, [0, 0, 1], [0, 21, 0], [9, 32, 11], [0.9, 0.8, 0.7])
    assert [[s["text"] for s in row] for row in found] == [["Acme Brands"], ["Acme Brands"]]
    assert found[0][0]["score"] == pytest.approx(0.8)


def test_the_rules_version_follows_the_code_not_its_comments(tmp_path, monkeypatch):
    """A reworded docstring or comment keeps the version (no re-scoring); a changed word list does not."""
    import finner.roles as roles

    source = Path(roles.__file__).read_text(encoding="utf-8")
    copy = tmp_path / "roles.py"
    for edited, same in (
        (source.replace("Which company spans", "Which of the company spans").replace("# not \"May\": a name too", "# May is a name"), True),
        (source.replace("fed fda sec", "fed fda sec nasa"), False),
    ):
        assert edited != source
        copy.write_text(edited, encoding="utf-8")
        monkeypatch.setattr(roles, "__file__", str(copy))
        assert (roles._rules_version() == RULES_VERSION) is same

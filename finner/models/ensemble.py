"""Several trained models as one: a span is kept where most of them predict it.

Models trained with different seeds disagree on the headlines none of them is sure of, which is
where one seed's F1 differs from another's; a span that most of them predict is kept, one that only
one of them predicts is not. Each member predicts at its own threshold, through its own subject
rules. When each member's spans are flat (none overlaps another, as GLiNER's flat decoding gives),
majority spans are flat too: two overlapping ones would need more votes than there are members. It
costs one prediction per member.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

from finner.errors import FinnerError
from finner.models.base import NerModel
from finner.models.registry import load_checkpoint
from finner.schemas import Span, make_span

MEMBERS_FILE = "finner_vote.json"  # the members' kinds, folders and thresholds in a saved vote


def majority_spans(titles: list[str], predictions: Sequence[list[list[Span]]]) -> list[list[Span]]:
    """The vote over predictions already made: for each title, the spans that more than half of
    `predictions` (one list per member, in title order) hold, scored with their voters' mean."""
    majority = len(predictions) / 2
    voted: list[list[Span]] = []
    for title, *found in zip(titles, *predictions):
        scores: dict[tuple[int, int], list[float]] = {}
        for spans in found:
            for s in spans:
                scores.setdefault((s["start"], s["end"]), []).append(s["score"] or 0.0)
        voted.append([make_span(title, start, end, score=sum(v) / len(v)) for (start, end), v in sorted(scores.items()) if len(v) > majority])
    return voted


class MajorityVote(NerModel):
    """The spans that more than half of `members` predict (same start and end), each scored with
    the mean of its voters' scores."""

    kind = "vote"

    def __init__(self, members: Sequence[NerModel]) -> None:
        if not members:
            raise FinnerError("a majority vote needs at least one member")
        self.members = list(members)

    def predict(self, titles: list[str]) -> list[list[Span]]:
        return majority_spans(titles, [m.predict(titles) for m in self.members])

    def save(self, path: str) -> None:
        os.makedirs(path, exist_ok=True)
        members = []
        for i, member in enumerate(self.members):
            folder = f"member-{i}"
            member.save(os.path.join(path, folder))
            members.append({"kind": member.kind, "folder": folder, "threshold": getattr(member, "threshold", None), "subject_rules": member.subject_rules})
        with open(os.path.join(path, MEMBERS_FILE), "w") as f:
            json.dump({"members": members}, f, indent=2)

    @classmethod
    def load(cls, path: str, **_: Any) -> "MajorityVote":
        """A vote written by `save`: each member from its folder, voting as it did (threshold, subject rules)."""
        try:
            with open(os.path.join(path, MEMBERS_FILE)) as f:
                members = json.load(f)["members"]
        except FileNotFoundError as err:
            raise FinnerError(f"no majority vote at {path!r}: {MEMBERS_FILE} is missing") from err
        loaded = []
        for m in members:
            member = load_checkpoint(m["kind"], os.path.join(path, m["folder"]), threshold=m["threshold"])
            member.subject_rules = m["subject_rules"]
            loaded.append(member)
        return cls(loaded)

"""Self-training: a trained model, or a majority vote of several (`finner.models.ensemble`),
relabels the feed's training headlines, and a student trains on its labels instead of the LLM's
(`jobs.train --labels teacher`).

A model trained on the labeller's labels of the whole feed does not copy them: where the labels
are inconsistent it learns what most of them say. Its labels of the same headlines are that
consistency made explicit, and a vote of several seeds' models keeps only what they agree on.

The teacher's labels go to the `teacher_spans` table, one commit per chunk of rows, each row with
the teacher's fingerprint: a killed run resumes where it stopped, a run with the same teacher over
the same rows writes nothing, and another teacher's rows are replaced, never mixed in. Appended
files have no order, so the finished table is written once more in the order of the rows it
relabels: the student then trains on its rows in the order `--labels llm` would.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from finner import artifacts
from finner.ids import stable_hash
from finner.models.base import NerModel, ThresholdedModel, weights_digest
from finner.progress import progress_bar
from finner.schemas import TEACHER_SPANS, Span
from finner.store import Store
from finner.training_data import TEACHER_TABLE, RowSet, describe, feed_rows

CHUNK_ROWS = 1024  # rows a commit holds: what a killed run loses at most


def teacher_fingerprint(members: Sequence[tuple[str, ThresholdedModel]]) -> str:
    """What makes a teacher's labels what they are: each member's checkpoint weights (`path`, as
    loaded), threshold and subject rules; a vote of several or one model alone."""
    return stable_hash([[m.kind, weights_digest(path), m.threshold, m.subject_rules] for path, m in members], length=12)


@dataclass(frozen=True)
class RelabelSummary:
    rows: int  # the training rows the table holds for this teacher
    relabelled: int  # of which this run predicted
    changed: int  # of those, rows whose spans differ from the LLM's
    teacher: str

    def line(self) -> str:
        reused = self.rows - self.relabelled
        return (
            f"teacher {self.teacher}: {self.rows} training rows labelled ({self.relabelled} now, {reused} by an earlier run); "
            f"{self.changed} of the {self.relabelled} now differ from the LLM's labels"
        )


def _offsets(spans: list[Span] | None) -> list[tuple[int, int]]:
    return sorted((s["start"], s["end"]) for s in spans or [])


def relabel(store: Store, teacher: NerModel, fingerprint: str, every_year: bool = True, limit: int = 0, progress: bool = True) -> RelabelSummary:
    """Write the teacher's spans of every feed training row (`feed_rows`: `--rows all` with
    `every_year`, else `feed`; the first `limit` when set) to `teacher_spans`, as the teacher predicts them (`jobs.relabel`
    turns the subject rules off, so the student learns the models' own spans and predicts through
    the rules as they did); `fingerprint` (`teacher_fingerprint`) names the teacher."""
    done: set[str] = set()
    if store.exists(TEACHER_TABLE):
        teachers = set(pc.unique(store.read(TEACHER_TABLE, columns=["teacher"]).column("teacher")).to_pylist())
        if teachers - {fingerprint}:
            store.write(TEACHER_TABLE, TEACHER_SPANS.empty_table())  # another teacher's labels: never mixed with these
        else:
            done = store.ids(TEACHER_TABLE)
    rows = feed_rows(store, limit=limit, every_year=every_year)
    total = describe(store, rows).rows
    done_ids = pa.array(done, pa.string())  # once: every batch is checked against it
    reused = relabelled = changed = 0
    with progress_bar(desc="relabel", total=total, enabled=progress) as bar:
        for kept in _selected(store, rows):
            predicted: dict[str, list[Span]] = {}  # the feed repeats a headline under other symbols, mostly nearby
            todo = kept.filter(pc.invert(pc.is_in(kept.column("id"), done_ids)))
            reused += kept.num_rows - todo.num_rows
            bar.update(kept.num_rows - todo.num_rows)
            for start in range(0, todo.num_rows, CHUNK_ROWS):
                chunk = todo.slice(start, CHUNK_ROWS)
                titles = chunk.column("title").to_pylist()
                new = sorted(set(titles) - predicted.keys())
                predicted.update(zip(new, teacher.predict(new)))
                spans = [predicted[t] for t in titles]
                changed += sum(_offsets(a) != _offsets(b) for a, b in zip(spans, chunk.column("spans").to_pylist()))
                table = pa.table(
                    {"id": chunk.column("id"), "title": chunk.column("title"), "date": chunk.column("date"), "spans": pa.array(spans, TEACHER_SPANS.field("spans").type), "teacher": pa.array([fingerprint] * chunk.num_rows, pa.string())},
                    schema=TEACHER_SPANS,
                )
                store.append(TEACHER_TABLE, table)
                relabelled += chunk.num_rows
                bar.update(chunk.num_rows)
    record = store.get_json(artifacts.RELABEL_KEY) or {}
    if relabelled or record != {"teacher": fingerprint, "version": store.version(TEACHER_TABLE)}:
        store.write(TEACHER_TABLE, _in_order(store, rows))
        store.put_json(artifacts.RELABEL_KEY, {"teacher": fingerprint, "version": store.version(TEACHER_TABLE)})
    return RelabelSummary(reused + relabelled, relabelled, changed, fingerprint)


def _selected(store: Store, rows: RowSet) -> Iterator[pa.Table]:
    """The feed rows' selected rows, batch by batch, with every column (their dates too), the first `rows.limit`."""
    left = rows.limit or None
    for raw in rows.raw_batches(store):
        kept = rows.select.kept(raw)  # type: ignore[attr-defined]  # a FeedSelection
        if left is not None:
            kept, left = kept.slice(0, left), left - min(left, kept.num_rows)
        yield kept
        if left == 0:
            return


def _in_order(store: Store, rows: RowSet) -> Iterator[pa.Table]:
    """The teacher's rows in the order of the rows they relabel (held as Arrow, not Python objects)."""
    labelled = store.read(TEACHER_TABLE)
    for kept in _selected(store, rows):
        yield labelled.take(pc.index_in(kept.column("id"), labelled.column("id")))

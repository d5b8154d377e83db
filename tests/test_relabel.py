"""Self-training's relabelling (`finner.relabel`, `jobs.relabel`) and the student's rows
(`jobs.train --labels teacher`): which rows a teacher labels, resuming a killed run, never mixing
two teachers, and the job's bad input."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from finner.errors import FinnerError
from finner.models.base import ThresholdedModel
from finner.relabel import CHUNK_ROWS, relabel
from finner.schemas import make_span
from finner.store import Store
from finner.testing.labelled_feed import write_labelled_feed
from finner.training_data import ALL_ROWS, FEED_ROWS, LLM_LABELS, SAMPLE_ROWS, TEACHER_LABELS, TEACHER_TABLE, TRAIN_SPLIT, VALID_SPLIT, training_rows
from tests.conftest import run_module


class FirstWord(ThresholdedModel):
    """A teacher that labels each title's first word, and can be made to die after some titles."""

    kind = "first-word"

    def __init__(self, die_after: int | None = None) -> None:
        self.threshold, self.die_after, self.seen = 0.5, die_after, 0

    @staticmethod
    def passes(score, threshold):
        return score > threshold

    def predict(self, titles):
        self.seen += len(titles)
        if self.die_after is not None and self.seen > self.die_after:
            raise KeyboardInterrupt  # killed mid-run
        return [[make_span(t, 0, len(t.split(" ")[0]), score=0.9)] if t.split(" ")[0] else [] for t in titles]

    def save(self, path):
        raise NotImplementedError

    @classmethod
    def load(cls, path, **_):
        raise NotImplementedError


@pytest.fixture(scope="module")
def feed_store(tmp_path_factory, real_headlines_path, company_listings_path) -> Store:
    """The real feed ingested, labelled by the gazetteer and curated."""
    store = Store(str(tmp_path_factory.mktemp("relabel") / "store"))
    write_labelled_feed(store, real_headlines_path, company_listings_path)
    return store


def teacher_rows(store: Store) -> list[dict]:
    return store.read(TEACHER_TABLE, columns=["id", "spans", "teacher"]).to_pylist()


def test_a_killed_relabelling_resumes_to_the_rows_of_one_uninterrupted_run(feed_store):
    whole = relabel(feed_store, FirstWord(), "first-word", progress=False)
    uninterrupted = teacher_rows(feed_store)
    llm = training_rows(feed_store, LLM_LABELS, ALL_ROWS, TRAIN_SPLIT).read(feed_store)
    assert whole.rows == whole.relabelled == llm.num_rows > 3 * CHUNK_ROWS
    assert [r["id"] for r in uninterrupted] == llm.column("id").to_pylist()  # the student reads them in the LLM rows' order
    assert 0 < whole.changed < whole.rows

    again = relabel(feed_store, FirstWord(), "first-word", progress=False)
    assert (again.rows, again.relabelled) == (whole.rows, 0)  # the same teacher: nothing to do

    feed_store.write(TEACHER_TABLE, pa.Table.from_pylist([], schema=feed_store.read(TEACHER_TABLE).schema))
    with pytest.raises(KeyboardInterrupt):
        relabel(feed_store, FirstWord(die_after=2 * CHUNK_ROWS + 10), "first-word", progress=False)
    committed = len(teacher_rows(feed_store))
    assert 0 < committed < whole.rows
    resumed = relabel(feed_store, FirstWord(), "first-word", progress=False)
    assert (resumed.rows, resumed.relabelled) == (whole.rows, whole.rows - committed)
    assert teacher_rows(feed_store) == uninterrupted


def test_a_limited_relabelling_labels_the_rows_a_limited_student_trains_on(feed_store):
    limited = relabel(feed_store, FirstWord(), "first-word", limit=1500, progress=False)
    first = training_rows(feed_store, LLM_LABELS, ALL_ROWS, TRAIN_SPLIT, limit=1500).read(feed_store)
    student = training_rows(feed_store, TEACHER_LABELS, ALL_ROWS, TRAIN_SPLIT, limit=1500).read(feed_store)
    assert limited.rows == 1500 and student.column("id").to_pylist() == first.column("id").to_pylist()


def test_another_teachers_labels_replace_the_first_ones(feed_store):
    relabel(feed_store, FirstWord(), "first-word", progress=False)

    class NoCompany(FirstWord):
        def predict(self, titles):
            return [[] for _ in titles]

    other = relabel(feed_store, NoCompany(), "none", every_year=False, progress=False)
    rows = teacher_rows(feed_store)
    assert other.relabelled == other.rows == len(rows) > 0
    assert {r["teacher"] for r in rows} == {"none"} and not any(r["spans"] for r in rows)


def test_the_student_trains_on_the_teachers_spans_and_is_validated_on_the_llms(feed_store):
    relabel(feed_store, FirstWord(), "first-word", progress=False)
    student = training_rows(feed_store, TEACHER_LABELS, ALL_ROWS, TRAIN_SPLIT).read(feed_store)
    llm = training_rows(feed_store, LLM_LABELS, ALL_ROWS, TRAIN_SPLIT).read(feed_store)
    assert student.column("id").to_pylist() == llm.column("id").to_pylist()
    assert all(len(s) == 1 and s[0]["start"] == 0 for s in student.column("spans").to_pylist() if s)
    assert student.column("spans").to_pylist() != llm.column("spans").to_pylist()
    valid = training_rows(feed_store, TEACHER_LABELS, ALL_ROWS, VALID_SPLIT).read(feed_store)
    assert valid.equals(training_rows(feed_store, LLM_LABELS, ALL_ROWS, VALID_SPLIT).read(feed_store))
    with pytest.raises(FinnerError, match="--rows feed or all"):
        training_rows(feed_store, TEACHER_LABELS, SAMPLE_ROWS, TRAIN_SPLIT)


@pytest.mark.slow
def test_the_student_trains_through_ray_train_on_the_teachers_rows(feed_store, capsys):
    """`jobs.train --labels teacher`: the rows its worker trains on are the teacher table's first
    rows, and the run records what it learned from (the model card's label source)."""
    import ray

    from finner.publish import training_labels
    from jobs.train import main

    relabel(feed_store, FirstWord(), "first-word", progress=False)
    argv = ["--store", feed_store.root, "--labels", "teacher", "--rows", "all", "--max-train-rows", "24", "--record-rows", "--offline", "--seed", "3",
            "--epochs", "1", "--batch-size", "4", "--learning-rate", "5e-5", "--head-learning-rate", "1e-3", "--warmup-ratio", "0"]  # fmt: skip
    try:
        assert main(argv) == 0
    finally:
        ray.shutdown()
    summary = feed_store.get_json("train-gliner-teacher-all")
    assert summary["labels"] == "teacher" and training_labels(summary) == "teacher" and summary["train_rows"] == 24
    first = training_rows(feed_store, TEACHER_LABELS, ALL_ROWS, TRAIN_SPLIT, limit=24).read(feed_store)
    assert sorted(r["id"] for r in feed_store.read("trained_rows").to_pylist()) == sorted(first.column("id").to_pylist())
    assert "trained on 24 all rows, seed 3" in capsys.readouterr().out


def test_teacher_labels_without_a_relabelling_are_a_clear_error(tmp_path, real_headlines_path, company_listings_path):
    store = Store(str(tmp_path / "store"))
    small = tmp_path / "small.parquet"
    pq.write_table(pq.read_table(real_headlines_path).slice(0, 300), small)
    write_labelled_feed(store, small, company_listings_path)
    with pytest.raises(FinnerError, match="jobs.relabel"):
        training_rows(store, TEACHER_LABELS, FEED_ROWS, TRAIN_SPLIT)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--teacher", "no/such/checkpoint"], "no/such/checkpoint"),
        (["--teacher", "x", "--threshold", "1.5"], "--threshold: 1.5"),
        (["--teacher", "x", "--rows", "sample"], "--rows"),
        (["--teacher", "x", "--max-rows", "-1"], "--max-rows: -1"),
        ([], "--teacher"),
    ],
)
def test_relabel_job_bad_input_is_one_error_line(tmp_path, args, message):
    done = run_module("jobs.relabel", "--store", str(tmp_path / "store"), *args, "--quiet")
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], done.stderr

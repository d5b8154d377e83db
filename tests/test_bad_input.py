"""Bad input, on every job and every numeric or choice flag: one `error: --flag: ...` line on
stderr, exit status 2, no traceback, and the store exactly as it was (not even a `logs/` folder:
configs are built before a job logs or touches anything).

The table is read off the jobs' own argument parsers, so a new flag is covered the day it is
added: a choice flag gets a value outside its choices, a numeric flag a value just past each
bound its config field declares, and a numeric flag that declares no bound fails the test.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import importlib
import json
from pathlib import Path
from typing import Any
from unittest import mock

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from finner import schemas
from finner.config import BOUNDS, Config
from finner.pipeline import cli
from finner.store import Store
from tests.conftest import run_module

JOBS = ("ingest", "label", "curate", "review", "train", "evaluate", "learning_curve", "score", "pipeline")
NOT_A_CHOICE = "no-such-choice"


class _Parsed(Exception):
    """Raised in place of parsing: the parser is all we want from a job's `main`."""


def job_parser(job: str) -> argparse.ArgumentParser:
    """The parser `jobs.<job>.main` builds, caught as it starts parsing."""
    built: list[argparse.ArgumentParser] = []

    def capture(parser: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> None:
        built.append(parser)
        raise _Parsed

    with mock.patch.object(cli.ArgumentParser, "parse_args", capture), pytest.raises(_Parsed):
        importlib.import_module(f"jobs.{job}").main([])
    return built[0]


def commands(job: str) -> list[tuple[list[str], argparse.ArgumentParser]]:
    """(argv prefix, parser) of the job and of each of its subcommands (`review push`...)."""
    parser = job_parser(job)
    found = [([], parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            found = [([name], sub) for name, sub in action.choices.items()]
    return found


def config_classes() -> dict[str, type]:
    classes: dict[str, type] = {}
    todo = [Config]
    while todo:
        cls = todo.pop()
        todo += cls.__subclasses__()
        if dataclasses.is_dataclass(cls):
            assert classes.setdefault(cls.__name__, cls) is cls, f"two config classes named {cls.__name__}"
    return classes


def declared_bounds(parser: argparse.ArgumentParser, action: argparse.Action) -> dict[str, float]:
    """The bounds the flag's config field declares (`add_config_args` groups flags by class name)."""
    classes = config_classes()
    for group in parser._action_groups:
        if action in group._group_actions and group.title in classes:
            field = {f.name: f for f in dataclasses.fields(classes[group.title])}[action.dest]
            return {bound: field.metadata[bound] for bound in BOUNDS if bound in field.metadata}
    return {}


def past(bound: str, value: float, kind: type) -> str:
    """A value just outside `bound` (`at_least 1` -> 0, `below 1` -> 1...)."""
    outside = {"at_least": value - 1, "more_than": value, "at_most": value + 1, "below": value}[bound]
    return str(kind(outside))


def numeric(action: argparse.Action) -> bool:
    return bool(action.option_strings) and action.type in (int, float)


def cases() -> list[Any]:
    found = []
    for job in JOBS:
        for prefix, parser in commands(job):
            name = " ".join([job, *prefix])
            for action in parser._actions:
                flag = action.option_strings[0] if action.option_strings else None
                if flag and action.choices:
                    found.append(pytest.param(job, prefix, flag, NOT_A_CHOICE, id=f"{name} {flag} {NOT_A_CHOICE}"))
                elif numeric(action):
                    for bound, value in declared_bounds(parser, action).items():
                        bad = past(bound, value, action.type)
                        found.append(pytest.param(job, prefix, flag, bad, id=f"{name} {flag} {bad}"))
    return found


def unbounded_numeric_flags() -> list[str]:
    return [
        f"{' '.join([job, *prefix])} {action.option_strings[0]}"
        for job in JOBS
        for prefix, parser in commands(job)
        for action in parser._actions
        if numeric(action) and not declared_bounds(parser, action)
    ]


def snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir" for p in sorted(root.rglob("*"))}


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Store:
    """A store holding a table, so a job that wrongly went ahead would change something."""
    store = Store(str(tmp_path_factory.mktemp("bad-input") / "store"))
    headline = {"id": "h1", "title": "Apple Shares Rise", "date": 0, "symbol": "AAPL", "publisher": None}
    store.write("headlines", pa.Table.from_pylist([headline]).cast(schemas.HEADLINES))
    return store


def check_one_error_line(stderr: str, stdout: str, flag: str) -> None:
    assert "Traceback" not in stderr + stdout
    lines = stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {flag}: "), stderr


def test_every_numeric_flag_declares_its_bounds():
    assert unbounded_numeric_flags() == []


def test_the_table_covers_every_job():
    covered = {param.values[0] for param in cases()}
    assert covered == set(JOBS)


@pytest.mark.parametrize(("job", "prefix", "flag", "value"), cases())
def test_bad_flag_value_is_one_error_line(job, prefix, flag, value, store, capfd):
    root = Path(store.root)
    before = snapshot(root)
    main = importlib.import_module(f"jobs.{job}").main
    try:
        status = main(["--store", store.root, *prefix, flag, value])
    except SystemExit as exit:
        status = exit.code
    out, err = capfd.readouterr()
    assert status == 2
    check_one_error_line(err, out, flag)
    assert snapshot(root) == before
    assert not (root / "logs").exists()


@pytest.mark.parametrize(
    ("job", "argv", "flag"),
    [
        ("score", ["--threshold", "2"], "--threshold"),
        ("score", ["--model", "a", "b", "--threshold", "0.3", "0.4", "0.5"], "--threshold"),
        ("label", ["--test-endpoint", "--max-in-flight", "0"], "--max-in-flight"),
        ("ingest", ["--path", "missing.parquet"], "--path"),
        ("train", ["--seed", "-1"], "--seed"),
        ("evaluate", ["--bootstrap-seed", "-1"], "--bootstrap-seed"),
    ],
)
def test_bad_input_as_a_user_types_it(job, argv, flag, store):
    """The same through `python -m`: nothing else (warnings, a progress bar) on stderr."""
    root = Path(store.root)
    before = snapshot(root)
    done = run_module(f"jobs.{job}", "--store", store.root, *argv)
    assert done.returncode == 2
    check_one_error_line(done.stderr, done.stdout, flag)
    assert snapshot(root) == before


@pytest.mark.parametrize(
    ("argv", "token", "message"),
    [
        (["model"], "", "error: no fine-tuned model in the store"),
        (["model", "--name", "no-such-model"], "", "error: --name: no model 'no-such-model' in the store"),
        (["dataset"], "", "error: the store "),
        (["model", "--repo-id", "me/finner-gliner"], "", "error: --repo-id: pushing needs a Hugging Face token in $HF_TOKEN"),
        (["dataset", "--repo-id", "not a repo id"], "hf_x", "error: --repo-id: expected owner/name"),
        (["model", "--dataset-id", "no-owner"], "", "error: --dataset-id: expected owner/name"),
        (["dataset", "--out", "."], "", "error: --out: . exists and is not a folder jobs.publish wrote"),
    ],
)
def test_publishing_from_an_empty_store_or_without_a_token_is_one_error_line(argv, token, message, tmp_path):
    """`jobs.publish` on a store with nothing to publish, or asked to push without a token: nothing
    is written (a missing token is caught before the store is touched)."""
    root = tmp_path / "empty"
    done = run_module("jobs.publish", "--store", str(root), *argv, env={"HF_TOKEN": token})
    assert done.returncode == 2 and "Traceback" not in done.stderr + done.stdout
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), done.stderr
    assert not (root / "publish").exists()
    if "--repo-id" in argv or "--dataset-id" in argv:
        assert not root.exists()


@pytest.mark.parametrize("damage", ["not parquet", "truncated"])
def test_unreadable_feed_file_is_one_error_line_naming_it(damage, store, tmp_path):
    """A file that cannot be read at all (unlike one bad row group, which ingest skips and records)."""
    path = tmp_path / "feed.parquet"
    if damage == "not parquet":
        path.write_text("Article_title,Date\nApple Shares Rise,2015-01-01\n")
    else:
        rows = [{"Article_title": f"Apple Shares Rise {i}", "Date": "2015-01-01"} for i in range(1000)]
        pq.write_table(pa.Table.from_pylist(rows), path)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    root = Path(store.root)
    before = snapshot(root)
    done = run_module("jobs.ingest", "--store", store.root, "--path", str(path))
    assert done.returncode == 2
    check_one_error_line(done.stderr, done.stdout, "--path")
    assert f"{path}: not a readable parquet file (" in done.stderr
    assert snapshot(root) == before


GOLD_ROW = {"id": "a", "split": "dev", "title": "Apple Shares Rise", "spans": [{"start": 0, "end": 5, "text": "Apple", "role": "subject"}]}


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([GOLD_ROW, {**GOLD_ROW, "id": "b", "split": "test", "title": "Tesla Falls", "spans": [{"start": 6, "end": 40}]}],
         "gold.jsonl:2: row 'b': span 6..40 is outside its title (11 characters)"),
        ([GOLD_ROW, {**GOLD_ROW, "split": "test"}], "gold.jsonl:2: row 'a' is in both the dev and the test part: one headline, one part"),
        ([GOLD_ROW, {**GOLD_ROW, "id": "b", "split": "test", "title": "APPLE shares rise!", "spans": []}],
         "gold.jsonl:2: row 'b' (the title twin of row 'a') is in both the dev and the test part: one headline, one part"),
    ],
    ids=["offset past its title", "a row in dev and test", "a title twin in dev and test"],
)  # fmt: skip
def test_a_bad_gold_file_is_one_error_line_naming_the_row(rows, message, store, tmp_path):
    path = tmp_path / "gold.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    tables = lambda: {k: v for k, v in snapshot(Path(store.root)).items() if not k.startswith("logs")}  # noqa: E731 (the gold is read once the job logs)
    before = tables()
    done = run_module("jobs.evaluate", "--store", store.root, "--gold", str(path), "--models", "llm", "--quiet", "--no-plot")
    assert done.returncode == 2 and "Traceback" not in done.stderr + done.stdout
    assert done.stderr.splitlines() == [f"error: {path.parent}/{message}"]
    assert tables() == before

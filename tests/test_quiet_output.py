"""A run a person can read: a stage prints its own lines and the path of its log; Ray, the HF
Trainer and the workers' output go to `<store>/logs/<stage>.log`; `--verbose` brings it all back."""

from __future__ import annotations

from pathlib import Path

import pytest

from finner.store import Store
from tests.conftest import run_module
from tests.train_data import write_sample

TRAIN_STDOUT_LINES = 40  # the demo's train stage, issue 13


@pytest.mark.slow
def test_train_stage_prints_a_few_lines_and_logs_the_rest(tmp_path, real_headlines_path, company_listings_path):
    store = Store(str(tmp_path / "store"))
    write_sample(store, real_headlines_path, company_listings_path, train=16, valid=8)
    done = run_module("jobs.train", "--store", store.root, "--offline", "--epochs", "1")
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    log = Path(store.root) / "logs" / "train.log"
    assert len(lines) < TRAIN_STDOUT_LINES, done.stdout
    assert lines[0] == f"train: details in {log}"
    assert lines[-1].startswith("gliner-llm: trained on 16 rows")
    assert done.stderr.strip() == ""
    written = log.read_text()
    for noise in ("RayTrainWorker", "TrainController", "'train_runtime'"):  # Ray's worker lines, the Trainer's summary
        assert noise in written and noise not in done.stdout
    assert "deprecat" not in written.lower()  # none of our calls into Ray, transformers or gliner is deprecated


def test_a_verbose_pipeline_runs_verbose_stages(tmp_path):
    quiet = run_module("jobs.pipeline", "--store", str(tmp_path / "quiet"), "--only", "ingest")
    assert quiet.returncode == 0, quiet.stderr
    assert f"ingest: details in {tmp_path / 'quiet' / 'logs' / 'ingest.log'}" in quiet.stdout.splitlines()
    verbose = run_module("jobs.pipeline", "--store", str(tmp_path / "verbose"), "--only", "ingest", "--verbose")
    assert verbose.returncode == 0, verbose.stderr
    assert "python -m jobs.ingest --store" in verbose.stdout and "--verbose" in verbose.stdout
    assert "details in" not in verbose.stdout and not (tmp_path / "verbose" / "logs").exists()

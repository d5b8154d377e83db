"""A run a person can read: a stage prints its own lines and the path of its log; Ray, the HF
Trainer and the workers' output go to `<store>/logs/<stage>.log`; `--verbose` brings it all back."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from finner.store import Store
from tests.conftest import REPO, run_module
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
    assert lines[-1].startswith("gliner-llm: trained on 16 sample rows")
    # stderr: the stage's one progress bar, in training steps (16 rows, batches of 4, one epoch)
    bar = [line for line in done.stderr.replace("\r", "\n").splitlines() if line.strip()]
    assert bar and all(line.startswith("train gliner-llm: ") for line in bar), done.stderr
    assert "| 4/4 " in bar[-1]
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


def test_stages_in_one_process_each_log_their_own_output(tmp_path):
    """The pipeline runs its stages in one process: a logging handler a library made during one stage
    (transformers makes one on first use) writes to the next stage's log, not to a closed file."""
    script = textwrap.dedent(
        f"""
        import logging
        from finner.progress import quiet_output, say
        for stage in ("a", "b"):
            with quiet_output({str(tmp_path)!r} + f"/{{stage}}.log"):
                if stage == "a":
                    logging.getLogger("lib").addHandler(logging.StreamHandler())
                logging.getLogger("lib").warning(f"library line in {{stage}}")
                print(f"print in {{stage}}")
                say(f"say in {{stage}}")
        """
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert done.stdout.splitlines() == ["say in a", "say in b"]
    for stage in ("a", "b"):
        assert (tmp_path / f"{stage}.log").read_text().splitlines() == [f"library line in {stage}", f"print in {stage}"]

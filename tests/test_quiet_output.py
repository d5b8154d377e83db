"""A run a person can read: a stage prints its own lines and the path of its log; Ray, the HF
Trainer and the workers' output go to `<store>/logs/<stage>.log`; `--verbose` brings it all back."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from tests.conftest import REPO, run_module

# The train stage's quiet output (a few lines, one progress bar in steps, the rest in its log) is
# checked on the training run of tests/test_evaluate_job.py, so that the suite trains once for both.


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

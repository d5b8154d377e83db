"""Names of everything the stages store besides tables: run records under `_meta/`, model
checkpoints, Ray Train's run folders, plots. One module, importable from every layer, so a
writer and its readers can never disagree on a name.
"""

from __future__ import annotations

from finner.store import Store, filesystem_of

MODELS_DIR = "models"  # store.artifact(MODELS_DIR, name): fine-tuned checkpoints
RAY_RUNS_DIR = "ray_train"  # Ray Train's storage_path under the store, emptied after each run
PLOTS_DIR, REPORTS_DIR, LOGS_DIR = "plots", "reports", "logs"
PUBLISH_DIR = "publish"  # store.artifact(PUBLISH_DIR, ...): model folders and datasets written for the Hugging Face Hub

# _meta keys (Store.put_json / get_json)
SCORING_DEFAULT_KEY = "gliner_best_checkpoint"  # {"path", "name"}: the model jobs.score uses by default
SCORE_THROUGHPUT_KEY = "score_throughput"  # written by the scoring job, read by the cost report
RUNTIME_CHOICES_KEY = "score_runtime_choices"  # the scoring job's agreement checks, by what decides them
LABEL_COST_KEY, LABEL_ESTIMATE_KEY = "label_cost", "label_estimate"  # written by the labeling job
LABEL_RUN_KEY = "label_run"  # the latest labeling run's label identity (what downstream stages read)
CURATE_KEY = "curate"
TICKER_CHECK_KEY = "ticker_check"
ALIASES_KEY = "ticker_aliases"
RELABEL_KEY = "relabel"  # {"teacher", "version"}: the teacher_spans version finner.relabel last wrote in the feed's order
REVIEW_PUSH_KEY = "review_push"  # the latest review push's records sent and held unchanged, per split


def versions_key(stage: str) -> str:
    """The record of the table versions a stage's last run read and wrote (`pipeline.cli.run`)."""
    return f"{stage}_versions"


def put_artifact(store: Store, data: bytes, *parts: str) -> str:
    """Write a file (a plot, a report) under the store, local or object store; returns where it went."""
    location = store.artifact(*parts)
    filesystem, path = filesystem_of(location)
    with filesystem.open_output_stream(path) as out:
        out.write(data)
    return location


def review_push_ledger_key(workspace: str, dataset: str) -> str:
    """The batches an Argilla dataset holds as the review push last sent them (`review.PushLedger`)."""
    return f"review_push-{workspace}-{dataset}"


def train_summary_key(name: str) -> str:
    return f"train-{name}"


def train_history_key(name: str) -> str:
    """Validation metrics of every evaluation (every epoch or `--eval-every` steps), written by the run as it goes."""
    return f"train-{name}-epochs"


def train_progress_key(name: str) -> str:
    """The training step a running job has reached (rank 0 writes it every few seconds): the driver's progress bar."""
    return f"train-{name}-progress"


def evaluated_key(kind: str) -> str:
    """Which checkpoint of `kind` the latest fine-tuned evaluation scored: its `metrics` rows name the
    kind only, and the model card of a checkpoint must quote that checkpoint's figures."""
    return f"evaluate-{kind}-fine-tuned"


def learning_curve_key(kind: str) -> str:
    return f"learning_curve-{kind}"


def model_path(store: Store, name: str) -> str:
    """Where `jobs.train` puts the best checkpoint of model `name` (path or URI)."""
    return store.artifact(MODELS_DIR, name)


def trained_model_path(store: Store, name: str) -> str | None:
    """The checkpoint of a finished `jobs.train` run of `name`, or None."""
    summary = store.get_json(train_summary_key(name))
    return summary["path"] if summary else None


def scoring_default(store: Store) -> str | None:
    """The best fine-tuned GLiNER checkpoint the training job recorded for scoring, if any."""
    record = store.get_json(SCORING_DEFAULT_KEY)
    return record.get("path") if record else None

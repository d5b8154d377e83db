"""Curation: `headlines` + `llm_labels` -> `spans` (every labelled headline) and `sample` (for review).

Runs the three steps of the case study's "Dataset sampling and splitting" in order: spans of the
LLM's strings (`finner.spans`), clusters of the normalized company names (`finner.cluster`), the
stratified sample and its date splits (`finner.sample`). Pure over the store's tables and seeded,
so a re-run on the same inputs writes the same two tables (each replaced atomically).

Only `ok` labels carry companies. `invalid_output` / `failed` labels get no spans row; they may be
sampled in their own stratum (see `finner.sample`) with null spans, so review starts them from
scratch. Headlines with no label row yet are not curated and are counted.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict, dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

from finner import artifacts, schemas
from finner.cluster import ClusterConfig, cluster_names
from finner.errors import FinnerError
from finner.label import current_label_version, latest_labels
from finner.plots import pyplot, save_figure
from finner.progress import progress_bar
from finner.sample import SampleConfig, SampleSummary, draw, stratum_of
from finner.spans import company_names, find_spans
from finner.store import Store
from finner.tokens import word_tokens


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

    def lines(self) -> list[str]:
        labels = ", ".join(f"{status} {n}" for status, n in sorted(self.labels.items()))
        out = [
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


def curate(
    store: Store,
    cluster_config: ClusterConfig = ClusterConfig(),
    sample_config: SampleConfig = SampleConfig(),
    progress: bool = True,
    batch_rows: int = 50_000,
    label_version: str = "",
) -> CurateSummary:
    """Write the `spans` and `sample` tables from `headlines` and the `llm_labels` of one label
    version (`label_version`, default the latest labeling run's); return the counts.

    Memory stays small at feed scale: only ids, dates and company names are held for the whole
    feed; spans rows are computed and written one batch at a time, after the clusters are known.
    """
    if not store.exists("headlines"):
        raise FinnerError(f"no `headlines` table in {store.root}: run the ingest stage first")
    if not store.exists("llm_labels"):
        raise FinnerError(f"no `llm_labels` table in {store.root}: run the labeling stage first")
    headlines = store.read("headlines", columns=["id", "title", "date", "symbol"])
    version = current_label_version(store, label_version)
    labels = latest_labels(store, version).select(["id", "status", "result", "normalized_result"])
    rows = _labelled(headlines, labels)
    summary = CurateSummary(headlines=headlines.num_rows, labels=Counter(rows["status"].to_pylist()), label_version=version)
    summary.not_labeled = headlines.num_rows - rows.num_rows
    summary.orphan_labels = labels.num_rows - rows.num_rows
    del headlines, labels

    ok = rows.filter(pc.equal(rows["status"], schemas.LABEL_OK))
    names_of = {
        i: company_names(r, n) for i, r, n in zip(*(ok[c].to_pylist() for c in ("id", "result", "normalized_result")))
    }
    mentions = Counter(name for names in names_of.values() for name in names)
    summary.with_companies = sum(bool(n) for n in names_of.values())
    summary.without_companies = len(names_of) - summary.with_companies
    clustering = cluster_names(mentions, cluster_config)
    summary.names, summary.clusters, summary.pairs_scored = len(mentions), clustering.n_clusters, clustering.pairs_scored
    clusters_of = {i: sorted({clustering.representative[n] for n in names}) for i, names in names_of.items()}
    del names_of

    batches = (_spans_batch(b, clusters_of, summary) for b in ok.to_batches(max_chunksize=batch_rows))
    store.write("spans", progress_bar(batches, desc="spans", unit=" batches", total=math.ceil(ok.num_rows / batch_rows), enabled=progress))

    chosen = _draw(rows, clusters_of, sample_config, summary.sample)
    store.write("sample", _sample_table(rows, chosen, clusters_of, summary.sample))
    summary.plot = plot_sample(summary.sample, sample_config, store)
    store.put_json(artifacts.CURATE_KEY, {"summary": summary.as_dict(), "cluster": asdict(cluster_config), "sample": asdict(sample_config)})
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


def _spans_batch(batch: pa.RecordBatch, clusters_of: dict[str, list[str]], summary: CurateSummary) -> pa.Table:
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
                "clusters": clusters_of[row["id"]],
            }
        )
    return pa.Table.from_pylist(out, schema=schemas.SPANS_TABLE)


def _draw(rows: pa.Table, clusters_of: dict[str, list[str]], config: SampleConfig, summary: SampleSummary) -> dict[str, tuple[str, str]]:
    """Sampled headline id -> (split, stratum); counts what was eligible and what was out of range."""
    eligible: dict[str, str] = {}  # id -> split
    cluster_sizes: Counter = Counter()
    for headline_id, date, status in zip(*(rows[c].to_pylist() for c in ("id", "date", "status"))):
        if status != schemas.LABEL_OK and not config.sample_unlabeled:
            continue
        split = config.split_of(date.year)
        if split is None:
            summary.out_of_range[date.year] += 1
            continue
        eligible[headline_id] = split
        summary.eligible[split] += 1
        summary.eligible_years[date.year] += 1
        cluster_sizes.update(clusters_of.get(headline_id, ()))
    strata = {i: stratum_of(clusters_of.get(i), cluster_sizes) for i in eligible}
    return {i: (eligible[i], stratum) for i, stratum in draw(strata, config).items()}


def _sample_table(rows: pa.Table, chosen: dict[str, tuple[str, str]], clusters_of: dict[str, list[str]], summary: SampleSummary) -> pa.Table:
    """The `sample` rows, sorted by id: spans and tokens for ok labels, null spans otherwise."""
    picked = rows.filter(pc.is_in(rows["id"], pa.array(sorted(chosen), pa.string())))  # still sorted by id
    out = []
    for row in picked.to_pylist():
        split, stratum = chosen[row["id"]]
        summary.sampled[split] += 1
        summary.sampled_years[row["date"].year] += 1
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

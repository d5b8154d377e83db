"""Gold: the rows every model is scored against, and where they come from.

* `review`: the submitted rows of the store's `gold` table (people in Argilla);
* `real`: the hand-labelled real Benzinga headlines shipped with finner (`finner/data/gold/`, with
  its guideline and README), split `dev` (tune on it), `dev2` (choose on it: drawn later, from the
  held-out years, and no labeller rule was ever fitted to it) and `test` (report on it);
* a path: any JSONL file of that shape;
* `embedded`: the embedded demo feed's generated ground truth (a smoke test, not a quality figure).

A gold file is JSONL, one headline a line, in the shape `jobs.review pull` writes gold: `id`
(`finner.ids.headline_id`, so it joins the store), `split`, `title`, `date`, `symbol`, `status`,
`spans` (character offsets into the title, each with `role`: subject or broker), `annotator`.
Scores count subject companies (`Gold.subjects`); brokers acting on another company's stock are
scored separately.
"""

from __future__ import annotations

import json
import os
import random
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from finner import schemas
from finner.embedded import embedded_feed
from finner.errors import FinnerError
from finner.ids import title_key
from finner.schemas import Span, make_span
from finner.source import SourceConfig, normalize_rows
from finner.store import Store

GOLD_DIR = Path(__file__).parent / "data" / "gold"
REAL_GOLD = GOLD_DIR / "benzinga_real.jsonl"
GUIDELINE = GOLD_DIR / "GUIDELINE.md"
DEV, DEV2, TEST = "dev", "dev2", "test"  # the real gold's splits
GOLD_AUTO, GOLD_REVIEW, GOLD_EMBEDDED, GOLD_REAL = "auto", "review", "embedded", "real"
GOLD_SOURCES = (GOLD_AUTO, GOLD_REVIEW, GOLD_EMBEDDED, GOLD_REAL)
GOLD_COLUMNS = ("id", "split", "title", "spans")


@dataclass(frozen=True)
class Gold:
    """Gold rows (`GOLD_COLUMNS`) and a sentence saying where they come from."""

    table: pa.Table
    source: str
    description: str

    def split(self, *names: str) -> pa.Table:
        return self.table.filter(pc.is_in(self.table.column("split"), pa.array(list(names), pa.string())))

    def subjects(self) -> "Gold":
        """The same rows with broker spans removed: what the main score counts."""
        spans = [[s for s in row or [] if s.get("role") != schemas.ROLE_BROKER] for row in self.table.column("spans").to_pylist()]
        table = self.table.set_column(self.table.schema.get_field_index("spans"), "spans", pa.array(spans, schemas.SPANS))
        return Gold(table, self.source, self.description)

    def has_brokers(self) -> bool:
        return any(s.get("role") == schemas.ROLE_BROKER for row in self.table.column("spans").to_pylist() for s in row or [])


def gold_schema() -> pa.Schema:
    return pa.schema([schemas.GOLD.field(c) for c in GOLD_COLUMNS])


def _sample_splits(store: Store) -> dict[str, tuple[str, str]]:
    """id -> (split, title) of the sample: where every gold row's split comes from."""
    if not store.exists("sample"):
        raise FinnerError("no `sample` table in the store: run the curation stage (jobs.curate) first")
    sample = store.read("sample", columns=["id", "split", "title"])
    return {i: (s, t) for i, s, t in zip(*(sample.column(c).to_pylist() for c in ("id", "split", "title")))}


def check_spans(row_id: str, title: str, spans: list[Span], where: str) -> None:
    """Spans must lie inside their title and carry its text: a misaligned gold row would
    silently score as wrong."""
    for span in spans:
        if not 0 <= span["start"] < span["end"] <= len(title):
            raise FinnerError(f"{where} row {row_id!r}: span {span['start']}..{span['end']} is outside its title ({len(title)} characters)")
        if span.get("text") is not None and span["text"] != title[span["start"] : span["end"]]:
            raise FinnerError(f"{where} row {row_id!r}: span {span['start']}..{span['end']} reads {title[span['start']:span['end']]!r}, not {span['text']!r}")
        if span.get("role") not in (None, *schemas.ROLES):
            raise FinnerError(f"{where} row {row_id!r}: span role {span['role']!r} is not one of {list(schemas.ROLES)}")


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
        check_spans(row["id"], title, row["spans"] or [], "gold")
        rows.append({"id": row["id"], "split": split, "title": title, "spans": row["spans"] or []})
    return pa.Table.from_pylist(rows, schema=gold_schema())


def read_gold_file(path: str | os.PathLike) -> list[dict]:
    """The rows of a gold JSONL file, checked line by line (a bad line is named by its number): spans
    inside their titles, and no headline (by id or by title key: a title twin) in two splits, where
    tuning on one part would leak into the other."""
    if not os.path.isfile(path):
        raise FinnerError(f"--gold: no gold file at {str(path)!r}")
    rows = []
    seen: dict[str, tuple[str, str | None]] = {}  # id and title key -> (first row id, its split)
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}:{number}:"
            try:
                row = json.loads(line)
                title, spans = row["title"], row.get("spans") or []
                check_spans(row["id"], title, spans, where)
            except (json.JSONDecodeError, KeyError, TypeError) as err:
                raise FinnerError(f"{where} not a gold row ({type(err).__name__}: {err}); expected id, split, title, spans") from err
            for key in (f"id {row['id']}", f"title {title_key(title)}"):
                first, split = seen.setdefault(key, (row["id"], row.get("split")))
                if split != row.get("split"):
                    twin = "" if first == row["id"] else f" (the title twin of row {first!r})"
                    raise FinnerError(f"{where} row {row['id']!r}{twin} is in both the {split} and the {row.get('split')} part: one headline, one part")
            rows.append(row)
    return rows


def file_gold(path: str | os.PathLike, source: str) -> Gold:
    """Gold from a JSONL file: its submitted rows (rows without a status count as submitted)."""
    rows = [r for r in read_gold_file(path) if r.get("status", schemas.GOLD_SUBMITTED) == schemas.GOLD_SUBMITTED]
    table = pa.Table.from_pylist(
        [{"id": r["id"], "split": r.get("split"), "title": r["title"], "spans": [make_span(r["title"], s["start"], s["end"], role=s.get("role")) for s in r.get("spans") or []]} for r in rows],
        schema=gold_schema(),
    )
    return Gold(table, source, f"{path}: {table.num_rows} hand-labelled rows")


def embedded_truth() -> dict[str, list[Span]]:
    """Headline id -> true company spans of the embedded demo feed (ids computed exactly as ingest does)."""
    config, truth = SourceConfig(), {}
    for row in embedded_feed():
        raw = {"title": row["Article_title"], "date": row["Date"], "symbol": row["Stock_symbol"], "publisher": row["Publisher"]}
        good, _ = normalize_rows([raw], "embedded", 0, config)
        if good and good[0]["title"] == row["Article_title"]:  # the true offsets still hold
            title = good[0]["title"]
            truth[good[0]["id"]] = [make_span(title, s.start, s.end, normalized=s.normalized) for s in row["true_spans"]]
    return truth


def embedded_gold(store: Store) -> pa.Table:
    """The sample's rows with the embedded feed's generated ground truth as gold."""
    truth = embedded_truth()
    sample = _sample_splits(store)
    missing = [i for i in sample if i not in truth]
    if missing:
        raise FinnerError(
            f"--gold {GOLD_EMBEDDED} only applies to the embedded demo feed, but {len(missing)} of {len(sample)} "
            f"sample rows are not from it (first: {missing[0]!r}); use --gold {GOLD_REVIEW} or {GOLD_REAL}"
        )
    rows = [{"id": i, "split": split, "title": title, "spans": truth[i]} for i, (split, title) in sample.items()]
    return pa.Table.from_pylist(rows, schema=gold_schema())


def load_gold(store: Store, source: str = GOLD_AUTO) -> Gold:
    """Gold by source (`GOLD_SOURCES` or a file path); `auto` takes submitted reviews when there
    are any, else the embedded feed's ground truth when the sample comes from it, and says which."""
    if source == GOLD_REAL:
        return file_gold(REAL_GOLD, GOLD_REAL)
    if source not in GOLD_SOURCES:
        return file_gold(source, source)
    if source in (GOLD_REVIEW, GOLD_AUTO):
        table = review_gold(store) if store.exists("gold") else pa.Table.from_pylist([], schema=gold_schema())
        if table.num_rows:
            return Gold(table, GOLD_REVIEW, f"human review: {table.num_rows} submitted rows of the `gold` table")
        if source == GOLD_REVIEW:
            raise FinnerError("the `gold` table has no submitted rows: review the sample first (jobs.review), or pass --gold real / embedded")
    try:
        table = embedded_gold(store)
    except FinnerError as err:
        if source == GOLD_AUTO:
            raise FinnerError(f"no gold: the `gold` table has no submitted rows, and {err}") from err
        raise
    return Gold(table, GOLD_EMBEDDED, f"embedded demo feed's generated ground truth ({table.num_rows} sample rows; no human review)")


# -- drawing a set to label by hand ------------------------------------------------------------


def draw_sample(
    path: str, n: int, seed: int, years: range = range(2010, 2021), dev_fraction: float = 0.4, dev_split: str = DEV, exclude: frozenset[str] = frozenset()
) -> list[dict]:
    """Headlines to label by hand: the same number per UTC year, symbols taken round-robin within a
    year (so the feed's dominant tickers do not crowd the rest out), no two with the same title key
    and none whose title key is in `exclude` (an earlier draw's, so a later part shares no headline
    with it); the first `dev_fraction` of each year's draw is `dev_split`, the rest `test`."""
    raw = pq.read_table(path).to_pylist()
    headlines, _ = normalize_rows(raw, path, 0, SourceConfig())
    rng = random.Random(seed)
    rng.shuffle(headlines)
    by_year_symbol: dict[int, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    seen: set[str] = set()
    for row in headlines:
        key = title_key(row["title"])
        if row["date"].year not in years or key in seen or key in exclude:
            continue
        seen.add(key)
        by_year_symbol[row["date"].year][row["symbol"] or ""].append(row)
    per_year = -(-n // len(years))
    drawn = []
    for year in years:
        symbols = sorted(by_year_symbol[year])
        rng.shuffle(symbols)
        queues = {s: by_year_symbol[year][s] for s in symbols}
        taken: list[dict] = []
        while len(taken) < per_year and any(queues.values()):
            for symbol in symbols:
                if queues[symbol] and len(taken) < per_year:
                    taken.append(queues[symbol].pop())
        n_dev = round(len(taken) * dev_fraction)
        for i, row in enumerate(taken):
            drawn.append({"id": row["id"], "split": dev_split if i < n_dev else TEST, "title": row["title"], "date": row["date"].isoformat(), "symbol": row["symbol"]})
    return drawn

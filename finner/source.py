"""Headline source: the FNSPID feed from the Hugging Face hub, or any local file, into `headlines`.

Rows stream through in batches (memory stays flat at feed scale). Each row gets a stable
content-hash id; rows that cannot be used (empty title, unparseable date, absurd length) go to
the `rejects` table with the reason instead of crashing the job.

    python -m jobs.ingest --path feed.parquet        # see --help
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from finner import schemas
from finner.config import Config, ConfigError, help_text
from finner.embedded import embedded_feed
from finner.errors import FinnerError
from finner.ids import SeenIds, headline_id, normalize_title
from finner.progress import progress_bar
from finner.store import Store

HUB_DATASET = "Zihan1004/FNSPID"

# Our column -> names it is found under in feeds (FNSPID's first), matched case-insensitively.
COLUMN_ALIASES: dict[str, tuple[str, ...]] = {
    "title": ("article_title", "title", "headline"),
    "date": ("date", "published_at", "datetime"),
    "symbol": ("stock_symbol", "symbol", "stock", "ticker"),
    "publisher": ("publisher",),
}
REQUIRED_COLUMNS = ("title", "date")


@dataclass(frozen=True)
class SourceConfig(Config):
    path: str | None = field(
        default=None,
        metadata=help_text("local CSV/parquet/JSONL file or directory with FNSPID columns; default: the embedded sample"),
    )
    hub: bool = field(default=False, metadata=help_text(f"stream {HUB_DATASET} from the Hugging Face hub"))
    hub_dataset: str = field(default=HUB_DATASET, metadata=help_text("hub dataset id"))
    hub_split: str = field(default="train", metadata=help_text("hub dataset split"))
    benzinga_marker: str = field(
        default="benzinga",
        metadata=help_text("hub rows are kept when their Url or Publisher contains this (case-insensitive); '' keeps all"),
    )
    limit: int | None = field(default=None, metadata=help_text("stop after this many input rows", at_least=0))
    min_title_chars: int = field(default=3, metadata=help_text("shorter titles are rejected", at_least=1))
    max_title_chars: int = field(default=400, metadata=help_text("longer titles are rejected (not a headline)", at_least=1))
    batch_rows: int = field(default=10_000, metadata=help_text("rows read and checked at once (the job's memory); the table's files are sized by the writer", at_least=1))

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.path and not os.path.exists(self.path):
            raise ConfigError("path", f"{self.path}: no such file or directory")
        for file in _local_files(self.path) if self.path else ():
            if file.endswith(".parquet"):  # a footer that cannot be read: nothing in the file can be trusted
                try:
                    _open_parquet(file)
                except SourceError as err:
                    raise ConfigError("path", str(err)) from err


class SourceError(FinnerError):
    """The input cannot be read at all (missing file, no title column...): the job stops with this line."""


# -- pure row handling ----------------------------------------------------------------------------


def parse_date(value: object) -> dt.datetime | None:
    """Feed dates come as `2020-06-10 17:02:00-04:00`, `2011-07-20 00:00:00` (no offset: UTC) or datetimes."""
    if isinstance(value, dt.datetime):
        parsed = value
    elif isinstance(value, dt.date):
        parsed = dt.datetime(value.year, value.month, value.day)
    elif isinstance(value, str) and value.strip():
        try:
            parsed = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            return None
    else:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.timezone.utc)
    return parsed.astimezone(dt.timezone.utc).replace(microsecond=0)


def resolve_columns(names: list[str]) -> dict[str, str]:
    """Map our column names to the input's; raise when a required one is absent."""
    lower = {n.lower(): n for n in names}
    found = {}
    for ours, aliases in COLUMN_ALIASES.items():
        for alias in aliases:
            if alias in lower:
                found[ours] = lower[alias]
                break
    missing = [c for c in REQUIRED_COLUMNS if c not in found]
    if missing:
        raise SourceError(f"input has no {missing} column (looked for {[COLUMN_ALIASES[c] for c in missing]}); columns are {names}")
    return found


def _text(value: object) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def normalize_rows(rows: list[dict], source: str, first_row: int, cfg: SourceConfig) -> tuple[list[dict], list[dict]]:
    """Raw rows (already renamed to our columns) -> (headline rows, reject rows)."""
    headlines, rejects = [], []
    for offset, row in enumerate(rows):
        raw_title = row.get("title")
        title = normalize_title(raw_title) if isinstance(raw_title, str) else ""
        date = parse_date(row.get("date"))
        if not title:
            reason = "empty title"
        elif date is None:
            reason = f"unparseable date {row.get('date')!r}"
        elif len(title) < cfg.min_title_chars:
            reason = f"title shorter than {cfg.min_title_chars} characters"
        elif len(title) > cfg.max_title_chars:
            reason = f"title longer than {cfg.max_title_chars} characters ({len(title)})"
        else:
            reason = None
        if reason:
            rejects.append(
                {"source": source, "row": first_row + offset, "reason": reason, "raw": json.dumps(row, default=str, ensure_ascii=False)}
            )
            continue
        symbol = _text(row.get("symbol"))
        headlines.append(
            {
                "id": headline_id(title, date.isoformat(), symbol),
                "title": title,
                "date": date,
                "symbol": symbol.upper() if symbol else None,
                "publisher": _text(row.get("publisher")),
            }
        )
    return headlines, rejects


# -- readers: each yields (source name, first row number, rows renamed to our columns) -------------

RawBatch = tuple[str, int, list[dict]]


@dataclass(frozen=True)
class UnreadablePart:
    """Rows of an input that cannot be decoded (a corrupt parquet row group): the reader skips them
    and the stage records them in `rejects`, so one bad part never costs the rest of the feed."""

    source: str
    first_row: int
    rows: int
    reason: str

    def reject(self) -> dict:
        return {"source": self.source, "row": self.first_row, "reason": self.reason, "raw": json.dumps({"rows": self.rows})}


def _rename(table: pa.Table, mapping: dict[str, str]) -> list[dict]:
    return table.select(list(mapping.values())).rename_columns(list(mapping)).to_pylist()


def _first_line(err: Exception) -> str:
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__


def _local_files(path: str) -> list[str]:
    if os.path.isdir(path):
        files = sorted(
            os.path.join(d, f) for d, _, fs in os.walk(path) for f in fs if f.endswith((".parquet", ".csv", ".jsonl", ".json"))
        )
        if not files:
            raise SourceError(f"{path}: directory holds no .parquet/.csv/.jsonl file")
        return files
    if not os.path.exists(path):
        raise SourceError(f"{path}: no such file")
    return [path]


def read_local(files: list[str], batch_rows: int) -> Iterator[RawBatch | UnreadablePart]:
    """Stream CSV, parquet or JSONL files; every value is read as text and parsed by us."""
    for file in files:
        if file.endswith(".parquet"):
            yield from _parquet_batches(file, batch_rows)
            continue
        if file.endswith(".csv"):
            names = pacsv.read_csv(file, read_options=pacsv.ReadOptions(block_size=1 << 16)).column_names
            reader = pacsv.open_csv(
                file,
                read_options=pacsv.ReadOptions(block_size=1 << 22),
                parse_options=pacsv.ParseOptions(newlines_in_values=True),
                convert_options=pacsv.ConvertOptions(column_types={n: pa.string() for n in names}),
            )
            batches: Iterator[pa.Table] = (pa.Table.from_batches([b]) for b in reader)
        else:
            batches = _jsonl_batches(file, batch_rows)
        row = 0
        mapping: dict[str, str] | None = None
        for table in batches:
            mapping = mapping or resolve_columns(table.column_names)
            rows = _rename(table, mapping)
            yield file, row, rows
            row += len(rows)


def _open_parquet(file: str) -> pq.ParquetFile:
    try:
        return pq.ParquetFile(file)
    except (pa.ArrowException, OSError) as err:
        raise SourceError(f"{file}: not a readable parquet file ({_first_line(err)})") from err


def _parquet_batches(file: str, batch_rows: int) -> Iterator[RawBatch | UnreadablePart]:
    """A parquet file row group by row group (memory is bounded by its largest group). A file
    whose footer cannot be read is not parquet, or was cut short: nothing in it can be trusted,
    so that stops the job; a row group that cannot be decoded is skipped and reported."""
    parquet = _open_parquet(file)
    mapping = resolve_columns(parquet.schema_arrow.names)
    row = 0
    for group in range(parquet.num_row_groups):
        size = parquet.metadata.row_group(group).num_rows
        try:
            table = parquet.read_row_group(group, columns=list(mapping.values()))
        except (pa.ArrowException, OSError) as err:
            yield UnreadablePart(file, row, size, f"row group {group} unreadable ({_first_line(err)})")
        else:
            for start in range(0, table.num_rows, batch_rows):
                yield file, row + start, _rename(table.slice(start, batch_rows), mapping)
        row += size


def _jsonl_batches(file: str, batch_rows: int) -> Iterator[pa.Table]:
    rows: list[dict] = []
    with open(file, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise SourceError(f"{file}:{number}: not a JSON line ({err.msg})") from err
            if len(rows) == batch_rows:
                yield pa.Table.from_pylist(rows)
                rows = []
    if rows:
        yield pa.Table.from_pylist(rows)


def read_hub(cfg: SourceConfig) -> Iterator[RawBatch]:
    """Stream FNSPID from the hub, keeping Benzinga rows (the real loading code; needs network)."""
    from datasets import load_dataset

    stream = load_dataset(cfg.hub_dataset, split=cfg.hub_split, streaming=True)
    marker = cfg.benzinga_marker.lower()
    name = f"hf://{cfg.hub_dataset}/{cfg.hub_split}"
    mapping: dict[str, str] | None = None
    row = 0
    for batch in stream.iter(batch_size=cfg.batch_rows):
        table = pa.Table.from_pydict(batch)
        mapping = mapping or resolve_columns(table.column_names)
        keep = [
            not marker or marker in f"{url or ''} {publisher or ''}".lower()
            for url, publisher in zip(batch.get("Url", [None] * table.num_rows), batch.get("Publisher", [None] * table.num_rows))
        ]
        rows = [r for r, k in zip(_rename(table, mapping), keep) if k]
        yield name, row, rows
        row += table.num_rows


def read_embedded(batch_rows: int) -> Iterator[RawBatch]:
    rows = [{"title": r["Article_title"], "date": r["Date"], "symbol": r["Stock_symbol"], "publisher": r["Publisher"]} for r in embedded_feed()]
    for start in range(0, len(rows), batch_rows):
        yield "embedded", start, rows[start : start + batch_rows]


def raw_batches(cfg: SourceConfig) -> Iterator[RawBatch | UnreadablePart]:
    """The configured source's batches. A local path is resolved to its files here, not when the
    first batch is read, so a folder with no feed file fails before a progress bar is drawn."""
    if cfg.hub:
        batches: Iterator[RawBatch | UnreadablePart] = read_hub(cfg)
    elif cfg.path:
        batches = read_local(_local_files(cfg.path), cfg.batch_rows)
    else:
        batches = read_embedded(cfg.batch_rows)
    return batches if cfg.limit is None else _first_rows(batches, cfg.limit)


def _first_rows(batches: Iterator[RawBatch | UnreadablePart], limit: int) -> Iterator[RawBatch | UnreadablePart]:
    left = limit
    for batch in batches:
        if left <= 0:
            return
        if isinstance(batch, UnreadablePart):
            yield batch
            left -= batch.rows
            continue
        source, first, rows = batch
        yield source, first, rows[:left]
        left -= len(rows)


# -- the stage ----------------------------------------------------------------------------------


@dataclass
class IngestSummary:
    read: int = 0
    written: int = 0
    rejected: int = 0
    duplicates: int = 0
    unreadable_rows: int = 0
    unreadable_parts: int = 0

    def line(self) -> str:
        line = f"source: read {self.read}, written {self.written}, rejected {self.rejected}, duplicates dropped {self.duplicates}"
        if self.unreadable_parts:
            line += f", {self.unreadable_rows} rows lost in {self.unreadable_parts} unreadable row groups (in rejects)"
        return line


def ingest(cfg: SourceConfig, store: Store, progress: bool = True) -> IngestSummary:
    """Stream the configured source into the `headlines` and `rejects` tables (each replaced whole).

    Ids are content hashes, so re-running on the same input gives the same table; rows repeated
    in the feed (same title, date and symbol) are kept once, the first time, wherever the repeat
    falls (`SeenIds`: memory of 8 bytes a headline, not a set of strings). A part that cannot be decoded (a
    corrupt row group) is one `rejects` row naming it; `rejected` counts the rows of `rejects`.
    """
    summary = IngestSummary()
    seen = SeenIds()  # every id written so far, 8 bytes each
    rejects: list[dict] = []
    batches = raw_batches(cfg)

    def headline_batches(bar) -> Iterator[pa.Table]:
        for batch in batches:
            if isinstance(batch, UnreadablePart):
                rejects.append(batch.reject())
                summary.unreadable_rows += batch.rows
                summary.unreadable_parts += 1
                bar.update(batch.rows)
                continue
            source, first, rows = batch
            good, bad = normalize_rows(rows, source, first, cfg)
            summary.read += len(rows)
            rejects.extend(bad)
            unique = [row for row, new in zip(good, seen.add([row["id"] for row in good])) if new]
            summary.duplicates += len(good) - len(unique)
            summary.written += len(unique)
            bar.update(len(rows))
            if unique:
                yield pa.Table.from_pylist(unique, schema=schemas.HEADLINES)

    with progress_bar(desc="ingest", unit=" rows", enabled=progress) as bar:  # closed on error too: its line ends before the error's
        store.write("headlines", headline_batches(bar))
    summary.rejected = len(rejects)
    store.write("rejects", pa.Table.from_pylist(rejects, schema=schemas.REJECTS))
    return summary

"""jobs.curate end to end on the real Benzinga headlines, labelled by the gazetteer labeler (the
stand-in for the LLM), plus the case study's own example headlines with the case study's labels."""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from finner import schemas
from finner.cluster import ClusterConfig, cluster_names
from finner.curate import CurateConfig, curate
from finner.errors import FinnerError
from finner.ids import id_range_cuts, read_spilled, spill_pair_by_id_range
from finner.sample import SampleConfig, draw, stratum_of
from finner.source import SourceConfig, ingest
from finner.spans import company_names
from finner.store import Store
from finner.listing_labeller import Gazetteer
from jobs import curate as curate_job
from tests.conftest import run_module

# (title, date, symbol) -> the labels the case study shows for them
CASE_STUDY = {
    ("Dun & Bradstreet Acquires Avention For $150M", "2016-01-05 09:00:00-05:00", "DNB"): (["Dun & Bradstreet", "Avention"], ["Dun & Bradstreet", "Avention"]),
    ("Black Diamond Stock Falling After Tweet", "2018-03-02 10:00:00-05:00", "BDE"): (["Black Diamond"], ["Black Diamond"]),
    ("Fast Money Picks For April 27", "2019-04-26 18:00:00-04:00", "GOOG"): ([], []),
}
LABELED_AT = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


def label_rows(headlines: pa.Table, gazetteer: Gazetteer) -> pa.Table:
    """llm_labels as the labeling stage writes them: mostly ok, every 97th invalid, every 89th failed,
    and a failed-then-ok retry for one headline (the ok row must win)."""
    case_titles = {t: labels for (t, _, _), labels in CASE_STUDY.items()}
    rows = []
    for n, (hid, title) in enumerate(zip(headlines["id"].to_pylist(), headlines["title"].to_pylist())):
        result, normalized = case_titles.get(title) or gazetteer.label(title)
        status = schemas.LABEL_OK
        if title not in case_titles and n % 97 == 5:
            status, result, normalized = schemas.LABEL_INVALID, ["not in the title"], []
        elif title not in case_titles and n % 89 == 7:
            status, result, normalized = schemas.LABEL_FAILED, None, None
        if n == 11:  # an earlier failed attempt of an ok row
            rows.append({"id": hid, "status": schemas.LABEL_FAILED, "labeled_at": LABELED_AT - dt.timedelta(days=1)})
        rows.append({"id": hid, "status": status, "result": result, "normalized_result": normalized, "labeled_at": LABELED_AT})
    columns = {f.name: pa.array([r.get(f.name) for r in rows], f.type) for f in schemas.LLM_LABELS}
    return pa.Table.from_pydict(columns, schema=schemas.LLM_LABELS)


@pytest.fixture(scope="module")
def labelled_store(tmp_path_factory, real_headlines_path, company_listings_path) -> Store:
    tmp = tmp_path_factory.mktemp("curate")
    real = pq.read_table(real_headlines_path, columns=["title", "date", "symbol", "publisher"])
    extra = pa.table(
        {
            "title": [t for t, _, _ in CASE_STUDY],
            "date": [d for _, d, _ in CASE_STUDY],
            "symbol": [s for _, _, s in CASE_STUDY],
            "publisher": pa.nulls(len(CASE_STUDY), pa.string()),
        }
    )
    feed = tmp / "feed.parquet"
    pq.write_table(pa.concat_tables([real, extra.cast(real.schema)]), feed)
    store = Store(str(tmp / "store"))
    ingest(SourceConfig(path=str(feed)), store, progress=False)
    store.write("llm_labels", label_rows(store.read("headlines"), Gazetteer.from_listings(company_listings_path)))
    return store


@pytest.fixture(scope="module")
def curated(labelled_store) -> tuple[Store, str]:
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert curate_job.main(["--store", labelled_store.root, "--quiet"]) == 0
    return labelled_store, out.getvalue()


def spans_by_title(store: Store) -> dict[str, dict]:
    return {r["title"]: r for r in store.read("spans").to_pylist()}


def test_case_study_headlines(curated):
    store, _ = curated
    rows = spans_by_title(store)
    dnb = rows["Dun & Bradstreet Acquires Avention For $150M"]
    assert [(s["text"], s["start"], s["end"]) for s in dnb["spans"]] == [("Dun & Bradstreet", 0, 16), ("Avention", 26, 34)]
    assert len(dnb["clusters"]) == 2
    assert rows["Black Diamond Stock Falling After Tweet"]["spans"][0]["text"] == "Black Diamond"
    fast = rows["Fast Money Picks For April 27"]
    assert fast["spans"] == [] and fast["clusters"] == [] and fast["not_found"] == []


def test_indices_never_become_companies(curated):
    store, _ = curated
    dow = [r for r in store.read("spans").to_pylist() if "Dow Jones" in r["title"]]
    assert dow  # the real feed has such headlines
    for row in dow:
        assert not any("Dow" in s["text"] for s in row["spans"]), row["title"]
        assert not any("Dow Jones" in c for c in row["clusters"])


def test_spans_table_is_consistent_with_titles_and_tokens(curated):
    store, _ = curated
    table = store.read("spans")
    ok = store.read("llm_labels", filter=pc.field("status") == schemas.LABEL_OK)
    assert table.num_rows == len(set(ok["id"].to_pylist()))  # one row per ok-labelled headline
    with_spans = 0
    for row in table.to_pylist():
        for span, token_span in zip(row["spans"], row["token_spans"], strict=True):
            assert row["title"][span["start"] : span["end"]] == span["text"]
            assert span["label"] == schemas.COMPANY and span["normalized"]
            assert 0 <= token_span["start"] <= token_span["end"] < len(row["tokens"])
        with_spans += bool(row["spans"])
    assert with_spans > 3000  # the gazetteer finds companies in thousands of real headlines


def test_clusters_map_spellings_to_one_representative(curated):
    store, _ = curated
    clusters = Counter(c for r in store.read("spans").to_pylist() for c in r["clusters"])
    # NVIDIA is the feed's most covered symbol: all its spellings end up in one cluster
    nvidia = [c for c in clusters if re.match(r"(?i)nvidia", c)]
    assert len(nvidia) == 1 and clusters[nvidia[0]] > 500


def test_sample_splits_and_summary(curated):
    store, printed = curated
    sample = store.read("sample").to_pylist()
    assert sample
    for row in sample:
        year = row["date"].year
        assert row["split"] == ("train" if 2010 <= year <= 2016 else "valid" if year <= 2018 else "test")
        assert year != 2009
        if row["llm_status"] == schemas.LABEL_OK:
            assert row["spans"] is not None and row["cluster"] != schemas.UNLABELED_CLUSTER
            assert (row["cluster"] == schemas.NO_COMPANY_CLUSTER) == (row["spans"] == [])
        else:
            assert row["spans"] is None and row["cluster"] == schemas.UNLABELED_CLUSTER
    splits = Counter(r["split"] for r in sample)
    assert re.search(rf"sample: {len(sample)} headlines: train {splits['train']}, valid {splits['valid']}, test {splits['test']}", printed)
    assert "outside every split range: 1023 headlines (2009: 1023)" in printed
    assert re.search(r"company names: \d+ distinct -> \d+ clusters", printed)
    assert re.search(r"strings not found in their headline: \d+", printed)
    eligible = sum(int(n) for n in re.search(r"eligible \(label \+ date in a split range\): train (\d+), valid (\d+), test (\d+)", printed).groups())
    assert 0.04 < len(sample) / eligible < 0.06  # 5% of every stratum
    strata = Counter(r["cluster"] for r in sample)
    assert strata[schemas.NO_COMPANY_CLUSTER] > 100 and strata[schemas.UNLABELED_CLUSTER] > 0
    plot = re.search(r"plot: (\S+)", printed).group(1)
    with open(plot, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert store.get_json("curate")["summary"]["sample"]["sampled"] == dict(splits)


def test_rerun_keeps_or_writes_the_same_tables(curated):
    store, first_output = curated
    tables = ("spans", "sample")
    before = {t: store.read(t).to_pylist() for t in tables}
    versions = {t: store.version(t) for t in tables}
    def summary_lines(output: str) -> list[str]:
        return [line for line in output.splitlines() if not line.startswith("curate: details in")]

    again = run_module("jobs.curate", "--store", store.root, "--quiet")  # same inputs: kept, not rewritten
    assert again.returncode == 0 and summary_lines(again.stdout)[0].startswith("kept the last curation")
    assert summary_lines(again.stdout)[1:] == summary_lines(first_output)  # the counts of the curation it kept
    assert {t: store.version(t) for t in tables} == versions
    forced = run_module("jobs.curate", "--store", store.root, "--quiet", "--force")
    assert forced.returncode == 0 and summary_lines(forced.stdout) == summary_lines(first_output)
    assert {t: store.version(t) for t in tables} == {t: v + 1 for t, v in versions.items()}
    assert {t: store.read(t).to_pylist() for t in tables} == before
    assert curate_job.main(["--store", store.root, "--quiet", "--seed", "1"]) == 0  # another setting: curated again
    assert store.read("sample").to_pylist() != before["sample"]  # the seed does matter
    store.write("sample", store.read("sample").slice(0, 3))  # a table changed since: curated again
    assert curate_job.main(["--store", store.root, "--quiet", "--seed", "1"]) == 0
    assert store.read("sample").num_rows > 3


def test_missing_labels_and_bad_flags_fail_in_one_line(tmp_path):
    store = Store(str(tmp_path / "s"))
    ingest(SourceConfig(), store, progress=False)  # the embedded feed, no labels
    done = run_module("jobs.curate", "--store", store.root, "--quiet")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [f"error: no `llm_labels` table in {store.root}: run the labeling stage first"]
    bad = run_module("jobs.curate", "--store", store.root, "--valid-years", "2016", "2018")
    assert bad.returncode == 2 and bad.stderr.startswith("error: --valid-years: split year ranges overlap")
    assert run_module("jobs.curate", "--help").returncode == 0


def test_duplicate_headline_ids_are_named(tmp_path):
    store = Store(str(tmp_path / "s"))
    ingest(SourceConfig(), store, progress=False)
    headlines = store.read("headlines").slice(0, 5)
    store.write("headlines", pa.concat_tables([headlines, headlines.slice(2, 1)]))
    store.write("llm_labels", label_rows(headlines, Gazetteer.embedded()))
    with pytest.raises(FinnerError, match=f"ids appear more than once.*{headlines['id'][2].as_py()}"):
        curate(store, progress=False)


def two_versions(headlines: pa.Table, gazetteer: Gazetteer) -> pa.Table:
    """llm_labels of two versions: `old` labels every headline; `new` (written later, so the one
    curated) skips every 9th, retries some both ways (failed then ok, ok then invalid: ok wins either
    way, whatever the time), and has labels of headlines that are not in the feed."""
    at = LABELED_AT
    rows = []
    for n, (hid, title) in enumerate(zip(headlines["id"].to_pylist(), headlines["title"].to_pylist())):
        result, normalized = gazetteer.label(title)
        ok = {"id": hid, "status": schemas.LABEL_OK, "result": result, "normalized_result": normalized}
        rows.append({**ok, "label_version": "old", "labeled_at": at})
        if n % 9 == 4:
            continue
        new = [{**ok, "labeled_at": at + dt.timedelta(hours=1)}]
        if n % 6 == 1:
            new = [{"id": hid, "status": schemas.LABEL_FAILED, "labeled_at": at + dt.timedelta(hours=2)}]
        elif n % 6 == 2:
            new.insert(0, {"id": hid, "status": schemas.LABEL_FAILED, "labeled_at": at})
            new[1]["result"], new[1]["normalized_result"] = result[:1], normalized[:1]
        elif n % 6 == 3:
            new.append({"id": hid, "status": schemas.LABEL_INVALID, "result": ["not in it"], "normalized_result": [], "labeled_at": at + dt.timedelta(hours=3)})
        rows += [{**r, "label_version": "new"} for r in new]
    for n in range(25):
        rows.append({"id": f"{n:016x}", "status": schemas.LABEL_OK, "result": ["Apple"], "normalized_result": ["Apple Inc."], "label_version": "new", "labeled_at": at})
    return pa.Table.from_pylist(rows, schema=schemas.LLM_LABELS)


@pytest.fixture(scope="module")
def two_version_store(tmp_path_factory, real_headlines_path, company_listings_path) -> Store:
    tmp = tmp_path_factory.mktemp("curate-ranges")
    pq.write_table(pq.read_table(real_headlines_path).slice(0, 3000), tmp / "feed.parquet")
    store = Store(str(tmp / "store"))
    ingest(SourceConfig(path=str(tmp / "feed.parquet")), store, progress=False)
    store.write("llm_labels", two_versions(store.read("headlines"), Gazetteer.from_listings(company_listings_path)))
    return store


def reference_curation(store: Store, version: str, config: SampleConfig) -> tuple[dict, dict, Counter]:
    """What curation must give, computed here over whole tables in memory: ok label's id -> its
    clusters, sampled id -> (split, stratum), and the labels' statuses."""
    headlines = {r["id"]: r for r in store.read("headlines").to_pylist()}
    rows = [r for r in store.read("llm_labels").to_pylist() if r["label_version"] == version]
    latest = {}
    for n, row in enumerate(rows):  # ok wins, else the latest attempt (ties: the later row)
        rank = (row["status"] == schemas.LABEL_OK, row["labeled_at"], n)
        if row["id"] not in latest or rank > latest[row["id"]][0]:
            latest[row["id"]] = rank, row
    labels = {i: row for i, (_, row) in latest.items() if i in headlines}
    names = {i: company_names(r["result"], r["normalized_result"]) for i, r in labels.items() if r["status"] == schemas.LABEL_OK}
    representative = cluster_names(Counter(n for ns in names.values() for n in ns), ClusterConfig()).representative
    clusters = {i: sorted({representative[n] for n in ns}) for i, ns in names.items()}
    eligible = {
        i: split
        for i, r in labels.items()
        if (r["status"] == schemas.LABEL_OK or config.sample_unlabeled) and (split := config.split_of(headlines[i]["date"].year))
    }
    sizes = Counter(c for i in eligible for c in clusters.get(i, ()))
    chosen = draw({i: stratum_of(clusters.get(i), sizes) for i in eligible}, config)
    return clusters, {i: (eligible[i], stratum) for i, stratum in chosen.items()}, Counter(r["status"] for r in labels.values())


def test_curation_in_id_ranges_matches_an_in_memory_reference(two_version_store):
    store = two_version_store
    config = SampleConfig(fraction=0.2)  # a large sample: more to compare
    summary = curate(store, sample_config=config, config=CurateConfig(batch_rows=250), progress=False)  # 12 id ranges
    assert summary.label_version == "new"
    clusters, chosen, statuses = reference_curation(store, "new", config)
    spans = store.read("spans")
    assert spans["id"].to_pylist() == sorted(clusters)  # every ok label once, in id order: the order training reads
    assert dict(zip(spans["id"].to_pylist(), spans["clusters"].to_pylist())) == clusters
    sample = store.read("sample").sort_by("id").to_pylist()
    assert [r["id"] for r in sample] == sorted(chosen)
    assert {r["id"]: (r["split"], r["cluster"]) for r in sample} == chosen
    assert Counter(r["llm_status"] for r in sample)[schemas.LABEL_FAILED] > 0
    assert summary.labels == statuses and statuses[schemas.LABEL_FAILED] > 0
    assert summary.headlines == store.read("headlines").num_rows and summary.not_labeled == summary.headlines - sum(statuses.values())
    assert summary.orphan_labels == 25 and summary.not_labeled > 300
    assert summary.with_companies + summary.without_companies == statuses[schemas.LABEL_OK]


def test_the_tables_do_not_depend_on_the_number_of_id_ranges(two_version_store):
    store = two_version_store
    config = SampleConfig(seed=5, sample_unlabeled=False)
    results = []
    for batch_rows in (1_000_000, 97):  # one range; 31 ranges
        summary = curate(store, sample_config=config, config=CurateConfig(batch_rows=batch_rows), progress=False, label_version="old", force=True)
        tables = [store.read(t).to_pylist() for t in ("spans", "sample")]  # in table order: the order training reads
        results.append(({k: v for k, v in summary.as_dict().items() if k != "plot"}, *tables))
    assert results[0] == results[1]
    assert results[0][2] and all(r["llm_status"] == schemas.LABEL_OK for r in results[0][2])


def test_id_ranges_split_the_feed_evenly(two_version_store):
    ids = sorted(two_version_store.read("headlines")["id"].to_pylist())
    cuts = id_range_cuts(12)
    assert cuts == sorted(cuts) and len(cuts) == 11 and id_range_cuts(1) == []
    sizes = Counter(sum(i >= c for c in cuts) for i in ids)
    assert len(sizes) == 12 and max(sizes.values()) < 2 * len(ids) / 12


def test_a_spilled_pair_puts_each_id_in_the_same_range_of_both_tables(two_version_store, tmp_path):
    store = two_version_store
    old = pc.field("label_version") == "old"
    paths = spill_pair_by_id_range(store.dataset("headlines"), ["id", "title"], store.dataset("llm_labels"), ["id", "status"], 40, str(tmp_path), old)
    headlines, labels = [[read_spilled(p)["id"].to_pylist() for p in side] for side in zip(*paths)]
    assert len(paths) > 2  # more rows than one range holds
    assert sorted(sum(headlines, [])) == sorted(store.read("headlines")["id"].to_pylist())  # each row once
    assert sorted(sum(labels, [])) == sorted(store.read("llm_labels", filter=old)["id"].to_pylist())  # only the filter's rows
    range_of = {i: k for k, ids in enumerate(headlines) for i in ids}
    joined = [(range_of[i], k) for k, ids in enumerate(labels) for i in ids if i in range_of]
    assert joined and all(h == k for h, k in joined)  # a label sits in its headline's range


def test_an_unknown_label_version_is_named_with_the_known_ones(two_version_store):
    with pytest.raises(FinnerError, match=r"--label-version 'nope': no such labels; the store has \['new', 'old'\]"):
        curate(two_version_store, progress=False, label_version="nope")

"""Company-name clustering at feed scale: time, peak memory and agreement with exact all-pairs.

    python benchmarks/bench_cluster.py [--quick]

Names: the 23,845 real listing names of ../shared/data/company_listings.csv, cut to the company
(security descriptions such as "Common Stock" or "Class A Ordinary Shares" removed, as an LLM's
normalized name would be), plus realistic variants until the pool holds 100k distinct names:
corporate suffixes (Inc/Inc./Corp/Corporation/Ltd/Co./Holdings/plc), a "The " prefix, the ticker
in parentheses or alone, upper/lower case, "&" <-> "and", and one-character typos. Each size is a
seeded random subset of that pool, clustered in a fresh process so its peak RSS is its own.
Ends with `BENCH <metric> <value>` lines.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import random
import re
import resource
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LISTINGS = REPO.parent / "shared" / "data" / "company_listings.csv"

SECURITY_WORDS = re.compile(
    r"\s*[-,]?\s+(?:Class [A-Z]\b|Common Stock|Common Shares|Ordinary Shares|American Depositary|Depositary Shares|"
    r"Units?\b|Warrants?\b|Rights?\b|Series [A-Z0-9]+\b|\d[\d./]*% |Preferred|Subordinated|Senior Notes|Notes due|"
    r"Sponsored ADR|ADR\b|Shares of Beneficial Interest|New\b|\$\d).*$",
    re.IGNORECASE,
)
SUFFIXES = (" Inc", " Inc.", " Corp", " Corp.", " Corporation", " Ltd", " Ltd.", " Co.", " Holdings", " plc", " Group")
TYPO_LETTERS = "abcdefghijklmnopqrstuvwxyz"


def base_names(path: Path = LISTINGS) -> list[tuple[str, str]]:
    """(ticker, company name) from the listings, security descriptions cut off."""
    out = []
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            name = SECURITY_WORDS.sub("", row["name"]).strip(" ,-")
            out.append((row["symbol"], name or row["name"]))
    return out


def variant(ticker: str, name: str, rng: random.Random) -> str:
    """One realistic way a feed (or an LLM's normalization) writes this company."""
    kind = rng.random()
    if kind < 0.25:
        stem = re.sub(r"(,? (Inc|Corp|Corporation|Ltd|Co|Holdings|plc|Group)\.?)+$", "", name, flags=re.IGNORECASE)
        return stem + rng.choice(SUFFIXES)
    if kind < 0.35:
        return f"{name} ({ticker})" if rng.random() < 0.7 else ticker
    if kind < 0.45:
        return name.upper() if rng.random() < 0.5 else name.lower()
    if kind < 0.50:
        return name.replace(" & ", " and ") if "&" in name else f"The {name}"
    chars = list(name)
    i = rng.randrange(len(chars))
    edit = rng.random()
    if edit < 0.3:
        del chars[i]
    elif edit < 0.55 and i + 1 < len(chars):
        chars[i], chars[i + 1] = chars[i + 1], chars[i]
    elif edit < 0.8:
        chars.insert(i, rng.choice(TYPO_LETTERS))
    else:
        chars[i] = rng.choice(TYPO_LETTERS)
    return "".join(chars)


def name_pool(size: int, seed: int = 0) -> list[str]:
    """`size` distinct names: every base name first, then variants, in a seeded shuffled order."""
    rng = random.Random(seed)
    bases = base_names()
    pool = list(dict.fromkeys(name for _, name in bases))
    seen = set(pool)
    while len(pool) < size:
        name = variant(*rng.choice(bases), rng)
        if name and name not in seen:
            seen.add(name)
            pool.append(name)
    rng.shuffle(pool)
    return pool[:size]


def name_counts(size: int, pool_size: int, seed: int = 0) -> Counter[str]:
    """A seeded subset of the pool with Zipf-like mention counts (some names are far more frequent)."""
    pool = name_pool(pool_size, seed)
    rng = random.Random(seed + size)
    chosen = rng.sample(pool, size)
    return Counter({name: max(1, int(1000 / (1 + rng.paretovariate(1.2)) ** 1.5)) for name in chosen})


def one_run(size: int, pool_size: int, method: str) -> dict:
    """Child process: cluster `size` names once, report time, peak RSS and the clusters' digest."""
    sys.path.insert(0, str(REPO))
    from finner.cluster import ClusterConfig, cluster_names

    counts = name_counts(size, pool_size)
    start, cpu_start = time.perf_counter(), time.process_time()
    result = cluster_names(counts, ClusterConfig(method=method))
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "size": size,
        "method": method,
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "peak_gib": peak_kib / 2**20,
        "keys": result.n_keys,
        "pairs_scored": result.pairs_scored,
        "edges": result.edges,
        "clusters": result.n_clusters,
        "representative": result.representative,
    }


def child(size: int, pool_size: int, method: str) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child", str(size), "--pool", str(pool_size), "--method", method],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def agreement(a: dict[str, str], b: dict[str, str]) -> float:
    """Fraction of names whose cluster (as a set of member names) is the same in both clusterings."""

    def members(rep: dict[str, str]) -> dict[str, frozenset[str]]:
        groups: dict[str, set[str]] = {}
        for name, r in rep.items():
            groups.setdefault(r, set()).add(name)
        return {name: frozenset(groups[r]) for name, r in rep.items()}

    ma, mb = members(a), members(b)
    return sum(ma[n] == mb[n] for n in ma) / len(ma)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="10k and 30k names only (default adds 100k)")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--pool", type=int, default=100_000, help=argparse.SUPPRESS)
    parser.add_argument("--method", default="length_window", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(one_run(args.child, args.pool, args.method)))
        return
    sizes = [10_000, 30_000] if args.quick else [10_000, 30_000, 100_000]
    exact_sizes = sizes  # all-pairs still runs at 100k here, in about twice the time
    runs = {}
    for size in sizes:
        r = runs[size] = child(size, args.pool, "length_window")
        print(
            f"{size:>7} names ({r['keys']} distinct processed): {r['seconds']:7.1f} s ({r['cpu_seconds']:.1f} s CPU), peak RSS {r['peak_gib']:.2f} GiB, "
            f"{r['pairs_scored']:,} pairs scored of {r['keys'] * (r['keys'] - 1) // 2:,}, {r['edges']:,} similar pairs, {r['clusters']:,} clusters",
            flush=True,
        )
    for small, large in zip(sizes, sizes[1:]):
        growth = {k: math.log(runs[large][k] / runs[small][k]) / math.log(large / small) for k in ("seconds", "cpu_seconds", "pairs_scored")}
        print(
            f"growth exponent {small}->{large}: wall time ~ N^{growth['seconds']:.2f}, CPU time ~ N^{growth['cpu_seconds']:.2f}, "
            f"pairs scored ~ N^{growth['pairs_scored']:.2f} (all-pairs: N^2)"
        )
    agreements = []
    for size in exact_sizes:
        exact = child(size, args.pool, "all_pairs")
        agreements.append(agreement(runs[size]["representative"], exact["representative"]))
        print(
            f"{size:>7} names, exact all-pairs: {exact['seconds']:7.1f} s ({exact['cpu_seconds']:.1f} s CPU), peak RSS {exact['peak_gib']:.2f} GiB, "
            f"{exact['clusters']:,} clusters; agreement with length_window {agreements[-1]:.4f}",
            flush=True,
        )
    top = sizes[-1] // 1000
    print(f"BENCH cluster_{top}k_seconds {runs[sizes[-1]]['seconds']:.1f}")
    print(f"BENCH cluster_{top}k_peak_gib {runs[sizes[-1]]['peak_gib']:.2f}")
    print(f"BENCH cluster_exact_agreement {min(agreements):.4f}")


if __name__ == "__main__":
    main()

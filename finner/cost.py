"""What scoring a feed costs: the measured GLiNER throughput priced per instance-hour, beside the
LLM labeling cost the labeling stage measured (`label_cost` in the store).

$ per million headlines = $/hour / (headlines/s per instance x 3600) x 1e6: a CPU instance runs one
CPU actor, a GPU instance 1 / `gpus_per_actor` GPU actors sharing its GPU. Throughput is only known for the
device it was measured on (`score_throughput`, written by the scoring job); the other device's
price is shown without a figure rather than with a guess. The case study's prices are the defaults:
$0.50/h for a small GPU instance, $0.10/h for a CPU one.

A demo-sized run says little about a feed's cost: `--scale-measurements` takes the scoring job's
own summary on the largest feed of a `benchmarks/bench_scale.py` run (its `bench_scale.json`) and
prices a whole node from it: on CPUs, the job's steady headlines/s on the benchmark machine's CPUs
scaled by cores to `--cpu-node-cpus`; on a GPU, as measured. A node kind the benchmark did not run
on stays "not measured".

The job has two sides, measured separately: preparation (tokenization and collation, CPU tasks:
headlines/s per CPU) and the actors (forward pass and decoding: headlines/s each). A GPU
instance's throughput is the slower of its actors and the preparation its other CPUs
(`--gpu-node-cpus` less the actors' own) can do, and the report says which side bounds it and how
many CPUs would keep its GPU busy: what sizes the GPU node type.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

from finner import artifacts
from finner.config import Config, ConfigError, help_text
from finner.errors import FinnerError
from finner.plots import pyplot, save_figure
from finner.store import Store


@dataclass(frozen=True)
class CostConfig(Config):
    gpu_usd_per_hour: float = field(default=0.50, metadata=help_text("price of one GPU instance-hour (case study: $0.50)", at_least=0))
    cpu_usd_per_hour: float = field(default=0.10, metadata=help_text("price of one CPU instance-hour (case study: $0.10)", at_least=0))
    gpu_node_cpus: float = field(default=8, metadata=help_text("CPUs of one GPU instance (cluster.yaml's gpu_worker: g5.2xlarge, 8 vCPUs)", more_than=0))
    cpu_node_cpus: float = field(default=8, metadata=help_text("CPUs of one CPU instance (cluster.yaml's cpu_worker: m5.2xlarge, 8 vCPUs)", more_than=0))
    scale_measurements: str = field(
        default="", metadata=help_text("bench_scale.json of a benchmarks/bench_scale.py run: price a node from its largest feed's scoring")
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.scale_measurements and not os.path.isfile(self.scale_measurements):
            raise ConfigError("scale_measurements", f"{self.scale_measurements}: no such file")


@dataclass(frozen=True)
class CostRow:
    setting: str
    headlines_per_s: float | None
    usd_per_hour: float | None
    usd_per_million: float | None
    note: str = ""


def usd_per_million(usd_per_hour: float, headlines_per_s: float) -> float:
    return usd_per_hour / (headlines_per_s * 3600) * 1e6


@dataclass
class CostReport:
    rows: list[CostRow]
    notes: list[str]
    plot: str | None = None

    def text(self) -> str:
        lines = [f"{'setting':<44} {'headlines/s':>12} {'$/hour':>8} {'$/1M headlines':>15}"]
        for r in self.rows:
            hps = f"{r.headlines_per_s:,.1f}" if r.headlines_per_s is not None else "-"
            hour = f"{r.usd_per_hour:.2f}" if r.usd_per_hour is not None else "-"
            million = f"{r.usd_per_million:,.2f}" if r.usd_per_million is not None else "-"
            lines.append(f"{r.setting:<44} {hps:>12} {hour:>8} {million:>15}" + (f"  {r.note}" if r.note else ""))
        lines += self.notes
        if self.plot:
            lines.append(f"chart: {self.plot}")
        return "\n".join(lines)


@dataclass(frozen=True)
class GpuSides:
    """A GPU instance's two sides: its actors, and the preparation its other CPUs can do."""

    actors_hps: float
    prepare_hps: float
    spare_cpus: float
    cpus_to_feed: float  # CPUs of preparation that keep up with the actors

    @property
    def instance_hps(self) -> float:
        return min(self.actors_hps, self.prepare_hps)

    def note(self) -> str:
        bound = "its CPUs" if self.prepare_hps < self.actors_hps else "its GPU"
        return (
            f"bound by {bound}: actors {self.actors_hps:,.0f}/s, preparation {self.prepare_hps:,.0f}/s on {self.spare_cpus:g} spare CPUs; "
            f"{self.cpus_to_feed:.1f} CPUs of preparation keep the GPU busy"
        )


def gpu_sides(throughput: dict[str, Any], per_instance_actors_hps: float, node_cpus: float) -> GpuSides | None:
    """The two sides of one GPU instance, when the job prepared in CPU tasks and measured both."""
    per_cpu = throughput.get("prepare_headlines_per_cpu_s") or 0.0
    if throughput.get("prepare") != "tasks" or per_cpu <= 0:
        return None
    actors = 1 / (throughput.get("gpus_per_actor") or 1.0)
    spare = max(node_cpus - actors * (throughput.get("actor_cpus") or 1.0), 0.0)
    return GpuSides(per_instance_actors_hps, spare * per_cpu, spare, per_instance_actors_hps / per_cpu)


def scale_throughput(path: str) -> dict[str, Any] | None:
    """The scoring job's summary on the largest feed of a bench_scale run, with that feed's size
    and the benchmark machine's CPUs; None when that run did not get to score."""
    try:
        with open(path) as f:
            report = json.load(f)
        largest = max(report["sizes"])
        summary = report["stages"][str(largest)].get("score", {}).get("summary")
        cpus = report["cpus"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise FinnerError(f"--scale-measurements: {path}: not a bench_scale.json ({err})") from err
    return {**summary, "feed_rows": largest, "machine_cpus": cpus} if summary else None


def node_row(scale: dict[str, Any], config: CostConfig) -> CostRow | None:
    """A whole node priced from a feed-scale measurement: CPU nodes scaled by cores, a GPU node as measured."""
    hps = scale.get("steady_headlines_per_s") or scale.get("job_headlines_per_s") or 0.0
    if hps <= 0:
        return None
    where = f"measured on a {scale['feed_rows']:,}-headline feed (bench_scale)"
    if scale.get("device") == "cuda":
        return CostRow(f"GLiNER, GPU node ({scale.get('runtime', '?')})", hps, config.gpu_usd_per_hour, usd_per_million(config.gpu_usd_per_hour, hps), where)
    node = hps / scale["machine_cpus"] * config.cpu_node_cpus
    return CostRow(
        f"GLiNER, CPU node of {config.cpu_node_cpus:g} CPUs ({scale.get('runtime', '?')})",
        node,
        config.cpu_usd_per_hour,
        usd_per_million(config.cpu_usd_per_hour, node),
        f"{where} on {scale['machine_cpus']} CPUs, {hps:,.1f}/s, scaled by cores",
    )


def cost_rows(
    throughput: dict[str, Any] | None, label_cost: dict[str, Any] | None, config: CostConfig, scale: dict[str, Any] | None = None
) -> tuple[list[CostRow], list[str]]:
    """The table rows from the stored throughput and labeling summaries (either may be missing),
    and a node row per device from a feed-scale measurement (`scale_throughput`), when given."""
    rows: list[CostRow] = []
    notes: list[str] = []
    if scale is not None:
        measured_node = node_row(scale, config)
        gpu_measured = measured_node is not None and scale.get("device") == "cuda"
        rows.append(measured_node if gpu_measured else CostRow("GLiNER, GPU node", None, config.gpu_usd_per_hour, None, "not measured at feed scale"))
        if measured_node is not None and not gpu_measured:
            rows.append(measured_node)
    measured = (throughput or {}).get("device")
    hps = (throughput or {}).get("per_actor_headlines_per_s") or 0.0
    for device, price in (("cuda", config.gpu_usd_per_hour), ("cpu", config.cpu_usd_per_hour)):
        name = f"GLiNER, 1 {'GPU' if device == 'cuda' else 'CPU'} actor"
        if measured == device and hps > 0:
            runtime = throughput.get("runtime", "torch")
            share = (throughput.get("gpus_per_actor") or 1.0) if device == "cuda" else 1.0
            if share < 1.0:
                name = f"GLiNER, 1 GPU shared by {round(1 / share)} actors"
            per_instance = hps / share
            note = "measured"
            sides = gpu_sides(throughput, per_instance, config.gpu_node_cpus) if device == "cuda" else None
            if sides is not None:
                per_instance, note = sides.instance_hps, f"measured; {sides.note()}"
            rows.append(CostRow(f"{name} ({runtime})", per_instance, price, usd_per_million(price, per_instance), note))
        else:
            rows.append(CostRow(name, None, price, None, "not measured on this device"))
    if throughput and throughput.get("prepare_headlines_per_cpu_s"):
        notes.append(
            f"stages: preparation {throughput['prepare_headlines_per_cpu_s']:,.0f} headlines/s per CPU "
            f"({'CPU tasks' if throughput.get('prepare') == 'tasks' else 'in the actors'}), "
            f"each {throughput.get('device', '?')} actor {hps:,.0f}/s while busy"
        )
    if throughput is None:
        notes.append("no scoring throughput in the store yet: run `python -m jobs.score` first")
    if label_cost and label_cost.get("rows"):
        per_k = label_cost.get("usd_per_1k_headlines")
        rows.append(
            CostRow(
                f"LLM labeling ({label_cost.get('model', '?')})",
                label_cost.get("headlines_per_s"),
                (label_cost.get("pricing") or {}).get("usd_per_hour") or None,
                per_k * 1000 if per_k else None,
                "measured by the labeling stage" + ("" if per_k else " (no price given: pass --usd-per-hour to jobs.label)"),
            )
        )
    else:
        notes.append("no LLM labeling cost in the store (`label_cost`): run `python -m jobs.label` to compare")
    return rows, notes


def plot_costs(rows: list[CostRow], store: Store) -> str | None:
    """Bar chart of $ per million headlines (log scale); None when no row has a figure."""
    priced = [r for r in rows if r.usd_per_million]
    if not priced:
        return None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 0.7 * len(priced) + 1.5))
    ax.barh([r.setting for r in priced], [r.usd_per_million for r in priced], color=["#4c72b0" if "GLiNER" in r.setting else "#c44e52" for r in priced])
    ax.set_xscale("log")
    ax.set_xlabel("$ per million headlines (log scale)")
    for i, r in enumerate(priced):
        ax.text(r.usd_per_million, i, f" ${r.usd_per_million:,.2f}", va="center")
    ax.set_title("Cost of finding companies in headlines")
    return save_figure(fig, store, artifacts.REPORTS_DIR, "score_cost.png")


def cost_report(store: Store, config: CostConfig = CostConfig()) -> CostReport:
    scale = scale_throughput(config.scale_measurements) if config.scale_measurements else None
    rows, notes = cost_rows(store.get_json(artifacts.SCORE_THROUGHPUT_KEY), store.get_json(artifacts.LABEL_COST_KEY), config, scale)
    return CostReport(rows, notes, plot_costs(rows, store))

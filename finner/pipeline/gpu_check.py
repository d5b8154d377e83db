"""Cluster smoke test: do actors that ask for GPUs get GPU nodes, and do they see CUDA there?

Runs the same shape of work as bulk scoring (a Ray Data actor pool over the `headlines` table,
`num_gpus` per actor), but with a trivial computation, so a new cluster can be checked in a
minute before any model is shipped: on an autoscaling cluster the GPU node type starts from zero,
so this shows the autoscaler adding it (and, `idle_timeout_minutes` later, removing it).
Each actor computes on CUDA when it has it, else on the CPU (`--require-cuda` makes that an error).

    ray job submit --runtime-env runtime_env/score.yaml -- python -m finner.pipeline.gpu_check --store s3://bucket/finner
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

import pyarrow as pa

from finner.config import Config, add_config_args, help_text
from finner.errors import FinnerError
from finner.pipeline import cli
from finner.progress import say
from finner.store import Store


@dataclass(frozen=True)
class GpuCheckConfig(Config):
    actors: int = field(default=1, metadata=help_text("actors in the pool (each asks for --gpus-per-actor)", at_least=1))
    gpus_per_actor: float = field(default=1.0, metadata=help_text("GPUs each actor asks for (0: CPU actors, a placement check without GPUs); the autoscaler adds GPU nodes to satisfy it", at_least=0, at_most=1))
    batch_size: int = field(default=4096, metadata=help_text("headlines per batch", at_least=1))
    require_cuda: bool = field(default=False, metadata=help_text("fail when an actor got no CUDA device (a GPU node with a broken image)"))


class TitleLengths:
    """Actor: sums title lengths on its device; reports where it ran."""

    def __init__(self) -> None:
        import ray
        import torch

        ctx = ray.get_runtime_context()
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.node_id = ctx.get_node_id()
        self.gpu_ids = ",".join(map(str, ctx.get_accelerator_ids().get("GPU", [])))
        self.device_name = torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else "cpu"

    def __call__(self, batch: pa.Table) -> pa.Table:
        import torch

        lengths = torch.tensor([len(t) for t in batch["title"].to_pylist()], device=self.device)
        return pa.table(
            {
                "node_id": [self.node_id],
                "gpu_ids": [self.gpu_ids],
                "device": [self.device_name],
                "rows": [batch.num_rows],
                "chars": [int(lengths.sum().item())],
            }
        )


@dataclass
class ActorReport:
    node_id: str
    gpu_ids: str
    device: str
    rows: int = 0
    chars: int = 0

    def line(self) -> str:
        return f"gpu_check: node {self.node_id} gpu_ids [{self.gpu_ids}] device {self.device}: {self.rows} headlines, {self.chars} chars"


def gpu_check(cfg: GpuCheckConfig, store: Store) -> list[ActorReport]:
    """Run the actor pool over `headlines`; one report per (node, device) the actors ran on."""
    import ray

    if not store.exists("headlines"):
        raise FinnerError(f"no headlines table in {store.root}: run `python -m jobs.ingest --store {store.root}` first")
    cli.init_ray()
    ds = ray.data.read_delta(store.table_uri("headlines"), columns=["title"], storage_options=store.storage_options)
    out = ds.map_batches(
        TitleLengths,
        batch_format="pyarrow",
        batch_size=cfg.batch_size,
        compute=ray.data.ActorPoolStrategy(size=cfg.actors),
        num_cpus=1,
        num_gpus=cfg.gpus_per_actor,
    )
    reports: dict[tuple[str, str, str], ActorReport] = {}
    for row in out.iter_rows():
        key = (row["node_id"], row["gpu_ids"], row["device"])
        report = reports.setdefault(key, ActorReport(*key))
        report.rows += row["rows"]
        report.chars += row["chars"]
    if cfg.require_cuda and (cpu_only := [r for r in reports.values() if r.device == "cpu"]):
        raise FinnerError(f"no CUDA device in the actors on node(s) {', '.join(r.node_id for r in cpu_only)} (each asked for {cfg.gpus_per_actor:g} GPU)")
    return sorted(reports.values(), key=lambda r: r.node_id)


def main(argv: list[str] | None = None) -> int:
    p = cli.parser("python -m finner.pipeline.gpu_check", __doc__.split("\n\n")[0])
    add_config_args(p, GpuCheckConfig)
    args = p.parse_args(argv)

    def body(cfg: GpuCheckConfig) -> None:
        reports = gpu_check(cfg, cli.store_from(args))
        for report in reports:
            say(report.line())
        say(f"gpu_check: {sum(r.rows for r in reports)} headlines on {len({r.node_id for r in reports})} node(s)")

    return cli.run(body, args, configs=(GpuCheckConfig,))


if __name__ == "__main__":
    sys.exit(main())

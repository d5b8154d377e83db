"""The cost report: measured throughput priced per instance-hour, beside the LLM labeling cost."""

from __future__ import annotations

import json

import pytest

from finner.config import ConfigError
from finner.cost import CostConfig, cost_report, cost_rows, scale_throughput, usd_per_million
from finner.errors import FinnerError

THROUGHPUT = {"device": "cpu", "per_actor_headlines_per_s": 20.0, "runtime": "torch", "rows": 1000}
LABEL_COST = {"rows": 500, "headlines_per_s": 2.5, "usd_per_1k_headlines": 0.08, "model": "llama-70b", "pricing": {"usd_per_hour": 8.0}}


def test_usd_per_million():
    # 20 headlines/s = 72,000 per hour; $0.10 per hour -> $1.39 per million
    assert usd_per_million(0.10, 20.0) == pytest.approx(0.10 / 72_000 * 1e6)


def test_rows_price_only_what_was_measured():
    rows, notes = cost_rows(THROUGHPUT, LABEL_COST, CostConfig(gpu_usd_per_hour=0.5, cpu_usd_per_hour=0.2))
    gpu, cpu, llm = rows
    assert gpu.usd_per_million is None and gpu.note == "not measured on this device"
    assert cpu.usd_per_million == pytest.approx(0.2 / 72_000 * 1e6) and cpu.headlines_per_s == 20.0
    assert llm.usd_per_million == pytest.approx(80.0) and llm.usd_per_hour == 8.0
    assert notes == []


def test_report_says_what_is_missing(store):
    empty = cost_report(store)
    assert "no scoring throughput" in empty.text() and "no LLM labeling cost" in empty.text()
    assert empty.plot is None

    store.put_json("score_throughput", THROUGHPUT)
    store.put_json("label_cost", LABEL_COST)
    report = cost_report(store)
    text = report.text()
    assert "GLiNER, 1 CPU actor (torch)" in text and "LLM labeling (llama-70b)" in text
    with open(report.plot, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_gpu_actors_sharing_a_gpu_are_priced_per_gpu():
    shared = {"device": "cuda", "per_actor_headlines_per_s": 1000.0, "runtime": "torch", "rows": 10_000, "gpus_per_actor": 0.25}
    gpu, cpu = cost_rows(shared, None, CostConfig(gpu_usd_per_hour=0.5))[0]
    assert gpu.setting == "GLiNER, 1 GPU shared by 4 actors (torch)" and gpu.headlines_per_s == 4000.0
    assert gpu.usd_per_million == pytest.approx(0.5 / (4000 * 3600) * 1e6)
    assert cpu.usd_per_million is None


def test_a_gpu_instance_is_priced_at_its_slower_side():
    # 2 actors of 3,000/s share a GPU (6,000/s); preparation runs 800/s per CPU on the CPUs the actors leave
    split = {"device": "cuda", "per_actor_headlines_per_s": 3000.0, "runtime": "torch", "gpus_per_actor": 0.5, "actor_cpus": 1.0,
             "prepare": "tasks", "prepare_headlines_per_cpu_s": 800.0}  # fmt: skip
    small = cost_rows(split, None, CostConfig(gpu_usd_per_hour=1.0, gpu_node_cpus=8))
    gpu = small[0][0]
    assert gpu.headlines_per_s == pytest.approx(6 * 800.0) and "bound by its CPUs" in gpu.note
    assert "7.5 CPUs of preparation keep the GPU busy" in gpu.note
    assert "preparation 800 headlines/s per CPU (CPU tasks)" in small[1][0]
    big = cost_rows(split, None, CostConfig(gpu_usd_per_hour=1.0, gpu_node_cpus=16))[0][0]
    assert big.headlines_per_s == pytest.approx(6000.0) and "bound by its GPU" in big.note
    assert big.usd_per_million == pytest.approx(1.0 / (6000 * 3600) * 1e6)
    in_actor = cost_rows({**split, "prepare": "actor"}, None, CostConfig(gpu_node_cpus=8))[0][0]
    assert in_actor.headlines_per_s == 6000.0 and in_actor.note == "measured"  # the actors' figure already includes preparing


def scale_json(tmp_path, summary: dict | None, cpus: int = 2) -> str:
    """A bench_scale.json as benchmarks/bench_scale.py writes it (only what the cost report reads)."""
    stages = {"10000": {"score": {"summary": {**THROUGHPUT, "steady_headlines_per_s": 5.0}}}, "100000": {"score": {"summary": summary}}}
    path = tmp_path / "bench_scale.json"
    path.write_text(json.dumps({"sizes": [10_000, 100_000], "cpus": cpus, "stages": stages}))
    return str(path)


def test_feed_scale_measurement_prices_a_cpu_node_by_cores_and_never_guesses_a_gpu(tmp_path, store):
    cpu = {"device": "cpu", "runtime": "onnx-int8", "steady_headlines_per_s": 60.0, "job_headlines_per_s": 50.0, "rows": 100_000}
    config = CostConfig(cpu_usd_per_hour=0.4, cpu_node_cpus=8, scale_measurements=scale_json(tmp_path, cpu))
    report = cost_report(store, config)
    gpu_node, cpu_node = report.rows[:2]
    assert gpu_node.headlines_per_s is None and gpu_node.usd_per_million is None and gpu_node.note == "not measured at feed scale"
    assert cpu_node.setting == "GLiNER, CPU node of 8 CPUs (onnx-int8)"
    assert cpu_node.headlines_per_s == pytest.approx(60.0 / 2 * 8), "the largest feed's steady rate, scaled from 2 CPUs to 8"
    assert cpu_node.usd_per_million == pytest.approx(usd_per_million(0.4, 240.0))
    assert "100,000-headline feed (bench_scale) on 2 CPUs" in cpu_node.note

    gpu = {**cpu, "device": "cuda", "runtime": "torch", "steady_headlines_per_s": 6000.0}
    measured_gpu = cost_rows(None, None, CostConfig(), scale_throughput(scale_json(tmp_path, gpu)))[0][0]
    assert measured_gpu.setting == "GLiNER, GPU node (torch)" and measured_gpu.headlines_per_s == 6000.0


def test_scale_measurements_must_be_a_bench_scale_json(tmp_path, store):
    with pytest.raises(ConfigError, match="--scale-measurements: .*no such file"):
        CostConfig(scale_measurements=str(tmp_path / "missing.json"))
    (tmp_path / "other.json").write_text("{}")
    with pytest.raises(FinnerError, match="not a bench_scale.json"):
        cost_report(store, CostConfig(scale_measurements=str(tmp_path / "other.json")))
    assert scale_throughput(scale_json(tmp_path, None)) is None, "that run never got to score: nothing to price"

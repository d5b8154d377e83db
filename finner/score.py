"""Batch prediction with a loaded GLiNER model: the fast path the scoring job runs in every actor.

It chains gliner's own public inference steps (`prepare_batch -> collate_batch -> run_batch ->
decode_batch -> map_entities_to_text`, gliner 0.2.x `model.py`), so spans are decoded exactly as
`GLiNER.inference` decodes them, and changes only how the work is fed:

* **length buckets**: the rows of a batch are sorted by word count before being cut into forward
  batches, so a forward pads to its own longest headline. GLiNER scores every span up to
  `max_width` words of the *padded* length, so padding costs more here than in a plain encoder;
* **tokenization off the critical path**: a background thread collates (sub-word tokenizes) the
  next forward batch while the current one runs;
* `torch.inference_mode`, fp16/bf16 autocast on CUDA, and large forward batches;
* on CPU, optionally ONNX Runtime (`runtime="onnx"`) or its int8 dynamic quantization
  (`"onnx-int8"`) through gliner's own exporter. `runtime_agreement` measures how far a runtime's
  spans drift from the torch path (span F1 against it); the job refuses a runtime below
  `1 - agreement_tolerance` on a sample of the feed.

`model_version` names what produced a prediction (weights digest + labels + threshold + runtime
quantization), so the job skips rows already scored by the same model and re-scores after a change.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import os
import tempfile
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa

from finner import schemas
from finner.config import Config, ConfigError, help_text
from finner.errors import FinnerError
from finner.ids import stable_hash
from finner.metrics import exact_prf, name_key
from finner.models.base import best_device, local_checkpoint, offline_encoder_dir
from finner.models.gliner import FinnerWordsSplitter, GlinerModel
from finner.models.gliner import load_gliner as load_torch
from finner.schemas import Span, make_span

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
CONFIG_FILE = "gliner_config.json"  # architecture (max_width, words splitter...) changes spans too
ONNX_FILES = {"onnx": "model.onnx", "onnx-int8": "model_quantized.onnx"}


@dataclass(frozen=True)
class ScoreConfig(Config):
    """What model scores the feed, and how (per actor)."""

    model: str = field(default="", metadata=help_text("GLiNER checkpoint directory or hub id (default: the best fine-tuned checkpoint in the store)"))
    labels: tuple[str, ...] = field(default=(schemas.COMPANY,), metadata=help_text("entity labels asked of GLiNER"))
    threshold: float = field(default=0.5, metadata=help_text("span score threshold (gliner's default)", at_least=0, at_most=1))
    forward_rows: int = field(default=0, metadata=help_text("headlines per forward pass; 0 = 128 on GPU, 32 on CPU", at_least=0))
    device: Literal["auto", "cpu", "cuda"] = field(default="auto", metadata=help_text("auto: CUDA when the actor sees a GPU"))
    precision: Literal["auto", "fp32", "fp16", "bf16"] = field(
        default="fp32",
        metadata=help_text(
            "CUDA autocast: auto = bf16 (fp16 without bf16 support); fp32 by default because on an H100 the forward "
            "is ~12% of scoring time, so bf16 gained nothing and moved spans scored near the threshold"
        ),
    )
    runtime: Literal["torch", "onnx", "onnx-int8"] = field(
        default="torch", metadata=help_text("CPU alternatives: ONNX Runtime fp32, or int8 dynamic quantization")
    )
    threads: int = field(default=0, metadata=help_text("intra-op CPU threads per actor; 0 = torch's default", at_least=0))
    onnx_cache: str = field(default="", metadata=help_text("where ONNX exports are cached; default: <tmp>/finner-onnx"))

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.labels:
            raise ConfigError("labels", "must name at least one label")


def weights_digest(model: str) -> str:
    """Content hash of a local checkpoint's weights and config (a hub id stands for itself)."""
    path = Path(model)
    if not path.is_dir():
        return model
    files = [path / name for name in (CONFIG_FILE, *WEIGHT_FILES) if (path / name).is_file()]
    if not any(file.name in WEIGHT_FILES for file in files):
        raise FinnerError(f"{model}: no GLiNER weights ({' or '.join(WEIGHT_FILES)}) in this directory")
    digest = hashlib.blake2b(digest_size=8)
    for file in files:
        with open(file, "rb") as f:
            while chunk := f.read(1 << 22):
                digest.update(chunk)
    return digest.hexdigest()


def model_version(config: ScoreConfig) -> str:
    """`gliner-<hash>` of what changes the spans: the weights, labels, threshold and int8 quantization
    (not fp16/bf16, batch sizes or the device: those only move scores in the last digits)."""
    key = {
        "weights": weights_digest(config.model),
        "labels": list(config.labels),
        "threshold": config.threshold,
        "quantized": config.runtime == "onnx-int8",
    }
    return f"gliner-{stable_hash(key, length=12)}"


def load_gliner(model: str, runtime: str = "torch", onnx_cache: str = "", threads: int = 0) -> Any:
    """A GLiNER from a local checkpoint directory or a hub id, loaded by finner's GLiNER adapter
    (so words are split as in training). For `onnx`/`onnx-int8` the checkpoint is exported once
    with gliner's exporter into a cache directory keyed by its weights, then run by ONNX Runtime."""
    local_checkpoint(model)  # a path that is neither a directory nor a hub id fails here, at once
    if runtime == "torch":
        return load_torch(model)
    from gliner import GLiNER

    onnx_dir = export_onnx(model, onnx_cache)
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        options.intra_op_num_threads = threads
    try:
        onnx_model = GLiNER.from_pretrained(
            str(onnx_dir),
            local_files_only=True,
            runtime="onnxruntime",
            runtime_model_file=ONNX_FILES[runtime],
            runtime_options={"session_options": options},
        )
    except (OSError, ValueError) as err:
        raise FinnerError(f"cannot load the ONNX export of {model!r}: {err}") from err
    onnx_model.data_processor.words_splitter = FinnerWordsSplitter()
    return onnx_model


def export_onnx(model: str, cache: str = "") -> Path:
    """Export (once) the checkpoint to ONNX fp32 + int8 in `<cache>/<weights digest>/`."""
    root = Path(cache or os.path.join(tempfile.gettempdir(), "finner-onnx"))
    target = root / stable_hash(weights_digest(model), length=16)
    if all((target / name).is_file() for name in ONNX_FILES.values()):
        return target
    root.mkdir(parents=True, exist_ok=True)
    torch_model = load_torch(model).to("cpu")
    staging = Path(tempfile.mkdtemp(prefix="_tmp-", dir=root))
    with contextlib.redirect_stdout(None):
        paths = torch_model.export_to_onnx(staging, onnx_filename=ONNX_FILES["onnx"], quantized_filename=ONNX_FILES["onnx-int8"], quantize=True)
    if not paths.get("quantized_path"):
        raise FinnerError(f"{model}: ONNX int8 quantization failed (see the warning above)")
    with contextlib.suppress(OSError):  # another actor finished the same export first: keep theirs
        staging.rename(target)
    return target


class Scorer:
    """One loaded model that predicts spans for lists of titles; build it once per actor."""

    def __init__(self, config: ScoreConfig, model: Any | None = None):
        import torch

        self.config = config
        if config.threads:
            torch.set_num_threads(config.threads)
        self.device = best_device(config.device)
        if config.runtime != "torch" and self.device != "cpu":
            raise FinnerError(f"--runtime {config.runtime} is the CPU path; use --runtime torch on GPUs")
        self.model = model if model is not None else load_gliner(config.model, config.runtime, config.onnx_cache, config.threads)
        if config.runtime == "torch":
            self.model.to(self.device).eval()
        self.forward_rows = config.forward_rows or (128 if self.device == "cuda" else 32)
        self.autocast_dtype = self._autocast_dtype()
        self.collator = self.model.create_collator()
        self._prefetch = ThreadPoolExecutor(max_workers=1, thread_name_prefix="collate")

    def _autocast_dtype(self) -> Any:
        import torch

        precision = self.config.precision
        if self.device != "cuda" or precision == "fp32" or self.config.runtime != "torch":
            if precision in ("fp16", "bf16") and self.device != "cuda":
                raise FinnerError(f"--precision {precision} is for CUDA; CPU runs fp32 (or --runtime onnx-int8)")
            return None
        if precision == "auto":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.bfloat16 if precision == "bf16" else torch.float16

    def predict(self, titles: Sequence[str]) -> list[list[Span]]:
        """Company spans for each title, in input order (the `finner.schemas.SPAN` shape)."""
        return [[make_span(title, e["start"], e["end"], score=e["score"]) for e in entities] for title, entities in zip(titles, self.predict_raw(titles))]

    def predict_raw(self, titles: Sequence[str]) -> list[list[dict[str, Any]]]:
        """gliner's own entity dicts for each title, exactly as `GLiNER.inference` returns them."""
        model = self.model
        prepared = model.prepare_batch(list(titles), list(self.config.labels))
        if not prepared["valid_texts"]:
            return [[] for _ in titles]
        chunks = self.buckets(prepared)
        decoded: list[Any] = [None] * len(prepared["tokens"])
        for chunk, batch in zip(chunks, self._collated(prepared, chunks)):
            for i, spans in zip(chunk, self._forward_decode(batch)):
                decoded[i] = spans
        return model.map_entities_to_text(
            decoded,
            prepared["valid_texts"],
            prepared["valid_to_orig_idx"],
            prepared["start_token_map"],
            prepared["end_token_map"],
            prepared["num_original"],
        )

    def buckets(self, prepared: dict[str, Any]) -> list[list[int]]:
        """Row indices of each forward batch: rows sorted by word count, cut every `forward_rows`."""
        order = sorted(range(len(prepared["tokens"])), key=lambda i: len(prepared["tokens"][i]))
        return [order[i : i + self.forward_rows] for i in range(0, len(order), self.forward_rows)]

    def collate(self, prepared: dict[str, Any], chunk: list[int]) -> dict[str, Any]:
        """Sub-word tokenize rows `chunk` of `model.prepare_batch`'s output into a model batch (on the device)."""
        types = prepared["entity_types"]
        types = [types[i] for i in chunk] if types and isinstance(types[0], list) else types
        batch = self.model.collate_batch([prepared["input_x"][i] for i in chunk], types, self.collator)
        if self.device == "cuda":
            batch = {k: v.pin_memory().to(self.device, non_blocking=True) if hasattr(v, "pin_memory") else v for k, v in batch.items()}
        return batch

    def _collated(self, prepared: dict[str, Any], chunks: list[list[int]]) -> Iterator[dict[str, Any]]:
        """Collated batches, the next one prepared in the background while the caller runs this one."""
        if not chunks:
            return
        pending = self._prefetch.submit(self.collate, prepared, chunks[0])
        for nxt in chunks[1:]:
            batch = pending.result()
            pending = self._prefetch.submit(self.collate, prepared, nxt)
            yield batch
        yield pending.result()

    def forward(self, batch: dict[str, Any]) -> Any:
        """The model's forward pass on one collated batch (fp32 logits)."""
        import torch

        with torch.inference_mode():
            if self.autocast_dtype is None:
                return self.model.run_batch(batch, threshold=self.config.threshold)
            with torch.autocast("cuda", dtype=self.autocast_dtype):
                output = self.model.run_batch(batch, threshold=self.config.threshold)
            output["logits"] = output["logits"].float()
            return output

    def _forward_decode(self, batch: dict[str, Any]) -> list[list[Any]]:
        import torch

        output = self.forward(batch)
        with torch.inference_mode():
            return self.model.decode_batch(output, batch, threshold=self.config.threshold)


def normalize_spans(spans: list[Span], names: dict[str, str]) -> list[Span]:
    """Fill each span's `normalized` with its cluster representative (looked up by the name's
    text, then by `metrics.name_key`), else the span text itself."""
    out = []
    for span in spans:
        text = span["text"]
        out.append({**span, "normalized": names.get(text) or names.get(name_key(text)) or text})
    return out


def name_map_from_spans(spans_table: pa.Table) -> dict[str, str]:
    """Company name -> representative, from the curation stage's `spans` table (spans whose
    `normalized` is set), keyed by the exact text and by `name_key` of it."""
    names: dict[str, str] = {}
    for row in spans_table.column("spans").to_pylist():
        for span in row or ():
            if span.get("normalized") and span.get("text"):
                names.setdefault(span["text"], span["normalized"])
                names.setdefault(name_key(span["text"]), span["normalized"])
    return names


def prediction_rows(ids: Sequence[str], spans: Sequence[list[Span]], version: str, names: dict[str, str] | None = None) -> pa.Table:
    """Rows of `schemas.PREDICTIONS` for one batch."""
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    all_spans = [normalize_spans(s, names or {}) for s in spans]
    return pa.table(
        {
            "id": pa.array(ids, pa.string()),
            "spans": pa.array(all_spans, schemas.SPANS),
            "companies": pa.array([[s["text"] for s in row] for row in all_spans], schemas.STRINGS),
            "normalized": pa.array([list(dict.fromkeys(s["normalized"] for s in row)) for row in all_spans], schemas.STRINGS),
            "model_version": pa.array([version] * len(ids), pa.string()),
            "scored_at": pa.array([now] * len(ids), schemas.TIMESTAMP),
        },
        schema=schemas.PREDICTIONS,
    )


def runtime_agreement(reference: Sequence[list[Span]], other: Sequence[list[Span]]) -> float:
    """Exact-span F1 of `other` against `reference` (1.0 = the same spans; both empty counts as 1.0)."""
    prf = exact_prf(reference, other)
    if prf.tp + prf.fp + prf.fn == 0:
        return 1.0
    return prf.f1


def check_runtime(config: ScoreConfig, titles: Sequence[str], tolerance: float) -> float:
    """Score `titles` with the torch path and with `config.runtime`; raise when their span F1 is
    below `1 - tolerance`. Returns that F1 (how much the faster runtime may cost in accuracy)."""
    from dataclasses import replace

    reference = Scorer(replace(config, runtime="torch", device="cpu")).predict(titles)
    other = Scorer(config).predict(titles)
    f1 = runtime_agreement(reference, other)
    if f1 < 1.0 - tolerance:
        raise FinnerError(
            f"--runtime {config.runtime} agrees with the torch path at span F1 {f1:.4f} on {len(titles)} headlines, "
            f"below 1 - tolerance = {1 - tolerance:.4f}; use --runtime torch or raise --agreement-tolerance"
        )
    return f1


def untrained_checkpoint(directory: str) -> str:
    """Save a GLiNER built by the adapter on the offline encoder (span head untrained); return its path.

    Only for throughput runs and same-span checks where no fine-tuned checkpoint exists: its spans
    carry no meaning (scores sit near 0.5), but its compute is exactly a fine-tuned model's.
    """
    import torch

    path = Path(directory)
    if not any((path / name).is_file() for name in WEIGHT_FILES):
        torch.manual_seed(0)
        GlinerModel.from_encoder(offline_encoder_dir()).save(str(path))
    return str(path)

"""Batch prediction with a loaded GLiNER model (or the majority vote of several), cut where the
scoring job splits it between CPUs and the model's device.

* `prepare` (the CPU side): gliner's own `prepare_batch` and `collate_batch`, so words and
  sub-words are exactly `GLiNER.inference`'s, into length-bucketed numpy arrays (`Prepared`);
* `Scorer.score` (the actor's body): those arrays through the forward pass, then `decode_spans`,
  gliner's flat-NER decoding rewritten as tensor operations over the batch, on the same device
  (gliner's decoder is a Python loop over candidate spans: on a GPU it, not the GPU, was the bound);
* runtimes: torch (fp32, or fp16/bf16 autocast on CUDA), or on CPU ONNX Runtime on gliner's ONNX
  export, fp32 or int8 dynamic quantization. `choose_runtime` compares a runtime's spans with the
  torch path's (span F1) and resolves `--runtime auto`: torch on GPUs, on CPUs the fastest runtime
  that agrees. The export is ours in one respect: gliner's `markerV0` span head is computed in the
  order that does the least work (`finner.models.span_head`: the same function, its largest layer
  run per word instead of per candidate span). int8 is our own recipe too, not gliner's
  `quantize=True` (unsigned 8-bit weights, one scale per tensor, every layer, which moved many
  spans): signed 8-bit weights with one scale per output channel, on the span head's matrix
  products only, where the time goes; the encoder (whose int8 moved spans), the LSTM and the
  prompt head stay fp32. The measurements behind these choices: docs/scoring-runtimes.md.

`model_version` names what produced a prediction (weights digest + labels + threshold + runtime
quantization), so the job skips rows already scored by the same model and re-scores after a change.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa

from finner import artifacts, schemas
from finner.config import Config, ConfigError, help_text
from finner.errors import FinnerError
from finner.ids import stable_hash
from finner.metrics import exact_prf, name_key
from finner.models import span_head
from finner.models.base import WEIGHT_FILES, best_device, local_checkpoint, offline_encoder_dir, resolve_threshold, weights_digest
from finner.models.ensemble import majority_spans
from finner.models.gliner import GlinerModel
from finner.models.gliner import load_gliner as load_torch
from finner.roles import RULES_VERSION, subject_companies
from finner.schemas import Span, make_span
from finner.store import Store

ONNX_FILES = {"onnx": "model.onnx", "onnx-int8": "model_quantized.onnx"}
RUNTIMES = ("torch", *ONNX_FILES)
# --runtime auto on CPU tries these in turn, fastest first (benchmarks/bench_score.py), and takes the
# first whose spans agree with the torch path's.
CPU_PREFERENCE = ("onnx-int8", "onnx", "torch")
# What a forward pass takes: the inputs of gliner's ONNX export of a span model (the torch model
# takes the same, and ignores the rest of a collated batch).
MODEL_INPUTS = ("input_ids", "attention_mask", "words_mask", "text_lengths", "span_idx", "span_mask")
# int8: the nodes quantized are the span head's (gliner's `span_rep_layer`); the recipe's name is part
# of the export's cache key (with the span head's, `finner.models.span_head.RECIPE`) and of the model version.
INT8_NODES = "/span_rep_layer/"
INT8_RECIPE = "qint8-per-channel-span-head"


@dataclass(frozen=True)
class ScoreConfig(Config):
    """What model scores the feed, and how (per actor)."""

    model: tuple[str, ...] = field(
        default=(),
        metadata=help_text(
            "GLiNER checkpoint directory or hub id; several: their majority vote, a span kept where most of them predict it "
            "(default: the best fine-tuned checkpoint in the store)"
        ),
    )
    labels: tuple[str, ...] = field(default=(schemas.COMPANY,), metadata=help_text("entity labels asked of GLiNER"))
    threshold: tuple[float, ...] = field(
        default=(),
        metadata=help_text(
            "span score threshold, one for every --model or one per --model; default: the one chosen for each checkpoint "
            "on gold dev (jobs.evaluate), else gliner's 0.5",
            at_least=0,
            at_most=1,
        ),
    )
    forward_rows: int = field(default=0, metadata=help_text("headlines per forward pass; 0 = 128 on GPU, 32 on CPU", at_least=0))
    device: Literal["auto", "cpu", "cuda"] = field(default="auto", metadata=help_text("auto: CUDA when the actor sees a GPU"))
    precision: Literal["auto", "fp32", "fp16", "bf16"] = field(
        default="fp32",
        metadata=help_text(
            "CUDA autocast: auto = bf16 (fp16 without bf16 support); fp32 by default: the forward pass is a small part "
            "of scoring time, and half precision moves spans scored near the threshold (docs/scoring-runtimes.md)"
        ),
    )
    runtime: Literal["auto", "torch", "onnx", "onnx-int8"] = field(
        default="auto",
        metadata=help_text(
            "torch, or on CPU ONNX Runtime fp32 or int8 dynamic quantization; auto = torch on GPUs, on CPUs the fastest "
            "whose spans agree with torch's on the feed's first headlines"
        ),
    )
    threads: int = field(default=0, metadata=help_text("intra-op CPU threads per actor; 0 = torch's default", at_least=0))
    onnx_cache: str = field(default="", metadata=help_text("where ONNX exports are cached; default: <tmp>/finner-onnx"))

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.labels:
            raise ConfigError("labels", "must name at least one label")
        if len(self.threshold) > 1 and len(self.threshold) != len(self.model):
            raise ConfigError("threshold", f"give one threshold, or one per --model ({len(self.model)}), got {len(self.threshold)}")

    def span_thresholds(self) -> tuple[float, ...]:
        """Each model's threshold: `threshold`'s, else the one chosen for it on gold (`finner.models.base.resolve_threshold`)."""
        if len(self.threshold) == 1:
            given: tuple[float | None, ...] = self.threshold * len(self.model)
        else:
            given = self.threshold or (None,) * len(self.model)
        return tuple(resolve_threshold(model, threshold) for model, threshold in zip(self.model, given))

    def preparing_model(self) -> str:
        """The checkpoint whose tokenizer prepares the batches: the first (a vote's members share one, `Scorer` checks)."""
        return self.model[0]


def model_version(config: ScoreConfig) -> str:
    """`gliner-<hash>` of what changes the spans: the weights, labels, threshold, int8 quantization
    and the guideline's subject rules (not fp16/bf16, batch sizes or the device: those only move
    scores in the last digits); `gliner-vote-<hash>` for a vote, of its members' weights and
    thresholds in any order."""
    members = sorted(zip((weights_digest(m) for m in config.model), config.span_thresholds()))
    key = {
        "labels": list(config.labels),
        "quantized": INT8_RECIPE if config.runtime == "onnx-int8" else False,
        "subject_rules": RULES_VERSION,
    }
    if len(members) == 1:
        ((weights, threshold),) = members
        return f"gliner-{stable_hash({'weights': weights, 'threshold': threshold, **key}, length=12)}"
    return f"gliner-vote-{stable_hash({'members': [list(m) for m in members], **key}, length=12)}"


def default_forward_rows(device: str) -> int:
    return 128 if device == "cuda" else 32


def export_onnx(model: str, cache: str = "") -> Path:
    """Export (once) the checkpoint, span head factored, to ONNX fp32 + int8 in
    `<cache>/<weights digest, recipes>/`."""
    root = Path(cache or os.path.join(tempfile.gettempdir(), "finner-onnx"))
    target = root / stable_hash([weights_digest(model), INT8_RECIPE, span_head.RECIPE], length=16)
    if all((target / name).is_file() for name in ONNX_FILES.values()):
        return target
    root.mkdir(parents=True, exist_ok=True)
    torch_model = load_torch(model, device="cpu")
    span_head.factor_span_head(torch_model)  # another span mode is exported as gliner builds it
    staging = Path(tempfile.mkdtemp(prefix="_tmp-", dir=root))
    with contextlib.redirect_stdout(None):
        torch_model.export_to_onnx(staging, onnx_filename=ONNX_FILES["onnx"], quantize=False)
    quantize_span_head(staging / ONNX_FILES["onnx"], staging / ONNX_FILES["onnx-int8"])
    with contextlib.suppress(OSError):  # another actor finished the same export first: keep theirs
        staging.rename(target)
    return target


def quantize_span_head(fp32: Path, int8: Path) -> None:
    """Dynamic int8 quantization (`INT8_RECIPE`) of the span head's matrix products: signed weights,
    one scale per output channel; every other node (encoder, LSTM, prompt head) left fp32."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    graph = onnx.load(str(fp32), load_external_data=False).graph
    kept = [node.name for node in graph.node if node.op_type in ("MatMul", "Gemm", "LSTM") and INT8_NODES not in node.name]
    try:
        quantize_dynamic(model_input=str(fp32), model_output=str(int8), weight_type=QuantType.QInt8, per_channel=True, nodes_to_exclude=kept)
    except Exception as err:  # onnxruntime raises its own types for a graph it cannot quantize
        raise FinnerError(f"ONNX int8 quantization of {fp32} failed: {err}") from err


def onnx_session(model: str, runtime: str, cache: str = "", threads: int = 0) -> Any:
    """An ONNX Runtime session on the checkpoint's export for `runtime` (exported on first use)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        options.intra_op_num_threads = threads
    path = export_onnx(model, cache) / ONNX_FILES[runtime]
    try:
        return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime raises its own exception types for a bad file
        raise FinnerError(f"cannot load the ONNX export of {model!r} ({path}): {err}") from err


# The arrays of one forward batch: the model's inputs and "rows", the title index of each row.
PREPARED_ARRAYS = (*MODEL_INPUTS, "rows")
# A numpy array as Arrow: its values, flattened, and its shape (the storage layout of Arrow's
# variable-shape tensor, as plain nested types that every Arrow reader and Ray Data carry).
TENSOR_FIELDS = ("data", "shape")


@dataclass
class Prepared:
    """A batch of headlines after the CPU stage, ready for the model: padded, length-bucketed numpy
    arrays per forward pass, and what maps a predicted word span back to characters. It travels
    between the preparation task and the actor as one Arrow row (`to_arrow`, `from_arrow`): list
    columns the actor turns back into arrays without tokenizing or unpickling anything."""

    titles: list[str]
    batches: list[dict[str, Any]]  # PREPARED_ARRAYS: the MODEL_INPUTS arrays + "rows", the title index of each row
    word_starts: list[list[int]]  # per title, the character offset where each word starts ([] for a blank title)
    word_ends: list[list[int]]

    def to_arrow(self) -> pa.Table:
        """One row: `titles`, `word_starts`, `word_ends`, and per array name a list (one element per
        forward batch) of (flattened values, shape)."""
        offsets = pa.list_(pa.list_(pa.int32()))
        columns = {
            "titles": pa.array([self.titles], pa.list_(pa.string())),
            "word_starts": pa.array([self.word_starts], offsets),
            "word_ends": pa.array([self.word_ends], offsets),
        }
        for name in PREPARED_ARRAYS:
            tensors = _tensors_to_arrow([batch[name] for batch in self.batches])
            columns[name] = pa.ListArray.from_arrays(pa.array([0, len(tensors)], pa.int32()), tensors)
        return pa.table(columns)

    @classmethod
    def from_arrow(cls, row: pa.Table) -> "Prepared":
        """The `Prepared` of a one-row table written by `to_arrow` (other columns are ignored)."""
        if row.num_rows != 1:
            raise FinnerError(f"a prepared batch is one row, got {row.num_rows}")
        arrays = {name: _tensors_from_arrow(row[name].combine_chunks().flatten()) for name in PREPARED_ARRAYS}
        batches = [dict(zip(PREPARED_ARRAYS, values)) for values in zip(*arrays.values())]
        (titles,), (starts,), (ends,) = (row[name].to_pylist() for name in ("titles", "word_starts", "word_ends"))
        return cls(titles, batches, starts, ends)

    @staticmethod
    def carried_by(table: pa.Table) -> bool:
        """Whether `table` holds prepared batches (`to_arrow`'s columns) rather than raw titles."""
        return all(name in table.column_names for name in PREPARED_ARRAYS)


def _tensors_to_arrow(arrays: Sequence[Any]) -> pa.StructArray:
    """numpy arrays of one dtype, any shapes, as Arrow (flattened values, shape) structs."""
    import numpy as np

    flat = [np.ascontiguousarray(array).reshape(-1) for array in arrays]
    values = pa.array(np.concatenate(flat)) if flat else pa.array([], pa.int64())
    offsets = pa.array(np.cumsum([0, *(f.size for f in flat)]), pa.int32())
    shapes = pa.array([list(array.shape) for array in arrays], pa.list_(pa.int32()))
    return pa.StructArray.from_arrays([pa.ListArray.from_arrays(offsets, values), shapes], names=list(TENSOR_FIELDS))


def _tensors_from_arrow(tensors: pa.StructArray) -> list[Any]:
    """`_tensors_to_arrow`'s arrays back, writable (torch takes them without a copy of its own)."""
    import numpy as np

    data, shapes = (tensors.field(name) for name in TENSOR_FIELDS)
    offsets = data.offsets.to_numpy()
    values = data.values.slice(offsets[0], offsets[-1] - offsets[0]).to_numpy(zero_copy_only=False)
    values = np.require(values, requirements="W")
    return [values[start - offsets[0] : end - offsets[0]].reshape(shape) for start, end, shape in zip(offsets[:-1], offsets[1:], shapes.to_pylist())]


def prepare(model: Any, titles: Sequence[str], labels: Sequence[str], forward_rows: int) -> Prepared:
    """The CPU side of scoring, with gliner's own steps: `prepare_batch` splits words (blank titles
    are left out, as gliner does), then the rows, sorted by word count, are cut every `forward_rows`
    and each cut is collated (sub-word tokens, span indices) into arrays padded to its own longest
    headline. GLiNER scores every span up to `max_width` words of the *padded* length, so padding
    costs more here than in a plain encoder."""
    import numpy as np

    prepared = model.prepare_batch(list(titles), list(labels))
    starts: list[list[int]] = [[] for _ in titles]
    ends: list[list[int]] = [[] for _ in titles]
    originals = prepared["valid_to_orig_idx"]
    for valid, original in enumerate(originals):
        starts[original], ends[original] = list(prepared["start_token_map"][valid]), list(prepared["end_token_map"][valid])
    tokens = prepared["tokens"]
    order = sorted(range(len(tokens)), key=lambda i: len(tokens[i]))
    collator = model.create_collator()
    batches = []
    for first in range(0, len(order), forward_rows):
        chunk = order[first : first + forward_rows]
        batch = model.collate_batch([prepared["input_x"][i] for i in chunk], prepared["entity_types"], collator)
        arrays = {name: batch[name].numpy() for name in MODEL_INPUTS}
        arrays["rows"] = np.array([originals[i] for i in chunk], dtype=np.int64)
        batches.append(arrays)
    return Prepared(list(titles), batches, starts, ends)


def decode_spans(logits: Any, words: Any, threshold: float) -> tuple[Any, Any, Any, Any]:
    """gliner's span decoding (`BaseSpanDecoder` with flat_ner=True, multi_label=False) in tensor
    operations over the whole batch, on the logits' device, so decoding is a few kernels instead
    of a Python loop per candidate span.

    Same spans as gliner: candidates are sigmoid scores above `threshold` whose span ends inside the
    row (`words` per row); per row they are taken greedily by score (descending; ties keep gliner's
    (start, width, class) order, a stable sort of `torch.where`'s output), each kept unless it shares
    a word with a span kept before it. The greedy pass runs as rounds that each keep every candidate
    whose better-ranked overlapping candidates are all rejected, then reject the candidates that
    overlap a kept one: the same result as the sequential pass, in as many rounds as the longest
    chain of overlaps. Returns (row, start word, end word, score) of the kept spans, by row and start.
    """
    import torch

    probs = torch.sigmoid(logits)  # (B, L, K, C), as gliner's decoder computes it
    batch_size, _, _, classes = probs.shape
    row, start, width, cls = torch.where(probs > threshold)
    inside = start + width + 1 <= words[row]
    row, start, width, cls = row[inside], start[inside], width[inside], cls[inside]
    score = probs[row, start, width, cls]
    empty = row.new_zeros(0)
    if row.numel() == 0:
        return empty, empty, empty, score
    order = torch.sort(score, descending=True, stable=True).indices
    order = order[torch.sort(row[order], stable=True).indices]  # by row, then rank within the row
    row, start, end, score = row[order], start[order], (start + width)[order], score[order]
    counts = torch.bincount(row, minlength=batch_size)
    rank = torch.arange(row.numel(), device=row.device) - (torch.cumsum(counts, 0) - counts)[row]
    most = int(counts.max())
    starts = row.new_full((batch_size, most), 0)
    ends = row.new_full((batch_size, most), -1)
    starts[row, rank], ends[row, rank] = start, end
    present = row.new_zeros((batch_size, most), dtype=torch.bool)
    present[row, rank] = True
    # overlap[b, i, j]: candidates i and j of row b share a word; better[b, i, j]: j ranks above i
    overlap = (starts[:, :, None] <= ends[:, None, :]) & (starts[:, None, :] <= ends[:, :, None])
    overlap &= present[:, :, None] & present[:, None, :]
    better = overlap & torch.ones(most, most, dtype=torch.bool, device=row.device).tril(-1)
    kept = torch.zeros_like(present)
    open_ = present.clone()
    while bool(open_.any()):
        taken = open_ & ~(better & (open_ | kept)[:, None, :]).any(-1)
        kept |= taken
        open_ &= ~taken & ~(overlap & taken[:, None, :]).any(-1)
    keep = kept[row, rank]
    row, start, end, score = row[keep], start[keep], end[keep], score[keep]
    by_start = torch.sort(row * (int(words.max()) + 1) + start).indices
    return row[by_start], start[by_start], end[by_start], score[by_start]


class Scorer:
    """The loaded model, or the models of a vote, built once per actor: `score` runs prepared
    batches through the forward pass and the decoder (all the scoring actor does), `predict`
    prepares titles first (in-process use: tests, the agreement check, benchmarks).

    A vote's models score the same prepared batches, each at its own threshold and through the
    subject rules, and a span is kept where most of them predict it (`majority_spans`, the vote of
    `jobs.relabel` and `bench_quality.py`). The writing task's subject rules then change nothing:
    a majority span survived them in most members, and any two majorities share a member."""

    def __init__(self, config: ScoreConfig, loaded: Sequence[Any] = ()):
        import torch

        if config.runtime not in RUNTIMES:
            raise FinnerError(f"--runtime {config.runtime}: resolve it with choose_runtime first")
        if not config.model:
            raise FinnerError("no model to score with: give --model")
        self.config = config
        if config.threads:
            torch.set_num_threads(config.threads)
        self.device = best_device(config.device)
        if config.runtime != "torch" and self.device != "cpu":
            raise FinnerError(f"--runtime {config.runtime} is the CPU path; use --runtime torch on GPUs")
        for model in config.model:
            local_checkpoint(model)  # a path that is neither a directory nor a hub id fails here, at once
        self.thresholds = config.span_thresholds()
        model_device = self.device if config.runtime == "torch" else "cpu"
        self.models = list(loaded) or [load_torch(model, device=model_device) for model in config.model]
        one_preparation(config.model, self.models)
        self.sessions = []
        if config.runtime == "torch":
            for model in self.models:
                model.to(self.device).eval()
        else:
            self.sessions = [onnx_session(model, config.runtime, config.onnx_cache, config.threads) for model in config.model]
        self.forward_rows = config.forward_rows or default_forward_rows(self.device)
        self.autocast_dtype = self._autocast_dtype()

    @property
    def gliner(self) -> Any:
        """The model whose tokenizer and collator prepare the batches (`ScoreConfig.preparing_model`)."""
        return self.models[0]

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
        return self.spans(self.prepare(titles))

    def prepare(self, titles: Sequence[str]) -> Prepared:
        return prepare(self.gliner, titles, self.config.labels, self.forward_rows)

    def spans(self, prepared: Prepared) -> list[list[Span]]:
        """`score`'s spans of each title of `prepared`, in input order."""
        return title_spans(prepared.titles, *self.score(prepared))

    def score(self, prepared: Prepared) -> tuple[list[int], list[int], list[int], list[float]]:
        """The scoring actor's body: forward passes and decoding of every batch, nothing tokenized.
        Returns the (title index, start, end, score) of each span, character offsets, by start within a title."""
        found = [self._member_score(prepared, member) for member in range(len(self.models))]
        if len(found) == 1:
            return found[0]
        voted = majority_spans(prepared.titles, [title_spans(prepared.titles, *columns) for columns in found])
        return span_columns([(i, s["start"], s["end"], s["score"]) for i, spans in enumerate(voted) for s in spans])

    def _member_score(self, prepared: Prepared, member: int) -> tuple[list[int], list[int], list[int], list[float]]:
        """`score`'s columns for one model of the vote (the only one, without a vote)."""
        import torch

        found: list[tuple[int, int, int, float]] = []
        for batch in prepared.batches:
            logits = self.forward(batch, member)
            words = torch.from_numpy(batch["text_lengths"]).view(-1).to(logits.device)
            rows, starts, ends, scores = (t.tolist() for t in decode_spans(logits, words, self.thresholds[member]))
            titles = batch["rows"].tolist()
            for row, start, end, score in zip(rows, starts, ends, scores):
                i = titles[row]
                found.append((i, prepared.word_starts[i][start], prepared.word_ends[i][end], score))
        return span_columns(found)

    def forward(self, batch: dict[str, Any], member: int = 0) -> Any:
        """One model's forward pass on one prepared batch: fp32 logits (B, words, max_width, labels) on the device."""
        import torch

        if self.sessions:
            return torch.from_numpy(self.sessions[member].run(["logits"], {name: batch[name] for name in MODEL_INPUTS})[0])
        inputs = {name: self._to_device(torch.from_numpy(batch[name])) for name in MODEL_INPUTS}
        word_lengths = batch["text_lengths"].reshape(-1).tolist()  # the LSTM's lengths, on the host (no device sync)
        model = self.models[member].model
        with torch.inference_mode():
            if self.autocast_dtype is None:
                return model(**inputs, word_lengths=word_lengths).logits
            with torch.autocast("cuda", dtype=self.autocast_dtype):
                return model(**inputs, word_lengths=word_lengths).logits.float()

    def _to_device(self, tensor: Any) -> Any:
        if self.device == "cuda":
            return tensor.pin_memory().to(self.device, non_blocking=True)
        return tensor


def span_columns(spans: Sequence[tuple[int, int, int, float]]) -> tuple[list[int], list[int], list[int], list[float]]:
    """(title index, start, end, score) rows as `Scorer.score`'s four columns."""
    return tuple(map(list, zip(*spans))) if spans else ([], [], [], [])  # type: ignore[return-value]


def one_preparation(paths: Sequence[str], models: Sequence[Any]) -> None:
    """Refuse a vote whose models would prepare batches differently (another base encoder, span
    width or word splitting): the job prepares each batch once, with the first model's tokenizer."""
    first = models[0].config.to_dict()
    for path, model in zip(paths[1:], models[1:]):
        if model.config.to_dict() != first:
            raise FinnerError(f"--model {path} is configured unlike --model {paths[0]} (base encoder, span width, words): a vote's models must share one configuration")


def title_spans(titles: Sequence[str], title: Sequence[int], start: Sequence[int], end: Sequence[int], score: Sequence[float]) -> list[list[Span]]:
    """The scored spans (`Scorer.score`'s columns: title index, character offsets, score) as each
    title's subject company spans (`finner.roles.subject_companies`), in title order."""
    found: list[list[Span]] = [[] for _ in titles]
    for i, s, e, p in zip(title, start, end, score):
        found[i].append(make_span(titles[i], s, e, score=p))
    return [subject_companies(t, spans) for t, spans in zip(titles, found)]


def normalize_spans(spans: list[Span], names: dict[str, str]) -> list[Span]:
    """Fill each span's `normalized` with its cluster representative (looked up by the name's
    text, then by `metrics.name_key`), else the span text itself."""
    out = []
    for span in spans:
        text = span["text"]
        out.append({**span, "normalized": names.get(text) or names.get(name_key(text)) or text})
    return out


def name_map_from_spans(spans: pa.Table | Iterable[pa.RecordBatch]) -> dict[str, str]:
    """Company name -> representative, from the curation stage's `spans` table (spans whose
    `normalized` is set), keyed by the exact text and by `name_key` of it. Takes the table, or its
    batches one at a time: only the names are kept, never the table's rows."""
    names: dict[str, str] = {}
    for batch in spans.to_batches() if isinstance(spans, pa.Table) else spans:
        for row in batch.column("spans").to_pylist():
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


@dataclass(frozen=True)
class RuntimeChoice:
    """The runtime a job scores with, and why (for its summary)."""

    runtime: str
    agreement_f1: float | None  # span F1 of that runtime against torch's spans; None for torch itself
    reason: str


def choose_runtime(config: ScoreConfig, titles: Sequence[str], min_f1: float, gpus: bool = False) -> RuntimeChoice:
    """Resolve `config.runtime` for actors on GPUs (`gpus`) or CPUs. torch is torch, and `auto` on
    GPUs is torch (ONNX Runtime here is the CPU path). Otherwise the candidates (the asked runtime,
    or for `auto` every CPU runtime, fastest first) score `titles` beside torch on the CPU, and the
    first whose span F1 against torch's spans reaches `min_f1` is chosen; `auto` falls back to torch
    when none does, an asked runtime that falls short is refused."""
    from dataclasses import replace

    if config.runtime == "torch" or (config.runtime == "auto" and gpus):
        return RuntimeChoice("torch", None, "asked for" if config.runtime == "torch" else "auto on GPUs")
    if gpus:
        raise FinnerError(f"--runtime {config.runtime} is the CPU path; use --runtime torch or auto on GPUs")
    reference_scorer = Scorer(replace(config, runtime="torch", device="cpu"))
    prepared = reference_scorer.prepare(titles)
    reference = reference_scorer.spans(prepared)
    candidates = [r for r in CPU_PREFERENCE if r != "torch"] if config.runtime == "auto" else [config.runtime]
    short: list[str] = []
    for runtime in candidates:
        other = Scorer(replace(config, runtime=runtime, device="cpu"), loaded=reference_scorer.models).spans(prepared)
        f1 = runtime_agreement(reference, other)
        if f1 >= min_f1:
            passed = f"span F1 {f1:.4f} against torch on {len(titles)} headlines (at least {min_f1:.4f} needed)"
            return RuntimeChoice(runtime, f1, passed + "".join(f"; {s}" for s in short))
        short.append(f"{runtime} fell short at {f1:.4f}")
    if config.runtime != "auto":
        raise FinnerError(
            f"--runtime {config.runtime} agrees with the torch path at span F1 {f1:.4f} on {len(titles)} headlines, "
            f"below {min_f1:.4f} (1 - --agreement-tolerance); use --runtime torch or auto, or raise --agreement-tolerance"
        )
    return RuntimeChoice("torch", None, f"no faster runtime agreed with torch on {len(titles)} headlines ({'; '.join(short)}; {min_f1:.4f} needed)")


def remembered_runtime_choice(store: Store, config: ScoreConfig, titles: Sequence[str], min_f1: float, gpus: bool = False) -> RuntimeChoice:
    """`choose_runtime`, made once per store for the same weights, labels, threshold, asked runtime,
    headlines, bar and export recipes: the check is deterministic, so a re-run (nothing left to
    score) or the resumed run of a killed job takes the same runtime, and with it the same model
    version, without loading the model and scoring the headlines three times again."""
    key = stable_hash(
        {
            "model": model_version(config), "runtime": config.runtime, "titles": list(titles), "min_f1": min_f1, "gpus": gpus,
            "recipes": [INT8_RECIPE, span_head.RECIPE],
        },
        length=16,
    )  # fmt: skip
    choices = store.get_json(artifacts.RUNTIME_CHOICES_KEY) or {}
    if key in choices:
        return RuntimeChoice(**choices[key])
    choice = choose_runtime(config, titles, min_f1, gpus=gpus)
    store.put_json(artifacts.RUNTIME_CHOICES_KEY, {**choices, key: asdict(choice)})
    return choice


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

"""Checkpoints that disagree on some spans, for votes in tests: an untrained GLiNER and copies of it
whose span heads are moved by seeded noise."""

from __future__ import annotations

from pathlib import Path

import torch

from finner.models.gliner import GlinerModel


def perturbed_copy(checkpoint: str, path: str, seed: int) -> str:
    """`checkpoint` with its span head moved by seeded noise, saved at `path`."""
    model = GlinerModel.load(checkpoint)
    torch.manual_seed(seed)
    with torch.no_grad():
        for parameter in model.model.model.span_rep_layer.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.05)
    model.save(path)
    return path


def voters(checkpoint: str, folder: Path) -> tuple[str, ...]:
    """Three checkpoints: `checkpoint` and two perturbed copies in `folder`."""
    return (checkpoint, *(perturbed_copy(checkpoint, str(folder / f"seed{seed}"), seed) for seed in (1, 2)))

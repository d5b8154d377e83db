"""gliner's `markerV0` span head, computed in the order that does the least work.

gliner represents every candidate span (each start word x each width up to `max_width`) as
`out_project(relu([start_rep[i], end_rep[j]]))`, where `out_project` is Linear(2D -> 4D), ReLU,
Dropout, Linear(4D -> D). Its first Linear runs once per candidate span, `max_width` times per word:
on the MiniLM encoder it was half of the whole forward pass on CPU (ONNX Runtime's profile). A
Linear of a concatenation is the sum of Linears of its halves, so here it runs once per word on
each half and the spans only add the two results: the same function with `max_width` times fewer
multiply-adds in that layer (fp32 sums in another order: scores move in the last digits).
"""

from __future__ import annotations

import functools
from typing import Any

FACTORED_MODE = "markerV0"  # the one gliner span mode this rewrite applies to
RECIPE = f"{FACTORED_MODE}-factored"  # part of the ONNX export's cache key


@functools.cache
def factored_span_marker() -> type:
    """The `FactoredSpanMarker` module class (built on first use: torch is imported lazily)."""
    import torch
    from torch import nn

    class FactoredSpanMarker(nn.Module):
        """A `gliner.modeling.span_rep.SpanMarkerV0` with its first output Linear split per half
        (shares the original's weights; for inference: dropout is the identity)."""

        def __init__(self, marker: nn.Module) -> None:
            super().__init__()
            first, last = marker.out_project[0], marker.out_project[3]
            half = first.in_features // 2
            self.max_width = marker.max_width
            self.project_start, self.project_end, self.out_last = marker.project_start, marker.project_end, last
            self.start_part = nn.Linear(half, first.out_features, bias=False)
            self.end_part = nn.Linear(half, first.out_features)
            with torch.no_grad():
                self.start_part.weight.copy_(first.weight[:, :half])
                self.end_part.weight.copy_(first.weight[:, half:])
                self.end_part.bias.copy_(first.bias)

        def forward(self, h: torch.Tensor, span_idx: torch.Tensor) -> torch.Tensor:
            batch, _, hidden = h.size()
            starts = self.start_part(self.project_start(h).relu())
            ends = self.end_part(self.project_end(h).relu())
            index = span_idx.unsqueeze(-1)  # (B, spans, 2, 1)
            picked = torch.gather(starts, 1, index[:, :, 0].expand(-1, -1, starts.size(-1))) + torch.gather(
                ends, 1, index[:, :, 1].expand(-1, -1, ends.size(-1))
            )
            return self.out_last(picked.relu()).view(batch, span_idx.size(1) // self.max_width, self.max_width, hidden)

    return FactoredSpanMarker


def factor_span_head(gliner: Any) -> bool:
    """Swap a loaded `gliner.GLiNER`'s `markerV0` span head for `FactoredSpanMarker` in place;
    False (nothing changed) for any other span mode."""
    layer = getattr(getattr(gliner, "model", None), "span_rep_layer", None)
    marker = getattr(layer, "span_rep_layer", None)
    if getattr(gliner.config, "span_mode", None) != FACTORED_MODE or marker is None or not hasattr(marker, "out_project"):
        return False
    layer.span_rep_layer = factored_span_marker()(marker).to(next(marker.parameters()).device).eval()
    return True

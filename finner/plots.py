"""Charts: one non-interactive matplotlib set-up and one way to write a figure into the store."""

from __future__ import annotations

import io
from typing import Any

from finner.artifacts import put_artifact
from finner.store import Store


def pyplot() -> Any:
    """`matplotlib.pyplot` on the Agg backend (jobs run headless, in Ray workers too)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(figure: Any, store: Store, *parts: str) -> str:
    """Write a matplotlib figure as PNG under the store (local path or object store), close it,
    and return where it went."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    pyplot().close(figure)
    return put_artifact(store, buffer.getvalue(), *parts)

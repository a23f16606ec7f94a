"""Matplotlib figures as PNG bytes: the one place that picks the backend and saves figures."""

from __future__ import annotations

import io


def pyplot():
    """matplotlib.pyplot on the headless Agg backend (imported on first use: it is slow)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def figure_png(fig) -> bytes:
    """Save a figure as PNG bytes (tight layout, no timestamp: the same figure, the same
    bytes) and close it."""
    plt = pyplot()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()

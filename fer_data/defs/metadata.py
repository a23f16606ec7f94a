"""Turning library results into Dagster metadata that reads well in the UI."""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Iterator

from dagster import MetadataValue


def counts_table(counts: dict[str, int], key: str = "value") -> MetadataValue:
    """A two-column markdown table, largest first."""
    if not counts:
        return MetadataValue.md("_none_")
    rows = "\n".join(f"| {k} | {v:,} |" for k, v in sorted(counts.items(), key=lambda kv: -kv[1]))
    return MetadataValue.md(f"| {key} | count |\n|---|---:|\n{rows}")


def listing(items: list[str], limit: int = 20) -> MetadataValue:
    shown = "\n".join(f"- `{item}`" for item in items[:limit])
    more = f"\n- ... and {len(items) - limit:,} more" if len(items) > limit else ""
    return MetadataValue.md(shown + more if items else "_none_")


@contextmanager
def stopwatch() -> Iterator[dict[str, float]]:
    """Seconds spent in the block, as `{"seconds": ...}` once it ends."""
    timing: dict[str, float] = {}
    start = time.perf_counter()
    try:
        yield timing
    finally:
        timing["seconds"] = time.perf_counter() - start


def speed(seconds: float, images: int) -> dict[str, float]:
    """The stage's wall-clock seconds and images per second, for asset metadata."""
    return {"seconds": round(seconds, 2),
            "images_per_second": round(images / seconds, 1) if seconds > 0 else 0.0}

"""Turning library results into Dagster metadata that reads well in the UI."""

from __future__ import annotations

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

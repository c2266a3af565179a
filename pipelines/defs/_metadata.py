"""Helpers for Dagster metadata: previews that carry counts and shapes, not personal values."""

import dagster as dg
import polars as pl


def md_table(df: pl.DataFrame, limit: int = 20) -> dg.MetadataValue:
    """A Markdown table of the first `limit` rows (Polars has no to_markdown)."""
    if df.is_empty():
        return dg.MetadataValue.md("_empty_")
    head = df.head(limit)
    lines = [
        "| " + " | ".join(head.columns) + " |",
        "| " + " | ".join("---" for _ in head.columns) + " |",
    ]
    for row in head.iter_rows():
        cells = ["" if v is None else (f"{v:.4g}" if isinstance(v, float) else str(v)) for v in row]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return dg.MetadataValue.md("\n".join(lines))


def column_schema(df: pl.DataFrame) -> dg.TableSchema:
    return dg.TableSchema(
        columns=[dg.TableColumn(name=c, type=str(t)) for c, t in df.schema.items()]
    )

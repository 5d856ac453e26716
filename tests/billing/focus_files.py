"""Writing FOCUS CSV files for the billing tests."""

from __future__ import annotations

import csv
from pathlib import Path


def write_rows(path: Path, rows: list[dict[str, str]]) -> Path:
    """`rows` as a FOCUS CSV file (the columns of the first row)."""
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path

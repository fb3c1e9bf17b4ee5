"""One table writer for every paper: CSV + Markdown, measured rows with the paper's reported
numbers beside them, labelled as such."""
from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Sequence

from .io import atomic_write_text


def with_reported(measured: list[dict], reported: dict, key: str, columns: Sequence[str], source: str,
                  label_key: str = "source") -> list[dict]:
    """Interleave reported rows after the measured ones.

    Args:
        measured: rows (dicts) measured here; their ``label_key`` is set to ``"measured"``.
        reported: ``{row key: tuple of values in columns' order}`` as printed in the paper.
        key: the column that names a row (e.g. ``"method"``).
        source: label of the reported rows, e.g. ``"reported (busch2026, nuScenes)"``.
    Returns: for each measured row, the row and, where the paper has it, the reported row after it.
    """
    out = []
    for r in measured:
        out.append({key: r[key], label_key: "measured", **{c: r[c] for c in columns}})
        if r[key] in reported:
            out.append({key: r[key], label_key: source, **dict(zip(columns, reported[r[key]]))})
    return out


def _fmt(v, digits: int) -> str:
    if v is None or v == "" or (isinstance(v, float) and math.isnan(v)):
        return ""
    return f"{v:.{digits}f}" if isinstance(v, (int, float)) and not isinstance(v, bool) else str(v)


def write_table(rows: list[dict], out_dir: str | Path, stem: str, keys: Sequence[str], columns: Sequence[str],
                caption: str, titles: Sequence[str] | None = None, title: str | None = None,
                digits: int = 1, errors: dict | None = None, extra: Sequence[str] = ()) -> tuple[Path, Path]:
    """Write ``<stem>.csv`` and ``<stem>.md`` atomically (a crash never leaves a partial table).

    Args:
        rows: one dict per row holding ``keys`` (left-aligned text columns, e.g. method and source)
            and ``columns`` (numbers; NaN / None print as empty cells).
        caption: what the numbers are and on which data (the Markdown's first line, after ``title``).
        titles: column headers for ``columns`` (default: the column names).
        title: bold prefix of the caption, e.g. ``"Table I."``.
        errors: ``{column: error column}``: the Markdown shows ``value ± error`` (e.g. a 95 %
            interval over seeds); both columns go to the CSV.
        extra: more CSV-only columns after ``columns`` (e.g. ``n_seeds``).
    Returns: (csv path, markdown path).
    """
    out_dir = Path(out_dir)
    buf = io.StringIO()
    errors = dict(errors or {})
    w = csv.DictWriter(buf, fieldnames=[*keys, *columns, *errors.values(), *extra])
    w.writeheader()
    w.writerows(rows)
    csv_path = atomic_write_text(out_dir / f"{stem}.csv", buf.getvalue())
    titles = list(titles or columns)
    lines = [f"**{title}** {caption}" if title else caption, "",
             "| " + " | ".join([*keys, *titles]) + " |",
             "|" + "---|" * len(keys) + "---:|" * len(columns)]

    def cell(r, c):
        e = _fmt(r.get(errors[c]), digits) if c in errors else ""
        return _fmt(r[c], digits) + (f" ± {e}" if e else "")
    lines += ["| " + " | ".join([*(str(r[k]) for k in keys), *(cell(r, c) for c in columns)]) + " |" for r in rows]
    md_path = atomic_write_text(out_dir / f"{stem}.md", "\n".join(lines) + "\n")
    return csv_path, md_path

"""One table writer for every paper: CSV + Markdown, measured rows with the paper's reported
numbers beside them, labelled as such."""
from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Sequence

import numpy as np

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


def mean_std(values) -> tuple[float, float]:
    """(mean, sample standard deviation) of the finite ``values``; std NaN for one value, both NaN for none."""
    vals = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not vals:
        return float("nan"), float("nan")
    return float(np.mean(vals)), (float(np.std(vals, ddof=1)) if len(vals) > 1 else float("nan"))


def summary_rows(results: dict, metrics=("miou",), reported: dict | None = None, ref: str = "") -> list[dict]:
    """One measured row per method (mean and std over seeds of each metric, ``n_seeds``), then the paper's
    rows labelled ``reported (<ref>)`` (the layout of every multi-seed table beside a paper's numbers).

    Args:
        results: ``{row: [per-seed dict with the metrics and "seed"]}`` in table order.
        reported: ``{row: {metric: (mean, std)}}`` of the paper, or None.
    Returns: rows for :func:`bevlib.tables.write_table` with ``<metric>`` and ``<metric>_std``.
    """
    rows = []
    for name, recs in results.items():
        r = {"method": name, "source": "measured", "n_seeds": len(recs)}
        for m in metrics:
            r[m], r[f"{m}_std"] = (round(x, 2) for x in mean_std([x[m] for x in recs]))
        rows.append(r)
    for name, vals in (reported or {}).items():
        r = {"method": name, "source": f"reported ({ref})" if ref else "reported", "n_seeds": ""}
        for m in metrics:
            mean, std = vals.get(m, (float("nan"), float("nan")))
            r[m], r[f"{m}_std"] = mean, std
        rows.append(r)
    return rows


def seed_rows(results: dict, metrics=("miou",), reported: dict | None = None, ref: str = "") -> list[dict]:
    """One measured row per (method, seed): the scoreboard's table; then the paper's rows (``reported`` as in
    :func:`summary_rows`, seed empty) so that a direction check on this table shows the reported values."""
    rows = [{"method": name, "source": "measured", "seed": x["seed"], **{m: round(x[m], 2) for m in metrics}}
            for name, recs in results.items() for x in recs]
    for name, vals in (reported or {}).items():
        rows.append({"method": name, "source": f"reported ({ref})" if ref else "reported", "seed": "",
                     **{m: vals[m][0] if m in vals else float("nan") for m in metrics}})
    return rows

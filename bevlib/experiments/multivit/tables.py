"""lukkassen2024 Table 1 (RangeViT rows): measured per-class IoU beside the paper's."""
from __future__ import annotations

from pathlib import Path

from ...lidarseg_eval import TABLE1_COLUMNS
from ...tables import with_reported, write_table
from ...train import read_metrics
from .params import REPORTED_TABLE1_RANGEVIT

#: Table columns: the 16 class keys (``<class>_iou`` of the metrics) then ``miou``, Table 1's order.
COLUMNS = tuple("miou" if n == "miou" else f"{n}_iou" for n, _ in TABLE1_COLUMNS)
TITLES = tuple(t for _, t in TABLE1_COLUMNS)


def table1_rows(run_dir, method: str = "RangeViT (scratch)") -> list[dict]:
    """The run's final-epoch metrics as a Table 1 row, followed by the paper's row for ``method``
    (key of :data:`REPORTED_TABLE1_RANGEVIT`) labelled as reported."""
    final = read_metrics(run_dir)[-1]
    measured = [{"method": method, **{c: final.get(c, float("nan")) for c in COLUMNS}}]
    return with_reported(measured, REPORTED_TABLE1_RANGEVIT, "method", COLUMNS,
                         "reported (lukkassen2024 Table 1, nuScenes val)")


def write_table1(run_dir, out_dir, caption: str, method: str = "RangeViT (scratch)") -> tuple[Path, Path]:
    """Write ``table1_rangevit.csv`` / ``.md``: measured and reported rows, per-class IoU and mIoU (%)."""
    return write_table(table1_rows(run_dir, method), out_dir, "table1_rangevit", ("method", "source"), COLUMNS,
                       caption, titles=TITLES, title="Table 1 (RangeViT).")

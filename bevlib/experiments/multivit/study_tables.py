"""lukkassen2024 Tables 1, 3, 4, 6 (and the mean of Table 5) from the study's runs: measured mean
± 95 % interval over seeds beside the paper's numbers, labelled reported; one row per seed in
``multivit_seeds.csv`` (what the scoreboard's claims are judged on)."""
from __future__ import annotations

import math
from pathlib import Path

from ...stats import mean_ci95
from ...tables import write_table
from .study import row_name
from .study_params import REPORTED_CAMERA, REPORTED_COSINE_MEAN, REPORTED_LIDAR
from .tables import COLUMNS as LIDAR_COLUMNS, TITLES as LIDAR_TITLES

#: The per-seed table's metrics: LiDAR mIoU (RangeViT / MultiViT.L), camera mIoU (CameraViT /
#: MultiViT.C), mean cross-modal cosine at the ViT encoder output (MultiViT rows) over correctly
#: predicted points / pixels (the paper's) and over every labelled one (``_all``), and at the
#: decoder output where the contrastive loss acts (``_dec``, every labelled one; ours).
SEED_COLUMNS = ("miou", "cam_miou", "mean_cos", "mean_cos_all", "mean_cos_dec")

#: Which reported row stands beside a measured row, per table (the paper's naming; In21k rows
#: of the paper where it ran the comparison only with In21k weights, labelled so).
_LIDAR_REPORTED = {
    "rangevit": "RangeViT (scratch)", "rangevit_cam": "RangeViT (nuScenes camera-pretrained)",
    "multivit": "MultiViT.L (joint)", "rangevit_in21k": "RangeViT (In21k)",
    "rangevit_cam_in21k": "RangeViT (In21k + nuScenes camera-pretrained)",
    "multivit_in21k": "MultiViT.L (In21k, joint)", "multivit_pull_in21k": "MultiViT.L (In21k, joint, pull)",
    "multivit_pullpush_in21k": "MultiViT.L (In21k, joint, pull + push)",
    # Table 6 exists only with In21k weights in the paper
    "multivit_pull": "MultiViT.L (In21k, joint, pull)", "multivit_pullpush": "MultiViT.L (In21k, joint, pull + push)",
}
_CAMERA_REPORTED = {
    "cameravit": "CameraViT", "multivit": "MultiViT.C (joint)", "cameravit_in21k": "CameraViT (In21k)",
    "multivit_in21k": "MultiViT.C (In21k, joint)", "multivit_pull": "MultiViT.C (In21k, joint, pull)",
    "multivit_pullpush": "MultiViT.C (In21k, joint, pull + push)",
    "multivit_pull_in21k": "MultiViT.C (In21k, joint, pull)",
    "multivit_pullpush_in21k": "MultiViT.C (In21k, joint, pull + push)",
}
_COSINE_REPORTED = {"multivit": "joint", "multivit_pull": "joint, pull", "multivit_pullpush": "joint, pull + push"}

#: The paper's tables: row ids in order, as (title, stem, rows).
TABLES = {
    "table1": ("Table 1 (LiDAR segmentation: ViT from random init vs camera-pretrained).",
               ("rangevit", "rangevit_cam", "rangevit_in21k", "rangevit_cam_in21k")),
    "table4": ("Table 4 (LiDAR segmentation: pretrain -> fine-tune vs joint training).",
               ("rangevit_cam", "multivit", "rangevit_cam_in21k", "multivit_in21k")),
    "table6": ("Table 6 (MultiViT.L with no / pull / pull + push contrastive loss).",
               ("multivit", "multivit_pull", "multivit_pullpush", "multivit_in21k", "multivit_pull_in21k",
                "multivit_pullpush_in21k")),
    "table3": ("Table 3 (camera segmentation on the val images' pseudo-labels).",
               ("cameravit", "multivit", "multivit_pull", "multivit_pullpush", "cameravit_in21k", "multivit_in21k",
                "multivit_pull_in21k", "multivit_pullpush_in21k")),
}


def _summary(row: str, results: list, columns, prefix: str = "") -> dict:
    """Mean and 95 % half-width over seeds of each column (value only for one seed)."""
    out = {"method": row_name(row).replace("MultiViT", f"MultiViT{prefix}", 1), "source": "measured",
           "n_seeds": len(results)}
    for c in columns:
        vals = [m.get(c, float("nan")) for _, m in results]
        vals = [v for v in vals if isinstance(v, (int, float)) and math.isfinite(v)]
        if not vals:
            out[c], out[c + "_ci95"] = float("nan"), float("nan")
            continue
        m, h = mean_ci95(vals) if len(vals) > 1 else (vals[0], float("nan"))
        d = 2 if "cos" in c else 1
        out[c], out[c + "_ci95"] = round(m, d), round(h, d)
    return out


def _not_run(row: str, columns, why: str, prefix: str = "") -> dict:
    return {"method": row_name(row).replace("MultiViT", f"MultiViT{prefix}", 1), "source": f"not run: {why}",
            **{c: float("nan") for c in columns}}


def table_rows(name: str, results: dict, has_weights: bool) -> list[dict]:
    """Rows of one paper table: per study row the measured summary (or "not run: needs vit_weights"
    for In21k rows without weights), followed by the paper's row, labelled reported."""
    title, rows = TABLES[name]
    camera = name == "table3"
    columns = ("cam_miou",) if camera else LIDAR_COLUMNS
    prefix = ".C" if camera else ".L"
    reported_map = _CAMERA_REPORTED if camera else _LIDAR_REPORTED
    out = []
    for row in rows:
        if row in results and results[row]:
            out.append(_summary(row, results[row], columns, prefix))
        elif row.endswith("_in21k") and not has_weights:
            out.append(_not_run(row, columns, "needs vit_weights (local ImageNet-21k ViT-S)", prefix))
        else:
            continue
        rep = reported_map.get(row)
        if rep is not None:
            values = (REPORTED_CAMERA[rep],) if camera else REPORTED_LIDAR[rep]
            src = "reported (lukkassen2024, nuScenes val" + (", In21k init)" if "In21k" in rep else ")")
            out.append({"method": rep, "source": src, **dict(zip(columns, values))})
    return out


def write_paper_table(name: str, results: dict, out_dir, caption: str, has_weights: bool) -> tuple[Path, Path]:
    """Write ``<name>.csv`` / ``.md`` (mean ± 95 % interval over seeds; ``n_seeds``)."""
    title, _ = TABLES[name]
    rows = table_rows(name, results, has_weights)
    camera = name == "table3"
    columns = ("cam_miou",) if camera else LIDAR_COLUMNS
    titles = ("camera mIoU",) if camera else LIDAR_TITLES
    return write_table(rows, out_dir, name, ("method", "source"), columns, caption, titles, title,
                       errors={c: c + "_ci95" for c in columns}, extra=("n_seeds",))


def cosine_rows(results: dict) -> list[dict]:
    """Mean cross-modal cosine similarity (Table 5's "Mean" row) of the MultiViT rows, measured
    (mean ± 95 % over seeds) beside the paper's (In21k init, nuScenes mini)."""
    out = []
    for row, rep in _COSINE_REPORTED.items():
        for r in (row, f"{row}_in21k"):
            if r in results and results[r]:
                out.append(_summary(r, results[r], ("mean_cos", "mean_cos_all", "mean_cos_dec", "miou")))
        if row in results:
            out.append({"method": f"MultiViT ({rep})", "source": "reported (lukkassen2024 Tables 5/6, In21k init)",
                        "mean_cos": REPORTED_COSINE_MEAN[rep], "mean_cos_all": float("nan"), "mean_cos_dec": float("nan"),
                        "miou": REPORTED_LIDAR[{"joint": "MultiViT.L (In21k, joint)",
                                                "joint, pull": "MultiViT.L (In21k, joint, pull)",
                                                "joint, pull + push": "MultiViT.L (In21k, joint, pull + push)"}[rep]][-1]})
    return out


def seed_rows(results: dict) -> list[dict]:
    """One row per (row, seed): ``method``, ``seed``, and :data:`SEED_COLUMNS` (NaN where a row has
    no such metric), the table the scoreboard's claims read."""
    out = []
    for row, res in results.items():
        for seed, m in res:
            out.append({"method": row_name(row), "source": "measured", "seed": seed,
                        **{c: round(float(m[c]), 3) if c in m and m[c] != "" else float("nan") for c in SEED_COLUMNS}})
    return out


def write_study_tables(results: dict, out_dir, caption: str, has_weights: bool) -> list[Path]:
    """Every table of the tables notebook: table1/3/4/6, ``cosine`` (Table 5 mean) and
    ``multivit_seeds`` (per seed). Returns the written paths."""
    paths = []
    for name in TABLES:
        paths += write_paper_table(name, results, out_dir, caption, has_weights)
    paths += write_table(cosine_rows(results), out_dir, "cosine", ("method", "source"),
                         ("mean_cos", "mean_cos_all", "mean_cos_dec", "miou"),
                         caption + " Mean over the object classes present in both modalities of cos(mean camera "
                         "feature, mean LiDAR feature) at the ViT encoder output on the val pairs: over correctly "
                         "predicted points and pixels (the paper's; empty when no object is predicted correctly in "
                         "both modalities) and over every labelled one (ours); and at the decoder output, where "
                         "the contrastive loss acts, over every labelled one (ours).",
                         ("mean cosine (correct)", "mean cosine (all labelled)", "decoder cosine (all labelled)",
                          "LiDAR mIoU"),
                         "Table 5 (mean) beside Table 6.", digits=2,
                         errors={"mean_cos": "mean_cos_ci95", "mean_cos_all": "mean_cos_all_ci95",
                                 "mean_cos_dec": "mean_cos_dec_ci95", "miou": "miou_ci95"},
                         extra=("n_seeds",))
    paths += write_table(seed_rows(results), out_dir, "multivit_seeds", ("method", "source", "seed"), SEED_COLUMNS,
                         caption + " One row per training seed (final epoch).",
                         ("LiDAR mIoU", "camera mIoU", "mean cosine (correct)", "mean cosine (all labelled)",
                          "decoder cosine (all labelled)"),
                         "Per seed.", digits=3)
    return paths


def direction_check(out_dir) -> list:
    """The paper's qualitative findings (:mod:`.claims`) judged on ``<out_dir>/multivit_seeds.csv``
    (per-seed differences paired by seed, 95 % t-interval of the difference). Returns the
    scoreboard's results and writes ``direction_check.csv`` / ``.md`` into ``out_dir``."""
    from ...scoreboard import direction_check as check
    from . import claims  # noqa: F401  (registers the claims)

    return check("multivit", out_dir, "multivit_seeds.csv",
                 "lukkassen2024's findings against this run's seeds (paired by seed; 95 % t-interval of the difference).")

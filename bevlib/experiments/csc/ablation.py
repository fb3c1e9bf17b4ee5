"""Table 5 of chen2024 CSC (Sec. 4.4) on the embedded world (``notebooks/csc_ablation.ipynb``): (1) SP (SLidR:
L_sp with SLIC superpixels), (2) + VFM superpixels, (3) + L_pro against the raw 3D prototypes, (4) + MMPB (the full
CSC), each by linear probing and by fine-tuning on 1 / 5 / 10 % of the labels; plus one keyframe's SLIC vs VFM
superpixels and its sweep coloured by superpoint, and an interactive 3D view of the sweep coloured by superpoint,
semantic sign, lidarseg class or the learned features' PCA.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .study import CSCData, CSCStudyParams, backbone_state, pretrain_curves, run_methods, write_tables


@dataclass
class AblationParams(CSCStudyParams):
    """Every knob of notebooks/csc_ablation.ipynb (:class:`.study.CSCStudyParams`); Table 5 has the LP, 1 %, 5 %
    and 10 % columns."""

    settings: tuple = ("lp", "ft1", "ft5", "ft10")
    view_keyframe: int = 0                  # index of the val keyframe in the figure and the 3D view
    view_camera: int = 0                    # camera of the superpixel figure (0 = CAM_FRONT)
    output_name: str = "csc_ablation"

    def __post_init__(self):
        super().__post_init__()
        from ...params import ParameterError
        if isinstance(self.view_camera, bool) or self.view_camera not in range(6):
            raise ParameterError(f"parameter 'view_camera' must be 0..5, got {self.view_camera!r}")
        if isinstance(self.view_keyframe, bool) or not isinstance(self.view_keyframe, int) or self.view_keyframe < 0:
            raise ParameterError(f"parameter 'view_keyframe' must be an integer >= 0, got {self.view_keyframe!r}")


#: Table 5 rows: display name -> method of :data:`.study.METHODS` (rows 1 and 4 are Table 2's SLidR and CSC).
ROWS = {"(1) SP": "SLidR", "(2) + VFM": "+ VFM", "(3) + 3D Pro.": "+ 3D Pro.", "(4) + MMPB": "CSC"}
#: The paper's Table 5 (nuScenes mIoU).
REPORTED = {"(1) SP": {"lp": 38.0, "ft1": 38.2, "ft5": 52.2, "ft10": 58.8},
            "(2) + VFM": {"lp": 44.0, "ft1": 41.1, "ft5": 52.1, "ft10": 60.9},
            "(3) + 3D Pro.": {"lp": 44.0, "ft1": 40.3, "ft5": 53.3, "ft10": 60.5},
            "(4) + MMPB": {"lp": 46.0, "ft1": 47.0, "ft5": 57.0, "ft10": 63.3}}
REF = "paper, nuScenes, MinkUNet"


def run_tables(data: CSCData) -> dict:
    """Pre-train and evaluate every Table 5 row for every seed (finished runs are reused), keyed by the rows'
    display names."""
    res = run_methods(data, tuple(ROWS.values()))
    return {"results": {row: res["results"][m] for row, m in ROWS.items()},
            "pretrain_runs": {row: res["pretrain_runs"][m] for row, m in ROWS.items()}}


def write(results: dict, data: CSCData, out_dir) -> list[Path]:
    """``table5`` (mean ± std, reported beside), ``table5_seeds`` and ``pretrain_curves.png``."""
    p = data.params
    paths = write_tables(results["results"], out_dir, "table5", data.caption(),
                         "Table 5 (ablation, LiDAR semantic segmentation, mIoU %).", p.settings, REPORTED, REF)
    paths.append(pretrain_curves(results["pretrain_runs"], Path(out_dir) / "pretrain_curves.png"))
    return paths


def _rgb(item: dict, cam: int) -> np.ndarray:
    from .pretrain import _MEAN, _STD
    img = item["images"][cam].numpy() * _STD + _MEAN
    return np.clip(img.transpose(1, 2, 0) * 255.0 + 0.5, 0, 255).astype(np.uint8)


def superpixel_figure(data: CSCData, path) -> Path:
    """One val keyframe (``view_keyframe``), camera ``view_camera``: its SLIC and VFM superpixels and its sweep
    coloured by (SLIC) superpoint (:func:`.figures.superpixel_comparison_figure`)."""
    from ...data.world.config import CAMERA_SEMANTIC_CLASSES
    from .figures import superpixel_comparison_figure

    p = data.params
    k, cam = _view_index(data), p.view_camera
    slic, sem = data.csc_items("slic", "val_all")[k], data.csc_items("semantic", "val_all")[k]
    lo_slic = int(slic["superpixels"][cam].min())
    lo_sem = int(sem["superpixels"][cam].min())
    return superpixel_comparison_figure(
        _rgb(slic, cam), (slic["superpixels"][cam] - lo_slic).numpy(), (sem["superpixels"][cam] - lo_sem).numpy(),
        sem["signs"][lo_sem:].numpy(), list(CAMERA_SEMANTIC_CLASSES), slic["points"][:, :2].numpy(),
        slic["superpoint"].numpy(), path,
        title=f"val keyframe {data.val_tokens[k]}, camera {cam}: {int((slic['superpoint'] >= 0).sum())} of "
              f"{len(slic['superpoint'])} points seen by a camera")


def _view_index(data: CSCData) -> int:
    return min(data.params.view_keyframe, len(data.val_tokens) - 1)


def points_view(data: CSCData, results: dict, html_path=None):
    """Interactive 3D view (plotly, dropdown) of the ``view_keyframe`` val sweep coloured by SLIC superpoint, VFM
    semantic sign, lidarseg class and the PCA (first three components as RGB) of the per-point features of the
    SLidR and the CSC backbones (first seed). Written to ``html_path`` when given. Returns the plotly Figure."""
    import torch

    from .figures import feature_pca_rgb, points_view as view, write_points_view
    from .lidarseg import SegModel

    p = data.params
    k = _view_index(data)
    slic, sem = data.csc_items("slic", "val_all")[k], data.csc_items("semantic", "val_all")[k]
    train_seg, _ = data.seg_items()
    labels = train_seg.subset([data.val_tokens[k]])[0]["labels"].numpy()
    sign = np.where(sem["superpoint"].numpy() >= 0, sem["signs"].numpy()[sem["superpoint"].numpy().clip(0)], -1)
    colourings = {"superpoint (SLIC)": slic["superpoint"].numpy(), "semantic sign (VFM)": sign,
                  "lidarseg class": np.where(labels > 0, labels, -1)}
    for row in ("(1) SP", "(4) + MMPB"):
        runs = results["pretrain_runs"].get(row)
        if not runs:
            continue
        seg = SegModel(p.minkunet_config(), freeze_backbone=True)
        seg.load_backbone(backbone_state(runs[0]))
        with torch.no_grad():
            feats = seg.backbone.forward_points([slic["points"]]).numpy()
        colourings[f"feature PCA, {row}"] = feature_pca_rgb(feats)
    fig = view(slic["points"][:, :3].numpy(), colourings, title=f"val keyframe {data.val_tokens[k]}")
    if html_path is not None:
        write_points_view(fig, html_path)
    return fig


def direction_check(out_dir) -> list:
    """The paper's Table 5 findings (:mod:`.claims`) on this run's ``table5_seeds.csv`` (paired by seed);
    writes ``direction_check.csv`` / ``.md``."""
    from ...scoreboard import direction_check as check
    from . import claims  # noqa: F401  (registers the claims)

    return check("csc", out_dir, "table5_seeds.csv",
                 "chen2024 CSC's Table 5 findings against this run's seeds (paired by seed; 95 % t-interval).")

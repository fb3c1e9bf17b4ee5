"""CSC / SLidR 3D pre-training (chen2024-csc.md, Secs. 3-4; issue 14) on bevlib's shared trainer.

:mod:`.pretrain`: keyframe items with superpixels (SLIC or the embedded world's VFM stand-in) and
superpoints (:class:`CSCItems`), the model (MinkUNet + 3D head, frozen ViT + 2D head, optional MMPB;
:class:`CSCModel`), the task with loss terms ``sp`` (Eq. 5) and ``pro`` (Eq. 4, from epoch lambda,
Eq. 6; :class:`CSCPretrainTask`) and the Table 5 rows (:func:`table5_config`). :mod:`.lidarseg`: Table 2's
evaluation protocol on lidarseg (linear probing with a frozen backbone, on cached features by
:class:`FeatureProbeTask`; fine-tuning on 1 / 5 / 10 / 25 / 100 % of the labelled sweeps; :class:`LidarSegTask`,
:func:`label_subset`, :func:`table2_tasks`). The notebooks share :mod:`.study` (parameters, the frozen 2D encoder,
one pre-training run, one initialisation's evaluation, tables): notebooks/csc_table2.ipynb (:mod:`.table2`) and
notebooks/csc_ablation.ipynb (Table 5, figures and the 3D view; :mod:`.ablation`, :mod:`.figures`); importing
:mod:`.claims` registers their findings with the scoreboard. :mod:`.real_keyframe` writes the real keyframe's
superpoint statistics. The losses live in :mod:`bevlib.ssl.csc`, the backbone in :mod:`bevlib.models.minkunet`.
"""
from __future__ import annotations

import importlib

from . import claims  # noqa: F401  (registers the scoreboard claims; imports nothing heavy)

# Resolved on first use, so importing the package imports nothing heavy.
_EXPORTS = {**{n: ".pretrain" for n in ("CSCItems", "collate_csc", "CSCConfig", "CSCModel", "CSCPretrainTask",
                                     "table5_config", "TABLE5_ROWS", "state_dict_digest")},
            **{n: ".lidarseg" for n in ("LidarSegItems", "collate_points", "label_subset", "SegModel", "LidarSegTask",
                                        "FeatureProbeTask", "FrozenFeatureItems", "table2_tasks")},
            **{n: ".study" for n in ("CSCStudyParams", "CSCData", "prepare", "pretrain_run", "evaluate_init",
                                     "run_methods", "METHODS", "SETTINGS")},
            **{n: ".figures" for n in ("superpixel_comparison_figure", "feature_pca_rgb", "points_view")}}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""CSC / SLidR 3D pre-training (chen2024-csc.md, Secs. 3-4; issue 14) on bevlib's shared trainer.

:mod:`.pretrain`: keyframe items with superpixels (SLIC or the embedded world's VFM stand-in) and
superpoints (:class:`CSCItems`), the model (MinkUNet + 3D head, frozen ViT + 2D head, optional MMPB;
:class:`CSCModel`), the task with loss terms ``sp`` (Eq. 5) and ``pro`` (Eq. 4, from epoch lambda,
Eq. 6; :class:`CSCPretrainTask`) and the Table 5 rows (:func:`table5_config`). :mod:`.lidarseg`: Table 2's
evaluation protocol on lidarseg (linear probing with a frozen backbone, fine-tuning on 1 / 5 / 10 / 25 /
100 % of the labelled sweeps; :class:`LidarSegTask`, :func:`label_subset`, :func:`table2_tasks`).
No notebooks or scoreboard claims yet. The losses live in
:mod:`bevlib.ssl.csc`, the backbone in :mod:`bevlib.models.minkunet`.
"""
from __future__ import annotations

import importlib

# Resolved on first use, so importing the package imports nothing heavy.
_EXPORTS = {**{n: ".pretrain" for n in ("CSCItems", "collate_csc", "CSCConfig", "CSCModel", "CSCPretrainTask",
                                     "table5_config", "TABLE5_ROWS", "state_dict_digest")},
            **{n: ".lidarseg" for n in ("LidarSegItems", "collate_points", "label_subset", "SegModel", "LidarSegTask",
                                        "table2_tasks")}}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

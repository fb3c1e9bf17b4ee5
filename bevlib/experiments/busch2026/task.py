"""busch2026 as a task of the shared trainer: BEVFormer, Eq. 1, Alg. 1, ranged IoU."""
from __future__ import annotations

import torch

from ...bev import BEVGrid
from ...classes import NUM_BEV
from ...data.dataset import KeyframeStore
from ...train import Task, unwrap


def model_factory(cfg: dict):
    """The BEVFormer-style network of a run's model config (``Experiment.model_cfg`` / the
    ``model`` entry of a run's ``config.json``): the registry's ``"bevformer"``."""
    from ...models.registry import build_model
    return build_model("bevformer", cfg)


class Busch2026Task(Task):
    """busch2026's runs as one task for the shared trainer.

    Modes: ``supervised`` (BEV cross-entropy against BEV ground truth: the baseline and the
    fine-tuning phase) and ``pretrain`` (Eq. 1 on rendered predictions against camera
    pseudo-labels, plus Alg. 1's temporal term when ``temporal``). Evaluation: ranged IoU / mIoU
    (Table I columns, percent) over the validation keyframes.
    """

    headline_metrics = ("miou20", "miou40", "miou60")

    def __init__(self, model_cfg: dict, store: KeyframeStore, train_tokens, val_tokens, grid: BEVGrid,
                 data_id: dict | None = None, mode: str = "supervised", temporal: bool = False,
                 use_history: bool = True, bev_class_weights: tuple | None = None, render_backend: str = "analytic",
                 backbone_lr_mult: float = 1.0):
        if mode not in ("supervised", "pretrain"):
            raise ValueError(f"Busch2026Task mode must be 'supervised' or 'pretrain', got {mode!r}")
        if temporal and mode != "pretrain":
            raise ValueError("Busch2026Task temporal applies to mode='pretrain' only")
        self.model_cfg, self.store, self.grid, self.data_id = dict(model_cfg), store, grid, dict(data_id or {})
        self.train_tokens, self.val_tokens = list(train_tokens), list(val_tokens)
        self.mode, self.temporal, self.use_history = mode, temporal, use_history
        self.bev_class_weights = None if bev_class_weights is None else tuple(bev_class_weights)
        self.render_backend, self.backbone_lr_mult = render_backend, float(backbone_lr_mult)

    def config(self) -> dict:
        from ...io import config_hash
        return {"model_name": "bevformer", "model": self.model_cfg, "grid": self.grid.as_dict(), "data": self.data_id,
                "n_train": len(self.train_tokens), "n_val": len(self.val_tokens),
                "train_tokens_hash": config_hash(self.train_tokens), "mode": self.mode, "temporal": self.temporal,
                "use_history": self.use_history, "bev_class_weights": self.bev_class_weights,
                "render_backend": self.render_backend,
                **({"backbone_lr_mult": self.backbone_lr_mult} if self.backbone_lr_mult != 1.0 else {})}

    def build_model(self):
        return model_factory(self.model_cfg)

    def param_groups(self, model):
        """BEVFormer's optimiser groups: the image backbone at ``backbone_lr_mult`` x lr."""
        if self.backbone_lr_mult == 1.0:
            return model.parameters()
        backbone = {id(q) for q in model.backbone.parameters()}
        return [{"params": [q for q in model.parameters() if id(q) in backbone], "lr_mult": self.backbone_lr_mult},
                {"params": [q for q in model.parameters() if id(q) not in backbone]}]

    def train_dataset(self):
        from ...data.dataset import KeyframeDataset
        return KeyframeDataset(self.store, self.train_tokens, with_prev=self.use_history or self.temporal)

    def val_dataset(self):
        from ...data.dataset import KeyframeDataset
        return KeyframeDataset(self.store, self.val_tokens, with_prev=self.use_history)

    def loss(self, model, batch: dict) -> dict:
        """``{"loss": CE}`` (supervised: BEV CE; pretrain: Eq. 1) or, with the temporal loss,
        ``{"loss_t": Eq. 1 at t, "loss_prev": Alg. 1's term at t-1}``."""
        from ...losses import bev_ce, busch2026_alg1_temporal_loss, busch2026_eq1_reprojection_ce
        from ...models.bevformer import forward_keyframes
        from ...render import render_bev

        out = forward_keyframes(model, batch, self.use_history)
        if self.mode == "supervised":
            w = None if self.bev_class_weights is None else torch.tensor(
                self.bev_class_weights, dtype=torch.float32, device=out["logits"].device)
            return {"loss": bev_ce(out["logits"], batch["bev_gt"], w)}
        hw = tuple(batch["pseudo"].shape[-2:])
        if self.temporal:
            l_t, l_prev = busch2026_alg1_temporal_loss(
                unwrap(model).head, out["bev"], batch["curr_T_prev"], batch["K"], batch["ego_T_cam"], hw, self.grid,
                batch["pseudo"], batch["prev_pseudo"], batch["has_prev"], self.render_backend, logits_t=out["logits"])
            return {"loss_t": l_t, "loss_prev": l_prev}
        pred_cp, _ = render_bev(out["logits"], batch["K"], batch["ego_T_cam"], hw, self.grid, self.render_backend)
        return {"loss": busch2026_eq1_reprojection_ce(pred_cp, batch["pseudo"])}

    @torch.no_grad()
    def evaluate(self, model, batches, reduce) -> dict:
        """Ranged IoU / mIoU (busch2026 Table I columns) in percent over the validation keyframes."""
        from ...metrics import RangedBEVMetrics
        from ...models.bevformer import forward_keyframes

        metrics = RangedBEVMetrics(self.grid)
        for batch in batches:
            logits = forward_keyframes(model, batch, self.use_history)["logits"]
            metrics.update(logits[:, :NUM_BEV].argmax(1), batch["bev_gt"])
        metrics.load_counts(reduce(metrics.counts()))
        return metrics.compute()

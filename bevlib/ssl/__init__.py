"""Self-supervised pre-training pieces for DINO, CrIBo and S3PT (wozniak2025 Sec. 3).

sinkhorn: log-space Sinkhorn-Knopp; vmf: vMF normaliser and Eq. 2 logits; dino: head, loss, schedules,
EMA; cribo: joint-view spatial clustering (with S3PT's depth term), object pooling, object queue.
bev_losses: the combined-datasets paper's BEV InfoNCE between camera and LiDAR BEV cells (Eq. 3) and the
image MAE loss (Eq. 4). csc: chen2024 CSC's superpixel-superpoint contrast (Eq. 5), semantic prototypes
(Eq. 1), the multi-modal prototype blending MMPB (Eqs. 2-3), the prototype contrast (Eq. 4) and Eq. 6.
"""
from .bev_losses import bev_infonce, mae_loss, mask_patches, patchify, random_patch_mask, sample_bev_cells
from .csc import MMPB, csc_loss, prototype_contrast, prototype_loss_active, semantic_prototypes, superpixel_contrast
from .cribo import Clustering, ObjectQueue, joint_view_clustering, object_features, positional_cost
from .dino import DINOHead, DINOLoss, cancel_last_layer_grads, cosine_schedule, ema_update
from .sinkhorn import sinkhorn_knopp
from .vmf import log_bessel_iv, log_vmf_normalizer, vmf_logits

__all__ = ["Clustering", "ObjectQueue", "joint_view_clustering", "object_features", "positional_cost",
           "DINOHead", "DINOLoss", "cancel_last_layer_grads", "cosine_schedule", "ema_update",
           "sinkhorn_knopp", "log_bessel_iv", "log_vmf_normalizer", "vmf_logits",
           "bev_infonce", "mae_loss", "mask_patches", "patchify", "random_patch_mask", "sample_bev_cells",
           "MMPB", "csc_loss", "prototype_contrast", "prototype_loss_active", "semantic_prototypes",
           "superpixel_contrast"]

"""Self-supervised pre-training pieces for DINO, CrIBo and S3PT (wozniak2025 Sec. 3).

sinkhorn: log-space Sinkhorn-Knopp; vmf: vMF normaliser and Eq. 2 logits; dino: head, loss, schedules,
EMA; cribo: joint-view spatial clustering (with S3PT's depth term), object pooling, object queue.
"""
from .cribo import Clustering, ObjectQueue, joint_view_clustering, object_features, positional_cost
from .dino import DINOHead, DINOLoss, cancel_last_layer_grads, cosine_schedule, ema_update
from .sinkhorn import sinkhorn_knopp
from .vmf import log_bessel_iv, log_vmf_normalizer, vmf_logits

__all__ = ["Clustering", "ObjectQueue", "joint_view_clustering", "object_features", "positional_cost",
           "DINOHead", "DINOLoss", "cancel_last_layer_grads", "cosine_schedule", "ema_update",
           "sinkhorn_knopp", "log_bessel_iv", "log_vmf_normalizer", "vmf_logits"]

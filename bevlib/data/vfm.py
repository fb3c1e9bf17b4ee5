"""Semantic maps from a vision foundation model: the VFM behind CSC's semantic superpixels (chen2024 Sec. 3.2).

CSC labels every pixel with a category-sensitive segmenter (150 ADE20K classes in the paper; the authors' code
derives its superpixels from a DINOv2 segmentation) and then cuts the class regions into superpixels, each
carrying its class as the *semantic sign* (:func:`bevlib.data.superpixels.semantic_superpixels`). Here the
segmenter is ``transformers``' Mask2Former (:class:`VFMSegmenter`), loaded from a local weights directory
(nothing is downloaded) or built from a config with random weights (tests, CPU). On the embedded world the
world's exact camera semantics stand in for it (:func:`bevlib.data.world.load_camera_semantics`).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch

__all__ = ["VFMSegmenter", "tiny_mask2former_config"]


def tiny_mask2former_config(num_labels: int = 150):
    """A CPU-sized ``Mask2FormerConfig`` (Swin backbone of width 16, one block per stage, 10 queries) with
    ``num_labels`` classes: for tests and for running the VFM path without weights (random, so its maps are
    meaningless)."""
    from transformers import Mask2FormerConfig, SwinConfig

    backbone = SwinConfig(embed_dim=16, depths=[1, 1, 1, 1], num_heads=[1, 1, 1, 1], window_size=4, image_size=64,
                          out_features=["stage1", "stage2", "stage3", "stage4"])
    return Mask2FormerConfig(backbone_config=backbone, num_labels=num_labels, hidden_dim=32, mask_feature_size=32,
                             feature_size=32, num_queries=10, encoder_layers=1, decoder_layers=2, dim_feedforward=64,
                             num_attention_heads=2, encoder_feedforward_dim=64)


def _processor(weights: str | None):
    try:    # the PIL processor runs without torchvision (which does not import here)
        from transformers import Mask2FormerImageProcessorPil as Processor
    except ImportError:    # older transformers
        from transformers import Mask2FormerImageProcessor as Processor
    if weights is not None and (Path(weights) / "preprocessor_config.json").is_file():
        return Processor.from_pretrained(weights, local_files_only=True, do_resize=False)
    return Processor(do_resize=False)


class VFMSegmenter:
    """Per-pixel semantic classes of camera images by Mask2Former (``transformers``), frozen, in eval mode.

    Args:
        weights: local directory of a ``Mask2FormerForUniversalSegmentation`` (``from_pretrained``,
            ``local_files_only``), e.g. the ADE20K semantic model (150 classes); or None with ``config``.
        config: a ``Mask2FormerConfig`` for a randomly initialised model (torch's current RNG), when
            ``weights`` is None (default :func:`tiny_mask2former_config`).
        device: torch device of the model.
    Attributes: ``n_classes`` (int, the model's ``num_labels``: T of Eq. 1), ``identity`` (str: the weights
        path, or a digest of the config and the random weights, for a run's hash).
    Raises: FileNotFoundError naming ``weights`` when it is not a directory; ValueError when both or neither
        of weights / config would be needed and are inconsistent.
    """

    def __init__(self, weights: str | None = None, config=None, device: str = "cpu"):
        from transformers import Mask2FormerForUniversalSegmentation

        if weights is not None and config is not None:
            raise ValueError("give either weights or config, not both")
        if weights is not None:
            if not Path(weights).is_dir():
                raise FileNotFoundError(f"VFM weights directory {weights} does not exist")
            self.model = Mask2FormerForUniversalSegmentation.from_pretrained(weights, local_files_only=True)
            self.identity = f"weights:{Path(weights).resolve()}"
        else:
            config = tiny_mask2former_config() if config is None else config
            self.model = Mask2FormerForUniversalSegmentation(config)
            h = hashlib.sha256(json.dumps(config.to_dict(), sort_keys=True, default=str).encode())
            for k, v in sorted(self.model.state_dict().items()):
                h.update(k.encode())
                h.update(v.detach().contiguous().view(torch.uint8).numpy().tobytes())
            self.identity = f"random-init:{h.hexdigest()[:16]}"
        self.model.to(device).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.device = torch.device(device)
        self.processor = _processor(weights)
        self.n_classes = int(self.model.config.num_labels)

    @torch.no_grad()
    def __call__(self, images) -> np.ndarray:
        """(N, H, W, 3) uint8 RGB images (or a list of (H, W, 3)) -> (N, H, W) int64 semantic class in
        0..n_classes-1 per pixel: Mask2Former's semantic inference (per query, the class softmax without the
        no-object class times the mask sigmoid, summed over queries, upsampled bilinearly to (H, W), argmax;
        ``post_process_semantic_segmentation``). Raises: ValueError naming ``images`` for another shape or dtype."""
        arr = [np.asarray(im) for im in images]
        if not arr or any(a.ndim != 3 or a.shape[2] != 3 or a.dtype != np.uint8 for a in arr):
            raise ValueError("images must be a non-empty batch of (H, W, 3) uint8 RGB images")
        if len({a.shape for a in arr}) != 1:
            raise ValueError(f"images must share one size, got {sorted({a.shape for a in arr})}")
        H, W = arr[0].shape[:2]
        inp = self.processor(images=arr, return_tensors="pt")
        out = self.model(pixel_values=inp["pixel_values"].to(self.device))
        seg = self.processor.post_process_semantic_segmentation(out, target_sizes=[(H, W)] * len(arr))
        return np.stack([s.cpu().numpy().astype(np.int64) for s in seg])

"""DINO multi-crop of one camera image and its depth map, keeping each crop's box so that the global
crops' token positions and per-token depth can be computed in original-image coordinates
(Caron et al. 2021 Sec. 3.1 "multi-crop"; wozniak2025 Tables 5-7: 2 global crops, scale [0.25, 1];
DINO: 10 local crops, scale [0.05, 0.25]; CrIBo's positional cost and S3PT's depth cost, Sec. 3.2-3.3).

Every random draw comes from NumPy's global RNG, which the trainer seeds per item (seed, epoch, index).
Boxes are ``(x0, y0, x1, y1)`` float pixels of the original image (x right, y down, pixel ``j`` covers
``[j, j + 1)``); a crop is ``image[y0:y1, x0:x1]`` resized to the output size, then mirrored left-right
when ``flip``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from .augment import dino_photometric

__all__ = ["MultiCropConfig", "random_resized_crop_box", "crop_image", "token_positions", "token_depth",
           "multicrop"]


def _hw(size) -> tuple[int, int]:
    if isinstance(size, (int, np.integer)):
        return int(size), int(size)
    h, w = (int(s) for s in size)
    return h, w


@dataclass(frozen=True)
class MultiCropConfig:
    """Multi-crop settings.

    global_size, local_size: output size, an int (square) or (h, w) pixels (paper 224 / 96; tests 32 / 16).
    n_global: global crops (2). n_local: local crops (DINO 10; CrIBo/S3PT 0, Tables 6-7 list none).
    global_scale, local_scale: (min, max) share of the image area of a crop ([0.25, 1] and [0.05, 0.25]).
    ratio: (min, max) crop aspect ratio w/h in pixels (torchvision's default (3/4, 4/3)).
    flip_p: horizontal flip probability (0.5). colour_jitter: strength s of a brightness / contrast /
    saturation jitter by factors in [1 - s, 1 + s], applied with probability 0.8 (0: off, the default).
    dino_augment: DINO's full photometric pipeline per crop instead (:mod:`.augment`: colour jitter,
    grey-scale, blur, solarisation on the second global crop; False: off, the default).
    Raises: ValueError for bad sizes, scales or probabilities.
    """
    global_size: int | tuple = 224
    local_size: int | tuple = 96
    n_global: int = 2
    n_local: int = 10
    global_scale: tuple = (0.25, 1.0)
    local_scale: tuple = (0.05, 0.25)
    ratio: tuple = (3 / 4, 4 / 3)
    flip_p: float = 0.5
    colour_jitter: float = 0.0
    dino_augment: bool = False

    def __post_init__(self):
        if min(_hw(self.global_size) + _hw(self.local_size)) < 1:
            raise ValueError("global_size and local_size must be >= 1")
        if self.n_global < 1 or self.n_local < 0:
            raise ValueError(f"n_global must be >= 1 and n_local >= 0, got {self.n_global}, {self.n_local}")
        for name in ("global_scale", "local_scale", "ratio"):
            lo, hi = getattr(self, name)
            if not 0 < lo <= hi or (name != "ratio" and hi > 1):
                raise ValueError(f"{name} must be (lo, hi) with 0 < lo <= hi{' <= 1' if name != 'ratio' else ''}, "
                                 f"got {getattr(self, name)}")
        if not 0 <= self.flip_p <= 1 or not 0 <= self.colour_jitter < 1:
            raise ValueError("flip_p must be in [0, 1] and colour_jitter in [0, 1)")


def random_resized_crop_box(height: int, width: int, scale: tuple, ratio: tuple = (3 / 4, 4 / 3)) -> np.ndarray:
    """torchvision's ``RandomResizedCrop.get_params`` with NumPy's global RNG: up to 10 draws of an area
    share in ``scale`` and a log-uniform aspect ratio in ``ratio``; the first crop that fits is placed
    uniformly; otherwise the central crop of the clamped ratio.

    Returns: (4,) float64 integer-valued box (x0, y0, x1, y1) in pixels of the (height, width) image.
    Raises: ValueError for an empty image.
    """
    if height < 1 or width < 1:
        raise ValueError(f"image must be non-empty, got height={height}, width={width}")
    area = height * width
    log_r = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * np.random.uniform(scale[0], scale[1])
        r = math.exp(np.random.uniform(*log_r))
        w = int(round(math.sqrt(target * r)))
        h = int(round(math.sqrt(target / r)))
        if 0 < w <= width and 0 < h <= height:
            y0 = int(np.random.randint(0, height - h + 1))
            x0 = int(np.random.randint(0, width - w + 1))
            return np.array([x0, y0, x0 + w, y0 + h], dtype=np.float64)
    in_ratio = width / height
    if in_ratio < ratio[0]:
        w, h = width, int(round(width / ratio[0]))
    elif in_ratio > ratio[1]:
        h, w = height, int(round(height * ratio[1]))
    else:
        w, h = width, height
    y0, x0 = (height - h) // 2, (width - w) // 2
    return np.array([x0, y0, x0 + w, y0 + h], dtype=np.float64)


def crop_image(image: np.ndarray, box: np.ndarray, out_hw, flip: bool) -> np.ndarray:
    """Cut ``box`` (integer pixels) out of ``image`` (H, W, C) or (H, W), resize to ``out_hw`` (bicubic,
    as DINO's RandomResizedCrop) and mirror left-right when ``flip``. Returns the same dtype."""
    x0, y0, x1, y1 = (int(v) for v in box)
    h, w = _hw(out_hw)
    patch = np.ascontiguousarray(image[y0:y1, x0:x1])
    out = cv2.resize(patch, (w, h), interpolation=cv2.INTER_CUBIC)
    return np.ascontiguousarray(out[:, ::-1]) if flip else out


def _token_grid(box, out_hw, patch: int, flip: bool):
    """Per token (row-major over the (h/patch, w/patch) grid): footprint edges in original pixels."""
    h, w = _hw(out_hw)
    if h % patch or w % patch:
        raise ValueError(f"crop size {(h, w)} must be a multiple of the patch size {patch}")
    gh, gw = h // patch, w // patch
    x0, y0, x1, y1 = (float(v) for v in box)
    sx, sy = (x1 - x0) / w, (y1 - y0) / h
    cols = np.arange(gw, dtype=np.float64)
    # output column c of a flipped crop shows crop columns [w - (c+1) p, w - c p)
    u_lo = (w - (cols + 1) * patch) if flip else cols * patch
    xa = np.tile(x0 + u_lo * sx, gh)
    xb = xa + patch * sx
    rows = np.arange(gh, dtype=np.float64)
    ya = np.repeat(y0 + rows * patch * sy, gw)
    yb = ya + patch * sy
    return xa, ya, xb, yb


def token_positions(box: np.ndarray, out_hw, patch: int, flip: bool) -> np.ndarray:
    """Centres of a crop's ViT tokens in original-image pixels (CrIBo's positional cost).

    Args: box (4,) crop box (x0, y0, x1, y1); out_hw: crop output size; patch: ViT patch size (divides
        out_hw); flip: the crop was mirrored.
    Returns: (P, 2) float32 (x, y), tokens row-major over the (h/patch, w/patch) grid (the ViT's order).
    Raises: ValueError if patch does not divide out_hw.
    """
    xa, ya, xb, yb = _token_grid(box, out_hw, patch, flip)
    return np.stack([(xa + xb) / 2, (ya + yb) / 2], axis=1).astype(np.float32)


def token_depth(depth: np.ndarray, box: np.ndarray, out_hw, patch: int, flip: bool) -> np.ndarray:
    """Median of the valid depth pixels (finite, > 0) under each token's footprint in the original image
    (S3PT Sec. 3.3: the depth d_i of token i).

    Args: depth (H, W) float metres (0 or non-finite = none); box, out_hw, patch, flip as
        :func:`token_positions`. A footprint covers the original pixels whose index lies in
        [floor(edge_lo), ceil(edge_hi)), so every token sees at least one pixel.
    Returns: (P,) float32 metres, NaN where the footprint holds no valid depth.
    Raises: ValueError for a depth map that is not 2-D.
    """
    if depth.ndim != 2:
        raise ValueError(f"depth must be (H, W), got {depth.shape}")
    xa, ya, xb, yb = _token_grid(box, out_hw, patch, flip)
    out = np.full(len(xa), np.nan, dtype=np.float32)
    for i in range(len(xa)):
        c0, c1 = int(math.floor(xa[i])), max(int(math.ceil(xb[i])), int(math.floor(xa[i])) + 1)
        r0, r1 = int(math.floor(ya[i])), max(int(math.ceil(yb[i])), int(math.floor(ya[i])) + 1)
        d = depth[r0:r1, c0:c1]
        d = d[np.isfinite(d) & (d > 0)]
        if d.size:
            out[i] = np.median(d)
    return out


def _jitter(img: np.ndarray, s: float) -> np.ndarray:
    if s <= 0 or np.random.uniform() >= 0.8:
        return img
    x = img.astype(np.float32)
    b, c, sat = (np.random.uniform(1 - s, 1 + s) for _ in range(3))
    x = x * b
    x = (x - x.mean()) * c + x.mean()
    grey = x @ np.array([0.299, 0.587, 0.114], np.float32)
    x = (x - grey[..., None]) * sat + grey[..., None]
    return np.clip(x, 0, 255).astype(np.uint8)


def multicrop(image: np.ndarray, depth: np.ndarray | None, cfg: MultiCropConfig, patch: int) -> dict:
    """All crops of one image, from NumPy's global RNG.

    Args:
        image: (H, W, 3) uint8 RGB camera image.
        depth: (H, W) float metres along the optical axis (0 = none) at the image's size, or None.
        cfg: :class:`MultiCropConfig`. patch: ViT patch size (must divide the global crop size).
    Returns: dict of NumPy arrays:
        ``global`` (n_global, Gh, Gw, 3) uint8, ``local`` (n_local, Lh, Lw, 3) uint8,
        ``global_boxes`` / ``local_boxes`` (n, 4) float64 original pixels, ``global_flip`` /
        ``local_flip`` (n,) bool, ``positions`` (n_global, P, 2) float32 token centres (x, y) in original
        pixels, ``token_depth`` (n_global, P) float32 metres, NaN where no valid depth (only with depth).
    Raises: ValueError for a non-(H, W, 3) image, a depth map of another size, or a bad patch size.
    """
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be (H, W, 3), got {image.shape}")
    if depth is not None and depth.shape != image.shape[:2]:
        raise ValueError(f"depth must be {image.shape[:2]} like the image, got {depth.shape}")
    if patch < 1:
        raise ValueError(f"patch must be >= 1, got {patch}")
    height, width = image.shape[:2]
    out: dict = {}
    for kind, n, scale, size in (("global", cfg.n_global, cfg.global_scale, cfg.global_size),
                                 ("local", cfg.n_local, cfg.local_scale, cfg.local_size)):
        hw = _hw(size)
        crops, boxes, flips = [], [], []
        for k in range(n):
            box = random_resized_crop_box(height, width, scale, cfg.ratio)
            flip = bool(np.random.uniform() < cfg.flip_p)
            crop = crop_image(image, box, hw, flip)
            if cfg.dino_augment:
                crop = dino_photometric(crop, "local" if kind == "local" else ("global1" if k == 0 else "global2"),
                                        min(hw))
            crops.append(_jitter(crop, cfg.colour_jitter))
            boxes.append(box)
            flips.append(flip)
        out[kind] = np.stack(crops) if n else np.zeros((0, *hw, 3), np.uint8)
        out[f"{kind}_boxes"] = np.stack(boxes) if n else np.zeros((0, 4))
        out[f"{kind}_flip"] = np.array(flips, dtype=bool)
    ghw = _hw(cfg.global_size)
    out["positions"] = np.stack([token_positions(b, ghw, patch, f)
                                 for b, f in zip(out["global_boxes"], out["global_flip"])])
    if depth is not None:
        out["token_depth"] = np.stack([token_depth(depth, b, ghw, patch, f)
                                       for b, f in zip(out["global_boxes"], out["global_flip"])])
    return out

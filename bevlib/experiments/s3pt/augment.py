"""DINO's photometric augmentations of one crop (Caron et al. 2021, appendix / ``DataAugmentationDINO``;
wozniak2025 keeps DINO's pipeline for DINO, CrIBo and S3PT), on uint8 RGB arrays with NumPy's global RNG
(which the trainer seeds per item) and OpenCV, since torchvision does not import here.

Per crop, after the random resized crop and flip of :mod:`.multicrop`:

* colour jitter with probability 0.8: brightness 0.4, contrast 0.4, saturation 0.2, hue 0.1, in a random
  order (torchvision's ``ColorJitter``);
* grey-scale with probability 0.2;
* Gaussian blur, sigma uniform in [0.1, 2.0] pixels at 224 px (scaled by ``size / 224`` for smaller
  crops): probability 1.0 for the first global crop, 0.1 for the second, 0.5 for local crops;
* solarisation (pixels >= 128 inverted) with probability 0.2, second global crop only.
"""
from __future__ import annotations

import cv2
import numpy as np

__all__ = ["DINO_JITTER", "adjust_brightness", "adjust_contrast", "adjust_saturation", "adjust_hue", "grayscale",
           "gaussian_blur", "solarize", "colour_jitter", "dino_photometric", "BLUR_P", "SOLARIZE_P"]

#: ColorJitter strengths (brightness, contrast, saturation, hue) and its probability.
DINO_JITTER = (0.4, 0.4, 0.2, 0.1)
JITTER_P, GRAY_P = 0.8, 0.2
#: Blur / solarisation probabilities per crop kind.
BLUR_P = {"global1": 1.0, "global2": 0.1, "local": 0.5}
SOLARIZE_P = {"global1": 0.0, "global2": 0.2, "local": 0.0}
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)   # ITU-R 601-2, as PIL's convert("L")


def _u8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def grayscale(img: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> the same shape, every channel the ITU-R 601-2 luma."""
    g = img.astype(np.float32) @ _LUMA
    return np.repeat(_u8(g)[..., None], 3, axis=2)


def adjust_brightness(img: np.ndarray, f: float) -> np.ndarray:
    """Scale every channel by ``f`` (torchvision: blend with black)."""
    return _u8(img.astype(np.float32) * f)


def adjust_contrast(img: np.ndarray, f: float) -> np.ndarray:
    """Blend with the mean grey level of the image: ``mean + f (x - mean)``."""
    m = float((img.astype(np.float32) @ _LUMA).mean())
    return _u8(m + f * (img.astype(np.float32) - m))


def adjust_saturation(img: np.ndarray, f: float) -> np.ndarray:
    """Blend with the image's grey-scale version: ``grey + f (x - grey)``."""
    g = (img.astype(np.float32) @ _LUMA)[..., None]
    return _u8(g + f * (img.astype(np.float32) - g))


def adjust_hue(img: np.ndarray, h: float) -> np.ndarray:
    """Rotate the hue by ``h`` of a full turn (h in [-0.5, 0.5]) in HSV (OpenCV's 0..180 hue scale)."""
    hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)
    hsv[..., 0] = ((hsv[..., 0].astype(np.int32) + int(round(h * 180))) % 180).astype(np.uint8)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)


def gaussian_blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur with standard deviation ``sigma`` pixels (kernel covering +- 3 sigma)."""
    k = max(3, 2 * int(np.ceil(3 * sigma)) + 1)
    return cv2.GaussianBlur(img, (k, k), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT_101)


def solarize(img: np.ndarray, threshold: int = 128) -> np.ndarray:
    """Invert every value >= ``threshold``."""
    return np.where(img >= threshold, 255 - img, img).astype(np.uint8)


def colour_jitter(img: np.ndarray, strength=DINO_JITTER) -> np.ndarray:
    """torchvision's ColorJitter: factors drawn uniformly in [1 - s, 1 + s] (hue in [-s, s]), the four
    adjustments applied in a random order."""
    b, c, s, h = strength
    ops = [lambda x: adjust_brightness(x, np.random.uniform(1 - b, 1 + b)),
           lambda x: adjust_contrast(x, np.random.uniform(1 - c, 1 + c)),
           lambda x: adjust_saturation(x, np.random.uniform(1 - s, 1 + s)),
           lambda x: adjust_hue(x, np.random.uniform(-h, h))]
    for i in np.random.permutation(4):
        img = ops[i](img)
    return img


def dino_photometric(img: np.ndarray, kind: str, size: int) -> np.ndarray:
    """DINO's photometric pipeline for one crop.

    Args:
        img: (H, W, 3) uint8 RGB crop (already cropped, resized and flipped).
        kind: "global1", "global2" or "local" (which blur / solarisation probabilities apply).
        size: the crop's side in pixels; the blur's sigma range scales by ``size / 224``.
    Returns: (H, W, 3) uint8.
    Raises: ValueError for another ``kind`` or a non-(H, W, 3) uint8 image.
    """
    if kind not in BLUR_P:
        raise ValueError(f"kind must be one of {tuple(BLUR_P)}, got {kind!r}")
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"img must be (H, W, 3) uint8, got {img.shape} {img.dtype}")
    if np.random.uniform() < JITTER_P:
        img = colour_jitter(img)
    if np.random.uniform() < GRAY_P:
        img = grayscale(img)
    if np.random.uniform() < BLUR_P[kind]:
        img = gaussian_blur(img, np.random.uniform(0.1, 2.0) * size / 224)
    if np.random.uniform() < SOLARIZE_P[kind]:
        img = solarize(img)
    return img

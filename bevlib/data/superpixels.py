"""Superpixels for 2D-3D contrastive distillation (SLidR, Sautier et al. CVPR 2022; chen2024 CSC).

Two sources of the 2D masks ``S_2D`` that group pixel and point features (chen2024 Sec. 3.1-3.2):

* :func:`slic_superpixels`: SLIC (Achanta et al., TPAMI 2012) with SLidR's settings, as in the
  ``superpixel_segmenter.py`` of github.com/valeoai/SLidR: ``skimage.segmentation.slic(im,
  n_segments=150, compactness=6, sigma=3.0, start_label=0)`` on each RGB camera image.
* :func:`semantic_superpixels`: the embedded world's stand-in for CSC's VFM superpixels (a
  Mask2Former head on DINOv2, fine-tuned on ADE20K's T = 150 classes; chen2024 Sec. 3.2 "semantic
  signs C_sem"): connected components of a semantic mask, over-segmented (by SLIC when the image is
  given, by a grid otherwise), each with its class as semantic sign, a configurable share of signs
  replaced by a wrong class to model the VFM's mistakes.

Ids are contiguous int32 ``0..S-1`` (every pixel belongs to exactly one superpixel).
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

#: SLidR's SLIC settings (valeoai/SLidR ``superpixel_segmenter.py``).
SLIDR_SLIC = {"n_segments": 150, "compactness": 6.0, "sigma": 3.0}


def _check_image(image) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8 or min(image.shape[:2]) < 2:
        raise ValueError(f"image must be (H, W, 3) uint8 RGB with H, W >= 2, got {image.dtype} {image.shape}")
    return image


def slic_superpixels(image, n_segments: int = 150, compactness: float = 6.0, sigma: float = 3.0) -> np.ndarray:
    """SLIC superpixels of one RGB image with SLidR's settings.

    Args:
        image: (H, W, 3) uint8 RGB.
        n_segments: approximate number of superpixels (SLidR: 150, at nuScenes' 1600 x 900).
        compactness: colour vs. space balance in CIELAB units (SLidR: 6; larger = squarer).
        sigma: Gaussian pre-smoothing, pixels (SLidR: 3).
    Returns: (H, W) int32 ids 0..S-1, contiguous (S is near ``n_segments``; SLIC's connectivity
        step merges fragments, so S varies with the image).
    Raises: ValueError naming ``image``, ``n_segments``, ``compactness`` or ``sigma``.
    Source: Achanta et al. 2012; ``skimage.segmentation.slic`` (the call SLidR makes).
    """
    image = _check_image(image)
    if not (isinstance(n_segments, (int, np.integer)) and n_segments >= 1):
        raise ValueError(f"n_segments must be an int >= 1, got {n_segments!r}")
    if not compactness > 0:
        raise ValueError(f"compactness must be > 0, got {compactness!r}")
    if not sigma >= 0:
        raise ValueError(f"sigma must be >= 0, got {sigma!r}")
    from skimage.segmentation import slic

    labels = slic(image, n_segments=int(n_segments), compactness=float(compactness), sigma=float(sigma),
                  start_label=0, channel_axis=-1)
    # SLIC's connectivity step can leave gaps in the label range; downstream pooling wants 0..S-1
    _, inv = np.unique(labels, return_inverse=True)
    return inv.reshape(labels.shape).astype(np.int32)


def _components(key: np.ndarray) -> np.ndarray:
    """4-connected components of equal values of a non-negative int map -> contiguous ids 0..S-1
    (scipy labels binary masks only, so each value is labelled inside its bounding box)."""
    out = np.empty(key.shape, np.int64)
    _, inv = np.unique(key, return_inverse=True)
    inv = inv.reshape(key.shape)
    nxt = 0
    for v, sl in enumerate(ndimage.find_objects(inv + 1)):
        if sl is None:
            continue
        mask = inv[sl] == v
        lab, n = ndimage.label(mask)
        out[sl][mask] = lab[mask] - 1 + nxt
        nxt += n
    return out


# ------------------------------------------------------------------------------------------------
# The VFM stand-in
# ------------------------------------------------------------------------------------------------

def semantic_superpixels(semantics, image=None, n_split: int = 4, noise: float = 0.0, n_classes: int | None = None,
                         seed: int = 0, n_segments: int = 150) -> tuple[np.ndarray, np.ndarray]:
    """Semantic-aware superpixels with semantic signs: the embedded world's stand-in for CSC's VFM.

    Each superpixel is a 4-connected region of one class that is also inside one cell of an
    over-segmentation: SLIC superpixels of ``image`` (:func:`slic_superpixels`, ``n_segments``)
    when it is given, else an ``n_split`` x ``n_split`` grid of the image (``n_split=1``: plain
    connected components, one per object / stuff region). Its sign is its class, except for a
    share ``noise`` of superpixels (each independently, probability ``noise``) whose sign is
    replaced by a uniformly drawn *different* class of ``0..n_classes-1`` (the VFM's errors).

    Args:
        semantics: (H, W) non-negative int class labels (e.g. the world's camera semantics,
            :data:`bevlib.data.world.CAMERA_SEMANTIC_CLASSES`).
        image: optional (H, W, 3) uint8 RGB of the same size; None takes the image-free path.
        n_split: grid cells per image side on the image-free path (>= 1).
        noise: probability in [0, 1] that a superpixel's sign is wrong.
        n_classes: number of classes signs are drawn from (default ``semantics.max() + 1``;
            CSC: T = 150 ADE20K classes); must exceed every label and be >= 2 when ``noise > 0``.
        seed: the label noise (and nothing else) is drawn from ``np.random.default_rng(seed)``;
            the same inputs and seed give the same output.
        n_segments: SLIC segments when ``image`` is given.
    Returns:
        ids (H, W) int32 contiguous 0..S-1; sign (S,) int64 semantic sign per superpixel.
    Raises: ValueError naming ``semantics``, ``image``, ``n_split``, ``noise`` or ``n_classes``.
    Source: chen2024 Sec. 3.2 (VFM-assisted superpixels, semantic signs C_sem); the grid / SLIC
        over-segmentation and the label noise are this library's stand-ins.
    """
    sem = np.asarray(semantics)
    if sem.ndim != 2 or not np.issubdtype(sem.dtype, np.integer) or sem.size == 0 or sem.min() < 0:
        raise ValueError(f"semantics must be a non-empty (H, W) map of non-negative ints, got {sem.dtype} {sem.shape}")
    H, W = sem.shape
    if not (isinstance(n_split, (int, np.integer)) and n_split >= 1):
        raise ValueError(f"n_split must be an int >= 1, got {n_split!r}")
    if not 0.0 <= noise <= 1.0:
        raise ValueError(f"noise must be in [0, 1], got {noise!r}")
    top = int(sem.max()) + 1
    n_classes = top if n_classes is None else n_classes
    if not (isinstance(n_classes, (int, np.integer)) and n_classes >= top):
        raise ValueError(f"n_classes must be an int > every label ({top - 1}), got {n_classes!r}")
    if noise > 0 and n_classes < 2:
        raise ValueError(f"n_classes must be >= 2 for noise > 0 (no wrong class to draw), got {n_classes}")
    if image is not None:
        image = _check_image(image)
        if image.shape[:2] != (H, W):
            raise ValueError(f"image {image.shape[:2]} and semantics {(H, W)} must have the same size")
        part = slic_superpixels(image, n_segments=n_segments).astype(np.int64)
    else:
        rows = np.minimum(np.arange(H) * n_split // H, n_split - 1)
        cols = np.minimum(np.arange(W) * n_split // W, n_split - 1)
        part = rows[:, None] * n_split + cols[None, :]
    n_part = int(part.max()) + 1
    ids = _components(sem.astype(np.int64) * n_part + part)
    S = int(ids.max()) + 1
    sign = np.empty(S, np.int64)
    sign[ids.ravel()] = sem.ravel()          # constant within a superpixel by construction
    rng = np.random.default_rng(seed)
    wrong = rng.random(S) < noise
    # an offset in 1..n_classes-1 modulo n_classes never returns the true class
    offset = rng.integers(1, max(n_classes, 2), size=S)
    sign = np.where(wrong, (sign + offset) % n_classes, sign)
    return ids.astype(np.int32), sign.astype(np.int64)

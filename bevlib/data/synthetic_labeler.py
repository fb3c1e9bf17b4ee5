"""Camera-view pseudo-labels for the synthetic world, standing in for Mask2Former (busch2026 Sec. III-C).

The paper labels each camera image with a Mapillary-Vistas Mask2Former and keeps three marking
classes plus the ten nuScenes object classes. Those labels disagree with the nuScenes BEV ground
truth in systematic ways (busch2026 Fig. 2, Sec. V): crosswalks are filled areas rather than the
polygon outlines of the map, stop lines and arrows count as "lane marking", anything behind an
object is simply not labelled, and the network makes mistakes. :class:`SyntheticPseudoLabeler`
reproduces this from the world's perfect camera semantics (:func:`bevlib.data.world.load_camera_semantics`):

* style, always: zebra stripes and the asphalt between them -> crosswalk (filled area); stop lines
  and arrows -> lane; road surface, sidewalk, terrain, buildings, vegetation, sky -> background;
  occlusion comes for free from the camera view.
* errors, scaled by ``noise`` in [0, 1]: blob-shaped dropouts of markings (more likely far away),
  a random dilation or erosion of the road boundary, whole objects relabelled as a confusable class,
  and ragged object outlines. ``noise = 0`` gives the pure style transform.

Output: (H, W) uint8 in :data:`bevlib.classes.ALL_CLASSES` indices (0 background, 1 boundary,
2 lane, 3 crosswalk, 4..13 objects); :data:`bevlib.classes.IGNORE` is never produced.
"""
from __future__ import annotations

import hashlib

import cv2
import numpy as np

from bevlib.classes import BACKGROUND, NUM_ALL, class_index
from bevlib.data.pseudo import PseudoLabeler
from bevlib.data.world import CAMERA_SEMANTIC_CLASSES, load_camera_depth, load_camera_semantics

_BOUNDARY, _LANE, _CROSSWALK = class_index("boundary"), class_index("lane"), class_index("crosswalk")
_FIRST_OBJECT = _CROSSWALK + 1


def _style_lut() -> np.ndarray:
    lut = np.full(256, BACKGROUND, np.uint8)
    lut[:NUM_ALL] = np.arange(NUM_ALL)            # the shared classes keep their index
    extra = {"crosswalk_gap": _CROSSWALK, "stop_line": _LANE, "arrow": _LANE}
    for name, target in extra.items():
        lut[CAMERA_SEMANTIC_CLASSES.index(name)] = target
    return lut


#: CAMERA_SEMANTIC_CLASSES id -> ALL_CLASSES id in the Mask2Former-like labelling style.
STYLE_LUT = _style_lut()

#: Object class -> the class it is mistaken for (typical Mapillary/Mask2Former confusions).
CONFUSION = {
    "car": "truck", "truck": "car", "bus": "truck", "trailer": "truck", "construction_vehicle": "truck",
    "pedestrian": "bicycle", "motorcycle": "bicycle", "bicycle": "motorcycle",
    "traffic_cone": "barrier", "barrier": "traffic_cone",
}
_CONFUSION_LUT = np.arange(256, dtype=np.uint8)
for _src, _dst in CONFUSION.items():
    _CONFUSION_LUT[class_index(_src)] = class_index(_dst)


def pseudo_label_style(semantics: np.ndarray) -> np.ndarray:
    """Noise-free pseudo-label of a camera semantic mask.

    Args: semantics (H, W) uint8 in CAMERA_SEMANTIC_CLASSES ids.
    Returns: (H, W) uint8 in ALL_CLASSES ids (crosswalks filled, stop lines/arrows as lane).
    """
    if semantics.dtype != np.uint8 or semantics.ndim != 2:
        raise ValueError(f"semantics must be (H, W) uint8, got {semantics.dtype} {semantics.shape}")
    return STYLE_LUT[semantics]


def degrade(labels: np.ndarray, depth: np.ndarray, noise: float, rng: np.random.Generator) -> np.ndarray:
    """Apply Mask2Former-like errors to a style-transformed label map.

    Args:
        labels: (H, W) uint8 ALL_CLASSES ids (not modified).
        depth: (H, W) float32 metres along the optical axis, 0 for sky.
        noise: error strength in [0, 1]; 0 returns a copy of ``labels``.
        rng: random stream (the caller makes it deterministic).
    Returns: (H, W) uint8 ALL_CLASSES ids.
    """
    out = labels.copy()
    if noise <= 0:
        return out
    H, W = out.shape
    px = W / 800.0                                 # the error sizes are tuned for 800-px images

    # Thin distant markings vanish in blobs: a smooth random field thresholded by a
    # distance-dependent probability.
    field = cv2.resize(rng.random((max(2, H // 12), max(2, W // 12))).astype(np.float32), (W, H),
                       interpolation=cv2.INTER_LINEAR)
    p_drop = noise * np.clip(depth / 40.0, 0.15, 1.0)
    marking = (out >= _BOUNDARY) & (out <= _CROSSWALK)
    out[marking & (field < p_drop)] = BACKGROUND

    # The boundary band is too thick or too thin, uniformly over the image.
    k = int(round(rng.uniform(-1.0, 1.0) * 3.0 * noise * px))
    if k != 0:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * abs(k) + 1, 2 * abs(k) + 1))
        boundary = (out == _BOUNDARY).astype(np.uint8)
        if k > 0:
            out[(cv2.dilate(boundary, kernel) > 0) & (out == BACKGROUND)] = _BOUNDARY
        else:
            out[(boundary > 0) & (cv2.erode(boundary, kernel) == 0)] = BACKGROUND

    # Whole objects get a confusable class; their outlines fray.
    objects = (out >= _FIRST_OBJECT).astype(np.uint8)
    n, comp = cv2.connectedComponents(objects, connectivity=8)
    swap = np.concatenate([[False], rng.random(n - 1) < 0.3 * noise]) if n > 1 else np.zeros(1, bool)
    swapped = swap[comp]
    out[swapped] = _CONFUSION_LUT[out[swapped]]
    edge = (objects > 0) & (cv2.erode(objects, np.ones((3, 3), np.uint8)) == 0)
    out[edge & (rng.random((H, W)) < 0.5 * noise)] = BACKGROUND
    return out


class SyntheticPseudoLabeler(PseudoLabeler):
    """Pseudo-labeller for worlds made by :mod:`bevlib.data.world` (see the module docstring).

    Args:
        noise: error strength in [0, 1].
        seed: seeds the errors; labels are a deterministic function of (noise, seed, token).
    Raises: ValueError for noise outside [0, 1].
    """

    def __init__(self, noise: float = 0.1, seed: int = 0):
        if not 0.0 <= noise <= 1.0:
            raise ValueError(f"noise must be in [0, 1], got {noise}")
        self.noise = float(noise)
        self.seed = int(seed)
        self.name = f"synthetic-n{self.noise:.2f}-s{self.seed}"

    def label(self, nusc, sample_data_token: str) -> np.ndarray:
        """Pseudo-label one camera image of a synthetic world.

        Args:
            nusc: anything with a ``dataroot`` attribute (a NuScenes instance) pointing at the world.
            sample_data_token: a camera sample_data token.
        Returns: (H, W) uint8 ALL_CLASSES ids at the image resolution.
        Raises: FileNotFoundError naming the missing semantic mask / depth file.
        """
        semantics = load_camera_semantics(nusc.dataroot, sample_data_token)
        labels = pseudo_label_style(semantics)
        if self.noise == 0:
            return labels
        digest = hashlib.sha256(f"{self.seed}:{sample_data_token}".encode()).hexdigest()
        rng = np.random.default_rng(int(digest[:16], 16))
        return degrade(labels, load_camera_depth(nusc.dataroot, sample_data_token), self.noise, rng)


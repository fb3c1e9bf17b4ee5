"""Label sets: class names, colours, ignore index and the classes a mean counts, defined once.

A task's labels are a :class:`LabelSet` value that losses (:mod:`bevlib.losses`), metrics
(:mod:`bevlib.metrics`) and figures (:mod:`bevlib.viz`) take as an argument. The suite's sets:

* :data:`BUSCH2026_ALL` (14): the camera-view pseudo-labels and the network head of busch2026.
  BEV ground truth (busch2026 Sec. IV, BEVFormer_segmentation_detection / HDMapNet convention) has
  three map classes; the pseudo-labels (busch2026 Sec. III-C) add the ten nuScenes detection
  classes that occlude road markings. Both share one index space so that the BEV prediction used
  for pretraining (rendered into the cameras) and the BEV used for fine-tuning are the same tensor
  with the same channels::

      0 background | 1 road boundary | 2 lane divider | 3 crosswalk | 4..13 the 10 detection classes

* :data:`BEV_MAP` (4): background + the three map classes, the first four channels of
  :data:`BUSCH2026_ALL`; busch2026's mIoU averages the three map classes (background excluded).
* :data:`NUSCENES_LIDARSEG_16` (17 indices): the 16 nuScenes-lidarseg evaluation classes with
  index 0 = ``ignore`` (noise and the unmapped fine classes), names, indices and colours exactly as
  nuscenes-devkit's ``LidarsegClassMapper`` (``nuscenes/eval/lidarseg/utils.py``); the mean runs
  over 1..16 as in the devkit's lidarseg evaluation (MultiViT, CSC).

The module constants (``ALL_CLASSES``, ``BEV_CLASSES``, ``NUM_BEV``, ``NUM_ALL``, ``IGNORE``,
``COLORS``, ``class_index``) are the busch2026 sets' fields under their historical names.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Sequence

import numpy as np

#: RGB of the ignore / unlabelled value in every figure (mid grey).
IGNORE_RGB = (128, 128, 128)


@dataclass(frozen=True)
class LabelSet:
    """The labels of one task: class names, RGB colours, ignore index, classes of the mean.

    Attributes:
        name: short identifier (used in messages and output names).
        names: (K,) class names; class ``c`` is index ``c`` of every label map, logit channel and
            confusion-matrix row of this task.
        colors: (K,) RGB triples, integers 0..255.
        ignore_index: the label value losses and metrics skip ("no label"). Either outside
            [0, K) (e.g. 255 in uint8 maps) or one of the classes (nuScenes-lidarseg's 0 =
            ``ignore``), which then never counts in the mean.
        mean_classes: indices averaged by a mean over classes (mIoU, mean cosine similarity),
            ascending; ``None`` (the default) means every class except ``ignore_index``.
        background: index of the background class (skipped by overlays), or ``None``.

    Raises:
        ValueError: on mismatched lengths, duplicate names, colours outside 0..255, a mean class
            outside [0, K) or equal to the ignore index, or a background index outside [0, K).
    """

    name: str
    names: tuple[str, ...]
    colors: tuple[tuple[int, int, int], ...]
    ignore_index: int = 255
    mean_classes: tuple[int, ...] | None = None
    background: int | None = None

    def __post_init__(self):
        names = tuple(str(n) for n in self.names)
        colors = tuple(tuple(int(v) for v in c) for c in self.colors)
        K = len(names)
        if K == 0:
            raise ValueError(f"label set {self.name!r} has no classes")
        if len(set(names)) != K:
            dup = sorted({n for n in names if names.count(n) > 1})
            raise ValueError(f"label set {self.name!r} repeats class names {dup}")
        if len(colors) != K or any(len(c) != 3 or min(c) < 0 or max(c) > 255 for c in colors):
            raise ValueError(f"label set {self.name!r} needs {K} RGB colours with values 0..255, got {self.colors!r}")
        ignore = int(self.ignore_index)
        if self.mean_classes is None:
            mean = tuple(c for c in range(K) if c != ignore)
        else:
            mean = tuple(sorted({int(c) for c in self.mean_classes}))
            bad = [c for c in mean if not 0 <= c < K or c == ignore]
            if bad:
                raise ValueError(f"label set {self.name!r}: mean classes {bad} are outside [0, {K}) or the ignore index")
        if self.background is not None and not 0 <= int(self.background) < K:
            raise ValueError(f"label set {self.name!r}: background index {self.background} outside [0, {K})")
        # Normalised so that equal label sets compare and hash equal (lists -> tuples, ints).
        object.__setattr__(self, "names", names)
        object.__setattr__(self, "colors", colors)
        object.__setattr__(self, "ignore_index", ignore)
        object.__setattr__(self, "mean_classes", mean)
        object.__setattr__(self, "background", None if self.background is None else int(self.background))

    @property
    def num_classes(self) -> int:
        """K, the number of class indices (an in-range ignore class included)."""
        return len(self.names)

    def __len__(self) -> int:
        return len(self.names)

    @property
    def mean_names(self) -> tuple[str, ...]:
        """Names of :attr:`mean_classes`, in index order."""
        return tuple(self.names[c] for c in self.mean_classes)

    def index(self, name: str) -> int:
        """Index of a class name.

        Raises:
            KeyError: naming the unknown class and listing the known ones.
        """
        try:
            return self.names.index(name)
        except ValueError:
            raise KeyError(f"unknown class {name!r} in label set {self.name!r}; known: {', '.join(self.names)}") from None

    def name_of(self, index: int) -> str:
        """Class name of an index; ``"unlabelled"`` for an ignore index outside [0, K).

        Raises: IndexError for any other index outside [0, K).
        """
        if 0 <= index < len(self.names):
            return self.names[index]
        if index == self.ignore_index:
            return "unlabelled"
        raise IndexError(f"class index {index} outside [0, {len(self.names)}) of label set {self.name!r}")

    def color_array(self) -> np.ndarray:
        """(K, 3) uint8 RGB colours, row ``c`` for class ``c``."""
        return np.array(self.colors, dtype=np.uint8).reshape(-1, 3)

    def palette(self) -> np.ndarray:
        """(P, 3) uint8 lookup table from label value to RGB, P = max(256, K, ignore_index + 1):
        class colours at 0..K-1, :data:`IGNORE_RGB` at an out-of-range ``ignore_index``, black
        elsewhere. Read-only (shared between calls)."""
        return _palette(self)


@lru_cache(maxsize=32)
def _palette(labels: LabelSet) -> np.ndarray:
    size = max(256, labels.num_classes, labels.ignore_index + 1)
    lut = np.zeros((size, 3), np.uint8)
    lut[: labels.num_classes] = labels.color_array()
    if not 0 <= labels.ignore_index < labels.num_classes and labels.ignore_index >= 0:
        lut[labels.ignore_index] = IGNORE_RGB
    lut.flags.writeable = False
    return lut


# --- busch2026 -------------------------------------------------------------------------------

BACKGROUND = 0
BEV_CLASSES = ("boundary", "lane", "crosswalk")
OBJECT_CLASSES = (
    "car", "truck", "bus", "trailer", "construction_vehicle",
    "pedestrian", "motorcycle", "bicycle", "traffic_cone", "barrier",
)
#: All classes of the camera-view pseudo-labels and of the network head, background first.
ALL_CLASSES = ("background",) + BEV_CLASSES + OBJECT_CLASSES
NUM_BEV = 1 + len(BEV_CLASSES)        # background + 3 markings: the BEV ground-truth channels
NUM_ALL = len(ALL_CLASSES)            # 14: background + 3 markings + 10 objects
#: Value for "no label" in camera pseudo-labels and BEV maps (ignored by losses and metrics).
IGNORE = 255

#: nuScenes category name prefix -> detection class (nuscenes-devkit's DetectionConfig mapping).
CATEGORY_TO_OBJECT = {
    "vehicle.car": "car",
    "vehicle.truck": "truck",
    "vehicle.bus.bendy": "bus",
    "vehicle.bus.rigid": "bus",
    "vehicle.trailer": "trailer",
    "vehicle.construction": "construction_vehicle",
    "human.pedestrian.adult": "pedestrian",
    "human.pedestrian.child": "pedestrian",
    "human.pedestrian.construction_worker": "pedestrian",
    "human.pedestrian.police_officer": "pedestrian",
    "vehicle.motorcycle": "motorcycle",
    "vehicle.bicycle": "bicycle",
    "movable_object.trafficcone": "traffic_cone",
    "movable_object.barrier": "barrier",
}

#: RGB colours (0-255) per class index, used by every figure and viewer.
COLORS = (
    (0, 0, 0),        # background
    (255, 60, 60),    # boundary (red, as busch2026 Figs. 2/5)
    (60, 200, 60),    # lane (green)
    (60, 120, 255),   # crosswalk (blue)
    (255, 158, 0), (255, 99, 71), (255, 69, 0), (233, 150, 70), (255, 215, 0),
    (0, 230, 230), (255, 61, 99), (220, 20, 60), (160, 32, 240), (112, 128, 144),
)

#: busch2026's 14 classes (pseudo-labels, network head); the mean skips background.
BUSCH2026_ALL = LabelSet("busch2026_all", ALL_CLASSES, COLORS, IGNORE,
                         mean_classes=tuple(range(1, NUM_ALL)), background=BACKGROUND)
#: busch2026's BEV ground truth: background + 3 map classes; mIoU over the 3 map classes (Sec. IV-B).
BEV_MAP = LabelSet("bev_map", ALL_CLASSES[:NUM_BEV], COLORS[:NUM_BEV], IGNORE,
                   mean_classes=tuple(range(1, NUM_BEV)), background=BACKGROUND)


def class_index(name: str) -> int:
    """Index of a class name in :data:`ALL_CLASSES`.

    Raises:
        KeyError: naming the unknown class and listing the known ones.
    """
    try:
        return ALL_CLASSES.index(name)
    except ValueError:
        raise KeyError(f"unknown class {name!r}; known: {', '.join(ALL_CLASSES)}") from None


# --- nuScenes-lidarseg -----------------------------------------------------------------------

#: The nuScenes-lidarseg challenge classes, index = position; nuscenes-devkit
#: ``LidarsegClassMapper.get_coarse2idx`` (0 is its ignore class: noise and unmapped fine classes).
LIDARSEG_16_CLASSES = (
    "ignore", "barrier", "bicycle", "bus", "car", "construction_vehicle", "motorcycle", "pedestrian",
    "traffic_cone", "trailer", "truck", "driveable_surface", "other_flat", "sidewalk", "terrain",
    "manmade", "vegetation",
)
#: The devkit's ``LidarsegClassMapper.get_coarse2color`` colours, in index order.
LIDARSEG_16_COLORS = (
    (0, 0, 0), (112, 128, 144), (220, 20, 60), (255, 127, 80), (255, 158, 0), (233, 150, 70),
    (255, 61, 99), (0, 0, 230), (47, 79, 79), (255, 140, 0), (255, 99, 71), (0, 207, 191),
    (175, 0, 75), (75, 0, 75), (112, 180, 60), (222, 184, 135), (0, 175, 0),
)
#: The 16 lidarseg evaluation classes (MultiViT, CSC); 0 = ignore, mIoU over 1..16 as the devkit.
NUSCENES_LIDARSEG_16 = LabelSet("nuscenes_lidarseg_16", LIDARSEG_16_CLASSES, LIDARSEG_16_COLORS,
                                ignore_index=0, mean_classes=tuple(range(1, 17)))


#: MultiViT's camera pseudo-labels (lukkassen2024 Sec. 3.1): background + the 10 box classes, which
#: keep their lidarseg-16 indices 1..10 (so camera and LiDAR class means pair up by index, Table 5);
#: box pixels too little inside the image are :data:`IGNORE`. The mean counts all 11 classes.
MULTIVIT_CAMERA = LabelSet("multivit_camera", ("background",) + LIDARSEG_16_CLASSES[1:11],
                           ((40, 40, 40),) + LIDARSEG_16_COLORS[1:11], IGNORE, background=0)

def as_label_set(labels: LabelSet | int | Sequence[str], ignore_index: int = IGNORE) -> LabelSet:
    """A :class:`LabelSet` from a label set (returned as is), a class count K (classes ``"0"``..,
    grey colours, every class in the mean) or a sequence of names.

    Raises: ValueError for K < 1 (from :class:`LabelSet`), TypeError for anything else.
    """
    if isinstance(labels, LabelSet):
        return labels
    if isinstance(labels, (int, np.integer)) and not isinstance(labels, bool):
        names = tuple(str(c) for c in range(int(labels)))
    elif isinstance(labels, Sequence) and not isinstance(labels, str):
        names = tuple(labels)
    else:
        raise TypeError(f"expected a LabelSet, a class count or class names, got {type(labels).__name__}")
    return LabelSet(f"anonymous_{len(names)}", names, ((160, 160, 160),) * len(names), ignore_index)


# --- embedded world camera semantics (wozniak2025 S3PT segmentation probe) ---------------------

#: The embedded world's camera-view semantic classes as an evaluation label set, standing in for
#: nuImages in the frozen-backbone probes of wozniak2025 (S3PT) Sec. 4: the classes of
#: ``bevlib.data.world.CAMERA_SEMANTIC_CLASSES`` without its index 0 ("background", which the renderer
#: never produces), so world id ``i`` is label ``i - 1`` (world id 0 -> :data:`IGNORE`). Index 0..12
#: are busch2026's three markings and ten objects (:data:`ALL_CLASSES` [1:]), 13..21 the other
#: surfaces. The mean counts all 22 classes (absent ones skipped by ``ConfusionMatrix.miou``).
WORLD_CAMERA_CLASSES = ALL_CLASSES[1:] + (
    "road_surface", "crosswalk_gap", "sidewalk", "stop_line", "arrow", "terrain", "building", "vegetation", "sky",
)
WORLD_CAMERA = LabelSet("world_camera", WORLD_CAMERA_CLASSES, COLORS[1:] + (
    (90, 90, 90), (120, 110, 100), (244, 35, 232), (250, 250, 250), (200, 200, 120), (152, 251, 152),
    (70, 70, 70), (107, 142, 35), (70, 130, 180),
), IGNORE)

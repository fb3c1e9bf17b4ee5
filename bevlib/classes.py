"""Class definitions and colours, defined once for the whole suite.

BEV ground truth (busch2026 Sec. IV, BEVFormer_segmentation_detection / HDMapNet convention) has
three map classes; the camera-view pseudo-labels (busch2026 Sec. III-C) add the ten nuScenes
detection classes that occlude road markings. Both share one index space so that the BEV
prediction used for pretraining (rendered into the cameras) and the BEV used for fine-tuning are the
same tensor with the same channels:

    0 background | 1 road boundary | 2 lane divider | 3 crosswalk | 4..13 the 10 detection classes
"""
from __future__ import annotations

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


def class_index(name: str) -> int:
    """Index of a class name in :data:`ALL_CLASSES`.

    Raises:
        KeyError: naming the unknown class and listing the known ones.
    """
    try:
        return ALL_CLASSES.index(name)
    except ValueError:
        raise KeyError(f"unknown class {name!r}; known: {', '.join(ALL_CLASSES)}") from None

"""Mask2Former pseudo-labeller (busch2026 Sec. III-C): name mapping, fusion, real-image labelling."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from bevlib.classes import ALL_CLASSES, BACKGROUND, IGNORE, NUM_ALL, class_index
from bevlib.data.mask2former import (VISTAS_V12_CLASSES, Mask2FormerLabeler, _Processor, label_lookup,
                                     vistas_to_bevlib)


@pytest.mark.parametrize("name, expected", [
    ("Lane Marking - General", "lane"), ("Lane Marking - Crosswalk", "crosswalk"), ("Crosswalk - Plain", "crosswalk"),
    ("Curb", "boundary"), ("Curb Cut", "boundary"), ("Car", "car"), ("Truck", "truck"), ("Bus", "bus"),
    ("Trailer", "trailer"), ("Caravan", "trailer"), ("Other Vehicle", "construction_vehicle"),
    ("Person", "pedestrian"), ("Other Rider", "pedestrian"), ("Motorcyclist", "motorcycle"),
    ("Motorcycle", "motorcycle"), ("Bicycle", "bicycle"), ("Bicyclist", "bicycle"), ("Barrier", "barrier"),
    ("Guard Rail", "barrier"), ("Traffic Cone", "traffic_cone"), ("Road", "background"), ("Sky", "background"),
    ("Sidewalk", "background"), ("Bike Lane", "background"),
    # raw / v2.0 names and spelling variants
    ("marking--general", "lane"), ("marking--continuous--dashed", "lane"), ("Lane Marking - Stop Line", "lane"),
    ("marking--discrete--crosswalk-zebra", "crosswalk"), ("object--traffic-cone", "traffic_cone"),
    ("object--vehicle--car", "car"), ("human--rider--bicyclist", "bicycle"), ("  CAR ", "car"),
    ("construction--barrier--curb", "boundary"), ("nature--vegetation", "background"),
])
def test_vistas_name_table(name, expected):
    assert vistas_to_bevlib(name) == class_index(expected)


def test_ego_vehicle_is_ignored_and_v12_covers_the_classes():
    for name in ("Ego Vehicle", "Car Mount", "Unlabeled", "void--ego-vehicle"):
        assert vistas_to_bevlib(name) == IGNORE
    assert len(VISTAS_V12_CLASSES) == 65
    lut = label_lookup({str(i): n for i, n in enumerate(VISTAS_V12_CLASSES)})   # str keys as in config.json
    assert lut.shape == (65,) and lut.dtype == np.uint8
    assert lut[VISTAS_V12_CLASSES.index("Lane Marking - General")] == class_index("lane")
    # Vistas v1.2 has no traffic cone; every other bevlib class is produced by some Vistas class.
    produced = {ALL_CLASSES[i] for i in lut if i != IGNORE}
    assert produced == set(ALL_CLASSES) - {"traffic_cone"}


def test_missing_weights_path_raises(tmp_path):
    missing = tmp_path / "mask2former-swin-large-mapillary-vistas-semantic"
    with pytest.raises(FileNotFoundError, match="mask2former-swin-large-mapillary-vistas-semantic"):
        Mask2FormerLabeler(str(missing))


class _FixedMask2Former(nn.Module):
    """Stand-in model: query 0 says 'Car' on the left half, query 1 'Lane Marking - General' on the
    right half, query 2 is 'no object'."""

    def __init__(self):
        super().__init__()
        self.config = SimpleNamespace(id2label={0: "Road", 1: "Car", 2: "Lane Marking - General", 3: "Ego Vehicle"})

    def forward(self, pixel_values):
        cls = torch.full((1, 3, 5), -10.0)
        cls[0, 0, 1] = cls[0, 1, 2] = cls[0, 2, 4] = 10.0
        masks = torch.full((1, 3, 8, 10), -10.0)
        masks[0, 0, :, :5] = 10.0
        masks[0, 1, :, 5:] = 10.0
        return SimpleNamespace(class_queries_logits=cls, masks_queries_logits=masks)


def test_predict_fuses_queries_and_maps_by_name_at_full_resolution():
    lab = Mask2FormerLabeler("mask2former-fixed", model=_FixedMask2Former(),
                             processor=_Processor(size={"shortest_edge": 32, "longest_edge": 64}))
    image = np.zeros((30, 40, 3), np.uint8)
    out = lab.predict(image)
    assert out.shape == (30, 40) and out.dtype == np.uint8
    assert (out[:, :20] == class_index("car")).all() and (out[:, 20:] == class_index("lane")).all()
    assert lab.name == "mask2former-fixed"


def test_random_model_labels_a_real_camera_image(keyframe_nusc):
    """On the real keyframe in ../shared (the conftest fixture skips without it)."""
    from PIL import Image

    nusc = keyframe_nusc
    token = nusc.sample[0]["data"]["CAM_FRONT"]
    with Image.open(nusc.get_sample_data_path(token)) as im:
        w, h = im.size
    lab = Mask2FormerLabeler.random_init(seed=0, shortest_edge=96)
    assert lab.name == "mask2former-random-seed0"
    out = lab.label(nusc, token)
    assert out.shape == (h, w) and out.dtype == np.uint8
    assert set(np.unique(out).tolist()) <= set(range(NUM_ALL)) | {IGNORE}
    assert lab.lut[0] == BACKGROUND  # 'Bird'


def test_loads_a_local_checkpoint_directory(tmp_path):
    ref = Mask2FormerLabeler.random_init(seed=1, shortest_edge=64)
    path = tmp_path / "mask2former-tiny-vistas"
    ref.model.save_pretrained(path)
    ref.processor.save_pretrained(path)
    lab = Mask2FormerLabeler(str(path))
    assert lab.name == "mask2former-tiny-vistas"
    image = np.random.default_rng(0).integers(0, 255, (45, 80, 3), dtype=np.uint8)
    np.testing.assert_array_equal(lab.predict(image), ref.predict(image))

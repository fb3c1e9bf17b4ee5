import logging

import numpy as np
import pytest
import shapely

from bevlib.bev import BEVGrid
from bevlib.classes import IGNORE
from bevlib.data.fields import FIELDS, KeyframeConfig, load_keyframe
from bevlib.data.nuscenes_data import (BEVTargetConfig, CAMERAS, DataError, camera_rig, half_subset, load_image,
                                       open_nuscenes, rasterize_bev_gt)


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    """Field caches of these tests go to the test's tmp dir, not ~/.cache/bevlib."""
    monkeypatch.setenv("BEVLIB_CACHE", str(tmp_path / "cache"))


def test_rasterize_known_geometry():
    g = BEVGrid(H=60, W=30)  # 1 m cells; column j centre y = 14.5 - j, row i centre x = 29.5 - i
    geoms = {
        "divider": shapely.LineString([(-30, 0.5), (30, 0.5)]),       # along x, on column 14 (y = 0.5)
        "crosswalk": shapely.box(9.6, -5.4, 12.4, 5.4),                 # 3 x 11 m polygon ahead
        "road": shapely.box(-40, -8.4, 40, 8.4),                        # road edges at y = +-8.4
    }
    m = rasterize_bev_gt(geoms, g, BEVTargetConfig(line_width_m=0.6))
    assert (m[:, 14] == 2).all()                              # the divider column (y = 0.5), drawn over the crosswalk
    assert (m[:, [13, 15]] != 2).all()                        # 1 m away: beyond the 0.3 m half width
    assert (m[:, [6, 23]] == 1).all() and (m[:, [5, 7, 22, 24]] == 0).all()   # y = +-8.5 centres: road edges
    assert (m[[17, 20], 12] == 3).all() and (m[18:20, [9, 20]] == 3).all()    # crosswalk outline (x 9.6..12.4)
    assert m[18, 12] == 0 and m[16, 12] == 0                                    # interior and outside stay empty
    filled = rasterize_bev_gt(geoms, g, BEVTargetConfig(line_width_m=0.6, crosswalk_style="filled"))
    assert filled[18, 12] == 3
    with pytest.raises(ValueError, match="crosswalk_style"):
        BEVTargetConfig(crosswalk_style="stripes")


def test_half_subset_is_deterministic_half():
    toks = [f"{i:032x}" for i in range(40)]
    a, b = half_subset(toks, seed=0), half_subset(toks, seed=0)
    assert a == b and len(a) == 20 and set(a) < set(toks)
    assert a == [t for t in toks if t in set(a)]              # keeps input order
    assert half_subset(toks, seed=1) != a


def test_open_nuscenes_errors_name_the_input(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        open_nuscenes(tmp_path / "missing", "v1.0-mini")
    (tmp_path / "v1.0-mini").mkdir()
    with pytest.raises(DataError, match="v1.0-trainval.*found: \\['v1.0-mini'\\]"):
        open_nuscenes(tmp_path, "v1.0-trainval")


def test_load_image_errors(tmp_path):
    with pytest.raises(DataError, match="missing"):
        load_image(tmp_path / "nope.jpg", (32, 18))
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(DataError, match="bad.jpg"):
        load_image(bad, (32, 18))


def test_real_keyframe_through_the_devkit(keyframe_nusc, caplog):
    tok = keyframe_nusc.sample[0]["token"]
    rig = camera_rig(keyframe_nusc, tok, (400, 225))
    assert rig["K"].shape == (6, 3, 3) and rig["ego_T_cam"].shape == (6, 4, 4)
    front = rig["ego_T_cam"][CAMERAS.index("CAM_FRONT")]
    assert front[0, 3] > 1.0 and abs(front[1, 3]) < 0.2 and 1.3 < front[2, 3] < 1.8   # ~1.7 m ahead, 1.5 m up
    assert front[:3, 2] @ np.array([1, 0, 0]) > 0.99                                     # optical axis forward
    np.testing.assert_allclose(rig["K"][1, 0, 0], 1266.417 / 4, rtol=1e-4)
    with caplog.at_level(logging.WARNING):
        item = load_keyframe(keyframe_nusc, tok, KeyframeConfig(image_wh=(176, 96), grid=BEVGrid(H=60, W=30)))
    assert item["images"].shape == (6, 96, 176, 3) and item["images"].dtype == np.uint8
    assert not item["has_bev_gt"] and (item["bev_gt"] == IGNORE).all()
    assert "no map expansion" in caplog.text
    assert item["prev_token"] == "" and np.allclose(item["curr_T_prev"], np.eye(4))


def test_real_keyframe_every_field_and_dataroot_untouched(keyframe_nusc, keyframe_root, tmp_path):
    def snapshot():
        return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in keyframe_root.rglob("*")}

    before = snapshot()
    tok = keyframe_nusc.sample[0]["token"]
    item = load_keyframe(keyframe_nusc, tok, KeyframeConfig(image_wh=(176, 96), grid=BEVGrid(H=60, W=30), fields=FIELDS))
    assert item["has_lidar"] and not item["has_lidarseg"] and (item["lidar_seg"] == 0).all()
    assert item["lidar_points"].shape[0] > 30000 and len(item["box_token"]) == 68
    assert item["depth_source"] == "lidar" and 0 < (item["depth"] > 0).mean() < 0.3
    assert not item["has_bev_gt"]                       # no map expansion: nothing to cache either
    assert not list((tmp_path / "cache").glob("fields/bev_gt-*"))
    assert len(list((tmp_path / "cache").glob("fields/depth-*/*.npz"))) == 1
    assert snapshot() == before

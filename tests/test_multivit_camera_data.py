"""lukkassen2024 MultiViT camera data (bevlib.experiments.multivit.camera_data) on the tiny embedded world
and the real nuScenes keyframe.

References: closed-form affine maps, the LiDAR reader's own ego_T_sensor, project_to_range on synthetic
points, pinhole projection of the sweep into each camera (bevlib.geometry.project), exact float matching of
items' points to the sweep's points, and a hand-written ImageNet normalisation.
"""
import math

import numpy as np
import pytest
import torch

from bevlib import geometry as geo
from bevlib.classes import MULTIVIT_CAMERA
from bevlib.data.lidar import load_lidar_sweep
from bevlib.data.nuscenes_data import CAMERAS, camera_rig, open_nuscenes
from bevlib.data.pseudo import PseudoLabeler, cache_pseudo_labels
from bevlib.experiments.multivit.camera_data import (AlignedPairDataset, CameraAugmentation, CameraDataset,
                                                     apply_camera_augmentation, augmentation_transform,
                                                     camera_column, collate_camera, collate_pairs, crop_start,
                                                     draw_camera_augmentation, keyframe_lidar_T_cam,
                                                     load_camera_items)
from bevlib.experiments.multivit.task import (Augmentation, RangeSweepDataset, apply_augmentation, draw_augmentation,
                                             load_sweeps)
from bevlib.range_view import RangeProjection, project_to_range
from conftest import TINY

HW = (90, 160)
PROJ = RangeProjection(H=32, W=512)
CROP_W = 160          # 112.5 deg: the tiny world's cameras see 65 deg (back: 89 deg), plus parallax
MEAN = np.array([0.485, 0.456, 0.406])
STD = np.array([0.229, 0.224, 0.225])


class BoxLabeler(PseudoLabeler):
    """Background with one box of class 4 (``car``), at the image's native size."""

    name = "test-box4"
    box = (0.3, 0.7, 0.4, 0.8)   # rows, cols as fractions

    def label(self, nusc, sample_data_token):
        sd = nusc.get("sample_data", sample_data_token)
        h, w = sd["height"], sd["width"]
        lab = np.zeros((h, w), np.uint8)
        lab[int(self.box[0] * h):int(self.box[1] * h), int(self.box[2] * w):int(self.box[3] * w)] = 4
        return lab


class BadLabeler(BoxLabeler):
    name = "test-bad"

    def label(self, nusc, sample_data_token):
        return super().label(nusc, sample_data_token) * 3      # 12: not a MULTIVIT_CAMERA class


@pytest.fixture(scope="module", autouse=True)
def cache(tmp_path_factory):
    """The module's own BEVLIB_CACHE: pseudo-labels never land in ~/.cache."""
    with pytest.MonkeyPatch.context() as mp:
        d = tmp_path_factory.mktemp("cache")
        mp.setenv("BEVLIB_CACHE", str(d))
        yield d


@pytest.fixture(scope="module")
def world(tiny_world, cache):
    nusc = open_nuscenes(tiny_world, TINY.version)
    tokens = [s["token"] for s in nusc.sample]
    sd = [nusc.get("sample", t)["data"][c] for t in tokens for c in CAMERAS]
    cache_pseudo_labels(nusc, BoxLabeler(), sd, progress=False)
    return nusc, tokens


@pytest.fixture(scope="module")
def data(world):
    nusc, tokens = world
    tokens = tokens[:2]
    return load_camera_items(nusc, tokens, BoxLabeler.name, HW, progress=False), load_sweeps(nusc, tokens)


def _visible(item, cam, points):
    """Points (N, 3) LiDAR frame -> (N,) bool inside camera ``cam``'s image (depth > 1 m), (N, 2) pixels."""
    h, w = item["images"].shape[1:3]
    cam_T_lidar = geo.invert(item["lidar_T_cam"][cam].astype(np.float64))
    uv, z, front = geo.project(item["K"][cam].astype(np.float64), cam_T_lidar, points)
    uvc = np.nan_to_num(uv, nan=-1e9)
    vis = front & (z > 1.0) & (uvc[:, 0] > -0.5) & (uvc[:, 0] < w - 0.5) & (uvc[:, 1] > -0.5) & (uvc[:, 1] < h - 0.5)
    return vis, uvc


def _item_u(sweep_points, it, unmap=None):
    """(N,) crop column of each sweep point in the item (-1 where dropped), by exact float32 matching
    (``unmap`` undoes an exact augmentation such as the flip)."""
    pts = it["points"].numpy()
    if unmap is not None:
        pts = unmap(pts)
    index = {p.tobytes(): j for j, p in enumerate(np.ascontiguousarray(sweep_points, np.float32))}
    out = np.full(len(sweep_points), -1)
    out[[index[p.tobytes()] for p in np.ascontiguousarray(pts, np.float32)]] = it["u"].numpy()
    return out


# ------------------------------------------------------------------------------------------------
# Camera items
# ------------------------------------------------------------------------------------------------

def test_load_camera_items(world, data):
    nusc, tokens = world
    items, _ = data
    it = items[1]
    h, w = HW
    assert it["token"] == tokens[1] and len(it["sd_tokens"]) == 6
    assert it["images"].shape == (6, h, w, 3) and it["images"].dtype == np.uint8
    assert it["labels"].shape == (6, h, w) and it["labels"].dtype == np.uint8
    assert it["K"].shape == (6, 3, 3) and it["ego_T_cam"].shape == it["lidar_T_cam"].shape == (6, 4, 4)
    # the box labeller's box, nearest-resized: class 4 exactly on the box's pixel centres
    rows, cols = np.arange(h) + 0.5, np.arange(w) + 0.5
    b = BoxLabeler.box
    want = np.outer((rows >= b[0] * h) & (rows < b[1] * h), (cols >= b[2] * w) & (cols < b[3] * w)) * 4
    assert (it["labels"][2] == want).mean() > 0.98 and set(np.unique(it["labels"]).tolist()) == {0, 4}
    # lidar_T_cam against the LiDAR reader: a point mapped sensor -> ego by the reader, then into the
    # camera by ego_T_cam, lands where lidar_T_cam puts the sensor-frame point
    sw = load_lidar_sweep(nusc, tokens[1])
    for cam in range(6):
        a = geo.apply(geo.invert(it["ego_T_cam"][cam].astype(np.float64)), sw.points_ego[:200])
        b_ = geo.apply(geo.invert(it["lidar_T_cam"][cam].astype(np.float64)), sw.points_sensor[:200])
        np.testing.assert_allclose(a, b_, atol=2e-4)
    rig = camera_rig(nusc, tokens[1], (w, h))
    assert it["sd_tokens"] == rig["sd_tokens"]
    np.testing.assert_allclose(it["K"], rig["K"], rtol=1e-6)


def test_load_camera_items_errors(world):
    nusc, tokens = world
    with pytest.raises(FileNotFoundError, match="never-cached"):
        load_camera_items(nusc, tokens[:1], "never-cached", HW, progress=False)
    cache_pseudo_labels(nusc, BadLabeler(), [nusc.get("sample", tokens[0])["data"][c] for c in CAMERAS], progress=False)
    with pytest.raises(ValueError, match=r"test-bad.*\[12\]"):
        load_camera_items(nusc, tokens[:1], BadLabeler.name, HW, progress=False)
    with pytest.raises(ValueError, match="image_hw"):
        load_camera_items(nusc, tokens[:1], BoxLabeler.name, (90,), progress=False)


# ------------------------------------------------------------------------------------------------
# Camera augmentations
# ------------------------------------------------------------------------------------------------

def _marked(h=60, w=100, at=(20, 70)):
    """Black image / background labels with a 5x5 white square of class 4 centred at (row, col)."""
    img = np.zeros((h, w, 3), np.uint8)
    lab = np.zeros((h, w), np.uint8)
    r, c = at
    img[r - 2:r + 3, c - 2:c + 3] = 255
    lab[r - 2:r + 3, c - 2:c + 3] = 4
    return img, lab


def _centroid(mask):
    r, c = np.nonzero(mask)
    return np.array([c.mean(), r.mean()])


@pytest.mark.parametrize("aug", [CameraAugmentation(True, 1.0, 0.0), CameraAugmentation(False, 1.2, 0.0),
                                 CameraAugmentation(False, 1.0, 10.0), CameraAugmentation(True, 0.8, -7.0)])
def test_camera_augmentation_closed_form(aug):
    h, w = 60, 100
    img, lab = _marked(h, w)
    out_img, out_lab = apply_camera_augmentation(img, lab, aug)
    assert out_img.shape == img.shape and out_img.dtype == np.uint8 and out_lab.dtype == np.uint8
    # the mark's centre by hand: scale s and rotation a (counter-clockwise as seen, y down) about the
    # centre, then the mirror x -> w - 1 - x
    cx, cy, s, a = (w - 1) / 2, (h - 1) / 2, aug.scale, math.radians(aug.angle_deg)
    x, y = 70 - cx, 20 - cy
    want = np.array([cx + s * (math.cos(a) * x + math.sin(a) * y), cy + s * (-math.sin(a) * x + math.cos(a) * y)])
    if aug.flip:
        want[0] = w - 1 - want[0]
    img_c = _centroid(out_img[..., 0] > 127)
    lab_c = _centroid(out_lab == 4)
    np.testing.assert_allclose(img_c, want, atol=0.75)
    np.testing.assert_allclose(lab_c, want, atol=0.75)
    # registered: the label's class-4 pixels are the bright ones
    assert abs(int((out_lab == 4).sum()) - int((out_img[..., 0] > 127).sum())) <= 3
    assert set(np.unique(out_lab).tolist()) <= {0, 4, 255}
    if aug.flip and aug.scale == 1.0 and aug.angle_deg == 0.0:      # a pure flip is exact
        assert np.array_equal(out_img, img[:, ::-1]) and np.array_equal(out_lab, lab[:, ::-1])
    if aug.scale < 1.0:                                               # new border pixels are ignore, black
        assert out_lab[0, 0] == MULTIVIT_CAMERA.ignore_index and (out_img[0, 0] == 0).all()
    if aug.scale > 1.0 and aug.angle_deg == 0.0:                      # zoom in: nothing from outside
        assert MULTIVIT_CAMERA.ignore_index not in out_lab


def test_camera_augmentation_identity_and_draw():
    img, lab = _marked()
    out_img, out_lab = apply_camera_augmentation(img, lab, CameraAugmentation())
    assert np.array_equal(out_img, img) and np.array_equal(out_lab, lab)
    np.random.seed(5)
    draws = [draw_camera_augmentation(0.5, (0.8, 1.2), 10.0) for _ in range(400)]
    flips = np.mean([d.flip for d in draws])
    scales = np.array([d.scale for d in draws])
    angles = np.array([d.angle_deg for d in draws])
    assert 0.4 < flips < 0.6 and scales.min() >= 0.8 and scales.max() <= 1.2 and np.abs(angles).max() <= 10.0
    assert scales.std() > 0.09 and angles.std() > 4.5          # uniform: std = range / sqrt(12)
    np.random.seed(5)
    assert draw_camera_augmentation(0.5, (0.8, 1.2), 10.0) == draws[0]
    for bad, match in (((1.5, (0.8, 1.2), 10.0), "flip_p"), ((0.5, (1.2, 0.8), 10.0), "scale"),
                       ((0.5, (0.8, 1.2), -1.0), "rotate_deg")):
        with pytest.raises(ValueError, match=match):
            draw_camera_augmentation(*bad)
    with pytest.raises(ValueError, match="image"):
        apply_camera_augmentation(img, lab[:, :10], CameraAugmentation(True))


def test_camera_dataset():
    h, w = 60, 100
    img, lab = _marked(h, w)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 60, (6, h, w, 3), dtype=np.uint8)
    images[:, 18:23, 68:73] = 255                            # the mark on a dim random background
    items = [{"images": images, "labels": np.repeat(lab[None], 6, 0), "token": "t"}]
    ev = CameraDataset(items, train=False)
    assert len(ev) == 6
    x = ev[3]
    assert x["image"].shape == (3, h, w) and x["image"].dtype == torch.float32 and x["camera"] == 3
    assert x["labels"].dtype == torch.int64 and torch.equal(x["labels"], torch.from_numpy(lab.astype(np.int64)))
    want = ((images[3] / 255.0 - MEAN) / STD).transpose(2, 0, 1)
    np.testing.assert_allclose(x["image"].numpy(), want, atol=1e-5)
    tr = CameraDataset(items, train=True, flip_p=0.5, scale=(0.8, 1.2), rotate_deg=10.0)
    saw_flip = False
    for seed in range(12):
        np.random.seed(seed)
        y = tr[seed % 6]
        np.random.seed(seed)
        assert torch.equal(tr[seed % 6]["image"], y["image"])          # reproducible under the seed
        bright = y["image"].numpy()[0] * STD[0] + MEAN[0] > 0.9
        np.testing.assert_allclose(_centroid(bright), _centroid(y["labels"].numpy() == 4), atol=0.75)
        saw_flip |= _centroid(y["labels"].numpy() == 4)[0] < w / 2
    assert saw_flip
    b = collate_camera([tr[0], tr[1]])
    assert b["image"].shape == (2, 3, h, w) and b["labels"].shape == (2, h, w) and b["camera"].tolist() == [0, 1]
    with pytest.raises(ValueError, match="scale"):
        CameraDataset(items, train=True, scale=(0.0, 1.0))
    with pytest.raises(IndexError):
        ev[6]


# ------------------------------------------------------------------------------------------------
# Column alignment
# ------------------------------------------------------------------------------------------------

def _axis_T(yaw_deg, pitch_deg=0.0, t=(0.0, 0.0, 0.0)):
    """lidar_T_cam whose optical axis (+z) points at azimuth yaw, elevation pitch."""
    a, e = math.radians(yaw_deg), math.radians(pitch_deg)
    z = np.array([math.cos(e) * math.cos(a), math.cos(e) * math.sin(a), math.sin(e)])
    x = np.cross(z, [0.0, 0.0, 1.0])
    x /= np.linalg.norm(x)
    T = np.eye(4)
    T[:3, :3] = np.column_stack([x, np.cross(z, x), z])
    T[:3, 3] = t
    return T


def test_camera_column_closed_form():
    W = 2048
    assert camera_column(_axis_T(0.0), W) == pytest.approx(1024.0)          # +x: the middle
    assert camera_column(_axis_T(90.0), W) == pytest.approx(512.0)          # +y (nuScenes: ego forward)
    assert camera_column(_axis_T(-90.0, 20.0, (1, 2, 3)), W) == pytest.approx(1536.0)
    assert camera_column(_axis_T(179.99), W) == pytest.approx(2048 * 0.01 / 360, abs=1e-6)
    assert 0.0 <= camera_column(_axis_T(180.0), W) < W
    with pytest.raises(ValueError, match="vertical"):
        camera_column(np.eye(4), W)                       # camera z = LiDAR z: looking straight up
    with pytest.raises(ValueError, match="lidar_T_cam"):
        camera_column(np.eye(3), W)
    assert crop_start(1024.0, 384, 2048) == 832 and crop_start(10.0, 384, 2048) == 2048 - 182
    with pytest.raises(ValueError, match="crop_w"):
        crop_start(0.0, 4096, 2048)


def _check_axis_points(lidar_T_cams, W):
    """A point far along each optical axis projects (project_to_range) to floor(camera_column)."""
    for T in lidar_T_cams:
        T = np.asarray(T, np.float64)
        c = camera_column(T, W)
        far = geo.apply(T, np.array([[0.0, 0.0, 1e5]]))
        u = int(project_to_range(np.column_stack([far, [0.0]]), None, RangeProjection(W=W)).u[0])
        assert u == int(math.floor(c)) % W or min(abs(c - u), W - abs(c - u)) < 1e-3


def test_camera_column_on_rigs(world, keyframe_nusc):
    nusc, tokens = world
    for n, tok in ((nusc, tokens[0]), (keyframe_nusc, keyframe_nusc.sample[0]["token"])):
        rig = camera_rig(n, tok)
        lidar_T_cam = keyframe_lidar_T_cam(n, tok, rig["ego_T_cam"])
        for W in (512, 2048):
            _check_axis_points(lidar_T_cam, W)
        # nuScenes' LIDAR_TOP looks along ego +y: CAM_FRONT near W / 4, CAM_BACK near 3 W / 4
        assert abs(camera_column(lidar_T_cam[CAMERAS.index("CAM_FRONT")], 2048) - 512) < 20
        assert abs(camera_column(lidar_T_cam[CAMERAS.index("CAM_BACK")], 2048) - 1536) < 20


def test_real_keyframe_points_around_camera_column(keyframe_nusc):
    """On the real keyframe, LiDAR points seen by a camera fall in a crop centred on its column whose
    width is the camera's horizontal field of view."""
    n = keyframe_nusc
    tok = n.sample[0]["token"]
    rig = camera_rig(n, tok)
    lidar_T_cam = keyframe_lidar_T_cam(n, tok, rig["ego_T_cam"])
    sw = load_lidar_sweep(n, tok)
    W = 2048
    u = project_to_range(np.column_stack([sw.points_sensor, sw.intensity]), sw.ring, RangeProjection(W=W)).u
    for cam in range(6):
        w_img, h_img = rig["native_wh"][cam]
        K = rig["K"][cam]
        hfov = 2 * math.degrees(math.atan(max(K[0, 2] + 0.5, w_img - 0.5 - K[0, 2]) / K[0, 0]))
        crop_w = int(math.ceil(hfov / 360 * W)) + 16
        item = {"images": np.zeros((6, h_img, w_img, 3), np.uint8), "K": rig["K"], "lidar_T_cam": lidar_T_cam}
        vis, _ = _visible(item, cam, sw.points_sensor)
        s = crop_start(camera_column(lidar_T_cam[cam], W), crop_w, W)
        inside = (u[vis] - s) % W < crop_w
        assert vis.sum() > 500 and inside.mean() >= 0.95, (CAMERAS[cam], vis.sum(), inside.mean())


def test_augmentation_transform_matches_apply_augmentation():
    rng = np.random.default_rng(1)
    pts = rng.normal(0, 10, (50, 3)).astype(np.float32)
    for aug in (Augmentation(), Augmentation(True), Augmentation(False, (0.2, -0.1, 0.05), (3.0, -4.0, 5.0)),
                Augmentation(True, (0.2, -0.1, 0.05), (3.0, -4.0, 5.0))):
        np.testing.assert_allclose(geo.apply(augmentation_transform(aug), pts), apply_augmentation(pts, aug), atol=1e-4)


# ------------------------------------------------------------------------------------------------
# Aligned pairs
# ------------------------------------------------------------------------------------------------

def _centre(u):
    """Middle of the 2..98 % column range of the points a camera sees (robust to a few strays)."""
    return (np.percentile(u, 2) + np.percentile(u, 98)) / 2


def _check_aligned(item, cam, sweep_points, it, x_of=lambda x, w: x, unmap=None):
    """The points seen by the camera lie in the crop (>= 95 %), around its centre, and their crop
    column rises with their (possibly mirrored) pixel column."""
    w = item["images"].shape[2]
    vis, uv = _visible(item, cam, sweep_points)
    cu = _item_u(sweep_points, it, unmap)[vis]
    assert vis.sum() > 200
    assert (cu >= 0).mean() >= 0.95, (CAMERAS[cam], (cu >= 0).mean())
    cu_in = cu[cu >= 0]
    assert abs(_centre(cu_in) - CROP_W / 2) <= 5, (CAMERAS[cam], _centre(cu_in))
    assert np.corrcoef(cu[cu >= 0], x_of(uv[vis][cu >= 0, 0], w))[0, 1] > 0.95


def test_pairs_aligned_without_augmentation(data):
    items, sweeps = data
    ds = AlignedPairDataset(sweeps, items, PROJ, CROP_W, train=False)
    assert len(ds) == 12
    seam = 0
    for i in range(len(ds)):
        k, cam = divmod(i, 6)
        it = ds[i]
        s = sweeps[k]
        _check_aligned(items[k], cam, s["points"], it)
        assert it["image"].shape == (5, 32, CROP_W) and it["mask"].shape == (32, CROP_W) and it["camera"] == cam
        assert it["mask"][it["v"], it["u"]].all()
        assert it["cam_image"].shape == (3, *HW) and torch.equal(
            it["cam_labels"], torch.from_numpy(items[k]["labels"][cam].astype(np.int64)))
        np.testing.assert_allclose(it["cam_image"].numpy(), ((items[k]["images"][cam] / 255.0 - MEAN) / STD)
                                   .transpose(2, 0, 1), atol=1e-5)
        # labels follow their points
        index = {p.tobytes(): j for j, p in enumerate(s["points"])}
        j = [index[p.tobytes()] for p in it["points"].numpy()]
        assert torch.equal(it["labels"], torch.from_numpy(s["labels"][j].astype(np.int64)))
        # the crop against the full image, cut by hand (two pieces across the 0 / W seam)
        full = RangeSweepDataset([s], PROJ, None)[0]["image"].numpy()   # the unaugmented full image
        st = crop_start(camera_column(items[k]["lidar_T_cam"][cam], PROJ.W), CROP_W, PROJ.W)
        if st + CROP_W > PROJ.W:
            seam += 1
            want = np.concatenate([full[:, :, st:], full[:, :, :st + CROP_W - PROJ.W]], axis=2)
        else:
            want = full[:, :, st:st + CROP_W]
        assert torch.equal(it["image"], torch.from_numpy(want))
    assert seam >= 2          # the left cameras' crops cross the seam (nuScenes' azimuth +-180 deg is ego left)
    b = collate_pairs([ds[0], ds[7]])
    assert b["image"].shape == (2, 5, 32, CROP_W) and b["cam_image"].shape == (2, 3, *HW)
    assert b["cam_labels"].shape == (2, *HW) and b["camera"].tolist() == [0, 1]
    assert b["batch"].shape == b["labels"].shape == b["u"].shape and b["points"].shape == (len(b["u"]), 3)


def test_pairs_flip_both_modalities(data):
    items, sweeps = data
    ds = AlignedPairDataset(sweeps, items, PROJ, CROP_W, train=True, translate_m=0.0, rotate_deg=0.0, p=1.0,
                            cam_scale=(1.0, 1.0), cam_rotate_deg=0.0)
    plain = AlignedPairDataset(sweeps, items, PROJ, CROP_W, train=False)
    for i in range(len(ds)):
        k, cam = divmod(i, 6)
        it = ds[i]
        assert torch.equal(it["cam_image"], plain[i]["cam_image"].flip(-1))
        assert torch.equal(it["cam_labels"], plain[i]["cam_labels"].flip(-1))
        # a point seen at pixel x is at w - 1 - x in the item's image, and its crop column follows
        _check_aligned(items[k], cam, sweeps[k]["points"], it, x_of=lambda x, w: w - 1 - x,
                       unmap=lambda p: p * np.array([1, -1, 1], np.float32))


def test_pairs_aligned_under_random_augmentation(data):
    """The crop follows the camera through the LiDAR augmentation. Rotations of +-20 deg (the paper: 5)
    so that a crop left at the unaugmented column (up to 28 columns off) would fail the centre check."""
    items, sweeps = data
    kw = dict(translate_m=0.25, rotate_deg=20.0, p=1.0, cam_scale=(1.0, 1.0), cam_rotate_deg=0.0)
    ds = AlignedPairDataset(sweeps, items, PROJ, CROP_W, train=True, **kw)
    yaws = []
    for i, seed in ((1, 0), (4, 1), (9, 2), (3, 3), (6, 4), (11, 5)):
        k, cam = divmod(i, 6)
        np.random.seed(seed)
        aug = draw_augmentation(kw["translate_m"], kw["rotate_deg"], kw["p"])      # the item's first draw
        np.random.seed(seed)
        it = ds[i]
        np.random.seed(seed)
        again = ds[i]
        assert all(torch.equal(it[key], again[key]) for key in ("image", "points", "u", "cam_image"))
        moved = apply_augmentation(sweeps[k]["points"], aug)
        index = {p.tobytes(): j for j, p in enumerate(moved)}
        vis, uv = _visible(items[k], cam, sweeps[k]["points"])
        cu = np.full(len(moved), -1)
        cu[[index[p.tobytes()] for p in it["points"].numpy()]] = it["u"].numpy()
        cu = cu[vis]
        x = uv[vis, 0] if not aug.flip else HW[1] - 1 - uv[vis, 0]
        assert (cu >= 0).mean() >= 0.95 and np.corrcoef(cu[cu >= 0], x[cu >= 0])[0, 1] > 0.9
        assert abs(_centre(cu[cu >= 0]) - CROP_W / 2) <= 6, (aug, _centre(cu[cu >= 0]))
        yaws.append(abs(aug.angles_deg[2]))
    assert max(yaws) > 10.0          # the draws include yaws the centre check can see (> 14 columns)


def test_pairs_errors(data):
    items, sweeps = data
    with pytest.raises(ValueError, match="token"):
        AlignedPairDataset(sweeps[::-1], items, PROJ, CROP_W, train=False)
    with pytest.raises(ValueError, match="same keyframes"):
        AlignedPairDataset(sweeps[:1], items, PROJ, CROP_W, train=False)
    with pytest.raises(ValueError, match="crop_w"):
        AlignedPairDataset(sweeps, items, PROJ, PROJ.W + 1, train=False)
    with pytest.raises(ValueError, match="cam_scale|scale"):
        AlignedPairDataset(sweeps, items, PROJ, CROP_W, train=True, cam_scale=(2.0, 1.0))

"""Shared geometric consistency checks for generated worlds (tests/test_world_look.py,
tests/test_world_rigs.py): the world's camera semantics and depth maps against its own LiDAR and boxes,
read back through nuscenes-devkit, so a look or a rig that moves a camera must move both consistently."""
from pathlib import Path

import numpy as np
from pyquaternion import Quaternion

from bevlib.classes import CATEGORY_TO_OBJECT, class_index
from bevlib.data.world import CAMERA_NAMES, CAMERA_SEMANTIC_CLASSES, load_camera_depth, load_camera_semantics

SEM = {n: i for i, n in enumerate(CAMERA_SEMANTIC_CLASSES)}
#: Camera semantic ids a LiDAR "flat.driveable_surface" point may land on (markings are painted road).
ROADISH = [SEM[n] for n in ("road_surface", "crosswalk_gap", "lane", "crosswalk", "stop_line", "arrow")]


def box_centre_hits(nusc, cam_token: str, sem: np.ndarray) -> tuple[int, int]:
    """Count well-visible box centres of one camera image that land on their class's semantic pixels.

    Boxes are those the devkit returns fully in view (BoxVisibility.ALL) with visibility "4" and a centre
    closer than 40 m along the optical axis (camera frame z); their centre is projected with the devkit's
    intrinsics and rounded to a pixel.

    Args:
        nusc: a nuscenes.nuscenes.NuScenes; cam_token: a camera sample_data token;
        sem: (H, W) uint8 camera semantics of that image (CAMERA_SEMANTIC_CLASSES ids).
    Returns:
        (hits, checked): boxes whose centre pixel holds their object class, boxes tested.
    Raises:
        KeyError: a box category outside CATEGORY_TO_OBJECT.
    """
    from nuscenes.utils.geometry_utils import BoxVisibility, view_points

    hits = checked = 0
    _, boxes, K = nusc.get_sample_data(cam_token, box_vis_level=BoxVisibility.ALL)
    for box in boxes:
        ann = nusc.get("sample_annotation", box.token)
        if ann["visibility_token"] != "4" or box.center[2] > 40.0:
            continue
        u, v = np.round(view_points(box.center[:, None], K, normalize=True)[:2, 0]).astype(int)
        checked += 1
        hits += int(sem[v, u] == class_index(CATEGORY_TO_OBJECT[ann["category_name"]]))
    return hits, checked


def lidar_camera_consistency(nusc, root: Path, camera_poses: bool = True,
                             category: str = "flat.driveable_surface") -> dict:
    """Project every keyframe's LiDAR road points and visible box centres into the six cameras.

    LiDAR points labelled flat.driveable_surface are moved lidar -> ego (LiDAR time) -> global -> ego (the
    camera's capture time) -> camera with the devkit's calibrated_sensor and ego_pose rows, kept when more than
    1 m in front of the camera and inside the image, and compared with the camera's semantics and depth
    map at the rounded pixel; each image's boxes are checked by :func:`box_centre_hits`.

    Args:
        nusc: a nuscenes.nuscenes.NuScenes over the world at ``root`` (with lidarseg).
        root: the world's dataroot.
        camera_poses: False drops each camera's own ego pose (uses the LiDAR's for all sensors), the
            error this check must be able to see.
        category: the lidarseg class of the points moved (``on_road`` only means something for the
            default; a shift of the camera within the ground plane leaves the ground's depth unchanged,
            so "static.manmade" -- buildings -- is what sees in-plane pose errors).
    Returns:
        dict with ``on_road`` (N,) bool, whether each in-image road point lands on a ROADISH pixel;
        ``rel_err`` (V,) float64, |depth map - point z| / z (unitless) for the V <= N points not occluded
        (depth within 50 % of z); ``hits`` int, box centres on their class; ``checked`` int, boxes tested;
        ``per_cam`` {channel: int}, in-image road points per camera; ``cam_rel_err`` {channel: float},
        the median of ``rel_err`` per camera.
    Raises:
        AssertionError: a lidarseg file whose length differs from its point cloud's.
    """
    from nuscenes.utils.data_classes import LidarPointCloud
    from nuscenes.utils.geometry_utils import transform_matrix, view_points

    def matrix(rec) -> np.ndarray:
        return transform_matrix(rec["translation"], Quaternion(rec["rotation"]))

    root = Path(root)
    checked = hits = 0
    rel_err, on_road, per_cam = [], [], {ch: 0 for ch in CAMERA_NAMES}
    cam_err = {ch: [] for ch in CAMERA_NAMES}
    for sample in nusc.sample:
        lsd = nusc.get("sample_data", sample["data"]["LIDAR_TOP"])
        pts = LidarPointCloud.from_file(str(root / lsd["filename"])).points[:3]
        labels = np.fromfile(root / nusc.get("lidarseg", lsd["token"])["filename"], np.uint8)
        assert len(labels) == pts.shape[1], (lsd["filename"], len(labels), pts.shape)
        ground = pts[:, labels == nusc.lidarseg_name2idx_mapping[category]]
        global_T_lidar = (matrix(nusc.get("ego_pose", lsd["ego_pose_token"]))
                          @ matrix(nusc.get("calibrated_sensor", lsd["calibrated_sensor_token"])))
        for ch in CAMERA_NAMES:
            tok = sample["data"][ch]
            sd = nusc.get("sample_data", tok)
            cs = nusc.get("calibrated_sensor", sd["calibrated_sensor_token"])
            # Each camera fires at its own time: through the global frame, with its own ego pose.
            pose = sd if camera_poses else lsd
            global_T_cam = matrix(nusc.get("ego_pose", pose["ego_pose_token"])) @ matrix(cs)
            cam_T_lidar = np.linalg.inv(global_T_cam) @ global_T_lidar
            p = cam_T_lidar[:3, :3] @ ground + cam_T_lidar[:3, 3:4]
            p = p[:, p[2] > 1.0]
            uv = np.round(view_points(p, np.array(cs["camera_intrinsic"]), normalize=True)[:2]).astype(int)
            ok = (uv[0] >= 0) & (uv[0] < sd["width"]) & (uv[1] >= 0) & (uv[1] < sd["height"])
            sem, depth = load_camera_semantics(root, tok), load_camera_depth(root, tok)
            u, v, z = uv[0, ok], uv[1, ok], p[2, ok]
            per_cam[ch] += len(u)
            on_road.append(np.isin(sem[v, u], ROADISH))
            d = depth[v, u]
            vis = np.abs(d - z) < 0.5 * z               # not occluded by a box in front
            rel_err.append(np.abs(d[vis] - z[vis]) / z[vis])
            cam_err[ch].append(rel_err[-1])
            h, c = box_centre_hits(nusc, tok, sem)
            hits, checked = hits + h, checked + c
    return dict(on_road=np.concatenate(on_road), rel_err=np.concatenate(rel_err), hits=hits, checked=checked,
                per_cam=per_cam, cam_rel_err={ch: float(np.median(np.concatenate(e))) for ch, e in cam_err.items()})

"""The nuScenes table writer: static tables (category, attribute, visibility, sensor,
calibrated_sensor, log, map) and, per scene, the sample / sample_data / ego_pose / lidarseg /
instance / sample_annotation rows, including visibility and LiDAR point counts per annotation."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from .config import (ATTRIBUTES, CAMERA_NAMES, LIDAR_NAME, LIDARSEG_CATEGORIES, VISIBILITY, WORLD_RIGS, WorldConfig,
                     _token, _yaw_quaternion)
from .scenery import _Boxes


def _json_dump(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=1))


def _static_tables(cfg: WorldConfig, locations: list, cameras: list) -> dict:
    """{table name: rows} of the tables that do not depend on the scenes; camera intrinsics are
    those at ``cfg.image_wh`` (``_Camera.K_out``)."""
    s = cfg.seed
    tables = {
        "category": [{"token": _token(s, "category", n), "name": n, "description": d, "index": i}
                     for i, (n, d) in enumerate(LIDARSEG_CATEGORIES)],
        "attribute": [{"token": _token(s, "attribute", n), "name": n, "description": d} for n, d in ATTRIBUTES],
        "visibility": [{"token": tok, "level": level, "description": f"visibility of whole object is between "
                        f"{level[1:].split('-')[0]} and {level.split('-')[1]}%"} for tok, level, _ in VISIBILITY],
        "sensor": [], "calibrated_sensor": [],
        "log": [{"token": loc.log_token, "logfile": loc.logfile, "vehicle": "bevlib", "date_captured": "2018-08-01",
                 "location": loc.name} for loc in locations],
        "map": [{"category": "semantic_prior", "token": loc.map_token, "filename": f"maps/{loc.map_token}.png",
                 "log_tokens": [loc.log_token]} for loc in locations],
    }
    for channel in CAMERA_NAMES + (LIDAR_NAME,):
        cam = next((c for c in cameras if c.channel == channel), None)
        rig = cam.rig if cam else WORLD_RIGS[cfg.rig].lidar   # looks move cameras, never the LiDAR
        tables["sensor"].append({"token": _token(s, "sensor", channel), "channel": channel,
                                 "modality": "camera" if cam else "lidar"})
        tables["calibrated_sensor"].append({
            "token": _token(s, "calibrated_sensor", channel), "sensor_token": _token(s, "sensor", channel),
            "translation": list(rig["translation"]), "rotation": list(rig["rotation"]),
            "camera_intrinsic": cam.K_out.tolist() if cam else []})
    return tables


def _visibility_token(hit_px: int, visible_px: int) -> str:
    """nuScenes visibility level of a box from the pixels its surface covers in all cameras before
    (``hit_px``) and after (``visible_px``) occlusion; boxes no camera sees get the lowest level."""
    frac = visible_px / hit_px if hit_px > 0 else 0.0
    return next(tok for tok, _, upper in VISIBILITY if frac < upper)


def _scene_name(index: int) -> str:
    return f"scene-{index + 1:04d}"


def _scene_tables(tables: dict, cfg: WorldConfig, frames: list, actors: list, cameras: list, scene_tok: str,
                  bar) -> None:
    """Append the sample/sample_data/ego_pose/annotation rows of one scene (waits for its renders)."""
    s = cfg.seed
    cat_token = {c["name"]: c["token"] for c in tables["category"]}
    attr_token = {a["name"]: a["token"] for a in tables["attribute"]}
    channels = CAMERA_NAMES + (LIDAR_NAME,)
    anns_by_actor: dict[int, list] = {}
    for i, fr in enumerate(frames):
        prev_fr = frames[i - 1] if i > 0 else None
        next_fr = frames[i + 1] if i + 1 < len(frames) else None
        tables["sample"].append({"token": fr["sample"], "timestamp": fr["ts"], "scene_token": scene_tok,
                                 "prev": prev_fr["sample"] if prev_fr else "",
                                 "next": next_fr["sample"] if next_fr else ""})
        x, y, yaw = fr["pose"]
        for ch in channels:
            tok = fr["sd"][ch]
            cx, cy, cyaw = fr["sd_pose"][ch]
            tables["ego_pose"].append({"token": tok, "timestamp": fr["sd_ts"][ch], "rotation": _yaw_quaternion(cyaw),
                                       "translation": [cx, cy, 0.0]})
            is_cam = ch != LIDAR_NAME
            tables["sample_data"].append({
                "token": tok, "sample_token": fr["sample"], "ego_pose_token": tok,
                "calibrated_sensor_token": _token(s, "calibrated_sensor", ch), "timestamp": fr["sd_ts"][ch],
                "fileformat": "jpg" if is_cam else "pcd", "is_key_frame": True,
                "height": cfg.image_wh[1] if is_cam else 0, "width": cfg.image_wh[0] if is_cam else 0,
                "filename": fr["files"][ch], "prev": prev_fr["sd"][ch] if prev_fr else "",
                "next": next_fr["sd"][ch] if next_fr else ""})
        lidar_tok = fr["sd"][LIDAR_NAME]
        tables["lidarseg"].append({"token": lidar_tok, "sample_data_token": lidar_tok,
                                   "filename": f"lidarseg/{cfg.version}/{lidar_tok}_lidarseg.bin"})
        boxes: _Boxes = fr["boxes"]
        hit_px = np.zeros(len(boxes), np.int64)
        vis_px = np.zeros(len(boxes), np.int64)
        for cam in cameras:
            h, w = fr["jobs"][cam.channel].result()
            hit_px += h
            vis_px += w
        lidar_pts = fr["jobs"][LIDAR_NAME].result()[:len(boxes)]
        for k in np.flatnonzero(boxes.ref >= 0):
            if math.hypot(boxes.cx[k] - x, boxes.cy[k] - y) > cfg.annotation_range:
                continue
            ai = int(boxes.ref[k])
            a = actors[ai]
            anns_by_actor.setdefault(ai, []).append({
                "token": _token(s, "sample_annotation", scene_tok, ai, fr["k"]), "sample_token": fr["sample"],
                "visibility_token": _visibility_token(int(hit_px[k]), int(vis_px[k])),
                "attribute_tokens": [attr_token[a.attribute]] if a.attribute else [],
                "translation": [float(boxes.cx[k]), float(boxes.cy[k]), float(0.5 * (boxes.z0[k] + boxes.z1[k]))],
                "size": list(a.size), "rotation": _yaw_quaternion(float(boxes.yaw[k])),
                "num_lidar_pts": int(lidar_pts[k]), "num_radar_pts": 0})
        bar.update(1)
    for ai in sorted(anns_by_actor):
        anns = anns_by_actor[ai]
        inst_tok = _token(s, "instance", scene_tok, ai)
        for j, ann in enumerate(anns):
            ann["instance_token"] = inst_tok
            ann["prev"] = anns[j - 1]["token"] if j > 0 else ""
            ann["next"] = anns[j + 1]["token"] if j + 1 < len(anns) else ""
            tables["sample_annotation"].append(ann)
        tables["instance"].append({"token": inst_tok, "category_token": cat_token[actors[ai].category],
                                   "nbr_annotations": len(anns), "first_annotation_token": anns[0]["token"],
                                   "last_annotation_token": anns[-1]["token"]})

"""Real-input check of the BEV -> camera renderer on one real nuScenes keyframe.

The embedded world the rest of the suite trains on is synthetic, so nothing there can reveal a
convention that is consistently wrong everywhere (a mirrored BEV axis, a transposed extrinsic, a
half-pixel shift). This module closes that loop on real data (``../shared/nuscenes-keyframe``,
nuScenes v1.0-mini scene-0061): the drivable-area polygons of the map (global frame) are rasterised
into a BEV map around the ego pose, rendered into the six real cameras with
:func:`bevlib.render.render_bev` (busch2026 Sec. III-B), and compared with an independent
measurement of where the ground is: LiDAR returns on the road surface, projected into the same
cameras with :func:`bevlib.geometry.project`. If the renderer's pixel -> ground mapping is right,
ground returns inside the drivable area land on pixels the renderer marks drivable.

Frames: the BEV map, the LiDAR points and the rendering all live in the ego frame of the LiDAR
keyframe (``ego_ref``). Each camera fired at its own time, so its extrinsic into ``ego_ref`` is
composed through the global frame (``ego_ref_T_cam = ego_ref_T_global @ global_T_ego_cam @
ego_cam_T_cam``), exactly as nuscenes-devkit's ``map_pointcloud_to_image`` chains LiDAR to camera.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import shapely
import shapely.affinity
import shapely.geometry
import torch
from PIL import Image

from .bev import BEVGrid
from .data.nuscenes_data import CAMERAS
from .data.source import real_keyframe_root
from .geometry import invert, project, scale_intrinsics, transform_from
from .io import atomic_write, atomic_write_text
from .paths import project_root

#: Height band (metres, ego frame) of "ground" LiDAR returns. The ego origin is on the ground below
#: the rear axle; on this keyframe the returns within 10 m of the ego have 1st-50th percentile
#: heights of -0.05 .. 0.01 m, so +-0.15 m keeps the road surface with margin for pitch and
#: camber, and drops curbs, vehicles, and a lower surface 10-28 m to the ego's right at
#: -0.3 .. -0.5 m that the flat-ground (z = 0) rendering cannot place anyway.
GROUND_Z_TOL_M = 0.15
_TINT = np.array([0, 170, 255], dtype=np.float32)      # drivable overlay colour (RGB)
_TINT_ALPHA = 0.45


def _save_png(img: np.ndarray, path: Path) -> None:
    atomic_write(path, lambda tmp: Image.fromarray(img).save(tmp, format="PNG"))


def load_drivable_area(path) -> shapely.Geometry:
    """Drivable-area polygons of a map from a GeoJSON file (``Polygon`` / ``MultiPolygon``).

    Args:
        path: e.g. ``<dataroot>/maps/onenorth_drivable_area.json``; coordinates are metres in the
            nuScenes *global* frame of that map location.
    Returns: a shapely (Multi)Polygon, global frame.
    Raises: FileNotFoundError if absent; ValueError if the file is not a GeoJSON polygon geometry.
    """
    with open(path) as f:
        gj = json.load(f)
    if gj.get("type") == "Feature":
        gj = gj["geometry"]
    geom = shapely.geometry.shape(gj)
    if geom.geom_type not in ("Polygon", "MultiPolygon"):
        raise ValueError(f"{path}: expected a GeoJSON Polygon or MultiPolygon, got {geom.geom_type}")
    return geom


def _to_ego(polygons_global, global_T_ego: np.ndarray):
    """Polygons from the global into the ego frame (planar part of ``ego_T_global``).

    The map polygons lie on the global z = 0 plane, so a point (x, y, 0) maps to
    ``ego_T_global[:2, :2] @ (x, y) + ego_T_global[:2, 3]``: an exact 2-D affine map."""
    if isinstance(polygons_global, dict):
        polygons_global = shapely.geometry.shape(polygons_global)
    E = invert(np.asarray(global_T_ego, dtype=np.float64))
    return shapely.affinity.affine_transform(
        polygons_global, [E[0, 0], E[0, 1], E[1, 0], E[1, 1], E[0, 3], E[1, 3]])


def rasterize_drivable_area(polygons_global, global_T_ego: np.ndarray, grid: BEVGrid) -> np.ndarray:
    """Drivable-area BEV map around an ego pose (cell centre inside a polygon -> 1).

    Args:
        polygons_global: shapely (Multi)Polygon or GeoJSON geometry dict, metres, global frame
            (see :func:`load_drivable_area`).
        global_T_ego: (4, 4) ego -> global transform (nuScenes ``ego_pose``), float64.
        grid: BEV extent and resolution; rows/columns follow :mod:`bevlib.bev`.
    Returns: (H, W) float32 in {0, 1}, row 0 = front edge (``x_max``), column 0 = left (``y_max``).
    """
    ego_geom = _to_ego(polygons_global, global_T_ego)
    extent = shapely.box(grid.x_min, grid.y_min, grid.x_max, grid.y_max)
    # Clipping to the grid first keeps the point-in-polygon test to the few edges that matter.
    local = ego_geom.intersection(extent.buffer(max(grid.cell_size)))
    shapely.prepare(local)
    c = grid.cell_centers()
    inside = shapely.contains_xy(local, c[..., 0], c[..., 1])
    return inside.astype(np.float32)


def _keyframe_records(nusc, sample):
    """Per-camera calibration into the LiDAR keyframe's ego frame, and the LiDAR points there.

    Raises: DataError (:mod:`bevlib.data.lidar`) when the keyframe has no LIDAR_TOP or its point
        file is missing or truncated."""
    from .data.lidar import load_lidar_sweep
    from .data.nuscenes_data import DataError

    sweep = load_lidar_sweep(nusc, sample["token"])
    if sweep is None:
        raise DataError(f"sample {sample['token']} has no LIDAR_TOP: the check measures against LiDAR ground returns")
    lidar = nusc.get("sample_data", sweep.sample_data_token)
    ep = nusc.get("ego_pose", lidar["ego_pose_token"])
    global_T_ego = transform_from(ep["translation"], ep["rotation"])
    pts_ego = sweep.points_ego
    cams = {}
    for ch in CAMERAS:
        sd = nusc.get("sample_data", sample["data"][ch])
        cs_c = nusc.get("calibrated_sensor", sd["calibrated_sensor_token"])
        ep_c = nusc.get("ego_pose", sd["ego_pose_token"])
        ego_T_cam = (invert(global_T_ego) @ transform_from(ep_c["translation"], ep_c["rotation"])
                     @ transform_from(cs_c["translation"], cs_c["rotation"]))
        cams[ch] = dict(K=np.asarray(cs_c["camera_intrinsic"], np.float64), ego_T_cam=ego_T_cam,
                        wh=(sd["width"], sd["height"]), path=nusc.get_sample_data_path(sd["token"]))
    return global_T_ego, pts_ego, cams


def _overlay(img: np.ndarray, drivable: np.ndarray, uv_ok: np.ndarray, uv_bad: np.ndarray) -> np.ndarray:
    """Tint rendered drivable pixels; mark agreeing (green) / disagreeing (red) LiDAR ground points."""
    a = (_TINT_ALPHA * np.clip(drivable, 0, 1))[..., None]
    out = img.astype(np.float32) * (1 - a) + _TINT * a
    h, w = drivable.shape
    for uv, col in ((uv_ok, (40, 255, 40)), (uv_bad, (255, 30, 30))):
        for du in (-1, 0, 1):           # 3x3 dots: visible at 800 x 450 without hiding the road
            for dv in (-1, 0, 1):
                u = np.clip(uv[:, 0] + du, 0, w - 1)
                v = np.clip(uv[:, 1] + dv, 0, h - 1)
                out[v, u] = col
    return out.round().clip(0, 255).astype(np.uint8)


def real_keyframe_check(dataroot=None, out_dir="outputs/real_keyframe", image_wh: tuple[int, int] = (800, 450),
                        grid: BEVGrid = BEVGrid(), sample_token: str | None = None,
                        ground_z_tol: float = GROUND_Z_TOL_M) -> dict:
    """Render the map's drivable area into the six real cameras and measure it against LiDAR.

    busch2026 Sec. III-B renders the BEV map onto the ground plane z = 0 of the ego frame; this
    checks that construction (through :func:`bevlib.render.render_bev`, analytic backend) on real
    calibration: LiDAR ground returns (``|z_ego| < ground_z_tol``) whose (x, y) lies inside the
    grid and inside the drivable-area polygons are projected into each camera
    (:func:`bevlib.geometry.project`); the *agreement rate* is the fraction of those landing in the
    image on a pixel the renderer marks drivable (rendered value > 0.5). A pixel outside the
    rendered grid or above the horizon counts as a disagreement.

    Args:
        dataroot: nuScenes root holding ``v1.0-mini`` and ``maps/<location>_drivable_area.json``
            (GeoJSON, global frame); default :func:`bevlib.data.source.real_keyframe_root`.
        out_dir: where the PNGs and ``agreement.json`` go (created; files written atomically). A
            relative path is taken relative to the project root, so the default
            ``outputs/real_keyframe`` lands in the project's outputs whatever the working directory.
        image_wh: (width, height) pixels of the rendered images; intrinsics are rescaled from the
            1600 x 900 originals with :func:`bevlib.geometry.scale_intrinsics`.
        grid: BEV extent / resolution (default: busch2026 Sec. IV-A, 60 m x 30 m at 150 x 150).
        sample_token: keyframe to use (default: the first sample).
        ground_z_tol: half-height (metres) of the ground band, see :data:`GROUND_Z_TOL_M`.
    Returns: dict with
        ``overall`` {rate, n_points, n_agree}, ``per_camera`` {channel: {rate, n_points, n_agree,
        negative_rate, n_negative}} (``negative_rate``: ground returns *outside* the drivable area
        landing on non-drivable pixels, a specificity check), ``files`` {name: path},
        ``bev_drivable_fraction``, ``sample_token``, ``grid``, ``image_wh``, ``ground_z_tol``.
    Raises:
        FileNotFoundError: dataroot or the drivable-area file is missing.
    """
    from nuscenes.nuscenes import NuScenes

    from .render import render_bev

    dataroot = Path(dataroot) if dataroot is not None else real_keyframe_root()
    out_dir = Path(out_dir)
    if not out_dir.is_absolute():
        out_dir = project_root() / out_dir
    if not (dataroot / "v1.0-mini").is_dir():
        raise FileNotFoundError(f"no nuScenes v1.0-mini tables under {dataroot}")
    nusc = NuScenes(version="v1.0-mini", dataroot=str(dataroot), verbose=False)
    sample = nusc.get("sample", sample_token) if sample_token else nusc.sample[0]
    location = nusc.get("log", nusc.get("scene", sample["scene_token"])["log_token"])["location"]
    # nuScenes locations are "<city>-<area>"; the area names the map file (onenorth, seaport, ...).
    map_path = dataroot / "maps" / f"{location.split('-', 1)[-1]}_drivable_area.json"
    if not map_path.exists():
        raise FileNotFoundError(f"drivable-area polygons for {location!r} not found at {map_path}")
    polys_global = load_drivable_area(map_path)

    global_T_ego, pts_ego, cams = _keyframe_records(nusc, sample)
    bev = rasterize_drivable_area(polys_global, global_T_ego, grid)
    poly_ego = _to_ego(polys_global, global_T_ego)
    shapely.prepare(poly_ego)

    w, h = image_wh
    K = np.stack([scale_intrinsics(cams[c]["K"], cams[c]["wh"], (w, h)) for c in CAMERAS])
    T = np.stack([cams[c]["ego_T_cam"] for c in CAMERAS])
    with torch.no_grad():
        pred, valid = render_bev(torch.from_numpy(bev)[None, None], K[None], T[None], (h, w), grid)
    drivable = (pred[0, :, 0] * valid[0]).numpy()                                   # (6, h, w)

    ground = (np.abs(pts_ego[:, 2]) < ground_z_tol) & grid.contains(pts_ego[:, :2])
    in_poly = shapely.contains_xy(poly_ego, pts_ego[:, 0], pts_ego[:, 1])

    per_cam, files, tiles = {}, {}, []
    tot_n = tot_agree = 0
    for i, ch in enumerate(CAMERAS):
        uv, _, in_front = project(K[i], invert(T[i]), pts_ego)
        px = np.round(np.nan_to_num(uv, nan=-1.0)).astype(np.int64)
        in_img = in_front & (px[:, 0] >= 0) & (px[:, 0] < w) & (px[:, 1] >= 0) & (px[:, 1] < h)
        sel_pos = ground & in_poly & in_img
        sel_neg = ground & ~in_poly & in_img
        hit = np.zeros(len(pts_ego), bool)
        hit[in_img] = drivable[i][px[in_img, 1], px[in_img, 0]] > 0.5
        n, n_agree = int(sel_pos.sum()), int((sel_pos & hit).sum())
        n_neg, n_neg_agree = int(sel_neg.sum()), int((sel_neg & ~hit).sum())
        per_cam[ch] = dict(rate=n_agree / n if n else float("nan"), n_points=n, n_agree=n_agree,
                           negative_rate=n_neg_agree / n_neg if n_neg else float("nan"), n_negative=n_neg)
        tot_n += n
        tot_agree += n_agree

        img = np.asarray(Image.open(cams[ch]["path"]).convert("RGB").resize((w, h), Image.BILINEAR))
        tile = _overlay(img, drivable[i], px[sel_pos & hit], px[sel_pos & ~hit])
        files[ch] = str(out_dir / f"{ch}.png")
        _save_png(tile, out_dir / f"{ch}.png")
        tiles.append(tile)

    mosaic = np.concatenate([np.concatenate(tiles[:3], 1), np.concatenate(tiles[3:], 1)], 0)
    files["mosaic"] = str(out_dir / "mosaic.png")
    _save_png(mosaic, out_dir / "mosaic.png")
    # The BEV map itself, driver-up, with the LiDAR ground returns: makes a frame mix-up visible.
    bev_img = np.repeat((bev * 200 + 30).astype(np.uint8)[..., None], 3, -1)
    rc = np.round(grid.xy_to_rowcol(pts_ego[ground, :2])).astype(np.int64)
    rc = rc[(rc[:, 0] >= 0) & (rc[:, 0] < grid.H) & (rc[:, 1] >= 0) & (rc[:, 1] < grid.W)]
    bev_img[rc[:, 0], rc[:, 1]] = (255, 60, 60)
    # Nearest upsampling to ~4 px per finest cell, with metric aspect (cells need not be square).
    dx, dy = grid.cell_size
    bev_img = np.repeat(np.repeat(bev_img, max(1, round(4 * dx / min(dx, dy))), 0),
                        max(1, round(4 * dy / min(dx, dy))), 1)
    files["bev"] = str(out_dir / "bev_drivable.png")
    _save_png(bev_img, out_dir / "bev_drivable.png")

    result = dict(
        sample_token=sample["token"], grid=grid.as_dict(), image_wh=[w, h], ground_z_tol=ground_z_tol,
        bev_drivable_fraction=float(bev.mean()),
        overall=dict(rate=tot_agree / tot_n if tot_n else float("nan"), n_points=tot_n, n_agree=tot_agree),
        per_camera=per_cam, files=files)
    files["json"] = str(out_dir / "agreement.json")
    atomic_write_text(out_dir / "agreement.json", json.dumps(result, indent=1))
    return result


def main(argv=None) -> int:
    """``python -m bevlib.real_keyframe [--dataroot D] [--out O]``: run the check, print the rates."""
    import argparse
    import json

    ap = argparse.ArgumentParser(description="Render the real keyframe's drivable area into its 6 cameras "
                                             "and measure agreement with the LiDAR ground returns.")
    ap.add_argument("--dataroot", default=None, help="nuScenes keyframe root (default: ../shared/nuscenes-keyframe)")
    ap.add_argument("--out", default="outputs/real_keyframe", help="output directory for overlays and agreement.json")
    args = ap.parse_args(argv)
    res = real_keyframe_check(dataroot=args.dataroot, out_dir=args.out)
    print(json.dumps({k: v for k, v in res.items() if k != "files"}, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

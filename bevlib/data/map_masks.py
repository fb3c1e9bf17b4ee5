"""Multi-label BEV map masks as BEVFusion draws them for BEV map segmentation.

BEVFusion (Liu et al., "BEVFusion: Multi-Task Multi-Sensor Fusion with Unified Bird's-Eye View
Representation", Sec. 5 "BEV map segmentation"; mmdet3d/datasets/pipelines/loading.py
``LoadBEVSegmentation``) rasterises one binary mask per map class with nuscenes-devkit's
``NuScenesMap.get_map_mask`` over a patch centred on the LiDAR keyframe's ego pose and rotated by
its yaw; classes may overlap (a ped crossing is also drivable), so the target is multi-label. The
combined-datasets paper (Appendix C.2) fine-tunes with the same head and labels.

Classes: BEVFusion's order (drivable_area, ped_crossing, walkway, stop_line, carpark_area, divider)
restricted to the layers the embedded world writes (:mod:`bevlib.data.world.map_expansion` writes no
``carpark_area`` records, so that class would be empty everywhere and is left out).

Differences from BEVFusion, on purpose:

* the patch is centred half a cell off the grid centre so that the devkit canvas's pixel centres
  (integer coordinates in OpenCV) coincide with :class:`~bevlib.bev.BEVGrid`'s cell centres;
  BEVFusion centres the patch on the ego and lives with the half-pixel offset.
* ``divider`` (``road_divider`` + ``lane_divider``): the devkit draws lines 2 px wide whatever the
  resolution, and its ``mask_for_lines`` iterates a ``MultiLineString`` directly, which shapely 2
  no longer allows (a divider cut twice by the rotated patch crashes it). We take the devkit's
  patch-local line geometry (``get_map_geom``) and mark the cells whose centre lies within
  ``divider_width_m / 2`` of a line. The default 1.0 m is what 2 px are at BEVFusion's 0.5 m cells.

Orientation: the devkit canvas has rows along the lateral axis (row 0 at the right, ``y_min``) and
columns along the longitudinal axis (column 0 at the rear, ``x_min``); BEVGrid has row 0 at the
front (``x_max``) and column 0 at the left (``y_max``), so ``grid = canvas.T[::-1, ::-1]``.
"""
from __future__ import annotations

import numpy as np
import shapely
from shapely.ops import unary_union

from ..bev import BEVGrid
from .nuscenes_data import DataError, global_T_ego, map_for_sample

#: The map classes of BEV map segmentation, in BEVFusion's order (carpark_area omitted: the
#: embedded world has none).
MAP_SEG_CLASSES = ("drivable_area", "ped_crossing", "walkway", "stop_line", "divider")
#: nuScenes map-expansion layers that make up each class.
CLASS_LAYERS = {"drivable_area": ("drivable_area",), "ped_crossing": ("ped_crossing",), "walkway": ("walkway",),
                "stop_line": ("stop_line",), "carpark_area": ("carpark_area",),
                "divider": ("road_divider", "lane_divider")}
#: BEVFusion's map-segmentation grid: [-50, 50] m both axes at 0.5 m (200 x 200).
BEVSEG_GRID = BEVGrid(x_min=-50.0, x_max=50.0, y_min=-50.0, y_max=50.0, H=200, W=200)


def ego_yaw_deg(global_T_ego_: np.ndarray) -> float:
    """Heading of the ego x axis in the global frame, degrees counter-clockwise from global x
    (BEVFusion: ``arctan2`` of the rotated unit x vector; pitch and roll are ignored)."""
    return float(np.degrees(np.arctan2(global_T_ego_[1, 0], global_T_ego_[0, 0])))


def patch_for_grid(global_T_ego_: np.ndarray, grid: BEVGrid) -> tuple[tuple[float, float, float, float], float]:
    """The devkit ``(patch_box, patch_angle)`` whose canvas of ``(grid.W, grid.H)`` pixels has its
    pixel centres on ``grid``'s cell centres.

    ``patch_box = (x_center, y_center, height, width)`` in global metres with height along the
    ego's lateral axis and width along its longitudinal axis; ``patch_angle`` the ego yaw in degrees.
    The devkit maps a global point to patch-local ``R(-yaw)(p - c)`` and a pixel index ``k`` to local
    ``-width / 2 + k * dx``; the grid wants ``x_min + (k + 0.5) dx``, hence the centre
    ``((x_min + x_max + dx) / 2, (y_min + y_max + dy) / 2)`` in the ego frame.
    """
    dx, dy = grid.cell_size
    c_ego = np.array([(grid.x_min + grid.x_max + dx) / 2.0, (grid.y_min + grid.y_max + dy) / 2.0, 0.0, 1.0])
    c = global_T_ego_ @ c_ego
    box = (float(c[0]), float(c[1]), float(grid.y_max - grid.y_min), float(grid.x_max - grid.x_min))
    return box, ego_yaw_deg(global_T_ego_)


def map_masks(nusc, sample_token: str, grid: BEVGrid = BEVSEG_GRID, classes=MAP_SEG_CLASSES,
              divider_width_m: float = 1.0) -> np.ndarray:
    """Multi-label map masks of a keyframe on a BEV grid.

    Args:
        nusc: an open ``NuScenes`` (the map expansion must be under ``<dataroot>/maps/expansion``).
        sample_token: the keyframe; the frame is the ego frame of its LIDAR_TOP sample_data
            (CAM_FRONT when there is no LiDAR), as everywhere in bevlib.
        grid: BEV grid (row 0 = front edge, column 0 = left edge; see :mod:`bevlib.bev`).
        classes: names from :data:`CLASS_LAYERS`; the channel order of the result.
        divider_width_m: width of divider lines in metres (cells whose centre is within half of
            it are set).
    Returns: (C, H, W) bool, C = ``len(classes)``; channels may overlap (multi-label).
    Raises:
        ValueError: an unknown class name or ``divider_width_m <= 0``.
        DataError: the keyframe's location has no map expansion.
    Source: BEVFusion ``LoadBEVSegmentation`` (nuscenes-devkit ``get_map_mask``); see the module
    docstring for what differs.
    """
    bad = [c for c in classes if c not in CLASS_LAYERS]
    if bad or not classes:
        raise ValueError(f"classes must be a non-empty subset of {tuple(CLASS_LAYERS)}, got unknown {bad or classes}")
    if not divider_width_m > 0:
        raise ValueError(f"divider_width_m must be > 0, got {divider_width_m}")
    nusc_map = map_for_sample(nusc, sample_token)
    if nusc_map is None:
        raise DataError(f"no map expansion for sample {sample_token!r} under {nusc.dataroot}/maps/expansion")
    box, angle = patch_for_grid(global_T_ego(nusc, sample_token), grid)
    out = np.zeros((len(classes), grid.H, grid.W), bool)
    poly_layers = sorted({lay for c in classes if c != "divider" for lay in CLASS_LAYERS[c]})
    if poly_layers:
        layer_mask = dict(zip(poly_layers, nusc_map.get_map_mask(box, angle, poly_layers,
                                                                 canvas_size=(grid.W, grid.H))))
    for k, name in enumerate(classes):
        if name == "divider":
            out[k] = _divider_mask(nusc_map, box, angle, grid, divider_width_m)
        else:
            canvas = np.any([layer_mask[lay] for lay in CLASS_LAYERS[name]], axis=0)
            out[k] = canvas.T[::-1, ::-1]
    return out


def _divider_mask(nusc_map, box, angle, grid: BEVGrid, width_m: float) -> np.ndarray:
    # The patch grows by the line width so that a line just outside the grid still marks the
    # edge cells within reach; the centre (and so the patch-local frame) stays the same.
    big = (box[0], box[1], box[2] + 2 * width_m, box[3] + 2 * width_m)
    geoms = [g for _, layer in nusc_map.get_map_geom(big, angle, list(CLASS_LAYERS["divider"])) for g in layer]
    lines = unary_union([g for g in geoms if not g.is_empty])
    if lines.is_empty:
        return np.zeros((grid.H, grid.W), bool)
    # Patch-local coordinates are ego coordinates minus the patch centre (see patch_for_grid).
    dx, dy = grid.cell_size
    xy = grid.cell_centers().reshape(-1, 2) - [(grid.x_min + grid.x_max + dx) / 2.0, (grid.y_min + grid.y_max + dy) / 2.0]
    # Exact distances rather than a buffer: a buffer's round caps are polygons, off by up to ~2 %.
    shapely.prepare(lines)
    return (shapely.distance(lines, shapely.points(xy)) < width_m / 2.0).reshape(grid.H, grid.W)

"""BEV map ground truth drawn the way HDMapNet / BEVFormer_segmentation_detection draw it.

busch2026 evaluates with BEVFormer_segmentation_detection (Bin-ze/BEVFormer_segmentation_detection),
whose map labels are HDMapNet's (Tsinghua-MARS-Lab/HDMapNet) code, copied nearly verbatim. The rules
below were read in HDMapNet ``data/vector_map.py`` (``VectorizedLocalMap``) and ``data/rasterize.py``
(``preprocess_map``, ``line_geom_to_mask``, ``mask_for_lines``, ``overlap_filter``), and in
BEVFormer_segmentation_detection ``projects/mmdet3d_plugin/datasets/utils/{vector_map,rasterize}.py``,
``datasets/pipelines/rasterize.py`` (``RasterizeMapVectors``), ``datasets/nuscenes_dataset.py``,
``apis/test.py`` (the IoU) and ``projects/configs/bevformer/*seg*.py`` (``map_grid_conf``):

1. **Vectors** (metres, ego frame; only yaw is used for the global -> ego rotation there):
   * divider: every ``lane_divider`` and ``road_divider`` line, clipped to the patch; each part of a
     clipped line is its own vector (no merging).
   * ped_crossing: for every ``ped_crossing`` polygon (one record at a time, never merged), the
     exterior ring's edges are ranked by length and the **two longest edges** are kept
     (``np.argsort(squared_length)[-2:]``), each clipped to the patch.
   * contour: ``union(union(road_segment), union(lane))`` (the devkit's ``_get_layer_polygon``
     clips every record to the patch and skips records whose polygon is invalid); every exterior
     ring (made clockwise) and interior ring (made counter-clockwise) is intersected with the patch
     shrunk by 0.2 m on every side (so the patch border, where the polygons were cut, is never a
     boundary), and the pieces of one ring are line-merged.
   * every vector is resampled at 1 m: points at ``np.arange(0, length, 1)`` along it, so the true
     end point is dropped (up to 1 m of every line is lost) and a vector with < 2 points (shorter
     than 1 m) is dropped.
2. **Canvas**: ``map_grid_conf`` xbound [-30, 30, 0.15] (x, longitudinal) and ybound [-15, 15, 0.15]
   (y, lateral): a (200, 400) canvas, rows along y with row 0 at y = -15 (the right edge), columns
   along x with column 0 at x = -30 (the rear edge). The IoU is computed on this canvas (the seg
   head resamples the BEV features to it), not on the 150 x 150 query grid.
3. **Drawing**: metres -> canvas by translating by half the patch and scaling by canvas/patch,
   then ``np.int32`` truncation; ``cv2.polylines(mask, [pts], False, color, thickness=5)`` with
   the default ``LINE_8`` (no anti-aliasing, no sub-pixel shift), one mask per class. OpenCV's
   thickness 5 covers the centre pixel +- 3 across an axis-aligned line (7 px = 1.05 m at 0.15 m),
   with round ends; OpenCV 4.5.5 (HDMapNet's pin) and 4.11 draw the same pixels.
4. **Overlap**: class order divider (0) < ped_crossing (1) < contour (2). For each class c from
   the highest down, every lower class is erased wherever class c drawn with thickness 5 + 4 = 9 px
   is set. The result is one label per pixel (the "semantic masks" are mutually exclusive), so
   BEVFormer_segmentation_detection's ``semantic_indices = sum(mask_c * (c + 1))`` is a class map
   1 divider, 2 ped_crossing, 3 boundary, and its IoU (``apis/test.py``) compares it with the argmax
   of the prediction. The eraser (thickness 9: centre +- 5 px) is wider than the line (+- 3 px), so
   where a higher class passes, lower classes keep a 2-px background margin on either side.

This module maps that result to our classes (1 boundary, 2 lane, 3 crosswalk) and our grid
(:mod:`bevlib.bev`: row 0 = front edge x_max, column 0 = left edge y_max). The one mapping from
ego metres to canvas pixels (:func:`ego_to_canvas`), for a canvas of ``(canvas_h, canvas_w)``
covering the grid's extent at ``resolution_m``::

    u = (x - x_min) * canvas_w / (x_max - x_min)     canvas column (longitudinal, 0 at the rear)
    v = (y - y_min) * canvas_h / (y_max - y_min)     canvas row (lateral, 0 at the right)

A point is drawn in pixel ``(row, col) = (int(v), int(u))``: OpenCV puts pixel centres at integer
coordinates, so after truncation pixel (v, u) holds the points of the metric cell
``[x_min + u r, x_min + (u + 1) r) x [y_min + v r, y_min + (v + 1) r)``, centre ``+ r / 2``: the same
cell-centre convention as :class:`~bevlib.bev.BEVGrid`. A grid cell takes the canvas pixel that
contains its centre; when the grid has the canvas's resolution (``BEVGrid(H=400, W=200)`` for the
60 x 30 m patch at 0.15 m) this is exactly ``labels = canvas.T[::-1, ::-1]``.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry
from shapely.ops import linemerge, unary_union

from ..bev import BEVGrid
from ..classes import class_index

#: The reference's vector classes in its channel order (= its overlap priority, lowest first).
REF_CLASSES = ("divider", "ped_crossing", "contour")
#: Reference semantic index (0 background, 1 divider, 2 ped_crossing, 3 contour) -> our BEV class.
REF_TO_BEV = np.array([0, class_index("lane"), class_index("crosswalk"), class_index("boundary")], np.uint8)
#: Keys of the geometry dict (those of ``nuscenes_data.map_geometries_ego``).
GEOM_KEYS = ("divider", "crosswalk", "road")


@dataclass(frozen=True)
class HDMapRasterConfig:
    """The reference's drawing parameters (BEVFormer_segmentation_detection's defaults).

    Attributes:
        resolution_m: canvas pixel size in metres, both axes (``map_grid_conf`` xbound/ybound step).
        thickness_px: ``cv2.polylines`` thickness of every class (``map_thickness``), in canvas pixels.
        filter_extra_px: extra thickness of the masks with which a class erases lower classes
            (``overlap_filter`` uses ``thickness + 4``).
        sample_dist_m: resampling step of every vector (``VectorizedLocalMap.sample_dist``); None
            draws the clipped vertices as they are (not the reference: no dropped line ends).
        contour_margin_m: the patch is shrunk by this much before road contours are cut to it.
    """

    resolution_m: float = 0.15
    thickness_px: int = 5
    filter_extra_px: int = 4
    sample_dist_m: float | None = 1.0
    contour_margin_m: float = 0.2

    def __post_init__(self):
        if not self.resolution_m > 0:
            raise ValueError(f"resolution_m must be > 0, got {self.resolution_m}")
        if int(self.thickness_px) != self.thickness_px or self.thickness_px < 1:
            raise ValueError(f"thickness_px must be an integer >= 1, got {self.thickness_px}")
        if int(self.filter_extra_px) != self.filter_extra_px or self.filter_extra_px < 0:
            raise ValueError(f"filter_extra_px must be an integer >= 0, got {self.filter_extra_px}")
        if self.sample_dist_m is not None and not self.sample_dist_m > 0:
            raise ValueError(f"sample_dist_m must be > 0 or None, got {self.sample_dist_m}")
        if not self.contour_margin_m >= 0:
            raise ValueError(f"contour_margin_m must be >= 0, got {self.contour_margin_m}")


def canvas_shape(grid: BEVGrid, cfg: HDMapRasterConfig = HDMapRasterConfig()) -> tuple[int, int]:
    """(canvas_h, canvas_w) of the reference canvas over ``grid``'s extent: rows along lateral y,
    columns along longitudinal x, ``int(extent / resolution_m)`` as the reference truncates.
    (200, 400) for the default 60 x 30 m grid.

    Raises:
        ValueError: when the extent is smaller than one pixel.
    """
    ch = int((grid.y_max - grid.y_min) / cfg.resolution_m)
    cw = int((grid.x_max - grid.x_min) / cfg.resolution_m)
    if ch < 1 or cw < 1:
        raise ValueError(f"grid extent {grid.x_max - grid.x_min} x {grid.y_max - grid.y_min} m is smaller than "
                         f"one {cfg.resolution_m} m canvas pixel")
    return ch, cw


def ego_to_canvas(xy: np.ndarray, grid: BEVGrid, cfg: HDMapRasterConfig = HDMapRasterConfig()) -> np.ndarray:
    """Ego (x, y) metres (..., 2) -> continuous canvas coordinates (u, v) (..., 2) float64.

    u is the canvas column (x, 0 at ``x_min``), v the row (y, 0 at ``y_min``), in pixels; the
    pixel that holds a point is ``(row, col) = (int(v), int(u))`` (the reference truncates).
    """
    ch, cw = canvas_shape(grid, cfg)
    xy = np.asarray(xy, np.float64)
    u = (xy[..., 0] - grid.x_min) * (cw / (grid.x_max - grid.x_min))
    v = (xy[..., 1] - grid.y_min) * (ch / (grid.y_max - grid.y_min))
    return np.stack([u, v], -1)


def _atoms(value) -> list[BaseGeometry]:
    """Non-empty single-part geometries of a geometry, a multi-geometry or a sequence of them."""
    if value is None:
        return []
    items = [value] if isinstance(value, BaseGeometry) else list(value)
    out = []
    for g in items:
        if g is None:
            continue
        if not isinstance(g, BaseGeometry):
            raise TypeError(f"expected shapely geometries, got {type(g).__name__}")
        if g.is_empty:
            continue
        out.extend(_atoms(list(g.geoms)) if hasattr(g, "geoms") else [g])
    return out


def _lines(value, what: str = "") -> list[shapely.LineString]:
    """LineString parts of ``value``; points (touching intersections) are dropped, and polygons
    are an error when ``what`` names user input."""
    out = []
    for g in _atoms(value):
        if g.geom_type in ("LineString", "LinearRing"):
            out.append(shapely.LineString(g.coords))
        elif what and g.geom_type == "Polygon":
            raise TypeError(f"{what!r} must hold lines, got a Polygon")
    return out


def _polygons(value, what: str = "") -> list[shapely.Polygon]:
    out = []
    for g in _atoms(value):
        if g.geom_type == "Polygon":
            out.append(g)
        elif what and g.geom_type in ("LineString", "LinearRing"):
            raise TypeError(f"{what!r} must hold polygons, got a {g.geom_type}")
    return out


def ped_crossing_edges(polygon: shapely.Polygon) -> list[shapely.LineString]:
    """The two longest edges of a ped_crossing polygon's exterior, as HDMapNet's
    ``VectorizedLocalMap.get_ped_crossing_line`` picks them.

    Edges run between consecutive exterior vertices in the ring's stored order and are ranked by
    squared length with ``np.argsort`` (ties keep numpy's order); the second-longest comes first.
    Frame and units are the polygon's. Returns a list of two 2-point LineStrings.
    """
    xy = np.asarray(polygon.exterior.coords, np.float64)[:, :2]
    d = np.square(xy[1:] - xy[:-1]).sum(1)
    return [shapely.LineString(xy[k:k + 2]) for k in np.argsort(d)[-2:]]


def _road_contours(road, grid: BEVGrid, cfg: HDMapRasterConfig) -> list[shapely.LineString]:
    patch = shapely.box(grid.x_min, grid.y_min, grid.x_max, grid.y_max)
    m = cfg.contour_margin_m
    inner = shapely.box(grid.x_min + m, grid.y_min + m, grid.x_max - m, grid.y_max - m)
    # The devkit's _get_layer_polygon drops invalid records instead of repairing them.
    clipped = [p.intersection(patch) for p in _polygons(road, "road") if p.is_valid]
    union = unary_union([c for c in clipped if not c.is_empty])
    out = []
    for poly in _polygons(union):
        rings = [(poly.exterior, False)] + [(r, True) for r in poly.interiors]
        for ring, want_ccw in rings:
            # Ring direction and start decide where the 1-m resampling drops each line's end.
            coords = list(ring.coords)
            if ring.is_ccw != want_ccw:
                coords = coords[::-1]
            piece = shapely.LineString(coords).intersection(inner)
            if piece.geom_type == "MultiLineString":
                piece = linemerge(piece)
            out.extend(_lines(piece))
    return out


def _resample(line: shapely.LineString, step: float | None) -> np.ndarray | None:
    if step is None:
        pts = np.asarray(line.coords, np.float64)[:, :2]
    else:
        d = np.arange(0, line.length, step)
        pts = shapely.get_coordinates(shapely.line_interpolate_point(line, d))
    return pts if len(pts) >= 2 else None


def hdmapnet_vectors(geoms: dict, grid: BEVGrid, cfg: HDMapRasterConfig = HDMapRasterConfig()) -> dict:
    """The reference's map vectors inside ``grid``'s extent (rules 1 of the module docstring).

    Args:
        geoms: ego-frame shapely geometries in metres with keys ``divider`` (lines), ``crosswalk``
            (ped_crossing polygons) and ``road`` (road_segment and lane polygons). Each value is a
            geometry (its parts are taken as the records, e.g. the merged output of
            ``nuscenes_data.map_geometries_ego``) or a sequence of per-record geometries (the
            reference's input: every lane/road divider line, every ped_crossing polygon, unmerged,
            unbuffered, vertices in map order). Values may extend beyond the grid.
        grid: the BEV grid; its extent is the reference's patch.
    Returns: dict ``divider`` / ``ped_crossing`` / ``contour`` -> list of (N >= 2, 2) float64 arrays,
        ego (x, y) metres, resampled every ``cfg.sample_dist_m``.
    Raises:
        KeyError: a key of :data:`GEOM_KEYS` is missing.
        TypeError: a value holds the wrong kind of geometry (polygons as dividers, lines as roads).
    """
    missing = [k for k in GEOM_KEYS if k not in geoms]
    if missing:
        raise KeyError(f"geometry dict lacks {missing}; expected keys {list(GEOM_KEYS)}")
    patch = shapely.box(grid.x_min, grid.y_min, grid.x_max, grid.y_max)
    divider = [p for line in _lines(geoms["divider"], "divider") for p in _lines(line.intersection(patch))]
    ped = [p for poly in _polygons(geoms["crosswalk"], "crosswalk")
           for edge in ped_crossing_edges(poly) for p in _lines(edge.intersection(patch))]
    contour = _road_contours(geoms["road"], grid, cfg)
    out = {}
    for key, lines in zip(REF_CLASSES, (divider, ped, contour)):
        pts = [_resample(line, cfg.sample_dist_m) for line in lines]
        out[key] = [p for p in pts if p is not None]
    return out


def draw_hdmapnet_canvas(vectors: dict, grid: BEVGrid, cfg: HDMapRasterConfig = HDMapRasterConfig()) -> np.ndarray:
    """Draw map vectors on the reference canvas (rules 2-4 of the module docstring).

    Args:
        vectors: as :func:`hdmapnet_vectors` returns (ego metres; keys of :data:`REF_CLASSES`).
        grid: the BEV grid whose extent the canvas covers.
    Returns: (canvas_h, canvas_w) uint8 in the reference's convention: rows along y (row 0 at
        ``y_min``, the right edge), columns along x (column 0 at ``x_min``, the rear), values
        0 background, 1 divider, 2 ped_crossing, 3 contour (BEVFormer_segmentation_detection's
        ``semantic_indices``). :func:`canvas_to_grid` turns it into our classes and grid.
    """
    ch, cw = canvas_shape(grid, cfg)
    drawn = np.zeros((len(REF_CLASSES), ch, cw), np.uint8)
    eraser = np.zeros_like(drawn)
    for c, key in enumerate(REF_CLASSES):
        for pts in vectors.get(key, ()):
            uv = ego_to_canvas(pts, grid, cfg).astype(np.int32)   # truncation, as the reference
            cv2.polylines(drawn[c], [uv], False, 1, thickness=int(cfg.thickness_px))
            cv2.polylines(eraser[c], [uv], False, 1, thickness=int(cfg.thickness_px + cfg.filter_extra_px))
    for c in range(len(REF_CLASSES) - 1, 0, -1):
        drawn[:c, eraser[c] != 0] = 0
    out = np.zeros((ch, cw), np.uint8)
    for c in range(len(REF_CLASSES)):
        out[drawn[c] != 0] = c + 1          # exclusive after the eraser pass: no pixel is set twice
    return out


def canvas_to_grid(canvas: np.ndarray, grid: BEVGrid, cfg: HDMapRasterConfig = HDMapRasterConfig()) -> np.ndarray:
    """Reference canvas (:func:`draw_hdmapnet_canvas`) -> our BEV class map on ``grid``.

    Each cell takes the canvas pixel that contains its centre (a centre on a pixel edge takes the
    pixel above the edge; exact re-indexing, ``canvas.T[::-1, ::-1]``, when the grid's cells are
    the canvas's pixels); classes are mapped with :data:`REF_TO_BEV`.
    Returns (H, W) uint8 in {0 background, 1 boundary, 2 lane, 3 crosswalk}.

    Raises:
        ValueError: when ``canvas`` does not have :func:`canvas_shape`'s shape.
    """
    ch, cw = canvas_shape(grid, cfg)
    if canvas.shape != (ch, cw):
        raise ValueError(f"canvas has shape {canvas.shape}, expected {(ch, cw)} for this grid and resolution")
    c = grid.cell_centers()
    # On a 150 x 150 grid every third centre lies exactly on a pixel edge; the tolerance puts it in
    # the pixel above the edge (half-open pixels, as truncation does) whatever the rounding of u, v.
    u = np.floor(ego_to_canvas(c[:, 0], grid, cfg)[:, 0] + 1e-6).astype(np.int64)   # (H,) one per row
    v = np.floor(ego_to_canvas(c[0, :], grid, cfg)[:, 1] + 1e-6).astype(np.int64)   # (W,) one per column
    u, v = np.clip(u, 0, cw - 1), np.clip(v, 0, ch - 1)
    return REF_TO_BEV[canvas[v[None, :], u[:, None]]]


def rasterize_hdmapnet(geoms: dict, grid: BEVGrid, cfg: HDMapRasterConfig = HDMapRasterConfig()) -> np.ndarray:
    """BEV map ground truth on ``grid`` as HDMapNet / BEVFormer_segmentation_detection draw it.

    :func:`hdmapnet_vectors` -> :func:`draw_hdmapnet_canvas` (0.15 m canvas, 5-px ``cv2.polylines``,
    ped crossings as their two longest edges, contour > ped_crossing > divider with a 9-px eraser)
    -> :func:`canvas_to_grid`.

    Args:
        geoms: ego-frame (x forward, y left) shapely geometries in metres, keys ``divider``,
            ``crosswalk``, ``road`` (see :func:`hdmapnet_vectors`; per-record sequences reproduce
            the reference, merged geometries approximate it).
        grid: the BEV grid (row 0 = front edge, column 0 = left edge).
        cfg: drawing parameters; the defaults are the reference's.
    Returns: (H, W) uint8 class map, 0 background, 1 boundary, 2 lane, 3 crosswalk; one class per
        cell (the reference's masks are mutually exclusive).
    Raises:
        KeyError, TypeError: as :func:`hdmapnet_vectors`; ValueError: as :func:`canvas_shape`.
    """
    return canvas_to_grid(draw_hdmapnet_canvas(hdmapnet_vectors(geoms, grid, cfg), grid, cfg), grid, cfg)

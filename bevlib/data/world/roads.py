"""The road network of one location and the paint on it, in the global frame (metres, ground z = 0).

Planar paths, the ring-road/cross-street graph, road features in path coordinates (crosswalks,
stop lines, divider paint, arrows), the road/sidewalk/curb polygons and the ground material raster
that the cameras and the LiDAR sample. :mod:`.map_expansion` writes the same features as an HD map,
so map and images agree by construction.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
from shapely.geometry import Polygon
from shapely.geometry import box as shapely_box
from shapely.ops import unary_union

from .config import _LSEG, _SEM

# ------------------------------------------------------------------------------------------------
# Planar paths
# ------------------------------------------------------------------------------------------------

class _Path:
    """Arc-length parametrised planar polyline; ``to_world(s, d)`` maps path coordinates (s along,
    d to the left, metres) to global (x, y). Closed paths wrap s, open ones clamp it."""

    def __init__(self, pts, closed: bool = False):
        p = np.asarray(pts, np.float64).reshape(-1, 2)
        if closed and np.hypot(*(p[0] - p[-1])) > 1e-9:
            p = np.vstack([p, p[:1]])
        keep = np.concatenate([[True], np.hypot(*np.diff(p, axis=0).T) > 1e-9])
        p = p[keep]
        if len(p) < 2:
            raise ValueError("a path needs at least two distinct points")
        seg = np.diff(p, axis=0)
        length = np.hypot(seg[:, 0], seg[:, 1])
        u = seg / length[:, None]
        tan = np.empty_like(p)
        tan[1:-1] = u[:-1] + u[1:]
        tan[0], tan[-1] = (u[-1] + u[0], u[-1] + u[0]) if closed else (u[0], u[-1])
        self.pts, self.closed = p, closed
        self.s = np.concatenate([[0.0], np.cumsum(length)])
        self.length = float(self.s[-1])
        self.tan = tan / np.linalg.norm(tan, axis=1, keepdims=True)

    def _param(self, s):
        s = np.asarray(s, np.float64)
        return np.mod(s, self.length) if self.closed else np.clip(s, 0.0, self.length)

    def point(self, s) -> np.ndarray:
        s = self._param(s)
        return np.stack([np.interp(s, self.s, self.pts[:, 0]), np.interp(s, self.s, self.pts[:, 1])], -1)

    def tangent(self, s) -> np.ndarray:
        s = self._param(s)
        t = np.stack([np.interp(s, self.s, self.tan[:, 0]), np.interp(s, self.s, self.tan[:, 1])], -1)
        return t / np.linalg.norm(t, axis=-1, keepdims=True)

    def heading(self, s) -> np.ndarray:
        t = self.tangent(s)
        return np.arctan2(t[..., 1], t[..., 0])

    def to_world(self, s, d=0.0) -> np.ndarray:
        s, d = np.broadcast_arrays(np.asarray(s, np.float64), np.asarray(d, np.float64))
        t = self.tangent(s)
        return self.point(s) + d[..., None] * np.stack([-t[..., 1], t[..., 0]], -1)

    def project(self, xy) -> float:
        """Arc length of the point of the path closest to ``xy``."""
        a, b = self.pts[:-1], self.pts[1:]
        ab = b - a
        w = np.clip(np.einsum("ij,ij->i", np.asarray(xy) - a, ab) / np.einsum("ij,ij->i", ab, ab), 0.0, 1.0)
        dist = np.hypot(*(a + w[:, None] * ab - xy).T)
        i = int(np.argmin(dist))
        return float(self.s[i] + w[i] * (self.s[i + 1] - self.s[i]))


def _distance_to(path: _Path, xy) -> float:
    return float(np.hypot(*(path.point(path.project(xy)) - np.asarray(xy))))


def _densify(a, b, step: float = 1.0) -> np.ndarray:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    n = max(int(math.ceil(np.hypot(*(b - a)) / step)), 1)
    return a + (b - a) * np.linspace(0.0, 1.0, n + 1)[:, None]


def _arc(centre, radius: float, a0: float, a1: float, step: float = 1.0) -> np.ndarray:
    n = max(int(math.ceil(abs(a1 - a0) * radius / step)), 1)
    ang = np.linspace(a0, a1, n + 1)
    return np.asarray(centre) + radius * np.stack([np.cos(ang), np.sin(ang)], -1)


def _rounded_rect(x0, y0, x1, y1, r) -> _Path:
    """Counter-clockwise closed loop with quarter-circle corners of radius ``r``; every piece is
    sampled at 1 m so that interpolated tangents stay exact away from the vertices."""
    h = math.pi / 2
    pieces = [_densify((x0 + r, y0), (x1 - r, y0)), _arc((x1 - r, y0 + r), r, -h, 0),
              _densify((x1, y0 + r), (x1, y1 - r)), _arc((x1 - r, y1 - r), r, 0, h),
              _densify((x1 - r, y1), (x0 + r, y1)), _arc((x0 + r, y1 - r), r, h, 2 * h),
              _densify((x0, y1 - r), (x0, y0 + r)), _arc((x0 + r, y0 + r), r, 2 * h, 3 * h)]
    return _Path(np.concatenate([p[:-1] for p in pieces]), closed=True)


def _wrap_angle(a):
    return (np.asarray(a) + np.pi) % (2 * np.pi) - np.pi


# ------------------------------------------------------------------------------------------------
# Road network: geometry constants (metres) and the graph
# ------------------------------------------------------------------------------------------------

_LANE_W = 3.5                 # 2 lanes per direction
_HALF_W = 2 * _LANE_W         # centreline to road edge (curb)
_CURB_W = 0.4                 # curb band beyond the road edge (camera class "boundary")
_SIDEWALK_W = 3.0
_FILLET_R = 7.0               # curb return radius at intersections
_TRIM = _HALF_W + _FILLET_R   # an edge starts this far from its node: the intersection box half size
_CW = (0.5, 4.5)              # crosswalk span from an edge end
_CW_HALF = 2.0                # mid-block crosswalk half width
_STOP = 5.5                   # stop line near side from an edge end
_STOP_W = 0.4
_STOP_GAP = 1.5               # mid-block: stop line to crosswalk
_END_CLEAR = 6.5              # no divider paint this close to an edge end
_MID_CLEAR = _CW_HALF + _STOP_GAP + _STOP_W + 0.6
_ARROW_S = 11.0               # arrow tip distance from the edge end
_DASH, _GAP, _PAINT_W = 3.0, 6.0, 0.15
_YELLOW = (0.05, 0.17)        # |d| span of each line of the double yellow road divider
_MARGIN = 60.0                # terrain/buildings around the road grid


@dataclass
class _Edge:
    """A road stretch between two intersections, centreline from start node to end node."""
    path: _Path
    start_node: int
    end_node: int
    crossings: tuple = ()     # s of mid-block crosswalk centres

    @property
    def length(self) -> float:
        return self.path.length


@dataclass
class _Node:
    xy: np.ndarray
    arms: list                # (edge index, the edge starts here)


@dataclass
class _Network:
    roads: list
    nodes: list
    edges: list
    extent: tuple             # (width, height) of the world, origin at (0, 0)
    side: int                 # +1: drive on the left (forward lanes at d > 0), -1: on the right


def _build_network(rng: np.random.Generator, drive_left: bool) -> _Network:
    """A rounded-rectangle ring road with straight cross streets: 4-way intersections inside,
    T-junctions on the ring, curves at the ring corners."""
    nx, ny = [(3, 2), (2, 3), (3, 3)][int(rng.integers(3))]
    bx, by = rng.uniform(74.0, 90.0, size=2)
    rc = float(rng.uniform(22.0, 30.0))
    x0 = y0 = _MARGIN
    x1, y1 = x0 + nx * bx, y0 + ny * by
    xs = [x0 + i * bx for i in range(1, nx)]
    ys = [y0 + j * by for j in range(1, ny)]
    roads = ([_rounded_rect(x0, y0, x1, y1, rc)] + [_Path(_densify((x, y0), (x, y1))) for x in xs]
             + [_Path(_densify((x0, y), (x1, y))) for y in ys])
    node_xy = ([(x, y) for x in xs for y in ys] + [(x, yy) for x in xs for yy in (y0, y1)]
               + [(xx, y) for y in ys for xx in (x0, x1)])
    nodes = [_Node(np.array(p, np.float64), []) for p in node_xy]
    edges: list[_Edge] = []
    for road in roads:
        on = []
        for k, node in enumerate(nodes):
            s = road.project(node.xy)
            if np.hypot(*(road.point(s) - node.xy)) < 0.5:
                on.append((s, k))
        on.sort()
        pairs = list(zip(on[:-1], on[1:]))
        if road.closed:
            pairs.append((on[-1], (on[0][0] + road.length, on[0][1])))
        for (sa, ka), (sb, kb) in pairs:
            s = np.append(np.arange(sa + _TRIM, sb - _TRIM, 1.0), sb - _TRIM)
            edges.append(_Edge(_Path(road.point(s)), ka, kb))
            nodes[ka].arms.append((len(edges) - 1, True))
            nodes[kb].arms.append((len(edges) - 1, False))
    for e in edges:
        e.crossings = _midblock_crossings(e)
    return _Network(roads, nodes, edges, (x1 + _MARGIN, y1 + _MARGIN), 1 if drive_left else -1)


def _midblock_crossings(edge: _Edge) -> tuple:
    """Mid-block zebra crossings on long edges, placed on straight parts only (a zebra across a
    bend would be unusual), so that most keyframes see a ped_crossing within 30 m."""
    L = edge.length
    wanted = [] if L < 55 else [L / 2] if L < 110 else [L / 3, 2 * L / 3]
    chosen = []
    for target in wanted:   # >= 24 m from the ends keeps clear of the approach arrows
        for s in sorted(np.arange(24.0, L - 24.0, 2.0), key=lambda v: abs(v - target)):
            turn = abs(_wrap_angle(edge.path.heading(s + 8.0) - edge.path.heading(s - 8.0)))
            if turn < math.radians(2.0) and all(abs(s - c) > 30.0 for c in chosen):
                chosen.append(float(s))
                break
    return tuple(sorted(chosen))


def _lane_d(side: int, lane: int) -> float:
    """Lateral offset of the centre of lane ``lane`` (0 = next to the road divider) of the lanes
    travelling along +s."""
    return side * (lane + 0.5) * _LANE_W


def _half_span(side: int, forward: bool) -> tuple:
    """(d_min, d_max) of the carriageway half used by traffic travelling along +s (forward) or -s."""
    sgn = side if forward else -side
    return (0.0, _HALF_W) if sgn > 0 else (-_HALF_W, 0.0)


# ------------------------------------------------------------------------------------------------
# Road features in path coordinates; shared by the map expansion and the painted ground raster
# ------------------------------------------------------------------------------------------------

def _strip(path: _Path, s0: float, s1: float, d0: float, d1: float, step: float = 1.0) -> np.ndarray:
    """Closed outline (n, 2) of the region s in [s0, s1], d in [d0, d1] of a path, in world xy."""
    s = np.linspace(s0, s1, max(int(math.ceil(abs(s1 - s0) / step)), 1) + 1)
    return np.vstack([path.to_world(s, d0), path.to_world(s[::-1], d1)])


def _crosswalk_spans(edge: _Edge) -> list:
    L = edge.length
    return ([(_CW[0], _CW[1]), (L - _CW[1], L - _CW[0])]
            + [(c - _CW_HALF, c + _CW_HALF) for c in edge.crossings])


def _stop_lines(edge: _Edge, side: int) -> list:
    """[(s0, s1, forward, crosswalk index)]: stop lines across the lanes heading into each crosswalk."""
    L = edge.length
    out = [(_STOP, _STOP + _STOP_W, False, 0), (L - _STOP - _STOP_W, L - _STOP, True, 1)]
    for i, c in enumerate(edge.crossings):
        near = c - _CW_HALF - _STOP_GAP
        far = c + _CW_HALF + _STOP_GAP
        out += [(near - _STOP_W, near, True, 2 + i), (far, far + _STOP_W, False, 2 + i)]
    return out


def _paint_intervals(edge: _Edge) -> list:
    """s intervals carrying divider paint: the edge minus its ends and the mid-block crossings."""
    L = edge.length
    cuts = ([(-1.0, _END_CLEAR)] + [(c - _MID_CLEAR, c + _MID_CLEAR) for c in edge.crossings]
            + [(L - _END_CLEAR, L + 1.0)])
    return [(a[1], b[0]) for a, b in zip(cuts[:-1], cuts[1:]) if b[0] - a[1] > 1.0]


_ARROW_OUTLINE = np.array([(0.0, -0.1), (3.2, -0.1), (3.2, -0.45), (5.0, 0.0),
                           (3.2, 0.45), (3.2, 0.1), (0.0, 0.1)])  # (along, across), tail at 0


def _arrow_polygons(edge: _Edge, side: int) -> list:
    """Straight-ahead arrows on every lane approaching the edge's two intersections (world xy)."""
    L = edge.length
    if L < 2 * (_ARROW_S + 6.0):
        return []
    out = []
    for forward in (True, False):
        for lane in (0, 1):
            d_c = _lane_d(side, lane) if forward else -_lane_d(side, lane)
            sgn = 1.0 if forward else -1.0
            tail = (L - _ARROW_S - 5.0) if forward else (_ARROW_S + 5.0)
            s = tail + sgn * _ARROW_OUTLINE[:, 0]
            d = d_c + sgn * _ARROW_OUTLINE[:, 1]   # mirrored with the direction: stays symmetric
            out.append(edge.path.to_world(s, d))
    return out


# ------------------------------------------------------------------------------------------------
# Ground materials and the ground raster
# ------------------------------------------------------------------------------------------------

(_M_TERRAIN, _M_SIDEWALK, _M_CURB, _M_ASPHALT, _M_CW_GAP, _M_LANE_WHITE, _M_LANE_YELLOW,
 _M_CROSSWALK, _M_STOP, _M_ARROW) = range(10)
#: per material: camera semantic class, lidarseg category, RGB, texture strength, LiDAR intensity
_MATERIALS = (
    ("terrain", "flat.terrain", (92, 116, 60), 0.22, 12.0),
    ("sidewalk", "flat.sidewalk", (160, 154, 146), 0.07, 20.0),
    ("boundary", "flat.sidewalk", (204, 202, 194), 0.05, 30.0),
    ("road_surface", "flat.driveable_surface", (82, 83, 87), 0.09, 8.0),
    ("crosswalk_gap", "flat.driveable_surface", (82, 83, 87), 0.09, 8.0),
    ("lane", "flat.driveable_surface", (226, 226, 220), 0.05, 90.0),
    ("lane", "flat.driveable_surface", (224, 180, 46), 0.05, 80.0),
    ("crosswalk", "flat.driveable_surface", (232, 232, 226), 0.05, 95.0),
    ("stop_line", "flat.driveable_surface", (230, 230, 224), 0.05, 90.0),
    ("arrow", "flat.driveable_surface", (228, 228, 222), 0.05, 90.0),
)
_MAT_SEM = np.array([_SEM[m[0]] for m in _MATERIALS], np.uint8)
_MAT_LSEG = np.array([_LSEG[m[1]] for m in _MATERIALS], np.uint8)
_MAT_RGB = np.array([m[2] for m in _MATERIALS], np.float32)
_MAT_TEX = np.array([m[3] for m in _MATERIALS], np.float32)
_MAT_INTENSITY = np.array([m[4] for m in _MATERIALS], np.float32)


class _Ground:
    """Material raster of the flat world: cell (i, j) covers x in [j, j+1) * res, y in [i, i+1) * res."""

    def __init__(self, extent, res: float):
        self.res = float(res)
        self.mat = np.full((int(math.ceil(extent[1] / res)), int(math.ceil(extent[0] / res))), _M_TERRAIN, np.uint8)

    def fill(self, xy, value: int, holes=()):
        # cv2 puts integer coordinates at cell centres, hence the half-cell shift; shift=4 keeps
        # 1/16-cell precision for thin paint.
        def px(a):
            return np.round((np.asarray(a, np.float64) / self.res - 0.5) * 16.0).astype(np.int32)
        cv2.fillPoly(self.mat, [px(xy)] + [px(h) for h in holes], int(value), lineType=cv2.LINE_8, shift=4)

    def fill_geom(self, geom, value: int):
        for poly in _polygons(geom):
            self.fill(np.asarray(poly.exterior.coords), value, [np.asarray(h.coords) for h in poly.interiors])

    def lookup(self, x, y) -> np.ndarray:
        """Material ids at world points (any shape, finite). The raster border is terrain, so
        clamping gives terrain beyond the world."""
        h, w = self.mat.shape
        j = np.clip(np.floor(x / self.res), 0, w - 1).astype(np.intp)
        i = np.clip(np.floor(y / self.res), 0, h - 1).astype(np.intp)
        return self.mat[i, j]


def _polygons(geom) -> list:
    if geom is None or geom.is_empty:
        return []
    if isinstance(geom, Polygon):
        return [geom]
    return [g for g in getattr(geom, "geoms", []) if isinstance(g, Polygon) and not g.is_empty]


def _annulus(path: _Path, half_width: float) -> Polygon:
    s = np.append(np.arange(0.0, path.length, 1.0), path.length)
    a, b = Polygon(path.to_world(s, half_width)), Polygon(path.to_world(s, -half_width))
    return a.symmetric_difference(b)


@dataclass
class _RoadGeometry:
    edge_polys: list          # road_segment polygon per edge
    node_polys: list          # intersection road_segment polygon per node
    drivable: object          # shapely (Multi)Polygon, union of all road segments
    sidewalk: object
    curb: object              # curb band (outside the drivable area)


def _road_geometry(net: _Network) -> _RoadGeometry:
    raw = unary_union([_annulus(r, _HALF_W) if r.closed else Polygon(_strip(r, 0, r.length, -_HALF_W, _HALF_W))
                       for r in net.roads])
    # Morphological closing rounds exactly the concave road corners: the curb returns at junctions.
    closed = raw.buffer(_FILLET_R, quad_segs=8).buffer(-_FILLET_R, quad_segs=8)
    node_polys = [_largest(closed.intersection(shapely_box(*(n.xy - _TRIM), *(n.xy + _TRIM)))) for n in net.nodes]
    edge_polys = [Polygon(_strip(e.path, 0.0, e.length, -_HALF_W, _HALF_W)) for e in net.edges]
    drivable = unary_union(edge_polys + node_polys).buffer(0)
    outer_curb = drivable.buffer(_CURB_W, quad_segs=8)
    sidewalk = drivable.buffer(_CURB_W + _SIDEWALK_W, quad_segs=8).difference(outer_curb)
    return _RoadGeometry(edge_polys, node_polys, drivable, sidewalk, outer_curb.difference(drivable))


def _largest(geom) -> Polygon:
    polys = _polygons(geom)
    if not polys:
        raise RuntimeError("empty intersection polygon: road network parameters are inconsistent")
    return max(polys, key=lambda p: p.area)


def _paint_items(net: _Network) -> list:
    """[(material, outline xy)] of all paint, in drawing order (later items cover earlier ones)."""
    items = []
    side = net.side
    for e in net.edges:
        for s0, s1 in _crosswalk_spans(e):
            items.append((_M_CW_GAP, _strip(e.path, s0, s1, -_HALF_W, _HALF_W, step=0.5)))
            for d0 in np.arange(-_HALF_W + 0.25, _HALF_W - 0.3, 1.0):   # 0.5 m stripes, 0.5 m gaps
                items.append((_M_CROSSWALK, _strip(e.path, s0, s1, d0, d0 + 0.5, step=0.5)))
        for s0, s1, forward, _ in _stop_lines(e, side):
            items.append((_M_STOP, _strip(e.path, s0, s1, *_half_span(side, forward), step=0.5)))
        items += [(_M_ARROW, xy) for xy in _arrow_polygons(e, side)]
        for a, b in _paint_intervals(e):
            for sgn in (1.0, -1.0):
                items.append((_M_LANE_YELLOW, _strip(e.path, a, b, sgn * _YELLOW[0], sgn * _YELLOW[1])))
                for s0 in np.arange(a, b - 0.5, _DASH + _GAP):
                    d = sgn * _LANE_W
                    items.append((_M_LANE_WHITE, _strip(e.path, s0, min(s0 + _DASH, b), d - _PAINT_W / 2,
                                                        d + _PAINT_W / 2, step=0.5)))
    return items


def _paint_ground(net: _Network, geo: _RoadGeometry, res: float) -> _Ground:
    ground = _Ground(net.extent, res)
    ground.fill_geom(geo.sidewalk, _M_SIDEWALK)
    ground.fill_geom(geo.curb, _M_CURB)
    ground.fill_geom(geo.drivable, _M_ASPHALT)
    for material, xy in _paint_items(net):
        ground.fill(xy, material)
    return ground

"""The HD map of one location as nuScenes writes it: the map expansion JSON (format v1.3, read by
``NuScenesMap(root, location)``) and the 'semantic_prior' basemap PNG, both built from the same
road features (:mod:`.roads`) that are painted into the camera images."""
from __future__ import annotations

import cv2
import numpy as np
from shapely.geometry import LineString, Polygon
from shapely.ops import unary_union

from .config import _token
from .roads import (_HALF_W, _LANE_W, _crosswalk_spans, _Ground, _half_span, _Network, _paint_intervals, _polygons,
                    _RoadGeometry, _stop_lines, _strip)


def _basemap_png(net: _Network, geo: _RoadGeometry) -> bytes:
    """nuScenes 'semantic_prior' basemap: 0.1 m/px, row 0 at the world's top (max y), 255 on
    road and sidewalk -- the layout nuscenes-devkit's MapMask expects."""
    prior = _Ground(net.extent, 0.1)
    prior.mat[:] = 0
    prior.fill_geom(unary_union([geo.drivable, geo.curb, geo.sidewalk]), 255)
    return cv2.imencode(".png", np.ascontiguousarray(prior.mat[::-1]))[1].tobytes()


_POLYGON_LAYERS = ("drivable_area", "road_segment", "road_block", "lane", "ped_crossing", "walkway",
                   "stop_line", "carpark_area")
_LINE_LAYERS = ("road_divider", "lane_divider", "traffic_light")


class _MapBuilder:
    """Accumulates node/line/polygon tables and the layer records that reference them."""

    def __init__(self, seed: int, location: str, extent):
        self._seed, self._location, self._count = seed, location, 0
        self.json = {"version": "1.3", "canvas_edge": [float(extent[0]), float(extent[1])],
                     "node": [], "line": [], "polygon": [], "lane_connector": [],
                     "arcline_path_3": {}, "connectivity": {},
                     **{layer: [] for layer in _POLYGON_LAYERS + _LINE_LAYERS}}

    def _new(self, kind: str) -> str:
        self._count += 1
        return _token(self._seed, "map", self._location, kind, self._count)

    def nodes(self, xy) -> list:
        toks = []
        for x, y in np.asarray(xy, np.float64):
            toks.append(self._new("node"))
            self.json["node"].append({"token": toks[-1], "x": round(float(x), 3), "y": round(float(y), 3)})
        return toks

    def line(self, xy) -> tuple:
        """Register a polyline (simplified to 1 cm); returns (line token, its node tokens)."""
        xy = np.asarray(LineString(xy).simplify(0.01).coords)
        tok, nodes = self._new("line"), self.nodes(xy)
        self.json["line"].append({"token": tok, "node_tokens": nodes})
        return tok, nodes

    def polygon(self, geom) -> str:
        poly = geom if isinstance(geom, Polygon) else Polygon(geom)
        poly = poly.simplify(0.01, preserve_topology=True)
        tok = self._new("polygon")
        self.json["polygon"].append({
            "token": tok,
            "exterior_node_tokens": self.nodes(np.asarray(poly.exterior.coords)[:-1]),
            "holes": [{"node_tokens": self.nodes(np.asarray(h.coords)[:-1])} for h in poly.interiors]})
        return tok

    def add(self, layer: str, **fields) -> str:
        tok = self._new(layer)
        self.json[layer].append({"token": tok, **fields})
        return tok


def _map_expansion(net: _Network, geo: _RoadGeometry, seed: int, location: str) -> dict:
    mb = _MapBuilder(seed, location, net.extent)
    side = net.side
    da = mb.add("drivable_area", polygon_tokens=[mb.polygon(p) for p in _polygons(geo.drivable)])
    for poly in geo.node_polys:
        mb.add("road_segment", polygon_token=mb.polygon(poly), is_intersection=True, drivable_area_token=da)
    for poly in _polygons(geo.sidewalk):
        mb.add("walkway", polygon_token=mb.polygon(poly))
    for e, poly in zip(net.edges, geo.edge_polys):
        L = e.length
        seg = mb.add("road_segment", polygon_token=mb.polygon(poly), is_intersection=False, drivable_area_token=da)

        def across(s, d0, d1):
            return mb.line(e.path.to_world(np.array([s, s]), np.array([d0, d1])))[0]

        blocks = {}
        for forward in (True, False):
            d0, d1 = _half_span(side, forward)
            entry, exit_ = (0.0, L) if forward else (L, 0.0)
            blocks[forward] = mb.add("road_block", polygon_token=mb.polygon(_strip(e.path, 0, L, d0, d1)),
                                     from_edge_line_token=across(entry, d0, d1),
                                     to_edge_line_token=across(exit_, d0, d1), road_segment_token=seg)
        # Divider lines (one record per painted interval) and the node lists lanes refer to.
        boundary_nodes = {}
        for d in (-_HALF_W, _HALF_W):
            s = np.append(np.arange(0.0, L, 2.0), L)
            boundary_nodes[d] = [(n, "NIL") for n in mb.nodes(e.path.to_world(s, d))]
        boundary_nodes[0.0], boundary_nodes[-_LANE_W], boundary_nodes[_LANE_W] = [], [], []
        for a, b in _paint_intervals(e):
            s = np.append(np.arange(a, b, 1.0), b)
            tok, nodes = mb.line(e.path.to_world(s, 0.0))
            mb.add("road_divider", line_token=tok, road_segment_token=seg)
            boundary_nodes[0.0] += [(n, "SINGLE_SOLID_YELLOW") for n in nodes]
            for d in (-_LANE_W, _LANE_W):
                tok, nodes = mb.line(e.path.to_world(s, d))
                segs = [{"node_token": n, "segment_type": "DOUBLE_DASHED_WHITE"} for n in nodes]
                mb.add("lane_divider", line_token=tok, lane_divider_segments=segs)
                boundary_nodes[d] += [(n, "DOUBLE_DASHED_WHITE") for n in nodes]
        def segments(nodes):
            return [{"node_token": n, "segment_type": kind} for n, kind in nodes]

        for forward in (True, False):
            for lane in (0, 1):
                sgn = (side if forward else -side)
                inner, outer = sgn * lane * _LANE_W, sgn * (lane + 1) * _LANE_W
                # Left in the travel direction is +d when travelling along +s.
                lo, hi = min(inner, outer), max(inner, outer)
                left, right = (hi, lo) if forward else (lo, hi)
                entry, exit_ = (0.0, L) if forward else (L, 0.0)
                mb.add("lane", polygon_token=mb.polygon(_strip(e.path, 0, L, lo, hi)),
                       lane_type="CAR", from_edge_line_token=across(entry, inner, outer),
                       to_edge_line_token=across(exit_, inner, outer),
                       left_lane_divider_segments=segments(boundary_nodes[left]),
                       right_lane_divider_segments=segments(boundary_nodes[right]))
        crossings = [mb.add("ped_crossing", polygon_token=mb.polygon(_strip(e.path, s0, s1, -_HALF_W, _HALF_W)),
                            road_segment_token=seg) for s0, s1 in _crosswalk_spans(e)]
        for s0, s1, forward, k in _stop_lines(e, side):
            mb.add("stop_line", polygon_token=mb.polygon(_strip(e.path, s0, s1, *_half_span(side, forward))),
                   stop_line_type="PED_CROSSING", ped_crossing_tokens=[crossings[k]], traffic_light_tokens=[],
                   road_block_token=blocks[forward])
    return mb.json

"""What stands on the ground: yaw-only boxes for static scenery (buildings, trees), traffic
participants moving along routes through the road network, the ego route of each scene and the
ego vehicle's own body. Boxes are what the cameras and the LiDAR hit and what gets annotated."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import shapely
from shapely.geometry import Polygon
from shapely.ops import unary_union

from bevlib.classes import class_index

from .config import _LSEG, _SEM
from .roads import (_CURB_W, _HALF_W, _LANE_W, _SIDEWALK_W, _arc, _crosswalk_spans, _Edge, _lane_d, _Network, _Path,
                    _RoadGeometry, _distance_to, _wrap_angle)

# ------------------------------------------------------------------------------------------------
# Boxes: static scenery and traffic participants share one struct-of-arrays representation
# ------------------------------------------------------------------------------------------------

(_S_VEHICLE, _S_PEDESTRIAN, _S_CYCLE, _S_CONE, _S_BARRIER, _S_BUILDING, _S_TRUNK, _S_CANOPY, _S_EGO) = range(9)
#: LiDAR return intensity per box style (retro-reflective cones and barriers are bright)
_STYLE_INTENSITY = np.array([40, 20, 30, 80, 60, 25, 15, 15, 10], np.float32)
_GREENS = ((58, 96, 42), (72, 110, 50), (50, 84, 46))


@dataclass
class _Boxes:
    """N yaw-only boxes: centre (cx, cy), yaw (rad), half length/width (m), z0..z1 (m), appearance
    and labels; ``ref`` is the actor index for traffic participants, -1 for scenery."""
    cx: np.ndarray
    cy: np.ndarray
    yaw: np.ndarray
    hl: np.ndarray
    hw: np.ndarray
    z0: np.ndarray
    z1: np.ndarray
    style: np.ndarray
    sem: np.ndarray
    lseg: np.ndarray
    rgb: np.ndarray
    ref: np.ndarray

    @staticmethod
    def from_rows(rows: list) -> "_Boxes":
        """rows: (cx, cy, yaw, hl, hw, z0, z1, style, sem, lseg, (r, g, b), ref)."""
        cols = list(zip(*rows)) if rows else [()] * 12
        f = [np.asarray(c, np.float64) for c in cols[:7]]
        return _Boxes(*f, np.asarray(cols[7], np.int16), np.asarray(cols[8], np.uint8),
                      np.asarray(cols[9], np.uint8), np.asarray(cols[10], np.float32).reshape(-1, 3),
                      np.asarray(cols[11], np.int32))

    def __len__(self):
        return len(self.cx)

    def take(self, idx) -> "_Boxes":
        return _Boxes(*[getattr(self, f.name)[idx] for f in dataclasses.fields(self)])

    @staticmethod
    def concat(parts: list) -> "_Boxes":
        return _Boxes(*[np.concatenate([getattr(p, f.name) for p in parts]) for f in dataclasses.fields(_Boxes)])

    def corners(self) -> np.ndarray:
        """(N, 8, 3) world corners; bit 0 of the corner index picks +x, bit 1 +y, bit 2 top."""
        bits = np.array([[(k >> b) & 1 for b in range(3)] for k in range(8)], np.float64) * 2 - 1
        lx = bits[None, :, 0] * self.hl[:, None]
        ly = bits[None, :, 1] * self.hw[:, None]
        c, s = np.cos(self.yaw)[:, None], np.sin(self.yaw)[:, None]
        z = np.where(bits[None, :, 2] > 0, self.z1[:, None], self.z0[:, None])
        return np.stack([self.cx[:, None] + c * lx - s * ly, self.cy[:, None] + s * lx + c * ly, z], -1)

    def radius(self) -> np.ndarray:
        return np.hypot(self.hl, self.hw)


_BOX_EDGES = np.array([(a, a | (1 << b)) for a in range(8) for b in range(3) if not a & (1 << b)])


def _static_scenery(net: _Network, geo: _RoadGeometry, rng: np.random.Generator) -> _Boxes:
    """Buildings and trees along both sides of every edge, never on the road or sidewalk."""
    keep_out = unary_union([geo.drivable, geo.curb, geo.sidewalk]).buffer(0.8)
    placed: list[Polygon] = []
    rows = []

    def free(poly: Polygon) -> bool:
        if poly.intersects(keep_out):
            return False
        return not (placed and shapely.intersects(np.array(placed, dtype=object), poly).any())

    def footprint(e, s, d, yaw_len, yaw_wid):
        c = e.path.to_world(s, d)
        h = float(e.path.heading(s))
        cs, sn = math.cos(h), math.sin(h)
        pts = [(c[0] + cs * a - sn * b, c[1] + sn * a + cs * b) for a, b in
               ((-yaw_len, -yaw_wid), (yaw_len, -yaw_wid), (yaw_len, yaw_wid), (-yaw_len, yaw_wid))]
        return Polygon(pts), c, h

    for e in net.edges:
        for sgn in (1.0, -1.0):
            s = float(rng.uniform(0.0, 8.0))
            while s < e.length:
                length, depth = rng.uniform(10.0, 28.0), rng.uniform(8.0, 18.0)
                d = sgn * (_HALF_W + _CURB_W + _SIDEWALK_W + rng.uniform(3.5, 6.5) + depth / 2)
                poly, c, h = footprint(e, s + length / 2, d, length / 2, depth / 2)
                if free(poly):
                    placed.append(poly)
                    tone = rng.uniform(0.75, 1.05)
                    base = np.array([(178, 160, 140), (150, 150, 155), (196, 186, 170), (120, 110, 100),
                                     (170, 120, 95)][int(rng.integers(5))]) * tone
                    rows.append((c[0], c[1], h, length / 2, depth / 2, 0.0, rng.uniform(6.0, 28.0),
                                 _S_BUILDING, _SEM["building"], _LSEG["static.manmade"], tuple(base), -1))
                s += length + rng.uniform(2.0, 14.0)
            s = float(rng.uniform(2.0, 10.0))
            while s < e.length:
                r = rng.uniform(1.3, 2.4)
                d = sgn * (_HALF_W + _CURB_W + _SIDEWALK_W + 0.8 + r)
                poly, c, h = footprint(e, s, d, r, r)
                if free(poly):
                    placed.append(poly)
                    trunk_h = rng.uniform(1.6, 2.6)
                    green = np.array(_GREENS[int(rng.integers(len(_GREENS)))]) * rng.uniform(0.8, 1.1)
                    rows.append((c[0], c[1], h, 0.18, 0.18, 0.0, trunk_h + 0.3, _S_TRUNK, _SEM["vegetation"],
                                 _LSEG["static.vegetation"], (92, 68, 45), -1))
                    rows.append((c[0], c[1], h, r, r, trunk_h, trunk_h + rng.uniform(2.5, 5.0), _S_CANOPY,
                                 _SEM["vegetation"], _LSEG["static.vegetation"], tuple(green), -1))
                s += rng.uniform(7.0, 18.0)
    return _Boxes.from_rows(rows)


# ------------------------------------------------------------------------------------------------
# Traffic participants and routes
# ------------------------------------------------------------------------------------------------

#: detection class -> ((category, weight), ...), mean size (w, l, h) in metres, style, colours
_OBJECTS = {
    "car": ((("vehicle.car", 1.0),), (1.9, 4.5, 1.6), _S_VEHICLE,
            ((205, 205, 210), (238, 238, 236), (32, 33, 36), (150, 24, 24), (34, 62, 140), (92, 94, 98),
             (180, 152, 96))),
    "truck": ((("vehicle.truck", 1.0),), (2.5, 7.0, 3.0), _S_VEHICLE, ((232, 232, 228), (196, 64, 40), (62, 92, 64))),
    "bus": ((("vehicle.bus.rigid", 0.8), ("vehicle.bus.bendy", 0.2)), (2.9, 11.5, 3.4), _S_VEHICLE,
            ((214, 60, 44), (42, 112, 190), (236, 236, 232))),
    "trailer": ((("vehicle.trailer", 1.0),), (2.6, 11.0, 3.6), _S_VEHICLE, ((196, 196, 196), (120, 130, 150))),
    "construction_vehicle": ((("vehicle.construction", 1.0),), (2.5, 6.5, 3.2), _S_VEHICLE, ((238, 178, 24),)),
    "pedestrian": ((("human.pedestrian.adult", 0.85), ("human.pedestrian.child", 0.1),
                    ("human.pedestrian.police_officer", 0.05)), (0.65, 0.7, 1.75), _S_PEDESTRIAN,
                   ((180, 40, 40), (40, 90, 160), (220, 220, 210), (60, 140, 80), (200, 170, 60), (120, 60, 140))),
    "motorcycle": ((("vehicle.motorcycle", 1.0),), (0.8, 2.1, 1.5), _S_CYCLE,
                   ((40, 40, 44), (180, 30, 30), (30, 60, 150))),
    "bicycle": ((("vehicle.bicycle", 1.0),), (0.6, 1.75, 1.3), _S_CYCLE, ((30, 80, 160), (40, 40, 44), (200, 200, 40))),
    "traffic_cone": ((("movable_object.trafficcone", 1.0),), (0.4, 0.4, 0.9), _S_CONE, ((240, 100, 20),)),
    "barrier": ((("movable_object.barrier", 1.0),), (0.5, 2.2, 1.0), _S_BARRIER, ((226, 226, 226),)),
}


@dataclass
class _Actor:
    """A traffic participant moving along ``path`` at ``speed`` m/s (signed, 0 = static), laterally
    offset by ``d``; its box heads along the path (plus ``yaw_offset``)."""
    cls: str
    category: str
    size: tuple               # (w, l, h), nuScenes order
    rgb: tuple
    attribute: str | None
    path: _Path
    s0: float
    speed: float = 0.0
    d: float = 0.0
    yaw_offset: float = 0.0

    def pose(self, t: float) -> tuple:
        s = self.s0 + self.speed * t
        x, y = self.path.to_world(s, self.d)
        yaw = float(self.path.heading(s)) + self.yaw_offset + (math.pi if self.speed < 0 else 0.0)
        return float(x), float(y), float(_wrap_angle(yaw))


def _make_actor(rng, cls: str, path: _Path, s0: float, speed: float = 0.0, d: float = 0.0,
                yaw_offset: float = 0.0, category: str | None = None) -> _Actor:
    cats, size, _, colours = _OBJECTS[cls]
    if category is None:
        names, weights = zip(*cats)
        category = names[int(rng.choice(len(names), p=np.array(weights) / sum(weights)))]
    scale = rng.uniform(0.9, 1.1, size=3)
    if category == "human.pedestrian.child":
        scale *= 0.7
    if category == "vehicle.bus.bendy":
        scale[1] *= 1.6
    moving = speed != 0.0
    attribute = {"pedestrian": "pedestrian.moving" if moving else "pedestrian.standing",
                 "motorcycle": "cycle.with_rider" if moving else "cycle.without_rider",
                 "bicycle": "cycle.with_rider" if moving else "cycle.without_rider",
                 "traffic_cone": None, "barrier": None}.get(cls, "vehicle.moving" if moving else "vehicle.parked")
    rgb = colours[int(rng.integers(len(colours)))]
    return _Actor(cls, category, tuple(float(v) for v in np.asarray(size) * scale), rgb, attribute, path,
                  float(s0), float(speed), float(d), float(yaw_offset))


def _fillet(p, h_in: float, q, h_out: float, radius: float) -> np.ndarray:
    """Points joining the end ``p`` (heading ``h_in``) of one lane to the start ``q`` (heading
    ``h_out``) of the next through a circular arc, like a vehicle turning at an intersection."""
    turn = float(_wrap_angle(h_out - h_in))
    if abs(turn) < 0.2:
        return np.empty((0, 2))
    u = np.array([math.cos(h_in), math.sin(h_in)])
    v = np.array([math.cos(h_out), math.sin(h_out)])
    # corner = p + a u = q - b v: a is the straight run left before the corner, b the one after it
    a, b = np.linalg.solve(np.stack([u, v], 1), np.asarray(q) - np.asarray(p))
    corner = np.asarray(p) + a * u
    r = min(radius, 0.95 * min(a, b) / math.tan(abs(turn) / 2)) if a > 0 and b > 0 else radius
    tlen = r * math.tan(abs(turn) / 2)
    start = corner - tlen * u
    normal = np.array([-u[1], u[0]]) * math.copysign(1.0, turn)
    centre = start + r * normal
    a0 = math.atan2(*(start - centre)[::-1])
    return _arc(centre, r, a0, a0 + turn)


def _travel_heading(e: _Edge, forward: bool, at_end: bool) -> float:
    """Heading (rad) of traffic on edge ``e`` travelling along +s (forward) or -s, where it enters
    (``at_end`` False) or leaves (True) the edge."""
    s = (e.length if forward else 0.0) if at_end else (0.0 if forward else e.length)
    return float(e.path.heading(s)) + (0.0 if forward else math.pi)


def _ways_on(net: _Network, edge: int, forward: bool) -> list:
    """[(|turn angle| rad, next edge, next forward)] at the intersection an edge leads into."""
    e = net.edges[edge]
    node = net.nodes[e.end_node if forward else e.start_node]
    h_exit = _travel_heading(e, forward, at_end=True)
    return [(abs(float(_wrap_angle(_travel_heading(net.edges[ei], at_start, at_end=False) - h_exit))), ei, at_start)
            for ei, at_start in node.arms if ei != edge]


def _plan_route(net: _Network, rng, edge: int, forward: bool, s_entry: float, lane: int, length: float,
                prefer_straight: bool, radius: float = 9.0) -> _Path:
    """Lane-centre path of at least ``length`` m from ``s_entry`` m into an edge (in the travel
    direction), choosing a way at every intersection; turns are circular fillets."""
    pieces, total = [], 0.0
    d = _lane_d(net.side, lane)
    while True:
        e = net.edges[edge]
        L = e.length
        s = np.append(np.arange(s_entry, L, 1.0), L)
        piece = e.path.to_world(s, d) if forward else e.path.to_world(L - s, -d)
        if pieces:
            prev = pieces[-1]
            h_in = math.atan2(*(prev[-1] - prev[-2])[::-1])
            h_out = math.atan2(*(piece[1] - piece[0])[::-1])
            pieces.append(_fillet(prev[-1], h_in, piece[0], h_out, radius))
        pieces.append(piece)
        total += L - s_entry
        if total >= length:
            break
        ways = _ways_on(net, edge, forward)
        straight = [w for w in ways if w[0] < 0.5]
        _, edge, forward = straight[0] if (prefer_straight and straight) else ways[int(rng.integers(len(ways)))]
        s_entry = 0.0
    return _Path(np.concatenate([p for p in pieces if len(p)]))


_SCENE_KINDS = ("intersection", "curve", "turn")


def _ego_route(net: _Network, kind: str, rng, distance: float) -> _Path:
    """Ego path for a scene of the given kind: passing straight through an intersection, driving
    through a ring-road curve, or turning at a T-junction. The ego keeps to lane 0 (next to the
    road divider), leaving the curb lane to parked vehicles; each start is chosen so that the
    feature lies a little before the middle of the ``distance`` m driven."""
    candidates = []
    for i, e in enumerate(net.edges):
        for forward in (True, False):
            straight_exit = any(w[0] < 0.5 for w in _ways_on(net, i, forward))
            if kind == "curve" and abs(float(_wrap_angle(e.path.heading(e.length) - e.path.heading(0.0)))) > 1.0:
                s_corner = _corner_position(e) if forward else e.length - _corner_position(e)
                candidates.append((i, forward, max(0.0, s_corner - 0.45 * distance)))
            elif (kind == "intersection" and straight_exit) or (kind == "turn" and not straight_exit):
                candidates.append((i, forward, max(0.0, e.length - 0.45 * distance)))
    if not candidates:
        raise RuntimeError(f"no start for a {kind!r} scene in this road network")
    edge, forward, s_entry = candidates[int(rng.integers(len(candidates)))]
    return _plan_route(net, rng, edge, forward, s_entry, 0, distance + 40.0, prefer_straight=kind != "turn",
                       radius=11.0)


def _corner_position(e: _Edge) -> float:
    """s where an edge has turned half of its total heading change (the apex of its curve)."""
    s = np.arange(0.0, e.length, 1.0)
    h = np.unwrap(e.path.heading(s))
    h = h if h[-1] >= h[0] else -h      # np.interp needs increasing sample points
    return float(np.interp(0.5 * (h[0] + h[-1]), h, s))


def _spawn_actors(net: _Network, ego: _Path, ego_s0: float, ego_speed: float, duration: float,
                  rng, density: float) -> list:
    """Traffic for one scene over the whole location. Order matters: when two boxes overlap at a
    keyframe the later one is hidden, so static participants come first."""
    side = net.side
    actors: list[_Actor] = []
    curb = _HALF_W + _CURB_W

    def count(mean: float) -> int:
        return int(rng.poisson(mean * density))

    def parked(cls: str, e: _Edge, s: float, sgn: float) -> _Actor:
        """A vehicle parked flush with the curb of side ``sgn``, facing that side's traffic."""
        a = _make_actor(rng, cls, e.path, s, yaw_offset=0.0 if sgn == side else math.pi)
        a.d = sgn * (_HALF_W - 0.25 - a.size[0] / 2)
        return a

    # Roadwork sites hold the rare classes (construction vehicle, workers, cones, barriers); the
    # first one is put beside the ego's drive so that every scene has a chance to annotate them.
    mid = ego.point(ego_s0 + 0.5 * ego_speed * duration)
    nearest = min(range(len(net.edges)), key=lambda i: _distance_to(net.edges[i].path, mid))
    roadwork = set()
    for site in range(int(density > 0) + count(1.5)):
        ei = nearest if site == 0 else int(rng.integers(len(net.edges)))
        e = net.edges[ei]
        sgn = float(rng.choice([-1.0, 1.0]))
        if e.length < 60:
            continue
        s_a = float(np.clip(e.path.project(mid) + rng.uniform(-20.0, 10.0), 20.0, e.length - 36.0) if site == 0
                    else rng.uniform(20.0, e.length - 36.0))
        roadwork.add((ei, sgn))
        # Cones on the lane divider close the curb lane; everything else stands inside it.
        for s in np.arange(s_a, s_a + 15.0, 2.5):
            actors.append(_make_actor(rng, "traffic_cone", e.path, s, d=sgn * _LANE_W))
        for s in (s_a - 1.5, s_a + 16.5):
            actors.append(_make_actor(rng, "barrier", e.path, s, d=sgn * (_LANE_W * 1.5), yaw_offset=math.pi / 2))
        if rng.random() < 0.7:
            actors.append(parked("construction_vehicle", e, s_a + 8.0, sgn))
        if rng.random() < 0.5:
            actors.append(parked("trailer", e, s_a + 26.0, sgn))
        actors.append(_make_actor(rng, "pedestrian", e.path, s_a + 1.2, d=sgn * (_LANE_W * 1.5),
                                  speed=float(rng.choice([0.0, 0.3])), category="human.pedestrian.construction_worker"))
    for ei, e in enumerate(net.edges):
        blocked = [(c - 10.0, c + 10.0) for c in e.crossings] + [(0.0, 20.0), (e.length - 20.0, e.length)]
        for sgn in (1.0, -1.0):
            if (ei, sgn) not in roadwork and rng.random() < 0.75 * min(density, 1.3):
                s = float(rng.uniform(20.0, 30.0))
                while s < e.length - 20.0:
                    cls = str(rng.choice(["car", "truck", "trailer", "bus"], p=[0.85, 0.07, 0.04, 0.04]))
                    a = parked(cls, e, s, sgn)
                    half = a.size[1] / 2
                    if not any(lo - half < s < hi + half for lo, hi in blocked):
                        actors.append(a)
                    s += a.size[1] + float(rng.uniform(1.5, 8.0) if rng.random() < 0.75 else rng.uniform(10.0, 30.0))
            for _ in range(count(e.length / 150.0)):
                cls = "bicycle" if rng.random() < 0.7 else "motorcycle"
                actors.append(_make_actor(rng, cls, e.path, float(rng.uniform(5, e.length - 5)),
                                          d=sgn * (curb + 1.1), yaw_offset=math.pi / 2))
            if rng.random() < 0.2 * density:
                s = float(rng.uniform(10, e.length - 20))
                for k in range(int(rng.integers(2, 4))):
                    actors.append(_make_actor(rng, "barrier", e.path, s + 2.4 * k, d=sgn * (curb + 0.35)))
            for _ in range(count(e.length / 45.0)):
                moving = rng.random() < 0.7
                speed = float(rng.uniform(0.9, 1.6) * rng.choice([-1.0, 1.0])) if moving else 0.0
                actors.append(_make_actor(rng, "pedestrian", e.path, float(rng.uniform(2, e.length - 2)), speed=speed,
                                          d=sgn * (curb + rng.uniform(0.6, _SIDEWALK_W - 0.5)),
                                          yaw_offset=0.0 if moving else float(rng.uniform(-math.pi, math.pi))))
            for _ in range(count(e.length / 250.0)):
                actors.append(_make_actor(rng, "bicycle", e.path, float(rng.uniform(2, e.length - 2)),
                                          speed=float(rng.uniform(3.0, 5.0) * rng.choice([-1.0, 1.0])),
                                          d=sgn * (curb + 1.2)))
        for s0, s1 in _crosswalk_spans(e):
            if rng.random() < 0.3 * density:
                sc = 0.5 * (s0 + s1)
                across = _Path(e.path.to_world(np.array([sc, sc]), np.array([-curb - 1.5, curb + 1.5])))
                actors.append(_make_actor(rng, "pedestrian", across, float(rng.uniform(0, across.length)),
                                          speed=float(rng.uniform(1.1, 1.5) * rng.choice([-1.0, 1.0]))))
    if density > 0:   # a vehicle ahead in the ego's lane, at the ego's speed
        lead_cls = str(rng.choice(["car", "truck", "bus"], p=[0.7, 0.2, 0.1]))
        actors.append(_make_actor(rng, lead_cls, ego, ego_s0 + float(rng.uniform(16.0, 30.0)), speed=ego_speed))
    total_length = sum(e.length for e in net.edges)
    for _ in range(count(total_length / 22.0)):
        cls = str(rng.choice(["car", "truck", "bus", "motorcycle"], p=[0.76, 0.08, 0.06, 0.10]))
        speed = float(rng.uniform(6.0, 12.0))
        ei = int(rng.integers(len(net.edges)))
        forward = bool(rng.random() < 0.5)
        route = _plan_route(net, rng, ei, forward, float(rng.uniform(0, net.edges[ei].length)), 0,
                            speed * duration + 5.0, prefer_straight=False)
        actors.append(_make_actor(rng, cls, route, 0.0, speed=speed))
    return actors


def _actor_boxes(actors: list, t: float, ego_xy, ego_yaw: float, radius: float) -> _Boxes:
    """Boxes of the actors within ``radius`` m of the ego at time ``t`` (s), dropping any that would
    overlap the ego vehicle or an earlier actor: moving traffic has no collision avoidance, and
    interpenetrating boxes would make inconsistent images."""
    poses = [a.pose(t) for a in actors]
    near = [i for i, (x, y, _) in enumerate(poses) if math.hypot(x - ego_xy[0], y - ego_xy[1]) < radius]

    def rect(x, y, yaw, half_l, half_w, dx=0.0):
        c, s = math.cos(yaw), math.sin(yaw)
        return Polygon([(x + c * (dx + a) - s * b, y + s * (dx + a) + c * b)
                        for a, b in ((-half_l, -half_w), (half_l, -half_w), (half_l, half_w), (-half_l, half_w))])

    # The ego's keep-out zone covers its lane some metres ahead and behind, so that no box is
    # rendered straddling or nearly touching a camera.
    polys = [rect(*ego_xy, ego_yaw, 9.0, 1.5, dx=1.0)]
    polys += [rect(*poses[i], actors[i].size[1] / 2, actors[i].size[0] / 2) for i in near]
    tree = shapely.STRtree(polys)
    a_idx, b_idx = tree.query(polys, predicate="intersects")
    clash = {}
    for a, b in zip(a_idx.tolist(), b_idx.tolist()):
        if a != b:
            clash.setdefault(max(a, b), []).append(min(a, b))
    kept = {0}
    for k in range(1, len(polys)):
        if not any(j in kept for j in clash.get(k, ())):
            kept.add(k)
    rows = []
    for k, i in enumerate(near, start=1):
        if k not in kept:
            continue
        a = actors[i]
        x, y, yaw = poses[i]
        rows.append((x, y, yaw, a.size[1] / 2, a.size[0] / 2, 0.0, a.size[2], _OBJECTS[a.cls][2],
                     class_index(a.cls), _LSEG[a.category], a.rgb, i))
    return _Boxes.from_rows(rows)


def _boxes_at(boxes: _Boxes, actors: list, t: float) -> _Boxes:
    """The same boxes, in the same order, with every traffic participant (``ref >= 0``) moved to
    where it is at time ``t`` (s): what a camera firing a few ms before the keyframe sees, while
    the annotations stay at the keyframe's time (as nuScenes annotates the LiDAR sweep)."""
    out = boxes.take(np.arange(len(boxes)))
    for k in np.flatnonzero(out.ref >= 0):
        out.cx[k], out.cy[k], out.yaw[k] = actors[int(out.ref[k])].pose(t)
    return out


def _ego_box(global_T_ego: np.ndarray) -> _Boxes:
    """The ego vehicle (Renault Zoe-sized body plus a narrower cabin), hit only by the LiDAR
    (label vehicle.ego); the lower beams graze its roof as in real nuScenes sweeps."""
    x, y = global_T_ego[0, 3], global_T_ego[1, 3]
    yaw = math.atan2(global_T_ego[1, 0], global_T_ego[0, 0])
    c, s = math.cos(yaw), math.sin(yaw)
    rows = []
    for ex, hl, hw, top in ((1.3, 2.05, 0.87, 0.95), (1.0, 0.95, 0.62, 1.52)):   # (x centre, half l, half w, top)
        rows.append((x + ex * c, y + ex * s, yaw, hl, hw, 0.0, top, _S_EGO, 0, _LSEG["vehicle.ego"], (0, 0, 0), -1))
    return _Boxes.from_rows(rows)

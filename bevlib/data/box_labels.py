"""MultiViT camera pseudo-labels from annotated 3D boxes (lukkassen2024 Sec. 3.1, Sec. 4.2, Table 2, Fig. 4).

The paper turns nuScenes' 3D box annotations into pixel labels for the camera images: every box is
projected into the image, the rectangle around its projection prompts SAM (ViT-B), and SAM's mask
gets the box's class. Boxes entirely hidden behind other boxes get no label; boxes of which only a
small part falls inside the image are labelled *ignore* over their mask; everything else is
background. This module implements that pipeline with the mask source left open:

* :func:`camera_boxes`: a camera image's annotated boxes in its camera frame (nuscenes-devkit
  ``get_sample_data``, which moves global boxes through *that camera's own* ego pose), classes mapped
  ``category -> detection class -> MULTIVIT_CAMERA`` (other categories are skipped).
* :func:`project_box`: the box's 2D region (convex hull of its 8 corners, clipped against the near
  plane z = :data:`NEAR_PLANE_M`), the prompt rectangle, the share of the hull inside the image and
  the nearest depth; :func:`hull_mask` rasterises a hull (pixel centres inside).
* :func:`plan_boxes`: the paper's rules (drop fully occluded, ignore mostly-outside) and the random
  prompt inflation of Sec. 4.2; :func:`paint_labels` paints masks far to near.
* :class:`BoxPromptLabeler` (a :class:`~bevlib.data.pseudo.PseudoLabeler`) ties them together and
  asks a subclass for one mask per prompt: :class:`ProjectedBoxLabeler` (the hull itself),
  :class:`WorldSilhouetteLabeler` (the embedded world's stand-in for SAM) and
  :class:`bevlib.data.sam_labeler.SamBoxLabeler` (SAM).
* :func:`pseudo_label_iou`: the Table 2 analogue on the embedded world, against its exact camera
  semantics.

Pixel coordinates follow :func:`bevlib.geometry.project`: (u, v) = (column, row), pixel centres at
integers, so a W x H image covers [-0.5, W - 0.5] x [-0.5, H - 0.5]. Labels are (H, W) uint8 in
:data:`bevlib.classes.MULTIVIT_CAMERA` indices (0 background, 1..10 the object classes,
:data:`bevlib.classes.IGNORE` = 255).
"""
from __future__ import annotations

import hashlib
from abc import abstractmethod
from dataclasses import dataclass, field
from typing import Iterable, Mapping

import cv2
import numpy as np
import shapely
from shapely.geometry.polygon import orient
from PIL import Image

from ..classes import CATEGORY_TO_OBJECT, IGNORE, MULTIVIT_CAMERA
from ..metrics import ConfusionMatrix
from .pseudo import PseudoLabeler, load_pseudo_label

#: Near clipping plane (m, camera z): nuscenes-devkit's ``box_in_image`` counts a corner "in front"
#: from 0.1 m on; parts of a box closer than this are cut off before projecting.
NEAR_PLANE_M = 0.1
#: Default ``min_inside``: a box with less than this share of its projected hull inside the image is
#: labelled IGNORE. The paper says only "a small part falls within the image" (Sec. 3.1) without a
#: number; 0.3 keeps boxes that are mostly cut off by the image border out of the class labels while
#: any object at least a third in view still counts.
MIN_INSIDE = 0.3
#: Paper Sec. 4.2: nuImages' tight 2D boxes were inflated by U(0, 20 %) of their size.
INFLATE_MAX_PAPER = 0.2

#: The 12 edges of a devkit ``Box.corners()`` cuboid (corners 0-3 front face, 4-7 back face).
_EDGES = np.array([(0, 1), (1, 2), (2, 3), (3, 0), (4, 5), (5, 6), (6, 7), (7, 4), (0, 4), (1, 5), (2, 6), (3, 7)])

#: Status of a box in :class:`BoxRecord`.
KEPT, IGNORED, OCCLUDED, OUTSIDE, BEHIND = "kept", "ignored", "occluded", "outside", "behind"


def category_class(category: str) -> int | None:
    """MULTIVIT_CAMERA index of a nuScenes category name (devkit detection mapping,
    :data:`bevlib.classes.CATEGORY_TO_OBJECT`), or None for categories without a class."""
    obj = CATEGORY_TO_OBJECT.get(category)
    return None if obj is None else MULTIVIT_CAMERA.index(obj)


def _seed_from(*parts) -> int:
    return int(hashlib.sha256(":".join(map(str, parts)).encode()).hexdigest()[:16], 16)


# ------------------------------------------------------------------------------------------------
# Boxes and their projection
# ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CameraBox:
    """One annotated box in a camera frame (OpenCV: x right, y down, z forward; metres).

    Attributes:
        token: sample_annotation token. category: nuScenes category name. cls: MULTIVIT_CAMERA index.
        center: (3,) float64. cam_R_box: (3, 3) float64, box axes (x length, y width, z height) in
            the camera frame. wlh: (3,) float64 width, length, height (the devkit's order).
        corners: (8, 3) float64 in ``Box.corners()`` order.
    """
    token: str
    category: str
    cls: int
    center: np.ndarray
    cam_R_box: np.ndarray
    wlh: np.ndarray
    corners: np.ndarray

    def devkit_box(self):
        """This box as a nuscenes-devkit ``Box`` (camera frame), e.g. for ``points_in_box``."""
        from nuscenes.utils.data_classes import Box
        from pyquaternion import Quaternion
        return Box(self.center, self.wlh, Quaternion(matrix=self.cam_R_box), name=self.category, token=self.token)

    def contains(self, points: np.ndarray, margin: float = 0.0) -> np.ndarray:
        """(N,) bool: which camera-frame points (N, 3) m lie inside the box grown by ``margin`` m on every side."""
        local = (np.asarray(points, np.float64) - self.center) @ self.cam_R_box
        half = np.array([self.wlh[1], self.wlh[0], self.wlh[2]]) / 2 + margin
        return np.all(np.abs(local) <= half, axis=1)


def camera_boxes(nusc, sd_token: str) -> tuple[list[CameraBox], np.ndarray, tuple[int, int]]:
    """The annotated boxes of one camera image, in that camera's frame.

    Uses ``nusc.get_sample_data(sd_token, box_vis_level=BoxVisibility.NONE)``: global boxes moved
    through the camera's own ego pose and calibration. ``NONE`` rather than ``ANY`` because the
    devkit's ``ANY`` drops every box with a corner behind z = 0.1 m -- exactly the objects beside the
    car that are partly in view and that Sec. 3.1 wants labelled IGNORE; :func:`project_box` clips
    them against the near plane instead, and :func:`plan_boxes` drops boxes outside the image.

    Returns: (boxes of the 10 MultiViT classes in annotation order, K (3, 3) float64 at the image
        size, (width, height) pixels).
    Raises: KeyError (devkit) for an unknown token; ValueError if the token is not a camera.
    """
    from nuscenes.utils.geometry_utils import BoxVisibility

    sd = nusc.get("sample_data", sd_token)
    if sd.get("sensor_modality", "camera") != "camera":
        raise ValueError(f"sample_data {sd_token} is a {sd['sensor_modality']}, not a camera image")
    _, boxes, K = nusc.get_sample_data(sd_token, box_vis_level=BoxVisibility.NONE)
    out = []
    for b in boxes:
        cls = category_class(b.name)
        if cls is None:
            continue
        out.append(CameraBox(b.token, b.name, cls, np.asarray(b.center, np.float64), b.rotation_matrix.astype(np.float64),
                             np.asarray(b.wlh, np.float64), b.corners().T.astype(np.float64)))
    return out, np.asarray(K, np.float64), (int(sd["width"]), int(sd["height"]))


def clip_near(corners: np.ndarray, near: float = NEAR_PLANE_M) -> np.ndarray:
    """The vertices of a cuboid's part in front of the plane z = ``near``: the corners with z >= near
    plus the points where the 12 edges cross the plane (their convex hull is the clipped solid).

    Args: corners (8, 3) camera frame, ``Box.corners()`` order. Returns: (Q, 3) float64, Q = 0 when
    the whole box is behind the plane.
    """
    c = np.asarray(corners, np.float64)
    a, b = c[_EDGES[:, 0]], c[_EDGES[:, 1]]
    za, zb = a[:, 2] - near, b[:, 2] - near
    cross = (za * zb) < 0
    t = za[cross] / (za[cross] - zb[cross])
    x = a[cross] + t[:, None] * (b[cross] - a[cross])
    x[:, 2] = near                       # exactly on the plane despite rounding
    return np.concatenate([c[c[:, 2] >= near], x])


def image_polygon(image_wh: tuple[int, int]) -> shapely.Polygon:
    """The image area in pixel coordinates: [-0.5, W - 0.5] x [-0.5, H - 0.5]."""
    w, h = image_wh
    return shapely.box(-0.5, -0.5, w - 0.5, h - 0.5)


@dataclass(frozen=True)
class BoxProjection:
    """A box's footprint in one image.

    Attributes:
        hull: (P, 2) float64 convex hull of the projected (near-clipped) corners, pixel (u, v),
            counter-clockwise in (u, v), P >= 3 (P < 3 only for a degenerate box).
        rect: (x0, y0, x1, y1) bounding rectangle of the hull's part inside the image, or None.
        inside_fraction: area(hull ∩ image) / area(hull) in [0, 1].
        nearest_depth: smallest camera z (m) of the clipped box.
    """
    hull: np.ndarray
    rect: tuple | None
    inside_fraction: float
    nearest_depth: float


def project_box(corners: np.ndarray, K: np.ndarray, image_wh: tuple[int, int],
                near: float = NEAR_PLANE_M) -> BoxProjection | None:
    """Project a 3D box into an image (lukkassen2024 Sec. 3.1, "map the 3D bounding boxes to the 2D
    images using the camera intrinsic matrix"), clipped against the near plane (:func:`clip_near`).

    Args:
        corners: (8, 3) camera frame (m), ``Box.corners()`` order. K: (3, 3) intrinsics at image_wh.
        image_wh: (width, height) pixels. near: near plane (m).
    Returns: :class:`BoxProjection`, or None when the box lies wholly behind the near plane.
    Raises: ValueError for corners that are not (8, 3) or non-finite.
    """
    c = np.asarray(corners, np.float64)
    if c.shape != (8, 3) or not np.isfinite(c).all():
        raise ValueError(f"corners must be a finite (8, 3) array, got {c.shape}")
    pts = clip_near(c, near)
    if len(pts) == 0:
        return None
    uvw = pts @ np.asarray(K, np.float64).T
    uv = uvw[:, :2] / uvw[:, 2:3]
    hull_geom = shapely.convex_hull(shapely.multipoints(uv))
    depth = float(pts[:, 2].min())
    if not isinstance(hull_geom, shapely.Polygon) or hull_geom.area <= 0:
        return BoxProjection(np.asarray(hull_geom.coords if hasattr(hull_geom, "coords") else uv), None, 0.0, depth)
    hull_geom = orient(hull_geom, 1.0)
    hull = np.asarray(hull_geom.exterior.coords)[:-1]
    inter = hull_geom.intersection(image_polygon(image_wh))
    frac = float(inter.area / hull_geom.area)
    rect = tuple(float(v) for v in inter.bounds) if inter.area > 0 else None
    return BoxProjection(hull, rect, frac, depth)


def hull_mask(hull: np.ndarray, image_hw: tuple[int, int]) -> np.ndarray:
    """Rasterise a convex polygon: pixels whose centre lies inside or on it.

    Args: hull (P, 2) float (u, v), counter-clockwise in (u, v) (as :class:`BoxProjection`);
        image_hw (H, W). Returns: (H, W) bool (all False for P < 3).
    """
    H, W = image_hw
    out = np.zeros((H, W), bool)
    h = np.asarray(hull, np.float64)
    if len(h) < 3:
        return out
    c0, r0 = max(0, int(np.floor(h[:, 0].min()))), max(0, int(np.floor(h[:, 1].min())))
    c1, r1 = min(W, int(np.ceil(h[:, 0].max())) + 1), min(H, int(np.ceil(h[:, 1].max())) + 1)
    if c0 >= c1 or r0 >= r1:
        return out
    u, v = np.meshgrid(np.arange(c0, c1, dtype=np.float64), np.arange(r0, r1, dtype=np.float64))
    inside = np.ones(u.shape, bool)
    a, e = h, np.roll(h, -1, axis=0) - h
    scale = np.abs(h).max() + 1.0
    for (ax, ay), (ex, ey) in zip(a, e):
        # Left of every edge of a counter-clockwise polygon; the tolerance keeps the boundary closed.
        inside &= ex * (v - ay) - ey * (u - ax) >= -1e-9 * scale * np.hypot(ex, ey)
    out[r0:r1, c0:c1] = inside
    return out


def inflate_rect(rect, fx: float, fy: float, image_wh: tuple[int, int]) -> tuple:
    """Grow (x0, y0, x1, y1) by the fractions ``fx`` of its width and ``fy`` of its height (half on
    each side), then clip to the image (lukkassen2024 Sec. 4.2)."""
    x0, y0, x1, y1 = rect
    dx, dy = 0.5 * fx * (x1 - x0), 0.5 * fy * (y1 - y0)
    w, h = image_wh
    return (max(-0.5, x0 - dx), max(-0.5, y0 - dy), min(w - 0.5, x1 + dx), min(h - 0.5, y1 + dy))


def rect_mask(rect, image_hw: tuple[int, int]) -> np.ndarray:
    """(H, W) bool: pixels whose centre lies in the closed rectangle (x0, y0, x1, y1)."""
    H, W = image_hw
    x0, y0, x1, y1 = rect
    out = np.zeros((H, W), bool)
    out[max(0, int(np.ceil(y0))):min(H, int(np.floor(y1)) + 1), max(0, int(np.ceil(x0))):min(W, int(np.floor(x1)) + 1)] = True
    return out


# ------------------------------------------------------------------------------------------------
# The rules of Sec. 3.1
# ------------------------------------------------------------------------------------------------

@dataclass
class BoxRecord:
    """What happened to one box of one image.

    Attributes:
        index: position in the image's box list (the value of the instance map on its pixels).
        token, category, cls: annotation token, nuScenes category, MULTIVIT_CAMERA index.
        status: ``"kept"`` (labelled with its class), ``"ignored"`` (IGNORE over its mask:
            inside_fraction < min_inside), ``"occluded"`` (dropped: every visible hull pixel is
            covered by nearer hulls), ``"outside"`` (no hull pixel in the image), ``"behind"``
            (wholly behind the near plane).
        inside_fraction, nearest_depth: from :class:`BoxProjection` (0 / inf when behind).
        hull_rect: bounding rect of the hull inside the image (x0, y0, x1, y1) or None.
        rect: the prompt rectangle (``hull_rect`` inflated and clipped) or None.
        n_pixels: pixels finally owned by this box in the instance map (after painting).
        box: the :class:`CameraBox`. hull: (P, 2) hull vertices (empty when behind).
    """
    index: int
    token: str
    category: str
    cls: int
    status: str
    inside_fraction: float
    nearest_depth: float
    hull_rect: tuple | None
    rect: tuple | None
    box: CameraBox = field(repr=False)
    hull: np.ndarray = field(repr=False, default_factory=lambda: np.zeros((0, 2)))
    n_pixels: int = 0

    @property
    def class_name(self) -> str:
        """MULTIVIT_CAMERA name of :attr:`cls`."""
        return MULTIVIT_CAMERA.names[self.cls]

    @property
    def labelled(self) -> bool:
        """Whether the box gets a mask (kept or ignored)."""
        return self.status in (KEPT, IGNORED)

    def as_dict(self) -> dict:
        """JSON-ready summary (no arrays)."""
        return dict(index=self.index, token=self.token, category=self.category, cls=self.cls,
                    class_name=self.class_name, status=self.status, inside_fraction=self.inside_fraction,
                    nearest_depth=self.nearest_depth, hull_rect=self.hull_rect, rect=self.rect, n_pixels=self.n_pixels)


def plan_boxes(boxes: list[CameraBox], K: np.ndarray, image_wh: tuple[int, int], min_inside: float = MIN_INSIDE,
               inflate_max: float = 0.0, rng: np.random.Generator | None = None,
               near: float = NEAR_PLANE_M) -> tuple[list[BoxRecord], list[np.ndarray | None]]:
    """Apply lukkassen2024 Sec. 3.1's rules to one image's boxes, and Sec. 4.2's prompt inflation.

    Boxes are visited nearest first (by :attr:`BoxProjection.nearest_depth`); a box whose hull
    pixels inside the image are all covered by the union of the hulls of nearer boxes is
    ``"occluded"`` (dropped; "bounding boxes that are entirely occluded by different bounding boxes
    are excluded"); of the rest, those with ``inside_fraction < min_inside`` are ``"ignored"``,
    the others ``"kept"``. Prompt rectangles of kept / ignored boxes are inflated by independent
    U(0, inflate_max) fractions of their width and height (two draws per box in list order, so the
    result is a function of the rng's seed).

    Args:
        boxes: :func:`camera_boxes`' boxes. K (3, 3), image_wh (width, height): the image.
        min_inside: see :data:`MIN_INSIDE`, in [0, 1]. inflate_max: >= 0 (paper: 0.2 on nuImages).
        rng: random stream for the inflation (required when inflate_max > 0).
    Returns: (records in ``boxes`` order, hull masks (H, W) bool per box, None when behind).
    Raises: ValueError for min_inside outside [0, 1], a negative inflate_max, or inflation without rng.
    """
    if not 0.0 <= min_inside <= 1.0:
        raise ValueError(f"min_inside must be in [0, 1], got {min_inside}")
    if inflate_max < 0:
        raise ValueError(f"inflate_max must be >= 0, got {inflate_max}")
    if inflate_max > 0 and rng is None:
        raise ValueError("inflate_max > 0 needs an rng")
    W, H = image_wh
    projs = [project_box(b.corners, K, image_wh, near) for b in boxes]
    masks = [None if p is None else hull_mask(p.hull, (H, W)) for p in projs]
    records = []
    for i, (b, p) in enumerate(zip(boxes, projs)):
        if p is None:
            records.append(BoxRecord(i, b.token, b.category, b.cls, BEHIND, 0.0, float("inf"), None, None, b))
        else:
            records.append(BoxRecord(i, b.token, b.category, b.cls, "", p.inside_fraction, p.nearest_depth, p.rect,
                                     None, b, p.hull))
    covered = np.zeros((H, W), bool)
    for i in sorted((i for i, p in enumerate(projs) if p is not None), key=lambda i: projs[i].nearest_depth):
        r, m = records[i], masks[i]
        if r.hull_rect is None or not m.any():
            r.status = OUTSIDE
        elif not (m & ~covered).any():
            r.status = OCCLUDED
        else:
            r.status = IGNORED if r.inside_fraction < min_inside else KEPT
        covered |= m
    for r in records:
        f = rng.uniform(0.0, inflate_max, size=2) if inflate_max > 0 else (0.0, 0.0)
        if r.labelled:
            r.rect = inflate_rect(r.hull_rect, float(f[0]), float(f[1]), image_wh)
    return records, masks


def paint_labels(records: list[BoxRecord], masks: Mapping[int, np.ndarray],
                 image_hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Paint the masks of the kept / ignored boxes far to near, so the nearer object wins.

    Args:
        records: from :func:`plan_boxes`; only ``labelled`` ones are painted, farthest
            ``nearest_depth`` first. Their ``n_pixels`` is set here.
        masks: {record index: (H, W) bool}. image_hw: (H, W).
    Returns: labels (H, W) uint8 (0 background, the class, or IGNORE for ignored boxes) and the
        instance map (H, W) int32 (record index owning each pixel, -1 none).
    Raises: KeyError for a labelled record without a mask; ValueError for a mask of another shape.
    """
    H, W = image_hw
    labels = np.zeros((H, W), np.uint8)
    instance = np.full((H, W), -1, np.int32)
    for r in sorted((r for r in records if r.labelled), key=lambda r: -r.nearest_depth):
        m = masks[r.index]
        if m.shape != (H, W):
            raise ValueError(f"mask of box {r.token} is {m.shape}, image is {(H, W)}")
        labels[m] = r.cls if r.status == KEPT else IGNORE
        instance[m] = r.index
    counts = np.bincount(instance[instance >= 0], minlength=len(records))
    for r in records:
        r.n_pixels = int(counts[r.index]) if r.index < len(counts) else 0
    return labels, instance


# ------------------------------------------------------------------------------------------------
# Labellers
# ------------------------------------------------------------------------------------------------

@dataclass
class BoxLabels:
    """One labelled image: labels (H, W) uint8 MULTIVIT_CAMERA / IGNORE, instance (H, W) int32
    (record index, -1 none) and the per-box records."""
    labels: np.ndarray
    instance: np.ndarray
    records: list[BoxRecord]


class BoxPromptLabeler(PseudoLabeler):
    """lukkassen2024 Sec. 3.1's pseudo-labelling with the mask source left to a subclass.

    :meth:`label_full` runs :func:`camera_boxes` -> :func:`plan_boxes` -> :meth:`masks` (one per
    kept / ignored box, prompted with its rectangle; clipped to the rectangle, since the paper
    creates each mask "within this bounding box") -> :func:`paint_labels`.

    Args:
        min_inside: see :data:`MIN_INSIDE`. inflate_max: prompt inflation U(0, inflate_max)
            (Sec. 4.2; 0 for nuScenes' projected 3D boxes, which are loose already).
        seed: the inflation (and a subclass's randomness) is a function of (seed, sample_data token).
    Raises: ValueError for min_inside outside [0, 1] or a negative inflate_max.
    """

    #: Prefix of :attr:`name` (the cache folder); subclasses set it.
    kind = "boxes"
    #: Whether :meth:`masks` looks at the RGB image (else it gets None and no image is read).
    needs_image = True

    def __init__(self, min_inside: float = MIN_INSIDE, inflate_max: float = 0.0, seed: int = 0):
        if not 0.0 <= float(min_inside) <= 1.0:
            raise ValueError(f"min_inside must be in [0, 1], got {min_inside}")
        if not float(inflate_max) >= 0.0:
            raise ValueError(f"inflate_max must be >= 0, got {inflate_max}")
        self.min_inside = float(min_inside)
        self.inflate_max = float(inflate_max)
        self.seed = int(seed)

    def _tag(self) -> str:
        """Subclass parameters for :attr:`name` ('' for none)."""
        return ""

    @property
    def name(self) -> str:
        """Cache folder name: kind, subclass parameters, min_inside, inflate_max and seed (all that
        changes the labels)."""
        tag = self._tag()
        return (f"multivit-{self.kind}{'-' + tag if tag else ''}-in{self.min_inside:.2f}-inf{self.inflate_max:.2f}"
                f"-s{self.seed}")

    def rng(self, sd_token: str, *parts) -> np.random.Generator:
        """Random stream of one image (and optional sub-purpose): a function of (seed, token, parts)."""
        return np.random.default_rng(_seed_from(self.seed, sd_token, *parts))

    def plan(self, nusc, sd_token: str) -> tuple[list[BoxRecord], list, tuple[int, int]]:
        """Boxes, rules and prompt rectangles of one image, without masks: (records, hull masks,
        (width, height)). Cheap; :func:`pseudo_label_iou` uses it to count boxes."""
        boxes, K, wh = camera_boxes(nusc, sd_token)
        records, hulls = plan_boxes(boxes, K, wh, self.min_inside, self.inflate_max,
                                    self.rng(sd_token, "inflate") if self.inflate_max > 0 else None)
        return records, hulls, wh

    @abstractmethod
    def masks(self, nusc, sd_token: str, image: np.ndarray | None, rects: np.ndarray,
              boxes: list[BoxRecord]) -> np.ndarray:
        """One mask per prompt.

        Args:
            image: (H, W, 3) uint8 RGB, or None when :attr:`needs_image` is False.
            rects: (M, 4) float64 prompt rectangles (x0, y0, x1, y1), pixel coordinates.
            boxes: the M records (``box`` holds the camera-frame box, ``hull`` its projection).
        Returns: (M, H, W) bool at the image size.
        """

    def label_full(self, nusc, sd_token: str) -> BoxLabels:
        """Labels, instance map and records of one camera image (see the class docstring).

        Raises: FileNotFoundError for a missing image (when the subclass needs it); ValueError if
            :meth:`masks` returns the wrong shape or dtype.
        """
        records, _, (W, H) = self.plan(nusc, sd_token)
        todo = [r for r in records if r.labelled]
        image = None
        if self.needs_image and todo:
            path = nusc.get_sample_data_path(sd_token)
            try:
                image = np.asarray(Image.open(path).convert("RGB"))
            except FileNotFoundError:
                raise FileNotFoundError(f"camera image {path} of sample_data {sd_token} is missing") from None
        rects = np.array([r.rect for r in todo], np.float64).reshape(-1, 4)
        m = self.masks(nusc, sd_token, image, rects, todo) if todo else np.zeros((0, H, W), bool)
        m = np.asarray(m)
        if m.dtype != bool or m.shape != (len(todo), H, W):
            raise ValueError(f"{type(self).__name__}.masks returned {m.dtype} {m.shape}; want bool {(len(todo), H, W)}")
        masks = {r.index: m[k] & rect_mask(r.rect, (H, W)) for k, r in enumerate(todo)}
        labels, instance = paint_labels(records, masks, (H, W))
        return BoxLabels(labels, instance, records)

    def label(self, nusc, sample_data_token: str) -> np.ndarray:
        """(H, W) uint8 MULTIVIT_CAMERA indices / IGNORE (:meth:`label_full`'s labels)."""
        return self.label_full(nusc, sample_data_token).labels


class ProjectedBoxLabeler(BoxPromptLabeler):
    """Mask = the projected hull of the box (no segmentation model): the labels one gets from the
    boxes alone, e.g. on the real keyframe when no SAM weights are at hand. Same arguments as
    :class:`BoxPromptLabeler`."""

    kind = "projected"
    needs_image = False

    def masks(self, nusc, sd_token, image, rects, boxes):
        """(M, H, W) bool: each box's hull (:func:`hull_mask`)."""
        sd = nusc.get("sample_data", sd_token)
        hw = (int(sd["height"]), int(sd["width"]))
        return np.stack([hull_mask(r.hull, hw) for r in boxes]) if boxes else np.zeros((0, *hw), bool)


def _world_lut() -> np.ndarray:
    from .world import CAMERA_SEMANTIC_CLASSES
    lut = np.zeros(256, np.uint8)
    for c, name in enumerate(MULTIVIT_CAMERA.names):
        if c != MULTIVIT_CAMERA.background:
            lut[CAMERA_SEMANTIC_CLASSES.index(name)] = c
    return lut


def world_truth(dataroot, sd_token: str) -> np.ndarray:
    """The embedded world's exact camera semantics as MULTIVIT_CAMERA labels: the 10 object classes
    keep their class, everything else (road, buildings, sky, ...) is background.

    Returns: (H, W) uint8 in 0..10. Raises: FileNotFoundError when ``dataroot`` is not a bevlib world.
    """
    from .world import load_camera_semantics
    return _world_lut()[load_camera_semantics(dataroot, sd_token)]


def _border_errors(sil: np.ndarray, border_px: int, border_flip: float, rng: np.random.Generator) -> np.ndarray:
    """SAM-like border mistakes on one silhouette (bool window): a dilation or erosion by
    k ~ U{-border_px..border_px} pixels, then each pixel of the 2-px band around the edge (one
    pixel either side) flipped with probability ``border_flip``."""
    m = sil.astype(np.uint8)
    if border_px > 0:
        k = int(rng.integers(-border_px, border_px + 1))
        if k:
            kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * abs(k) + 1, 2 * abs(k) + 1))
            m = cv2.dilate(m, kernel) if k > 0 else cv2.erode(m, kernel)
    if border_flip > 0:
        k3 = np.ones((3, 3), np.uint8)
        band = (cv2.dilate(m, k3) > 0) & (cv2.erode(m, k3) == 0)
        flip = band & (rng.random(m.shape) < border_flip)
        m = np.where(flip, 1 - m, m).astype(np.uint8)
    return m > 0


class WorldSilhouetteLabeler(BoxPromptLabeler):
    """The embedded world's stand-in for SAM: the object's exact silhouette inside the prompt, then
    SAM's typical border mistakes (lukkassen2024 Fig. 4: "mostly the object borders show wrongly
    labeled pixels").

    Silhouette: pixels in the prompt rectangle whose world camera semantics
    (:func:`bevlib.data.world.load_camera_semantics`) is the box's class and whose 3D point --
    the pixel unprojected with K at its depth (:func:`bevlib.data.world.load_camera_depth`, along
    the optical axis) -- lies inside the 3D box grown by ``margin_m``. Errors per object, random
    but a function of (seed, sample_data token, box token): see :func:`_border_errors`.

    Args:
        border_px: largest dilation / erosion in pixels (>= 0; 0: none).
        border_flip: flip probability in the edge band, in [0, 1].
        margin_m: box growth (m) covering depth quantisation (1 cm) and pixel-centre sampling.
        min_inside, inflate_max, seed: as :class:`BoxPromptLabeler`.
    Raises: ValueError for parameters out of range.
    """

    kind = "world"
    needs_image = False

    def __init__(self, border_px: int = 2, border_flip: float = 0.25, margin_m: float = 0.1,
                 min_inside: float = MIN_INSIDE, inflate_max: float = 0.0, seed: int = 0):
        super().__init__(min_inside, inflate_max, seed)
        if isinstance(border_px, bool) or int(border_px) != border_px or border_px < 0:
            raise ValueError(f"border_px must be a non-negative integer, got {border_px!r}")
        if not 0.0 <= float(border_flip) <= 1.0:
            raise ValueError(f"border_flip must be in [0, 1], got {border_flip}")
        if not float(margin_m) >= 0.0:
            raise ValueError(f"margin_m must be >= 0, got {margin_m}")
        self.border_px, self.border_flip, self.margin_m = int(border_px), float(border_flip), float(margin_m)

    def _tag(self) -> str:
        return f"b{self.border_px}-f{self.border_flip:.2f}-m{self.margin_m:.2f}"

    def silhouette(self, sem_cls: np.ndarray, depth: np.ndarray, K: np.ndarray, rect, box: CameraBox) -> np.ndarray:
        """(H, W) bool exact silhouette of ``box`` inside ``rect`` (no errors); ``sem_cls`` is
        :func:`world_truth`'s map, ``depth`` metres along the optical axis."""
        H, W = sem_cls.shape
        out = np.zeros((H, W), bool)
        win = rect_mask(rect, (H, W))
        rows, cols = np.nonzero(win & (sem_cls == box.cls) & (depth > 0))
        if len(rows):
            d = depth[rows, cols].astype(np.float64)
            rays = np.stack([cols, rows, np.ones_like(cols)], 1).astype(np.float64) @ np.linalg.inv(K).T
            inside = box.contains(rays * d[:, None], self.margin_m)
            out[rows[inside], cols[inside]] = True
        return out

    def masks(self, nusc, sd_token, image, rects, boxes):
        """(M, H, W) bool: silhouettes with border errors (see the class docstring)."""
        from .world import load_camera_depth

        sem_cls = world_truth(nusc.dataroot, sd_token)
        depth = load_camera_depth(nusc.dataroot, sd_token)
        sd = nusc.get("sample_data", sd_token)
        K = np.asarray(nusc.get("calibrated_sensor", sd["calibrated_sensor_token"])["camera_intrinsic"], np.float64)
        H, W = sem_cls.shape
        out = np.zeros((len(boxes), H, W), bool)
        pad = self.border_px + 2
        for k, (rect, r) in enumerate(zip(rects, boxes)):
            sil = self.silhouette(sem_cls, depth, K, rect, r.box)
            if not sil.any():
                continue
            rows, cols = np.nonzero(sil)
            r0, r1 = max(0, rows.min() - pad), min(H, rows.max() + pad + 1)
            c0, c1 = max(0, cols.min() - pad), min(W, cols.max() + pad + 1)
            rng = self.rng(sd_token, r.token)
            out[k, r0:r1, c0:c1] = _border_errors(sil[r0:r1, c0:c1], self.border_px, self.border_flip, rng)
        return out


# ------------------------------------------------------------------------------------------------
# Table 2 analogue
# ------------------------------------------------------------------------------------------------

def annotated_object_pixels(nusc, sd_token: str, truth: np.ndarray | None = None, margin_m: float = 0.1) -> np.ndarray:
    """(H, W) bool: the embedded world's object pixels that belong to an annotated box of their class
    (unprojected with the depth map, inside the box grown by ``margin_m``). The world annotates
    objects within ``WorldConfig.annotation_range`` (60 m) of the ego only; farther ones are
    rendered but have no box, so no box-prompted labeller can label them.

    Args: truth: :func:`world_truth` of the image (read when None).
    Raises: FileNotFoundError when ``nusc`` is not a bevlib world.
    """
    from .world import load_camera_depth

    truth = world_truth(nusc.dataroot, sd_token) if truth is None else truth
    boxes, K, _ = camera_boxes(nusc, sd_token)
    out = np.zeros(truth.shape, bool)
    rows, cols = np.nonzero(truth > 0)
    if len(rows) == 0 or not boxes:
        return out
    d = load_camera_depth(nusc.dataroot, sd_token)[rows, cols].astype(np.float64)
    pts = (np.stack([cols, rows, np.ones_like(cols)], 1).astype(np.float64) @ np.linalg.inv(K).T) * d[:, None]
    cls = truth[rows, cols]
    hit = np.zeros(len(rows), bool)
    for b in boxes:
        sel = ~hit & (cls == b.cls)
        hit[np.flatnonzero(sel)[b.contains(pts[sel], margin_m)]] = True
    out[rows[hit], cols[hit]] = True
    return out


def pseudo_label_iou(nusc, sd_tokens: Iterable[str], labeler: BoxPromptLabeler,
                     labels: Mapping[str, np.ndarray] | None = None, annotated_only: bool = False) -> dict:
    """lukkassen2024 Table 2 on the embedded world: pseudo-labels against the exact camera semantics.

    Truth is :func:`world_truth` (object pixels -> their class, everything else background); pixels
    the pseudo-label marks IGNORE are left out; counts go into one
    :class:`bevlib.metrics.ConfusionMatrix` over all images (IoU of the summed counts). The box
    count per class is the number of ``"kept"`` boxes (Table 2's "(n)"), from :meth:`BoxPromptLabeler.plan`.

    Args:
        nusc: a NuScenes of a bevlib world. sd_tokens: camera sample_data tokens.
        labeler: the labeller whose labels are evaluated.
        labels: {token: (H, W) uint8} to evaluate; None reads the labeller's cache
            (:func:`bevlib.data.pseudo.load_pseudo_label`).
        annotated_only: also leave out object pixels without an annotated box
            (:func:`annotated_object_pixels`): the labeller's quality given the boxes, as the paper
            measures it on nuImages where every object has a box. False (default): every object
            pixel of the world counts.
    Returns: dict with ``iou`` {class name: IoU % (NaN if absent)} for the 10 object classes,
        ``miou`` (their nan-mean, %), ``background_iou`` (%), ``boxes`` {class name: kept boxes},
        ``ignored_boxes`` (count), ``n_images``, ``confusion`` (11, 11) int64 (rows truth).
    Raises: FileNotFoundError for a missing cached label or world semantics; ValueError for a label
        of the wrong size.
    """
    cm = ConfusionMatrix(MULTIVIT_CAMERA)
    boxes = np.zeros(MULTIVIT_CAMERA.num_classes, np.int64)
    n, ignored = 0, 0
    for tok in sd_tokens:
        lab = labels[tok] if labels is not None else load_pseudo_label(nusc.dataroot, labeler.name, tok)
        truth = world_truth(nusc.dataroot, tok)
        if lab.shape != truth.shape:
            raise ValueError(f"pseudo-label of {tok} is {lab.shape}, the image {truth.shape}")
        keep = lab != IGNORE
        if annotated_only:
            keep &= (truth == 0) | annotated_object_pixels(nusc, tok, truth)
        cm.update(lab, truth, mask=keep)
        records, _, _ = labeler.plan(nusc, tok)
        for r in records:
            boxes[r.cls] += r.status == KEPT
            ignored += r.status == IGNORED
        n += 1
    iou = cm.iou() * 100.0
    objects = [c for c in range(MULTIVIT_CAMERA.num_classes) if c != MULTIVIT_CAMERA.background]
    obj_iou = iou[objects]
    present = obj_iou[~np.isnan(obj_iou)]
    return dict(iou={MULTIVIT_CAMERA.names[c]: float(iou[c]) for c in objects},
                miou=float(present.mean()) if present.size else float("nan"),
                background_iou=float(iou[MULTIVIT_CAMERA.background]),
                boxes={MULTIVIT_CAMERA.names[c]: int(boxes[c]) for c in objects},
                ignored_boxes=int(ignored), n_images=n, confusion=cm.counts.copy())

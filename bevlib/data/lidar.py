"""The one LiDAR reader: LIDAR_TOP sweeps and nuScenes-lidarseg labels through nuscenes-devkit.

Every LiDAR consumer (keyframe fields, figures, the real-keyframe check, the viewer) reads points
here, so that file validation, frames and the lidarseg alignment are decided once.

Files (nuScenes format): ``samples|sweeps/LIDAR_TOP/*.pcd.bin`` hold float32 ``(N, 5)`` rows
``x, y, z`` (metres, LIDAR_TOP sensor frame), ``intensity``, ``ring`` (laser index 0..31 on the
HDL-32E); ``lidarseg/<version>/<sd_token>_lidarseg.bin`` holds one uint8 nuScenes-lidarseg category
``index`` per point, in file order.

Why the file is read here and not by ``LidarPointCloud.from_file``: the devkit reshapes whatever it
finds (a truncated file either crashes in ``reshape`` or silently loses its last points, which
then misaligns lidarseg) and drops the ring column, which LiDAR models need. The bytes are read
exactly as the devkit does (``np.fromfile(float32).reshape(-1, 5)``), after a size check; records,
paths and calibration come from the devkit's tables; multi-sweep aggregation follows
``LidarPointCloud.from_file_multisweep`` (same sweep chain, same ``remove_close`` rule, same
frames) and is tested against it, keeping the ring, sweep index and lidarseg alongside.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import geometry as geo
from .nuscenes_data import DataError, global_T_ego

LIDAR_CHANNEL = "LIDAR_TOP"
#: Columns of a nuScenes ``.pcd.bin`` row: x, y, z, intensity, ring.
PCD_COLUMNS = 5
#: :attr:`LidarSweep.lidarseg` of points whose sweep has no lidarseg file (nuScenes labels only
#: keyframe sweeps); not a nuScenes-lidarseg category index (those are 0..31).
LIDARSEG_UNLABELLED = 255
#: Name and index of the ignore class of the 16-class mapping, as the devkit's mapper defines it.
LIDARSEG_EVAL_IGNORE = 0


@dataclass(frozen=True)
class LidarSweep:
    """A keyframe's LIDAR_TOP points, optionally aggregated over earlier sweeps.

    Frames: "sensor" is the *keyframe's* LIDAR_TOP frame and "ego" the keyframe's ego frame (the
    LIDAR_TOP ego pose, :func:`bevlib.data.nuscenes_data.global_T_ego`); points of earlier sweeps
    are moved into both through their own ego poses, as ``from_file_multisweep`` does.

    Attributes:
        points_sensor: (N, 3) float32 metres, keyframe sensor frame (for the keyframe sweep these
            are the file's values unchanged).
        points_ego: (N, 3) float64 metres, keyframe ego frame (float64 like every transform in
            :mod:`bevlib.geometry`; cast for training).
        intensity: (N,) float32, as stored (nuScenes: 0..255).
        ring: (N,) uint8 laser index, or None when the file's 5th column is not an integer index
            in 0..254 (a nuScenes-format file converted from another sensor).
        lidarseg: (N,) uint8 raw nuScenes-lidarseg category indices (``nusc.lidarseg_idx2name_mapping``),
            :data:`LIDARSEG_UNLABELLED` for points of sweeps without a lidarseg file; None when no
            sweep has one.
        sweep: (N,) uint8, 0 for the keyframe sweep, k for the k-th earlier one.
        time_lag: (N,) float32 seconds, keyframe timestamp minus the point's sweep timestamp (>= 0).
        ego_T_sensor: (4, 4) float64, keyframe LIDAR_TOP calibration (``calibrated_sensor``).
        sample_data_token: the keyframe's LIDAR_TOP sample_data token.
        sweep_tokens: sample_data token of each sweep, index = :attr:`sweep` value.
    """

    points_sensor: np.ndarray
    points_ego: np.ndarray
    intensity: np.ndarray
    ring: np.ndarray | None
    lidarseg: np.ndarray | None
    sweep: np.ndarray
    time_lag: np.ndarray
    ego_T_sensor: np.ndarray
    sample_data_token: str
    sweep_tokens: tuple

    def __len__(self) -> int:
        return len(self.points_sensor)


def _sd_record(nusc, token: str, what: str) -> dict:
    try:
        return nusc.get("sample_data", token)
    except KeyError:
        raise DataError(f"sample_data record {token!r} ({what}) is missing from {nusc.version} at "
                        f"{nusc.dataroot}") from None


def _table_record(nusc, table: str, token: str, what: str) -> dict:
    try:
        return nusc.get(table, token)
    except KeyError:
        raise DataError(f"{table} record {token!r} ({what}) is missing from {nusc.version} at {nusc.dataroot}") from None


def read_pcd_bin(path: str | Path) -> np.ndarray:
    """Read a nuScenes LiDAR point file.

    Returns: (N, 5) float32 rows x, y, z (metres, sensor frame), intensity, ring.
    Raises: DataError naming the file when it is missing, or truncated (its size is not a whole,
        non-zero number of 5 x float32 rows).
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"lidar file {str(path)!r} is missing")
    size = path.stat().st_size
    row = PCD_COLUMNS * 4
    if size == 0 or size % row:
        raise DataError(f"lidar file {str(path)!r} is truncated: {size} bytes is not a whole number of "
                        f"{PCD_COLUMNS} x float32 points")
    return np.fromfile(path, dtype=np.float32).reshape(-1, PCD_COLUMNS)


def point_count(path: Path) -> int:
    """Number of points of a ``.pcd.bin`` from its size (validated as :func:`read_pcd_bin` does)."""
    if not path.exists() or path.stat().st_size == 0 or path.stat().st_size % (PCD_COLUMNS * 4):
        read_pcd_bin(path)          # raises the missing / truncated error
    return path.stat().st_size // (PCD_COLUMNS * 4)


def read_points(nusc, sample_data_token: str) -> np.ndarray:
    """The raw rows of one LiDAR ``sample_data`` (keyframe or sweep), sensor frame.

    Returns: (N, 5) float32 x, y, z (metres, that sample_data's sensor frame), intensity, ring.
    Raises: DataError naming a missing record or a missing / truncated file.
    """
    _sd_record(nusc, sample_data_token, "lidar sweep")
    return read_pcd_bin(nusc.get_sample_data_path(sample_data_token))


def lidarseg_path(nusc, sample_data_token: str) -> Path | None:
    """Path of the lidarseg label file of a LiDAR ``sample_data``, or None when it has none
    (no lidarseg table in this version, or no record for the token)."""
    if not getattr(nusc, "lidarseg", None):
        return None
    try:
        # nuScenes-lidarseg records share their token with the sample_data they label.
        rec = nusc.get("lidarseg", sample_data_token)
    except KeyError:
        return None
    return Path(nusc.dataroot) / rec["filename"]


def load_lidarseg(nusc, sample_data_token: str, n_points: int | None = None) -> np.ndarray | None:
    """nuScenes-lidarseg labels of one LiDAR ``sample_data``, read by the devkit's ``load_bin_file``.

    Args:
        n_points: number of points of the sweep; None reads it from the ``.pcd.bin`` size.
    Returns: (N,) uint8 raw category indices (keys of ``nusc.lidarseg_idx2name_mapping``), one per
        point in file order; None when the sample_data has no lidarseg.
    Raises: DataError naming the label file when it is missing, holds a different number of labels
        than the sweep has points (a truncated file), or holds an index that is no lidarseg
        category.
    """
    from nuscenes.utils.data_io import load_bin_file

    path = lidarseg_path(nusc, sample_data_token)
    if path is None:
        return None
    if not path.exists():
        raise DataError(f"lidarseg file {str(path)!r} (of lidar sample_data {sample_data_token}) is missing")
    if n_points is None:
        n_points = point_count(Path(nusc.get_sample_data_path(sample_data_token)))
    if path.stat().st_size != n_points:
        raise DataError(f"lidarseg file {str(path)!r} is truncated or does not belong to its sweep: "
                        f"{path.stat().st_size} labels for {n_points} points")
    labels = load_bin_file(str(path), type="lidarseg")
    known = np.zeros(256, bool)
    known[list(nusc.lidarseg_idx2name_mapping)] = True
    if not known[labels].all():
        bad = sorted(set(np.unique(labels[~known[labels]]).tolist()))
        raise DataError(f"lidarseg file {str(path)!r} holds indices {bad} that are no category of "
                        f"{nusc.version}'s category.json")
    return labels


def load_lidar_sweep(nusc, sample_token: str, nsweeps: int = 1, min_distance: float = 0.0) -> LidarSweep | None:
    """A keyframe's LIDAR_TOP points in its sensor and ego frames, with intensity, ring, lidarseg.

    With ``nsweeps > 1`` the keyframe sweep and up to ``nsweeps - 1`` earlier LIDAR_TOP
    sample_data (the ``prev`` chain, as ``LidarPointCloud.from_file_multisweep``; fewer at a
    log's start) are moved into the keyframe's frames through their own ego poses; every point
    keeps its ring, sweep index, time lag and (where its sweep has a lidarseg file) its label.

    Args:
        nsweeps: sweeps to aggregate, 1..255 (the keyframe's counts as one).
        min_distance: drop points with ``|x| < d and |y| < d`` in their own sensor frame (the
            devkit's ``remove_close``, a square; ``from_file_multisweep`` uses 1.0 m). The default
            0.0 keeps every point, so a single sweep is the file as stored, aligned with lidarseg.
    Returns: :class:`LidarSweep`, or None when the keyframe has no LIDAR_TOP.
    Raises: DataError naming a missing record, a missing / truncated ``.pcd.bin`` or lidarseg file
        (of any aggregated sweep); ValueError for ``nsweeps`` outside 1..255 or a negative
        ``min_distance``.
    """
    if not (isinstance(nsweeps, (int, np.integer)) and 1 <= nsweeps <= 255):
        raise ValueError(f"nsweeps must be an integer in 1..255, got {nsweeps!r}")
    if not min_distance >= 0:
        raise ValueError(f"min_distance must be >= 0 m, got {min_distance!r}")
    sample = _table_record(nusc, "sample", sample_token, "keyframe")
    if LIDAR_CHANNEL not in sample["data"]:
        return None
    ref = _sd_record(nusc, sample["data"][LIDAR_CHANNEL], f"{LIDAR_CHANNEL} of sample {sample_token}")
    ref_cs = _table_record(nusc, "calibrated_sensor", ref["calibrated_sensor_token"],
                           f"calibration of {LIDAR_CHANNEL} ({ref['token']})")
    ego_T_sensor = geo.transform_from(ref_cs["translation"], ref_cs["rotation"])
    sensor_T_ego = geo.invert(ego_T_sensor)
    ego_T_global = geo.invert(global_T_ego(nusc, sample_token))

    parts, tokens = [], []
    sd = ref
    for k in range(nsweeps):
        raw = read_points(nusc, sd["token"])
        seg = load_lidarseg(nusc, sd["token"], len(raw))
        keep = ~((np.abs(raw[:, 0]) < min_distance) & (np.abs(raw[:, 1]) < min_distance))
        raw = raw[keep]
        if seg is not None:
            seg = seg[keep]
        if k == 0:
            sensor = raw[:, :3]
            ego = geo.apply(ego_T_sensor, raw[:, :3])
        else:
            cs = _table_record(nusc, "calibrated_sensor", sd["calibrated_sensor_token"], f"calibration of {sd['token']}")
            pose = _table_record(nusc, "ego_pose", sd["ego_pose_token"], f"ego pose of {sd['token']}")
            ego_T_sweep = (ego_T_global @ geo.transform_from(pose["translation"], pose["rotation"])
                           @ geo.transform_from(cs["translation"], cs["rotation"]))
            # One fused matrix into the keyframe sensor frame, as from_file_multisweep applies it.
            sensor = geo.apply(sensor_T_ego @ ego_T_sweep, raw[:, :3]).astype(np.float32)
            ego = geo.apply(ego_T_sweep, raw[:, :3])
        parts.append(dict(sensor=sensor, ego=ego, intensity=raw[:, 3], ring=raw[:, 4], seg=seg,
                          lag=np.float32(1e-6 * (ref["timestamp"] - sd["timestamp"]))))
        tokens.append(sd["token"])
        if k == nsweeps - 1 or not sd["prev"]:     # never touch a record that is not read
            break
        sd = _sd_record(nusc, sd["prev"], f"sweep before {sd['token']}")

    ring_f = np.concatenate([p["ring"] for p in parts])
    # A 5th column that is not a small integer is not a ring index: report it absent, not wrong.
    ring = ring_f.astype(np.uint8) if (np.all(ring_f == np.round(ring_f)) and np.all((ring_f >= 0) & (ring_f < 255))) \
        else None
    has_seg = any(p["seg"] is not None for p in parts)
    lidarseg = (np.concatenate([p["seg"] if p["seg"] is not None else np.full(len(p["ring"]), LIDARSEG_UNLABELLED, np.uint8)
                                for p in parts]) if has_seg else None)
    return LidarSweep(
        points_sensor=np.ascontiguousarray(np.concatenate([p["sensor"] for p in parts]), dtype=np.float32),
        points_ego=np.concatenate([p["ego"] for p in parts]),
        intensity=np.ascontiguousarray(np.concatenate([p["intensity"] for p in parts]), dtype=np.float32),
        ring=ring,
        lidarseg=lidarseg,
        sweep=np.concatenate([np.full(len(p["ring"]), i, np.uint8) for i, p in enumerate(parts)]),
        time_lag=np.concatenate([np.full(len(p["ring"]), p["lag"], np.float32) for p in parts]),
        ego_T_sensor=ego_T_sensor,
        sample_data_token=ref["token"],
        sweep_tokens=tuple(tokens),
    )


def lidarseg_eval_lut(nusc) -> np.ndarray:
    """Lookup table raw nuScenes-lidarseg index -> 16-class evaluation index, from the devkit's
    ``nuscenes.eval.lidarseg.utils.LidarsegClassMapper`` (its ``fine_idx_2_coarse_idx_mapping``).

    Returns: (256,) uint8; 0 = ``ignore`` (noise, animal, static.other, vehicle.ego, ... as the
    devkit maps them), 1..16 = barrier .. vegetation in the devkit's order; indices that are no
    category (e.g. :data:`LIDARSEG_UNLABELLED`) map to 0.
    Raises: DataError when the database has no lidarseg categories or one the devkit cannot map.
    """
    from nuscenes.eval.lidarseg.utils import LidarsegClassMapper

    if not getattr(nusc, "lidarseg_name2idx_mapping", None):
        raise DataError(f"{nusc.version} at {nusc.dataroot} has no nuScenes-lidarseg categories (no lidarseg.json)")
    try:
        mapping = LidarsegClassMapper(nusc).fine_idx_2_coarse_idx_mapping
    except (KeyError, AssertionError) as e:
        raise DataError(f"nuscenes-devkit's LidarsegClassMapper cannot map the categories of {nusc.version} at "
                        f"{nusc.dataroot}: {type(e).__name__}: {e}") from e
    lut = np.full(256, LIDARSEG_EVAL_IGNORE, np.uint8)
    for fine, coarse in mapping.items():
        lut[int(fine)] = coarse
    return lut


def lidarseg_eval_classes() -> tuple[str, ...]:
    """Names of the 16-class mapping by index (0 = ``ignore``), from the devkit's mapper."""
    from nuscenes.eval.lidarseg.utils import LidarsegClassMapper

    # The names are a property of the class, not of a database: skip __init__, which needs one.
    mapper = LidarsegClassMapper.__new__(LidarsegClassMapper)
    mapper.ignore_class = LidarsegClassMapper.get_ignore_class()
    c2i = mapper.get_coarse2idx()
    return tuple(sorted(c2i, key=c2i.get))


def map_lidarseg(nusc, labels: np.ndarray) -> np.ndarray:
    """Raw nuScenes-lidarseg indices (N,) uint8 -> the 16 evaluation classes (N,) uint8, 0 = ignore.

    Equals the devkit's ``LidarsegClassMapper.convert_label`` on valid indices (a table lookup
    instead of its per-point ``np.vectorize``); :data:`LIDARSEG_UNLABELLED` maps to 0.
    Raises: DataError as :func:`lidarseg_eval_lut`.
    """
    return lidarseg_eval_lut(nusc)[np.asarray(labels, np.uint8)]

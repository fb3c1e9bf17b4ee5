"""Issue 14's real-input check, as an artefact: SLIC superpixels of the real nuScenes keyframe's six
cameras and the superpoints of its LiDAR sweep (chen2024 CSC / SLidR's 2D-3D association), with the
share of points a camera sees and the points per superpoint, written to ``outputs/csc_real_keyframe/``.

Run: ``python -m bevlib.experiments.csc.real_keyframe [OUT_DIR]`` (reads ``../shared/nuscenes-keyframe``
in place). The devkit comparison of the projection is ``tests/test_superpoints_real_keyframe.py``.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from ...data.nuscenes_data import CAMERAS, open_nuscenes
from ...data.source import real_keyframe_root
from ...data.superpixels import slic_superpixels
from ...data.superpoints import superpoint_figure, superpoints
from ...io import atomic_write_text
from ...paths import outputs_dir

__all__ = ["superpoint_stats", "real_keyframe_superpoints"]


def superpoint_stats(sp, n_points: int) -> dict:
    """Statistics of a :class:`bevlib.data.superpoints.Superpoints` over ``n_points`` LiDAR points:
    share of points seen by at least one / more than one camera, superpixels in all and holding
    points, and points per non-empty superpoint (median, 90th percentile, max)."""
    seen = sp.superpoint >= 0
    counts = np.bincount(sp.superpoint[seen], minlength=sp.n_superpoints)
    nonempty = counts[counts > 0]
    return {"points": int(n_points), "share_seen": float(seen.mean()) if n_points else 0.0,
            "share_seen_by_several": float((sp.visible.sum(0) > 1).mean()) if n_points else 0.0,
            "superpixels": int(sp.n_superpoints), "superpoints_with_points": int(len(nonempty)),
            "points_per_superpoint_median": float(np.median(nonempty)) if len(nonempty) else 0.0,
            "points_per_superpoint_p90": float(np.percentile(nonempty, 90)) if len(nonempty) else 0.0,
            "points_per_superpoint_max": int(nonempty.max()) if len(nonempty) else 0}


def real_keyframe_superpoints(out_dir=None, dataroot=None, image_wh: tuple[int, int] = (800, 450)) -> dict:
    """SLIC superpixels (SLidR's settings) of the keyframe's six cameras at ``image_wh`` and the
    superpoints of its LiDAR sweep; writes ``superpoints_<CAMERA>.png`` per camera and
    ``stats.json`` / ``stats.md`` into ``out_dir`` (default ``outputs/csc_real_keyframe/``).

    Returns: :func:`superpoint_stats` plus ``per_camera`` (points assigned to each camera) and ``figures``.
    Raises: FileNotFoundError naming the dataroot when the keyframe is absent.
    """
    from ...data.fields import KeyframeConfig, load_keyframe

    root = Path(dataroot) if dataroot else real_keyframe_root()
    if not (root / "v1.0-mini").is_dir():
        raise FileNotFoundError(f"real nuScenes keyframe not found at {str(root)!r} (expected v1.0-mini/ there)")
    out = Path(out_dir) if out_dir else outputs_dir("csc_real_keyframe")
    nusc = open_nuscenes(str(root), "v1.0-mini")
    token = nusc.sample[0]["token"]
    kf = load_keyframe(nusc, token, KeyframeConfig(fields=("cameras", "lidar"), image_wh=tuple(image_wh), cache=False))
    sps = [slic_superpixels(im) for im in kf["images"]]
    h, w = kf["images"].shape[1:3]
    sp = superpoints(kf["lidar_points"], sps, kf["K"], kf["ego_T_cam"], (h, w))
    stats = superpoint_stats(sp, len(kf["lidar_points"]))
    stats["per_camera"] = {cam: int((sp.camera == c).sum()) for c, cam in enumerate(CAMERAS)}
    stats["figures"] = []
    for c, cam in enumerate(CAMERAS):
        m = sp.camera == c
        path = superpoint_figure(kf["images"][c], sps[c], sp.uv[m], sp.superpoint[m], out / f"superpoints_{cam}.png",
                                 title=f"{cam}: SLIC superpixels (white), LiDAR points by superpoint ({int(m.sum())})")
        stats["figures"].append(str(path))
    atomic_write_text(out / "stats.json", json.dumps(stats, indent=1))
    lines = [f"**Real keyframe superpoints.** {token} at {w}x{h}, SLIC (150, 6, 3), first-camera assignment.", "",
             "| statistic | value |", "|---|---:|"]
    lines += [f"| {k} | {v:.3f} |" if isinstance(v, float) else f"| {k} | {v} |"
              for k, v in stats.items() if k not in ("per_camera", "figures")]
    atomic_write_text(out / "stats.md", "\n".join(lines) + "\n")
    return stats


if __name__ == "__main__":
    s = real_keyframe_superpoints(*sys.argv[1:2])
    print(json.dumps({k: v for k, v in s.items() if k != "figures"}, indent=1))

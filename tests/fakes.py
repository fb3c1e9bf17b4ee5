"""A tiny in-memory keyframe store for trainer tests (and the kill/resume worker)."""
import numpy as np

from bevlib import geometry as geo
from bevlib.bev import BEVGrid
from bevlib.data.dataset import KeyframeStore

GRID = BEVGrid(H=24, W=12)
HW = (48, 88)
MODEL = {"backbone": "tiny", "embed_dim": 16, "num_layers": 1, "query_hw": [12, 6], "out_hw": [24, 12]}
TRAIN = ["s0k0", "s0k1", "s0k2", "s1k0", "s1k1", "s1k2"]
VAL = ["s2k0", "s2k1"]


class FakeStore(KeyframeStore):
    """Keyframes of three 'scenes' with a fixed 6-camera rig, random images, striped BEV labels.
    ``poison`` names tokens whose images are corrupt (NaN pixels, as from a broken decoder)."""

    def __init__(self, poison=()):
        rng = np.random.default_rng(0)
        K = geo.scale_intrinsics(np.array([[1266.0, 0, 816], [0, 1266, 491], [0, 0, 1]]), (1600, 900), HW[::-1])
        yaws = [np.pi / 3, 0, -np.pi / 3, 2 * np.pi / 3, np.pi, -2 * np.pi / 3]
        T = np.stack([geo.se2(0, 0, a) @ geo.transform_from([1.5, 0, 1.5], [0.5, -0.5, 0.5, -0.5]) for a in yaws])
        self._items = {}
        for s in range(3):
            for k in range(3):
                tok = f"s{s}k{k}"
                gt = np.zeros((GRID.H, GRID.W), np.uint8)
                gt[:, 5 + k % 2] = 2
                gt[:, [1, 10]] = 1
                images = rng.integers(0, 255, (6, *HW, 3), dtype=np.uint8)
                if tok in poison:
                    images = images.astype(np.float32)
                    images[:, :4, :4] = np.nan
                self._items[tok] = {
                    "images": images,
                    "K": np.repeat(K[None], 6, 0).astype(np.float32), "ego_T_cam": T.astype(np.float32),
                    "bev_gt": gt, "has_bev_gt": True, "prev_token": f"s{s}k{k-1}" if k else "",
                    "curr_T_prev": geo.invert(geo.se2(5.0, 0, 0)).astype(np.float32),
                    "pseudo": rng.integers(0, 14, (6, *HW), dtype=np.uint8),
                }

    def get(self, token):
        return self._items[token]


def factory(cfg):
    from bevlib.experiments.busch2026 import model_factory
    return model_factory(cfg)

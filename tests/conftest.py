import os
from pathlib import Path

import pytest
import torch

torch.set_num_threads(min(2, os.cpu_count() or 1))

ROOT = Path(__file__).resolve().parents[1]
KEYFRAME = ROOT.parent / "shared" / "nuscenes-keyframe"


@pytest.fixture(scope="session")
def keyframe_root() -> Path:
    """The real nuScenes keyframe in ../shared (skips the test when it is absent)."""
    if not (KEYFRAME / "v1.0-mini").is_dir():
        pytest.skip(f"real nuScenes keyframe not found at {KEYFRAME} (../shared/nuscenes-keyframe beside the repo)")
    return KEYFRAME


@pytest.fixture(scope="session")
def keyframe_nusc(keyframe_root):
    from bevlib.data.nuscenes_data import open_nuscenes
    return open_nuscenes(keyframe_root, "v1.0-mini")


from bevlib.data.world import WorldConfig  # noqa: E402

#: A tiny embedded world for tests: 2 scenes x 3 keyframes at 320x180.
TINY = WorldConfig(seed=0, n_scenes=2, keyframes_per_scene=3, image_wh=(320, 180), val_scenes=1,
                   ground_resolution=0.1, lidar_azimuth_steps=540)


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory) -> Path:
    """A freshly generated tiny world (read-only for tests: copy it before damaging it)."""
    from bevlib.data.world import generate_world
    return generate_world(tmp_path_factory.mktemp("world") / "tiny", TINY, progress=False)


@pytest.fixture(scope="session")
def bevlib_cache(tmp_path_factory) -> Path:
    """One ``BEVLIB_CACHE`` directory for the whole test session, for tests that run notebooks or the viewer
    (papermill / voila subprocesses: ``env=dict(os.environ, BEVLIB_CACHE=str(bevlib_cache))``) or call
    ``ensure_world(cache_dir=bevlib_cache, cfg=...)``: a world (``world-<config hash>``) and its cached
    pseudo-labels are generated once per session for every test that asks for the same configuration,
    instead of once per test. ``ensure_world`` locks and renames atomically, so sharing is safe; treat the
    contents as read-only (copy a world before damaging it, as ``test_faults`` does with ``tiny_world``).
    Tests that check what a *fresh* cache does (generation, first-use errors) keep their own ``tmp_path``.
    """
    return tmp_path_factory.mktemp("bevlib_cache")

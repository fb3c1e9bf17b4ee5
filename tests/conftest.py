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

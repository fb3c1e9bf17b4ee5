"""lukkassen2024 MultiViT pseudo-labels end to end: notebooks/multivit_pseudo_labels.ipynb headless, smoke preset."""
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bevlib.data.source import real_keyframe_root

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_multivit_pseudo_labels_notebook_smoke(tmp_path, bevlib_cache):
    out = tmp_path / "out"
    r = subprocess.run(
        [sys.executable, "-m", "papermill", str(ROOT / "notebooks" / "multivit_pseudo_labels.ipynb"),
         str(tmp_path / "executed.ipynb"), "-f", str(ROOT / "params" / "multivit_pseudo_labels" / "smoke.yaml"),
         "-p", "output_dir", str(out), "--cwd", str(ROOT / "notebooks")],
        env=dict(os.environ, BEVLIB_CACHE=str(bevlib_cache)), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]

    rows = list(csv.DictReader(open(out / "table2_pseudo_labels.csv")))
    by = {(row["class"], row["source"]): row for row in rows}
    assert float(by[("mIoU", "reported (lukkassen2024 Table 2, nuImages mini)")]["iou"]) == 82.4
    miou_all = float(by[("mIoU", "measured")]["iou"])
    miou_ann = float(by[("mIoU", "measured (annotated objects only)")]["iou"])
    # border errors cost IoU, and leaving out unannotated objects can only help
    assert 40.0 < miou_all <= miou_ann < 100.0
    assert int(by[("mIoU", "measured")]["boxes"]) > 0
    assert "reported" in (out / "table2_pseudo_labels.md").read_text()
    assert (out / "fig4_world.png").stat().st_size > 5000

    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_images"] == 12
    cached = list((bevlib_cache / "pseudo_labels").glob(f"*/{summary['labeler']}/*.png"))
    assert len(cached) >= 12                                    # labels generated once, into the cache

    if (real_keyframe_root() / "v1.0-mini").is_dir():
        real = out / "real_keyframe"
        table = {row["camera"]: row for row in csv.DictReader(open(real / "lidar_in_box.csv"))}
        assert set(table) == {"CAM_FRONT_LEFT", "CAM_FRONT", "CAM_FRONT_RIGHT", "CAM_BACK_LEFT", "CAM_BACK",
                              "CAM_BACK_RIGHT", "all"}
        assert int(table["all"]["n_points"]) > 100 and float(table["all"]["rate"]) > 60.0
        for name in ("mosaic.png", "CAM_FRONT.png"):
            assert (real / name).stat().st_size > 5000
        assert summary["real_keyframe"]["overall"]["kept"] > 10

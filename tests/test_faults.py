"""Bad input gets an error naming the file, token or parameter; earlier results stay untouched."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bevlib.data.nuscenes_data import (CAMERAS, DataError, KeyframeConfig, load_keyframe, load_lidar,
                                       open_nuscenes)
from bevlib.bev import BEVGrid
from bevlib.params import ParameterError, collect, from_dict
from bevlib.experiments.busch2026 import Table1Params
from conftest import TINY

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def world_copy(tiny_world, tmp_path):
    dst = tmp_path / "world"
    shutil.copytree(tiny_world, dst)
    return dst


def _first(nusc, channel):
    s = nusc.sample[0]
    return s["token"], s["data"][channel]


def test_missing_and_truncated_image(world_copy):
    nusc = open_nuscenes(world_copy, TINY.version)
    tok, sd = _first(nusc, "CAM_FRONT")
    path = Path(nusc.get_sample_data_path(sd))
    cfg = KeyframeConfig(image_wh=(64, 36), grid=BEVGrid(H=30, W=15))
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(DataError, match=f"{path.name}.*truncated or corrupt"):
        load_keyframe(nusc, tok, cfg)
    path.unlink()
    with pytest.raises(DataError, match=f"{path.name}.*missing"):
        load_keyframe(nusc, tok, cfg)


def test_corrupt_jpeg(world_copy):
    nusc = open_nuscenes(world_copy, TINY.version)
    tok, sd = _first(nusc, "CAM_BACK")
    path = Path(nusc.get_sample_data_path(sd))
    data = bytearray(path.read_bytes())
    data[2:200] = b"\x00" * 198          # destroy the JPEG headers, keep the size
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match=path.name):
        load_keyframe(nusc, tok, KeyframeConfig(image_wh=(64, 36), grid=BEVGrid(H=30, W=15)))


def test_truncated_pcd_bin(world_copy):
    nusc = open_nuscenes(world_copy, TINY.version)
    _, sd = _first(nusc, "LIDAR_TOP")
    assert load_lidar(nusc, sd).shape[1] == 4
    path = Path(nusc.get_sample_data_path(sd))
    path.write_bytes(path.read_bytes()[:-7])
    with pytest.raises(DataError, match=f"{path.name}.*truncated"):
        load_lidar(nusc, sd)


def test_missing_calibration_record(world_copy):
    table = world_copy / TINY.version / "calibrated_sensor.json"
    recs = json.loads(table.read_text())
    gone = recs.pop(0)["token"]
    table.write_text(json.dumps(recs))
    with pytest.raises(DataError, match=gone):
        open_nuscenes(world_copy, TINY.version)


def test_wrong_dataroot_and_version(tmp_path, tiny_world):
    with pytest.raises(DataError, match="does not exist"):
        open_nuscenes(tmp_path / "nowhere", TINY.version)
    with pytest.raises(DataError, match="'v1.0-trainval' not found"):
        open_nuscenes(tiny_world, "v1.0-trainval")


def test_mistyped_parameter_is_refused_by_name():
    with pytest.raises(ParameterError, match="unknown parameter 'epoch' \\(did you mean 'epochs'\\?\\)"):
        collect({"epoch": 3, "seed": 1, "__name__": "x", "np": os}, Table1Params)
    with pytest.raises(ParameterError, match="'pretrain_lengths'"):
        from_dict(Table1Params, {"epochs": 2, "pretrain_lengths": [3]})
    with pytest.raises(ParameterError, match="'image_wh'"):
        from_dict(Table1Params, {"image_wh": [128]})
    assert collect({"epochs": 9, "In": [], "_": None}, Table1Params).epochs == 9


def _papermill(tmp_path, *params):
    out = tmp_path / "table1"
    out.mkdir(exist_ok=True)
    (out / "table1.csv").write_text("earlier results\n")
    cmd = [sys.executable, "-m", "papermill", str(ROOT / "notebooks" / "table1.ipynb"), str(tmp_path / "x.ipynb"),
           "-p", "output_dir", str(out), "-p", "runs_dir", str(tmp_path / "runs"), "--cwd", str(ROOT / "notebooks"), *params]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                       env=dict(os.environ, BEVLIB_CACHE=str(tmp_path / "cache")))
    assert r.returncode != 0
    assert (out / "table1.csv").read_text() == "earlier results\n"      # nothing already written is lost
    return r.stdout + r.stderr


@pytest.mark.slow
def test_notebook_fails_at_first_cell_needing_input(tmp_path):
    text = _papermill(tmp_path, "-p", "dataroot", str(tmp_path / "no-such-nuscenes"))
    assert "does not exist" in text and "no-such-nuscenes" in text
    assert 'Exception encountered at "In [4]"' in text                   # the data cell, not later
    text = _papermill(tmp_path, "-p", "epoch", "3")
    assert "unknown parameter 'epoch'" in text and "did you mean 'epochs'" in text

"""Bad input gets an error naming the file, token or parameter; earlier results stay untouched."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bevlib.data.fields import DepthConfig, KeyframeConfig, load_keyframe
from bevlib.data.lidar import load_lidar_sweep, load_lidarseg, read_points
from bevlib.data.nuscenes_data import CAMERAS, DataError, open_nuscenes
from bevlib.bev import BEVGrid
from bevlib.params import ParameterError, collect, from_dict
from bevlib.experiments.busch2026 import Table1Params
from conftest import TINY

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    """Caches of these damaged worlds go to the test's tmp dir, not ~/.cache/bevlib."""
    monkeypatch.setenv("BEVLIB_CACHE", str(tmp_path / "cache"))


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


def _lidar_callers(nusc, sample_token):
    """Every public way to read a keyframe's LiDAR, each as a thunk."""
    from bevlib.experiments.busch2026.fig2 import lidar_ground_points
    from bevlib.real_keyframe import _keyframe_records

    cfg = dict(image_wh=(64, 36), grid=BEVGrid(H=30, W=15))
    return {
        "load_lidar_sweep": lambda: load_lidar_sweep(nusc, sample_token),
        "load_keyframe(lidar)": lambda: load_keyframe(nusc, sample_token, KeyframeConfig(fields=("lidar",), **cfg)),
        # cache=False: a depth map cached before the damage would (rightly) be served from the cache.
        "load_keyframe(depth)": lambda: load_keyframe(nusc, sample_token, KeyframeConfig(
            fields=("depth",), depth=DepthConfig(source="lidar"), cache=False, **cfg)),
        "fig2.lidar_ground_points": lambda: lidar_ground_points(nusc, sample_token),
        "real_keyframe._keyframe_records": lambda: _keyframe_records(nusc, nusc.get("sample", sample_token)),
    }


def test_truncated_pcd_bin(world_copy):
    nusc = open_nuscenes(world_copy, TINY.version)
    tok, sd = _first(nusc, "LIDAR_TOP")
    assert read_points(nusc, sd).shape[1] == 5
    for name, call in _lidar_callers(nusc, tok).items():
        call()                                   # intact: every caller reads it
    path = Path(nusc.get_sample_data_path(sd))
    path.write_bytes(path.read_bytes()[:-7])
    with pytest.raises(DataError, match=f"{path.name}.*truncated"):
        read_points(nusc, sd)
    for name, call in _lidar_callers(nusc, tok).items():
        with pytest.raises(DataError, match=f"{path.name}.*truncated"):
            call()
            pytest.fail(name)
    # A truncated earlier sweep fails a multi-sweep read, naming that sweep's file.
    nxt = nusc.get("sample", tok)["next"]
    with pytest.raises(DataError, match=f"{path.name}.*truncated"):
        load_lidar_sweep(nusc, nxt, nsweeps=2)
    assert len(load_lidar_sweep(nusc, nxt, nsweeps=1)) > 0


def test_truncated_lidarseg(world_copy):
    nusc = open_nuscenes(world_copy, TINY.version)
    tok, sd = _first(nusc, "LIDAR_TOP")
    path = world_copy / nusc.get("lidarseg", sd)["filename"]
    assert len(load_lidarseg(nusc, sd)) == path.stat().st_size
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DataError, match=f"{path.name}.*truncated"):
        load_lidarseg(nusc, sd)
    for name, call in _lidar_callers(nusc, tok).items():
        with pytest.raises(DataError, match=f"{path.name}.*truncated"):
            call()
            pytest.fail(name)


def test_lidarseg_with_unknown_category(world_copy):
    nusc = open_nuscenes(world_copy, TINY.version)
    tok, sd = _first(nusc, "LIDAR_TOP")
    path = world_copy / nusc.get("lidarseg", sd)["filename"]
    data = bytearray(path.read_bytes())
    data[5] = 77                                  # no nuScenes-lidarseg category has index 77
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match=f"{path.name}.*\\[77\\]"):
        load_lidar_sweep(nusc, tok)


def test_pseudo_label_cache_is_atomic_and_outside_dataroot(world_copy, tmp_path):
    """An interrupted labelling run keeps the labels it finished, leaves no partial file, and
    writes nothing inside the dataroot."""
    import numpy as np

    from bevlib.data.pseudo import PseudoLabeler, cache_pseudo_labels, pseudo_label_path

    class Flaky(PseudoLabeler):
        name = "flaky"

        def __init__(self, fail_at=None):
            self.calls, self.fail_at = 0, fail_at

        def label(self, nusc, sample_data_token):
            self.calls += 1
            if self.calls == self.fail_at:
                raise RuntimeError("labeller crashed")
            return np.full((18, 32), 3, np.uint8)

    nusc = open_nuscenes(world_copy, TINY.version)
    before = sorted(p for p in world_copy.rglob("*"))
    toks = [nusc.sample[0]["data"][c] for c in CAMERAS[:3]]
    with pytest.raises(RuntimeError, match="crashed"):
        cache_pseudo_labels(nusc, Flaky(fail_at=2), toks, progress=False)
    first = pseudo_label_path(world_copy, "flaky", toks[0])
    assert first.is_relative_to(tmp_path / "cache") and first.exists()
    assert sorted(p.name for p in first.parent.iterdir()) == [first.name]          # no temporaries
    assert cache_pseudo_labels(nusc, Flaky(), toks, progress=False) == 2           # kept; the rest made
    assert sorted(p for p in world_copy.rglob("*")) == before


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


def test_missing_earlier_sweep_record(world_copy):
    """A dataset cut down to keyframes (like ../shared) may point ``prev`` at records it lacks: one
    sweep still reads, more sweeps name the missing record."""
    nusc = open_nuscenes(world_copy, TINY.version)
    tok, sd = _first(nusc, "LIDAR_TOP")
    nxt = nusc.get("sample", tok)["next"]
    for name in ("sample_data", "lidarseg"):
        table = world_copy / TINY.version / f"{name}.json"
        table.write_text(json.dumps([r for r in json.loads(table.read_text()) if r["token"] != sd]))
    (world_copy / f"lidarseg/{TINY.version}/{sd}_lidarseg.bin").unlink()
    nusc = open_nuscenes(world_copy, TINY.version)
    assert len(load_lidar_sweep(nusc, nxt)) > 0
    with pytest.raises(DataError, match=f"sample_data record '{sd}'.*missing"):
        load_lidar_sweep(nusc, nxt, nsweeps=2)


def test_spelled_booleans_become_bools_and_others_are_refused():
    from bevlib.params import ParameterError, from_dict
    assert from_dict(Table1Params, {"progress": "false"}).progress is False
    assert from_dict(Table1Params, {"progress": "True"}).progress is True
    with pytest.raises(ParameterError, match="'progress' must be true or false"):
        from_dict(Table1Params, {"progress": "maybe"})

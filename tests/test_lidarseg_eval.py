"""bevlib.lidarseg_eval: devkit results format, devkit metric, Table 1 rows (on the embedded world)."""
import json
import shutil

import numpy as np
import pytest

from bevlib.classes import NUSCENES_LIDARSEG_16
from bevlib.data.lidar import load_lidar_sweep, map_lidarseg
from bevlib.data.nuscenes_data import open_nuscenes, scene_sample_tokens, split_scenes
from bevlib.lidarseg_eval import (SUBMISSION_META_KEYS, TABLE1_COLUMNS, eval_scenes, evaluate_lidarseg,
                                  export_lidarseg_predictions, lidarseg_table_rows)
from bevlib.metrics import ConfusionMatrix

META = dict(use_camera=True, use_lidar=True, use_radar=False, use_map=False, use_external=False)
#: Official mini_val scene names: a copy of the tiny world renamed to them is a split LidarSegEval runs on.
MINI_VAL = ("scene-0103", "scene-0916")


@pytest.fixture(scope="module")
def nusc(tiny_world):
    return open_nuscenes(tiny_world, "v1.0-mini")


def _gt(nusc, scenes):
    """sample token -> (sd token, (N,) uint8 16-class ground truth)."""
    out = {}
    for s in scene_sample_tokens(nusc, scenes):
        sw = load_lidar_sweep(nusc, s)
        out[s] = (sw.sample_data_token, map_lidarseg(nusc, sw.lidarseg))
    return out


def _perfect(gt):
    # The devkit rejects 0 as a prediction; ignore points are not scored, so any class does there.
    return {sd: np.where(g == 0, 1, g).astype(np.uint8) for sd, g in gt.values()}


def _random(gt, seed=0):
    rng = np.random.default_rng(seed)
    return {sd: rng.integers(1, 17, len(g), dtype=np.uint8) for sd, g in gt.values()}


@pytest.mark.parametrize("split", ["train", "val"])
def test_ground_truth_scores_100(nusc, split):
    gt = _gt(nusc, split_scenes(nusc)[split])
    r = evaluate_lidarseg(nusc, _perfect(gt), split)
    assert r["backend"] == "ConfusionMatrix"     # embedded scenes are in no official split
    present = set(np.unique(np.concatenate([g for _, g in gt.values()])).tolist()) - {0}
    assert present
    for c in range(1, 17):
        v = r["iou_per_class"][NUSCENES_LIDARSEG_16.names[c]]
        assert (v == 1.0) if c in present else np.isnan(v)
    assert r["miou"] == 1.0
    assert r["n_samples"] == len(gt) and r["results_folder"] is None
    row, = lidarseg_table_rows(r)
    assert row["miou"] == 100.0


def test_random_matches_devkit_confusion_matrix(nusc):
    from nuscenes.eval.lidarseg.utils import ConfusionMatrix as DevkitCM

    gt = _gt(nusc, split_scenes(nusc)["val"])
    preds = _random(gt)
    r = evaluate_lidarseg(nusc, preds, "val")
    ours, dev = ConfusionMatrix(NUSCENES_LIDARSEG_16), DevkitCM(17, 0)
    for sd, g in gt.values():
        ours.update(preds[sd], g)
        dev.update(g, preds[sd])
    np.testing.assert_array_equal(ours.counts, dev.global_cm)
    np.testing.assert_array_equal(ours.counts, r["confusion"])
    assert ours.counts.sum() == sum(int((g != 0).sum()) for _, g in gt.values())
    assert ours.miou() == pytest.approx(dev.get_mean_iou(), rel=1e-6)
    assert ours.miou() == pytest.approx(r["miou"], rel=1e-6)
    np.testing.assert_allclose(ours.iou()[1:], np.asarray(dev.get_per_class_iou(), float)[1:], rtol=1e-6)
    assert 0 < r["miou"] < 0.5


def test_export_format_as_validate_submission_checks(nusc, tmp_path):
    gt = _gt(nusc, split_scenes(nusc)["val"])
    preds = _random(gt, seed=1)
    out = export_lidarseg_predictions(preds, tmp_path / "res", META, eval_set="val", nusc=nusc)
    with open(out / "val" / "submission.json") as f:
        sub = json.load(f)
    assert set(sub["meta"]) == set(SUBMISSION_META_KEYS)
    assert all(type(v) is bool for v in sub["meta"].values())
    bins = sorted(p.name for p in (out / "lidarseg" / "val").iterdir())
    assert bins == sorted(f"{sd}_lidarseg.bin" for sd, _ in gt.values())
    for sd, g in gt.values():
        a = np.fromfile(out / "lidarseg" / "val" / f"{sd}_lidarseg.bin", dtype=np.uint8)
        gt_file = nusc.dataroot + "/" + nusc.get("lidarseg", sd)["filename"]
        assert len(a) == len(np.fromfile(gt_file, dtype=np.uint8)) == len(g)
        np.testing.assert_array_equal(a, preds[sd])
        assert ((a > 0) & (a < 17)).all()
    assert not list(out.rglob("*.tmp"))          # atomic writes leave no temporaries


def test_bad_predictions_raise_naming_the_token(nusc, tmp_path):
    gt = _gt(nusc, split_scenes(nusc)["val"])
    preds = _perfect(gt)
    sd = next(iter(preds))
    short = dict(preds, **{sd: preds[sd][:-7]})
    with pytest.raises(ValueError, match=sd):
        evaluate_lidarseg(nusc, short, "val")
    with pytest.raises(ValueError, match=sd):
        export_lidarseg_predictions(short, tmp_path / "x", META, nusc=nusc)
    assert not (tmp_path / "x").exists()         # checked before anything is written
    zero = dict(preds, **{sd: np.zeros_like(preds[sd])})
    with pytest.raises(ValueError, match=sd):
        export_lidarseg_predictions(zero, tmp_path / "y", META)
    missing = {k: v for k, v in preds.items() if k != sd}
    with pytest.raises(ValueError, match=sd):
        evaluate_lidarseg(nusc, missing, "val")
    with pytest.raises(ValueError, match="use_external"):
        export_lidarseg_predictions(preds, tmp_path / "z", {k: v for k, v in META.items() if k != "use_external"})
    with pytest.raises(ValueError, match="unknown eval_set"):
        evaluate_lidarseg(nusc, preds, "nope")


@pytest.fixture(scope="module")
def mini_val_world(tiny_world, tmp_path_factory):
    """A copy of the tiny world whose two scenes carry the official mini_val names."""
    root = tmp_path_factory.mktemp("minival") / "tiny"
    shutil.copytree(tiny_world, root)
    path = root / "v1.0-mini" / "scene.json"
    scenes = json.loads(path.read_text())
    assert len(scenes) == len(MINI_VAL)
    for s, name in zip(sorted(scenes, key=lambda s: s["name"]), MINI_VAL):
        s["name"] = name
    path.write_text(json.dumps(scenes))
    return open_nuscenes(root, "v1.0-mini")


def test_devkit_lidarsegeval_and_validate_submission_agree(mini_val_world, tmp_path):
    from nuscenes.eval.lidarseg.validate_submission import validate_submission

    n = mini_val_world
    scenes, devkit_ok = eval_scenes(n, "mini_val")
    assert devkit_ok and scenes == list(MINI_VAL)
    gt = _gt(n, MINI_VAL)
    preds = _random(gt, seed=2)
    r = evaluate_lidarseg(n, preds, "mini_val", out_dir=tmp_path / "res", meta=META)
    assert r["backend"] == "LidarSegEval" and r["n_samples"] == len(gt)
    validate_submission(n, str(tmp_path / "res"), "mini_val")    # the devkit's own format checks
    ours = ConfusionMatrix(NUSCENES_LIDARSEG_16)
    for sd, g in gt.values():
        ours.update(preds[sd], g)
    np.testing.assert_array_equal(ours.counts, r["confusion"])
    assert r["miou"] == pytest.approx(ours.miou(), rel=1e-6)
    with pytest.raises(ValueError, match="no scene"):
        eval_scenes(n, "mini_train")
    perfect = evaluate_lidarseg(n, _perfect(gt), "mini_val")
    assert perfect["backend"] == "LidarSegEval" and perfect["miou"] == 1.0


def test_fallback_equals_lidarsegeval(mini_val_world, monkeypatch):
    import bevlib.lidarseg_eval as le

    gt = _gt(mini_val_world, MINI_VAL)
    preds = _random(gt, seed=3)
    dev = evaluate_lidarseg(mini_val_world, preds, "mini_val")
    real = le.eval_scenes
    monkeypatch.setattr(le, "eval_scenes", lambda nusc, s: (real(nusc, s)[0], False))
    fb = evaluate_lidarseg(mini_val_world, preds, "mini_val")
    assert (dev["backend"], fb["backend"]) == ("LidarSegEval", "ConfusionMatrix")
    np.testing.assert_array_equal(dev["confusion"], fb["confusion"])
    assert dev["miou"] == fb["miou"] and dev["freq_weighted_iou"] == fb["freq_weighted_iou"]
    np.testing.assert_equal(dev["iou_per_class"], fb["iou_per_class"])


def test_partial_official_split_falls_back(mini_val_world, monkeypatch):
    import nuscenes.utils.splits as splits

    real = splits.create_splits_scenes

    def with_absent_scene(verbose=False):
        s = real(verbose=verbose)
        s["mini_val"] = list(s["mini_val"]) + ["scene-0061"]   # a mini scene this database lacks
        return s

    monkeypatch.setattr(splits, "create_splits_scenes", with_absent_scene)
    assert eval_scenes(mini_val_world, "mini_val") == (list(MINI_VAL), False)
    gt = _gt(mini_val_world, MINI_VAL)
    r = evaluate_lidarseg(mini_val_world, _perfect(gt), "mini_val")
    assert r["backend"] == "ConfusionMatrix" and r["miou"] == 1.0 and r["scenes"] == list(MINI_VAL)


def test_table_rows_follow_multivit_table1():
    names = NUSCENES_LIDARSEG_16.names
    r = {"iou_per_class": {n: i / 100 for i, n in enumerate(names)}, "miou": 0.5}
    rows = lidarseg_table_rows({"RangeViT": r, "MultiViT": r}, headers="paper")
    assert [x["method"] for x in rows] == ["RangeViT", "MultiViT"]
    assert list(rows[0])[1:] == ["barrier", "bicycle", "bus", "car", "construction", "motorcycle", "pedestrian",
                                 "traffic cone", "trailer", "truck", "driveable", "other flat", "sidewalk",
                                 "terrain", "manmade", "vegetation", "mIoU (%)"]
    assert list(rows[0].values())[1:] == [float(i) for i in range(1, 17)] + [50.0]
    row, = lidarseg_table_rows(r, percent=False, digits=None)
    assert list(row)[1:] == [c for c, _ in TABLE1_COLUMNS] and row["bus"] == 0.03

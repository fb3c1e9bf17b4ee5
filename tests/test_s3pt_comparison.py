"""wozniak2025 S3PT Tables 2-3 / Fig. 7 pieces (bevlib.experiments.s3pt.comparison) and the shared study
helpers (.study): parameters, scene shares, tables beside the paper, the direction check, and the domain-
transfer evaluation against the trainer's own validation metric."""
import csv
import math

import pytest

from bevlib.experiments.s3pt import comparison as C
from bevlib.experiments.s3pt import study as S
from bevlib.params import ParameterError


def test_parameters_reject_bad_values():
    with pytest.raises(ParameterError, match="methods"):
        C.ComparisonParams(methods=("DINO", "MoCo"))
    with pytest.raises(ParameterError, match="data_shares"):
        C.ComparisonParams(data_shares=(0.0, 1.0))
    with pytest.raises(ParameterError, match="city_scenes"):
        C.ComparisonParams(city_scenes=2)
    with pytest.raises(ParameterError, match="depth_source"):
        C.ComparisonParams(depth_source="stereo")
    with pytest.raises(ParameterError, match="fig7_seeds"):
        C.ComparisonParams(fig7_seeds=(0, 0))
    p = C.ComparisonParams()
    assert p.method_overrides("DINO") == {"method": "dino", "vmf": False, "n_local": p.dino_local}
    # S3PT is the ablation's last row: the same pretraining run serves both notebooks
    from bevlib.experiments.s3pt.ablation import BASELINE, ROWS
    assert p.method_overrides("S3PT") == {**BASELINE, **ROWS["+ vMF, M=32, 1 SK iter., depth (S3PT)"][0]}
    assert p.city_world().world_look == p.city_look and p.city_world().dataroot == "embedded"


def test_s3pt_config_of_a_method_carries_the_shared_knobs():
    p = C.ComparisonParams(pretrain_epochs=9, n_local=0, dino_local=3)
    cfg = p.s3pt_config(p.method_overrides("DINO"))
    assert cfg.method == "dino" and cfg.crops["n_local"] == 3 and cfg.epochs == 9
    assert p.s3pt_config(p.method_overrides("CrIBo"), epochs=2).crops["n_local"] == 0
    assert p.s3pt_config(p.method_overrides("CrIBo"), epochs=2).epochs == 2


def test_share_tokens_pick_whole_scenes(monkeypatch):
    import bevlib.data.nuscenes_data as nd

    scenes = [f"s{i}" for i in range(8)]
    monkeypatch.setattr(nd, "split_scenes", lambda nusc: {"train": scenes, "val": []})
    monkeypatch.setattr(nd, "scene_sample_tokens", lambda nusc, sc: [f"{s}k{j}" for s in sc for j in range(3)])
    data = S.StudyData(None, object(), "", [], [], [], [], "", {})
    quarter = C.share_tokens(data, 0.25, seed=0)
    assert len(quarter) == 2 * 3 and quarter == C.share_tokens(data, 0.25, seed=0)
    picked = {t.split("k")[0] for t in quarter}
    assert len(picked) == 2 and all(f"{s}k{j}" in quarter for s in picked for j in range(3))
    assert len(C.share_tokens(data, 1.0, seed=3)) == 24
    assert len(C.share_tokens(data, 0.01, seed=3)) == 3     # never empty: at least one scene


def _results(s3pt_gain):
    """Three seeds per method with S3PT ``s3pt_gain`` above CrIBo everywhere, DINO between."""
    out = {}
    for m, base in (("DINO", 10.0), ("CrIBo", 9.0), ("S3PT", 9.0 + s3pt_gain)):
        out[m] = [{"seed": s, **{c: base + 0.1 * s for c in C._T2_COLS + C._T3_COLS}} for s in range(3)]
    return out


def _fig7(more_data_gain):
    rows = []
    for s in range(3):
        rows += [{"axis": "data share", "x": x, "seed": s, "linear": 10 + more_data_gain * x + 0.1 * s, "n_keyframes": 4}
                 for x in (0.25, 0.5, 1.0)]
        rows += [{"axis": "epochs", "x": e, "seed": s, "linear": 10 - 0.5 * e + 0.05 * s, "n_keyframes": 8}
                 for e in (2, 4)]
    return rows


def test_tables_sit_beside_the_paper_and_the_direction_check_reads_the_seeds(tmp_path):
    out = tmp_path / "s3pt_comparison"
    C.write_comparison_tables(_results(2.0), _fig7(4.0), out, "test data.", ("linear", "mask"))
    t2 = list(csv.DictReader(open(out / "table2.csv")))
    s3 = next(r for r in t2 if r["method"] == "S3PT" and r["source"] == "measured")
    assert math.isclose(float(s3["world_linear"]), 11.1) and s3["n_seeds"] == "3"
    rep = next(r for r in t2 if r["method"] == "S3PT" and r["source"].startswith("reported"))
    assert float(rep["world_linear"]) == 42.13 and float(rep["city_mask"]) == 55.41
    t3 = list(csv.DictReader(open(out / "table3.csv")))
    assert float(next(r for r in t3 if r["method"] == "DINO" and r["source"].startswith("reported"))
                 ["city_to_world_linear"]) == 27.40
    assert (out / "fig7.png").stat().st_size > 1000
    f7 = {(r["method"], r["seed"]) for r in csv.DictReader(open(out / "fig7.csv"))}
    assert ("S3PT, 25 % data", "0") in f7 and ("S3PT, 4 epochs", "2") in f7

    verdicts = {r.claim.name: r.verdict for r in C.direction_check(out)}
    assert verdicts["t2_s3pt_beats_cribo_world_linear"] == "held"
    assert verdicts["t2_dino_beats_cribo_world_mask"] == "held"       # DINO 10 > CrIBo 9 in every seed
    assert verdicts["t2_s3pt_beats_dino_world_linear"] == "held"      # 11 > 10
    assert verdicts["fig7_more_data_helps"] == "held"
    assert verdicts["fig7_longer_helps"] == "not held"                # 4 epochs below 2 epochs in every seed
    assert not any(n.startswith(("vmf_", "depth_")) for n in verdicts)   # the ablation's claims are not judged here

    C.write_comparison_tables(_results(-2.0), _fig7(-4.0), out, "test data.", ("linear", "mask"))
    verdicts = {r.claim.name: r.verdict for r in C.direction_check(out)}
    assert verdicts["t2_s3pt_beats_cribo_world_linear"] == "not held"
    assert verdicts["fig7_more_data_helps"] == "not held"


def test_rare_miou_and_mean_spread():
    assert S.rare_miou({"bus": 10.0, "car": 50.0, "pedestrian": float("nan")}, ["bus", "pedestrian"]) == 10.0
    assert math.isnan(S.rare_miou({"car": 50.0}, ["bus"]))
    m, ci = S.mean_spread([1.0, 2.0, 3.0])
    assert m == 2.0 and math.isclose(ci, 4.302652729911275 * 1.0 / math.sqrt(3), rel_tol=1e-6)
    assert S.mean_spread([5.0])[0] == 5.0 and math.isnan(S.mean_spread([5.0])[1])


def test_class_pixel_share_counts_labelled_pixels(tiny_world):
    import numpy as np

    from bevlib.classes import WORLD_CAMERA
    from bevlib.experiments.s3pt.probe import ProbeImageDataset, world_camera_items

    items = world_camera_items(tiny_world, "val")[:4]
    share = S.class_pixel_share(tiny_world, items, (32, 64))
    assert math.isclose(sum(share.values()), 1.0, rel_tol=1e-9)
    ds = ProbeImageDataset(tiny_world, items, (32, 64))
    labs = np.concatenate([ds.label(i).ravel() for i in range(len(items))])
    labs = labs[labs != WORLD_CAMERA.ignore_index]
    assert math.isclose(share["sky"], float((labs == WORLD_CAMERA.index("sky")).mean()), rel_tol=1e-9)


def test_transfer_on_the_same_world_equals_the_probes_own_validation(tiny_world, tmp_path):
    """Evaluating a probe's last checkpoint on its own val images must give the mIoU the trainer logged."""
    from bevlib.experiments.s3pt.probe import world_camera_items
    from bevlib.train import read_metrics

    p = S.S3PTStudyParams(image_wh=(64, 32), hidden=32, heads=2, layers=1, global_size=32, local_size=16,
                          probe_epochs=1, probe_batch=4, seeds=(0,), runs_dir=str(tmp_path / "runs"), progress=False)
    items = {s: world_camera_items(tiny_world, s)[:6] for s in ("train", "val")}
    data = S.StudyData(p, None, str(tiny_world), [], [], items["train"], items["val"], "tiny",
                       {"car": 0.005, "sky": 0.995})
    res = S.probe(data, "linear", 0, "random", None)
    logged = read_metrics(res["run_dir"])[-1]["miou"]
    assert math.isclose(res["miou"], logged, rel_tol=1e-6)
    again = C.transfer_miou(data, res["run_dir"], "linear", 0, None, data)
    assert math.isclose(again["miou"], logged, rel_tol=1e-5, abs_tol=1e-4)

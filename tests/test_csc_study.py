"""chen2024 CSC study layer (bevlib.experiments.csc.study / lidarseg.FeatureProbeTask) on the tiny embedded world:
the cached-feature linear probe against the frozen-backbone probe, the few-shot schedule, the encoder lookup, the
parameters' errors and the tables against direct computations."""
import csv
import json

import numpy as np
import pytest
import torch

from bevlib.experiments.csc import study as st
from bevlib.experiments.csc.lidarseg import (FeatureProbeTask, LidarSegItems, LidarSegTask, SegModel, collate_points,
                                             seg_metrics)
from bevlib.models.minkunet import tiny_config
from bevlib.params import ParameterError


@pytest.fixture(scope="module")
def world(tiny_world):
    from bevlib.data.nuscenes_data import open_nuscenes, scene_sample_tokens, split_scenes
    nusc = open_nuscenes(tiny_world, "v1.0-mini")
    sp = split_scenes(nusc)
    return nusc, scene_sample_tokens(nusc, sp["train"]), scene_sample_tokens(nusc, sp["val"])


def test_feature_probe_equals_the_frozen_backbone_probe(world):
    nusc, tr, va = world
    items = LidarSegItems(nusc, tr[:2])
    val = items.subset(va[:1])
    torch.manual_seed(5)
    state = SegModel(tiny_config()).state_dict()               # stands in for a pre-trained backbone
    probe = FeatureProbeTask(tiny_config(), items, val, backbone_state=state, backbone_id="x")
    feats = probe.train_dataset()[0]["features"]
    ref = SegModel(tiny_config(), freeze_backbone=True)
    ref.load_backbone(state)
    with torch.no_grad():
        direct = ref.backbone.forward_points([items[0]["points"]])
    assert torch.equal(feats, direct)
    # the same classifier weights give the same metrics through both tasks
    head = probe.build_model()
    ref.classifier.load_state_dict(head.state_dict())
    ident = lambda x: x                                        # noqa: E731
    m_probe = probe.evaluate(head, [probe.collate([probe.val_dataset()[0]])], ident)
    m_ref = LidarSegTask(tiny_config(), items, val, freeze_backbone=True).evaluate(
        ref.eval(), [collate_points([val[0]])], ident)
    assert m_probe == pytest.approx(m_ref, nan_ok=True)
    # a random-init probe's backbone depends on backbone_seed only, and leaves the caller's RNG alone
    a = FeatureProbeTask(tiny_config(), items, val, backbone_seed=1)
    rng = torch.get_rng_state()
    fa = a.train_dataset()[0]["features"]
    assert torch.equal(torch.get_rng_state(), rng)
    assert torch.equal(fa, FeatureProbeTask(tiny_config(), items, val, backbone_seed=1).train_dataset()[0]["features"])
    assert not torch.equal(fa, FeatureProbeTask(tiny_config(), items, val, backbone_seed=2).train_dataset()[0]["features"])
    assert a.config()["probe"] == "cached_features" and a.config() != LidarSegTask(
        tiny_config(), items, val, freeze_backbone=True).config()


def test_seg_metrics_is_the_confusion_matrix_miou():
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 17, (500,), generator=g)
    logits = torch.randn(500, 17, generator=g)
    m = seg_metrics([(logits[:200], labels[:200]), (logits[200:], labels[200:])], lambda x: x)
    pred = logits[:, 1:].argmax(1) + 1
    ious = []
    for c in range(1, 17):
        keep = labels != 0
        tp = int(((pred == c) & (labels == c) & keep).sum())
        den = int((((pred == c) | (labels == c)) & keep).sum())
        if int((labels == c).sum()):
            ious.append(100.0 * tp / den)
    assert m["miou"] == pytest.approx(float(np.mean(ious)), abs=1e-6)


def test_finetune_epochs_reach_the_minimum_steps():
    p = st.CSCStudyParams(finetune_epochs=2, finetune_min_steps=20, finetune_batch=2)
    assert st.finetune_epochs(p, 64) == 2                      # 32 steps per epoch
    assert st.finetune_epochs(p, 16) == 3                      # 8 steps per epoch -> 24 steps
    assert st.finetune_epochs(p, 1) == 20
    for n in (1, 4, 7, 16, 64):
        e = st.finetune_epochs(p, n)
        assert e * -(-n // 2) >= 20 and (e == 2 or (e - 1) * -(-n // 2) < 20)


@pytest.mark.parametrize("field,value", [("image_wh", (100, 64)), ("lam", -1), ("pretrain_epochs", 0),
                                         ("vfm_noise", 1.5), ("pretrain_optimizer", "lamb"), ("backbone", "huge"),
                                         ("encoder", "/no/such/weights"), ("settings", ("lp", "ft2")),
                                         ("seeds", (0, 0)), ("finetune_lr", 0)])
def test_params_name_the_bad_field(field, value):
    with pytest.raises(ParameterError, match=field):
        st.CSCStudyParams(**{field: value})


def _fake_run(root, name, dataroot, epochs=6, done=True):
    d = root / name
    d.mkdir(parents=True)
    (d / "config.json").write_text(json.dumps({"task": {"data": {"dataroot": str(dataroot)},
                                                        "s3pt": {"vit": {"hidden_size": 8}}},
                                               "train": {"epochs": epochs}}))
    if done:
        (d / "done.json").write_text("{}")
    return d


def test_s3pt_encoder_run_lookup(tmp_path):
    root, data = tmp_path / "runs", tmp_path / "world"
    data.mkdir()
    p = st.CSCStudyParams(s3pt_runs_dir=str(root))
    assert st.s3pt_encoder_run(p, str(data)) is None
    _fake_run(root, "pre-vMF__depth__S3PT-s0-aaa", tmp_path / "other")          # another dataset
    _fake_run(root, "pre-vMF__depth__S3PT-s1-bbb", data)                        # another seed
    _fake_run(root, "pre-vMF__depth__S3PT-s0-ccc", data, done=False)            # unfinished
    _fake_run(root, "pre-CrIBo-s0-ddd", data)                                   # another row
    assert st.s3pt_encoder_run(p, str(data)) is None
    short = _fake_run(root, "pre-vMF__depth__S3PT-s0-eee", data, epochs=2)
    assert st.s3pt_encoder_run(p, str(data)) == short
    long = _fake_run(root, "pre-vMF__depth__S3PT-s0-fff", data, epochs=6)
    assert st.s3pt_encoder_run(p, str(data)) == long
    enc = st.resolve_encoder(st.CSCStudyParams(s3pt_runs_dir=str(tmp_path / "none")), str(data))
    assert enc.state is None and "random" in enc.desc and "no S3PT" in enc.desc


def test_write_tables_mean_std_and_reported_rows(tmp_path):
    res = {"A": [{"seed": s, "lp": v, "ft1": 2 * v} for s, v in enumerate((10.0, 12.0, 17.0))],
           "B": [{"seed": s, "lp": v, "ft1": v} for s, v in enumerate((1.0, 2.0, 3.0))]}
    st.write_tables(res, tmp_path, "t", "caption", "T.", ("lp", "ft1"), {"A": {"lp": 46.0, "ft1": 47.0}}, "paper")
    rows = list(csv.DictReader(open(tmp_path / "t.csv")))
    a = rows[0]
    assert a["method"] == "A" and a["source"] == "measured" and a["n_seeds"] == "3"
    assert float(a["lp"]) == pytest.approx(13.0) and float(a["lp_std"]) == pytest.approx(np.std([10, 12, 17], ddof=1),
                                                                                         abs=0.01)
    assert float(a["ft1"]) == pytest.approx(26.0)
    assert rows[2]["source"] == "reported (paper)" and float(rows[2]["lp"]) == 46.0
    seeds = [r for r in csv.DictReader(open(tmp_path / "t_seeds.csv")) if r["source"] == "measured"]
    assert [(r["method"], r["seed"]) for r in seeds] == [("A", "0"), ("A", "1"), ("A", "2"), ("B", "0"), ("B", "1"),
                                                         ("B", "2")]
    assert "± " in (tmp_path / "t.md").read_text()


def test_seed_table_carries_the_reported_rows_for_the_direction_check(tmp_path):
    res = {m: [{"seed": s, "lp": v + s, "ft1": v} for s in range(3)] for m, v in (("SLidR", 10.0), ("CSC", 11.0))}
    st.write_tables(res, tmp_path, "table2", "caption", "T.", ("lp", "ft1"), {"CSC": {"lp": 46.0}, "SLidR": {"lp": 38.0}},
                    "paper")
    rows = list(csv.DictReader(open(tmp_path / "table2_seeds.csv")))
    assert [r["source"] for r in rows].count("measured") == 6
    rep = {r["method"]: r for r in rows if r["source"] == "reported (paper)"}
    assert rep["CSC"]["lp"] == "46.0" and rep["CSC"]["seed"] == "" and rep["SLidR"]["ft1"] in ("", "nan")
    from bevlib.scoreboard import claims, evaluate
    from dataclasses import replace
    from bevlib.experiments.csc import claims as _  # noqa: F401
    c = next(c for c in claims(["csc"]) if c.name == "t2_csc_beats_slidr_lp")
    r = evaluate(replace(c, table=f"{tmp_path.name}/table2_seeds.csv"), tmp_path.parent)
    assert r.reported == (46.0, 38.0) and r.a_est.mean == pytest.approx(12.0)

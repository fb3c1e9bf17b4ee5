"""The combined-datasets study layer (bevlib.experiments.combined.study): parameters, Table 8 scaled by
hand, the deterministic nested subsets, the three rig worlds and their mixture (counts and dataset indices
against a direct count), the mean ± std tables against numpy, and the registered findings judged on a
hand-made per-seed table."""
import csv
import math

import numpy as np
import pytest

from bevlib.experiments.combined import study as st
from bevlib.params import ParameterError

SMALL = dict(world_scenes=3, world_keyframes=3, world_image_wh=(320, 180), lyft_scenes=3, once_scenes=5,
             nuscenes_frames=1, pretrain_epochs=1, finetune_epochs=1, seeds=(0,), progress=False)


@pytest.fixture(scope="module")
def worlds(bevlib_cache, tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("BEVLIB_CACHE", str(bevlib_cache))
    try:
        yield st.prepare_worlds(st.CombinedStudyParams(**SMALL, runs_dir=str(tmp_path_factory.mktemp("runs"))))
    finally:
        mp.undo()


@pytest.mark.parametrize("field,value", [("pretrain_epochs", 0), ("finetune_share", 0.0), ("finetune_share", 1.5),
                                         ("model", "huge"), ("finetune_loss", "dice"), ("seeds", (1, 1)),
                                         ("pretrain_lr", -1.0), ("seg_blocks", -1), ("lyft_scenes", 0),
                                         ("model_overrides", {"bev_size": 0}), ("model_overrides", {"nope": 1})])
def test_bad_parameters_are_named(field, value):
    with pytest.raises(ParameterError, match=field):
        st.CombinedStudyParams(**{field: value})


def test_table8_scaled_by_hand():
    full = st.CombinedStudyParams(nuscenes_frames=28130)
    assert {v: st.table8_counts(full, v) for v in st.TABLE8} == {v: list(st.TABLE8[v]) for v in st.TABLE8}
    p = st.CombinedStudyParams(nuscenes_frames=32)            # 32 / 28130 keyframes per paper frame
    assert st.table8_counts(p, "40K") == [(15, 1)] * 3          # 13300 * 32 / 28130 = 15.13
    assert st.table8_counts(p, "100K") == [(32, 1), (26, 1), (57, 1)]    # 25.80, 56.88
    assert st.table8_counts(p, "250K") == [(32, 4), (26, 4), (228, 1)]   # 227.52
    assert st.table8_counts(st.CombinedStudyParams(nuscenes_frames=1), "40K") == [(1, 1)] * 3   # at least 1
    with pytest.raises(ParameterError, match="volume"):
        st.table8_counts(p, "1M")


def test_subsets_are_nested_and_deterministic():
    toks = [f"t{i:02d}" for i in range(20)][::-1]
    a, b = st.subset(toks, 5), st.subset(toks, 12)
    assert set(a) < set(b) and a == st.subset(list(reversed(toks))[::-1], 5)
    assert a == [t for t in toks if t in set(a)]             # input order kept
    assert st.subset(toks, 20) == toks
    with pytest.raises(ValueError, match="21"):
        st.subset(toks, 21)


def test_rig_params_name_other_worlds():
    p = st.CombinedStudyParams(world_seed=5, lyft_scenes=7)
    ly, on, nu = p.rig_params("lyft"), p.rig_params("once"), p.rig_params("nuscenes")
    assert (ly.world_rig, ly.world_seed, ly.world_scenes) == ("lyft", 6, 7)
    assert (on.world_rig, on.world_seed, on.world_scenes) == ("once", 7, p.once_scenes)
    assert (nu.world_rig, nu.world_seed, nu.world_scenes) == ("nuscenes", 5, p.world_scenes)
    assert ly.world_config().hash() != nu.world_config().hash() != on.world_config().hash()


def test_three_rig_worlds_and_their_mixture(worlds):
    from bevlib.experiments.combined.data import KeyframeItems

    assert list(worlds.worlds) == list(st.RIGS)
    from bevlib.data.fields import KeyframeConfig, load_keyframe

    rings = {r: int(load_keyframe(worlds[r].nusc, worlds[r].train_tokens[0], KeyframeConfig(fields=("lidar",)))
                    ["lidar_ring"].max()) + 1 for r in st.RIGS}
    assert rings == {"nuscenes": 32, "lyft": 64, "once": 40}      # each rig's LiDAR, read through the devkit
    p = worlds.params
    counts = st.table8_counts(p, "250K")                      # (1, 4), (1, 4), (7, 1)
    ds, ident = st.pretrain_data(worlds, st.RIGS, counts)
    assert len(ds) == sum(n * r for n, r in counts) == 15
    idx = [int(ds[i]["dataset_index"]) for i in range(len(ds))]
    assert np.bincount(idx, minlength=3).tolist() == [4, 4, 7]
    assert ident["once"] == {"dataroot": worlds["once"].dataroot, "n": 7, "repeat": 1}
    single, _ = st.pretrain_data(worlds, ("nuscenes",))
    assert isinstance(single, KeyframeItems) and len(single) == len(worlds["nuscenes"].train_tokens)
    assert single[0]["dataset_index"] == 0
    with pytest.raises(ParameterError, match="once_scenes"):
        st.pretrain_data(worlds, st.RIGS, [(1, 1), (1, 1), (len(worlds["once"].train_tokens) + 1, 1)])


def test_fine_tuning_share_of_the_nuscenes_world(worlds):
    tr, va = worlds.seg_sets()
    n = len(worlds["nuscenes"].train_tokens)
    assert len(tr) == math.ceil(0.2 * n) and set(tr.tokens) <= set(worlds["nuscenes"].train_tokens)
    assert va.tokens == worlds["nuscenes"].val_tokens
    assert tr[0]["map_masks"].shape == (5, 200, 200)


def test_summary_rows_are_mean_and_std_and_reported_is_labelled():
    res = {"A": [{"seed": s, "miou": v} for s, v in zip((0, 1, 2), (10.0, 12.0, 17.0))],
           "B": [{"seed": 0, "miou": 5.0}]}
    rows = st.summary_rows(res, reported={"A": {"miou": (39.3, 0.1)}}, ref="paper")
    a, b, rep = rows
    assert a["miou"] == round(np.mean([10, 12, 17]), 2) and a["miou_std"] == round(np.std([10, 12, 17], ddof=1), 2)
    assert b["miou"] == 5.0 and math.isnan(b["miou_std"]) and b["n_seeds"] == 1
    assert rep["source"] == "reported (paper)" and (rep["miou"], rep["miou_std"]) == (39.3, 0.1)
    assert [r["seed"] for r in st.seed_rows(res)] == [0, 1, 2, 0]


def test_findings_are_judged_on_per_seed_tables(tmp_path):
    from bevlib.experiments.combined import multidataset as md

    out = tmp_path / "combined_multidataset"
    out.mkdir()
    rows = {"Single dataset": (20, 21, 22), "Multi-dataset w/o prompt": (20, 21, 22),
            "Multi-dataset w/ prompt": (25, 27, 26)}
    with open(out / "table4_seeds.csv", "w", newline="") as f:
        w = csv.DictWriter(f, ["method", "source", "seed", "miou"])
        w.writeheader()
        w.writerows({"method": k, "source": "measured", "seed": s, "miou": v}
                    for k, vals in rows.items() for s, v in zip((0, 1, 2), vals))
    res = {r.claim.name: r.status for r in md.direction_check(out)}
    assert res["t4_prompt_beats_naive_mix"] == "held" and res["t4_prompt_beats_single"] == "held"
    assert res["t6_more_data_helps"] == "not run"
    assert (out / "direction_check.md").exists()

"""lukkassen2024 MultiViT part 2: the study's parameters, tasks (transfer, joint loss terms), tables
and the direction check on hand-made per-seed results."""
import csv
import math

import pytest
import torch

from bevlib.experiments.multivit import MultiViTStudyParams, study_tables
from bevlib.experiments.multivit.study import _train_config, row_name
from bevlib.params import ParameterError


def test_params_rows_and_errors():
    p = MultiViTStudyParams()
    assert list(p.selected_rows()) == ["rangevit", "cameravit", "rangevit_cam", "multivit", "multivit_pull",
                                       "multivit_pullpush"]
    assert p.seeds_of("multivit") == (0, 1, 2) and p.seeds_of("multivit_pull") == (0,)
    assert p.pair_epochs == 2   # 12 RangeViT epochs / 6 images per sweep
    with pytest.raises(ParameterError, match="rangevit_cam"):
        MultiViTStudyParams(rows=("rangevit_cam",))
    with pytest.raises(ParameterError, match="unknown rows"):
        MultiViTStudyParams(rows=("rangevit_in21k",))          # In21k rows need vit_weights
    with pytest.raises(ParameterError, match="image_hw"):
        MultiViTStudyParams(image_hw=(60, 176))
    with pytest.raises(ParameterError, match="seeds"):
        MultiViTStudyParams(seeds=(1, 1))


def test_every_model_sees_as_many_lidar_crops():
    """RangeViT: lidar_epochs over N sweeps; MultiViT: lidar_epochs / 6 over the 6N pairs (paper: 150 / 25)."""
    p = MultiViTStudyParams(lidar_epochs=12, lidar_batch=8, pair_batch=8)
    r, m = _train_config(p, "rangevit", 64, 0, False), _train_config(p, "multivit", 64, 0, False)
    assert r.epochs * 64 == m.epochs * 6 * 64
    assert _train_config(p, "multivit", 64, 0, True).lr == p.lr / 2


def _fake_results():
    def m(miou, cam=float("nan"), cos=float("nan")):
        d = {c: miou for c in study_tables.LIDAR_COLUMNS}
        d.update(cam_miou=cam, mean_cos=cos, mean_cos_all=cos, mean_cos_dec=cos)
        return d
    return {
        "rangevit": [(0, m(30.0)), (1, m(31.0)), (2, m(32.0))],
        "cameravit": [(0, m(float("nan"), 50.0)), (1, m(float("nan"), 52.0)), (2, m(float("nan"), 54.0))],
        "rangevit_cam": [(0, m(33.0)), (1, m(34.0)), (2, m(35.0))],
        "multivit": [(0, m(36.0, 40.0, 0.1)), (1, m(37.0, 41.0, 0.12)), (2, m(38.5, 42.0, 0.08))],
        "multivit_pullpush": [(0, m(30.0, 40.0, 0.7)), (1, m(31.0, 41.0, 0.72)), (2, m(32.5, 42.0, 0.69))],
    }


def test_tables_mean_and_interval_beside_reported(tmp_path):
    res = _fake_results()
    rows = study_tables.table_rows("table4", res, has_weights=False)
    joint = next(r for r in rows if r["method"] == "MultiViT.L (joint)" and r["source"] == "measured")
    assert joint["miou"] == pytest.approx(37.2, abs=0.05) and joint["n_seeds"] == 3
    # 95 % t half-width of (36, 37, 38.5): t(0.975, 2) * sd / sqrt(3)
    sd = torch.tensor([36.0, 37.0, 38.5]).std().item()
    assert joint["miou_ci95"] == pytest.approx(4.303 * sd / 3 ** 0.5, abs=0.06)
    assert any(r["source"].startswith("reported") and r["miou"] == 72.3 for r in rows)
    assert any(r["source"].startswith("not run: needs vit_weights") for r in rows)
    paths = study_tables.write_study_tables(res, tmp_path, "caption", has_weights=False)
    assert {p.name for p in paths} >= {"table1.md", "table3.csv", "cosine.csv", "multivit_seeds.csv"}
    seeds = list(csv.DictReader(open(tmp_path / "multivit_seeds.csv")))
    assert len(seeds) == 15 and {r["method"] for r in seeds} >= {row_name("multivit_pullpush")}


def test_direction_check_judges_the_paired_seeds(tmp_path):
    out = tmp_path / "multivit_tables"
    study_tables.write_study_tables(_fake_results(), out, "caption", has_weights=False)
    results = {r.claim.name: r for r in study_tables.direction_check(out)}
    assert results["joint_beats_finetune_scratch"].status == "held"
    assert results["camera_pretraining_helps_scratch"].status == "held"
    assert results["pull_push_raises_cosine"].status == "held"        # +0.60, asked >= 0.2
    assert results["pull_push_raises_cosine_all_labelled"].status == "held"
    assert results["pull_push_raises_cosine_decoder"].status == "held"
    assert results["pull_push_lowers_lidar_miou"].status == "held"
    assert results["joint_beats_finetune_scratch"].paired
    assert (out / "direction_check.md").exists()
    # the opposite outcome is not held: swap joint and fine-tuned
    res = _fake_results()
    res["multivit"], res["rangevit_cam"] = [(s, {**m, "miou": m["miou"] - 10}) for s, m in res["multivit"]], res["rangevit_cam"]
    study_tables.write_study_tables(res, out, "caption", has_weights=False)
    results = {r.claim.name: r for r in study_tables.direction_check(out)}
    assert results["joint_beats_finetune_scratch"].status != "held"
    assert math.isfinite(results["joint_beats_finetune_scratch"].diff.mean)


def test_camera_pretrained_rangevit_starts_from_the_cameravit_encoder(tmp_path):
    from bevlib.experiments.multivit.study_tasks import CameraPretrainedRangeViTTask
    from bevlib.models.registry import build_model
    from bevlib.train.checkpoint import save_checkpoint

    p = MultiViTStudyParams(embed_dim=32, depth=1, heads=2, stem_channels=8, decoder_channels=8, image_hw=(32, 64),
                            crop_w=64, range_hw=(32, 256))
    cam = build_model("cameravit", p.camera_cfg())
    with torch.no_grad():
        for prm in cam.encoder.parameters():
            prm.add_(torch.randn_like(prm))
    ck = save_checkpoint(tmp_path / "cam.pt", {"model": cam.state_dict()})
    task = CameraPretrainedRangeViTTask(p.lidar_cfg(), [], [], p.range_hw, p.crop_w, 32, camera_cfg=p.camera_cfg(),
                                        camera_checkpoint=str(ck))
    model = task.build_model()
    for name, prm in cam.encoder.layers.named_parameters():
        assert torch.equal(prm, dict(model.encoder.layers.named_parameters())[name])
    assert torch.equal(cam.encoder.cls_token, model.encoder.cls_token)
    assert not torch.equal(cam.stem.proj.weight.flatten()[:4], model.stem.proj.weight.flatten()[:4])
    assert task.config()["encoder_init"]["checkpoint_checksum"]

"""Combined-datasets pre-training task (bevlib.experiments.combined): items of two rigs' tiny worlds,
one training epoch on the shared trainer, gradient flow, the Table 2 ablation switches, the loss
wiring against direct computations, and PromptNorm's identity start / per-sample prompts."""
import math

import numpy as np
import pytest
import torch
from conftest import TINY

from bevlib.data.fields import KeyframeConfig, load_keyframe
from bevlib.data.nuscenes_data import open_nuscenes
from bevlib.experiments.combined import (BranchEncoder, CombinedConfig, CombinedModel, CombinedPretrainTask,
                                         KeyframeItems, collate_keyframes, mixed_keyframes, paper_config,
                                         paper_train_config, prompt_parameters)
from bevlib.models.backbone import normalize_images
from bevlib.models.promptnorm import dataset_prompt, prompt_norms, set_prompt_mode
from bevlib.ssl.bev_losses import random_patch_mask, sample_bev_cells

WH = (176, 64)
RIGS = ("nuscenes", "lyft")


@pytest.fixture(scope="module")
def worlds(bevlib_cache):
    from bevlib.data.world import ensure_world
    out = []
    for rig in RIGS:
        nusc = open_nuscenes(ensure_world(cache_dir=bevlib_cache, cfg=TINY.with_rig(rig), progress=False),
                             TINY.version)
        out.append((nusc, [s["token"] for s in nusc.sample]))
    return out


@pytest.fixture(scope="module")
def mixed(worlds):
    return mixed_keyframes([(n, t[:2]) for n, t in worlds], list(RIGS), WH, seed=0)


@pytest.fixture(scope="module")
def batch(mixed):
    # one sample of each rig, rig 1 first
    by_ds = {}
    for i in range(len(mixed)):
        by_ds.setdefault(mixed.dataset_index(i), mixed[i])
    return collate_keyframes([by_ds[1], by_ds[0]])


def _perturb_adapters(model, seed=1, scale=0.1):
    # adapters start at zero (identity PromptNorm), where no gradient reaches the prompts and every
    # prompt gives the same output; a small random last layer makes the prompts matter
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in prompt_norms(model):
            last = m.adapter[-1]
            last.weight.copy_(torch.randn(last.weight.shape, generator=g) * scale)
            last.bias.copy_(torch.randn(last.bias.shape, generator=g) * scale)


def test_items_match_load_keyframe_and_mix_tags_rigs(worlds, mixed):
    nusc, tokens = worlds[1]
    items = KeyframeItems(nusc, tokens[:2], WH, dataset_index=1)
    it = items[1]
    kf = load_keyframe(nusc, tokens[1], KeyframeConfig(fields=("cameras", "lidar"), image_wh=WH, cache=False))
    ref = normalize_images(torch.from_numpy(kf["images"]).permute(0, 3, 1, 2)[None])[0]
    assert it["images"].shape == (6, 3, WH[1], WH[0]) and it["images"].dtype == torch.float32
    torch.testing.assert_close(it["images"], ref, rtol=0, atol=1e-5)
    np.testing.assert_array_equal(it["K"].numpy(), kf["K"])
    np.testing.assert_array_equal(it["ego_T_cam"].numpy(), kf["ego_T_cam"])
    np.testing.assert_array_equal(it["points"][:, :3].numpy(), kf["lidar_points"])
    np.testing.assert_allclose(it["points"][:, 3].numpy(), kf["lidar_intensity"] / 255.0, rtol=1e-6)
    assert it["dataset_index"] == 1 and items[1]["points"] is it["points"]      # held in memory
    ring = KeyframeItems(nusc, tokens[:1], WH, point_feature="ring")[0]["points"][:, 3]
    assert 0 <= float(ring.min()) and float(ring.max()) < 1
    # balanced mix: 2 + 2 positions, each tagged with the world it was read from (the 64-beam Lyft-like
    # rig's sweep differs from the 32-beam one's)
    assert len(mixed) == 4 and sorted(mixed.dataset_index(i) for i in range(4)) == [0, 0, 1, 1]
    for i in range(4):
        d = mixed.dataset_index(i)
        item = mixed[i]
        assert item["dataset_index"] == d
        assert any(torch.equal(item["points"], KeyframeItems(worlds[d][0], worlds[d][1][:2], WH)[j]["points"])
                   for j in range(2))
    b = collate_keyframes([mixed[0], mixed[1]])
    assert b["images"].shape == (2, 6, 3, WH[1], WH[0]) and isinstance(b["points"], list)
    assert b["dataset_index"].dtype == torch.int64
    with pytest.raises(ValueError, match="dataset_index"):
        KeyframeItems(nusc, tokens, WH, dataset_index=-1)
    with pytest.raises(ValueError, match="point_feature"):
        KeyframeItems(nusc, tokens, WH, point_feature="rgb")
    with pytest.raises(ValueError, match="tokens"):
        KeyframeItems(nusc, [], WH)
    with pytest.raises(ValueError, match="worlds"):
        mixed_keyframes([], [], WH)


def test_occupancy_matches_brute_force(batch):
    cfg = CombinedConfig()
    model = CombinedModel(cfg)
    occ = model.occupancy(batch["points"])
    cell = 2 * cfg.bev_range / cfg.bev_size
    for b, p in enumerate(batch["points"]):
        ref = np.zeros((cfg.bev_size, cfg.bev_size), bool)
        for x, y, z, _ in p.numpy().astype(np.float64):   # row along -x from the front edge, column along -y
            if -cfg.bev_range <= x < cfg.bev_range and -cfg.bev_range <= y < cfg.bev_range \
                    and cfg.lidar_z[0] <= z < cfg.lidar_z[1]:
                ref[int((cfg.bev_range - x) // cell), int((cfg.bev_range - y) // cell)] = True
        assert (occ[b].numpy() != ref).sum() <= 2    # float32 points on a cell face may land either side
        assert ref.sum() > 100


def _direct_terms(task, model, batch, seed):
    """Eqs. 3-4 written out on the model's outputs, with the task's draws (same generator order)."""
    cfg = task.cfg
    g = torch.Generator().manual_seed(seed)
    B = batch["images"].shape[0]
    mask = random_patch_mask(B * 6, task.n_patches(), cfg.mask_ratio, g)
    out = model(batch["images"], batch["K"], batch["ego_T_cam"], batch["points"], batch["dataset_index"], mask)
    # MAE: masked patches of the normalised images, cut by hand
    p = cfg.mae_patch
    imgs = batch["images"].flatten(0, 1)
    errs = []
    for n in range(imgs.shape[0]):
        w_p = imgs.shape[-1] // p
        for q in torch.nonzero(mask[n]).reshape(-1).tolist():
            r, c = divmod(q, w_p)
            tgt = imgs[n, :, r * p:(r + 1) * p, c * p:(c + 1) * p].permute(1, 2, 0).reshape(-1)
            errs.append(((out["mae_pred"][n, q] - tgt) ** 2).mean())
    mae = torch.stack(errs).mean()
    cells = sample_bev_cells(B, cfg.bev_size, cfg.bev_size, cfg.k, g, mask=out["occupancy"])
    cl = 0.0
    for b in range(B):
        x = out["cam_bev"][b].flatten(1)[:, cells[b]]
        y = out["lidar_bev"][b].flatten(1)[:, cells[b]]
        x, y = x / x.norm(dim=0, keepdim=True), y / y.norm(dim=0, keepdim=True)
        s = (x.T @ y) / cfg.tau
        cl = cl + (-(s.diag() - torch.logsumexp(s, dim=1))).mean() / B
    return mae, cl


@pytest.mark.parametrize("prompt", [False, True])
def test_terms_equal_direct_computation(batch, prompt):
    torch.manual_seed(0)
    cfg = CombinedConfig(prompt=prompt, k=64)
    task = CombinedPretrainTask(cfg, None)
    model = task.build_model().eval()
    if prompt:
        _perturb_adapters(model)
    with torch.no_grad():
        terms = task.terms(model, batch, torch.Generator().manual_seed(5))
        mae, cl = _direct_terms(task, model, batch, 5)
    assert set(terms) == {"mae", "cl"}
    torch.testing.assert_close(terms["mae"], mae, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(terms["cl"], cl, rtol=1e-5, atol=1e-5)


def test_gradients_reach_both_backbones_decoder_and_present_prompts(batch):
    torch.manual_seed(0)
    cfg = CombinedConfig(prompt=True, n_datasets=3)
    task = CombinedPretrainTask(cfg, None)
    model = task.build_model()
    _perturb_adapters(model)
    assert model.n_prompt_norms > 0
    sum(task.loss(model, batch).values()).backward()

    def grad_norm(module):
        return sum(float(p.grad.abs().sum()) for p in module.parameters() if p.grad is not None)

    for name in ("swin", "lss", "lidar", "cam_proj", "lidar_proj", "decoder"):
        assert grad_norm(getattr(model, name)) > 0, name
    first = [p for n, p in model.swin.encoder.named_parameters() if "embeddings" in n]   # the patch embedding
    assert first and sum(float(p.grad.abs().sum()) for p in first) > 0 and grad_norm(model.lidar.embed) > 0
    tables = prompt_parameters(model)
    assert len(tables) == 2       # one per backbone
    for w in tables:
        g = w.grad.abs().sum(1)
        assert g[0] > 0 and g[1] > 0 and g[2] == 0   # dataset 2 is not in the batch


@pytest.mark.parametrize("use_mae,use_cl", [(False, True), (True, False)])
def test_ablations_drop_their_term(batch, use_mae, use_cl):
    torch.manual_seed(0)
    task = CombinedPretrainTask(CombinedConfig(use_mae=use_mae, use_cl=use_cl), None)
    model = task.build_model()
    terms = task.loss(model, batch)
    assert set(terms) == ({"mae"} if use_mae else set()) | ({"cl"} if use_cl else set())
    sum(terms.values()).backward()
    got = {n: any(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in getattr(model, n).parameters())
           for n in ("decoder", "lidar", "lss", "swin")}
    assert got == {"decoder": use_mae, "lidar": use_cl, "lss": use_cl, "swin": True}


def test_prompt_model_starts_equal_and_uses_each_samples_prompt(batch):
    torch.manual_seed(3)
    plain = CombinedModel(CombinedConfig(prompt=False)).eval()
    torch.manual_seed(3)
    prompted = CombinedModel(CombinedConfig(prompt=True)).eval()
    sp = plain.state_dict()
    shared = {k: v for k, v in prompted.state_dict().items() if k in sp}
    assert len(shared) == len(sp) and all(torch.equal(v, sp[k]) for k, v in shared.items())
    mask = random_patch_mask(12, 44, 0.6, 0)
    args = (batch["images"], batch["K"], batch["ego_T_cam"], batch["points"], batch["dataset_index"], mask)
    with torch.no_grad():
        a, b = plain(*args), prompted(*args)
        for key in ("cam_bev", "lidar_bev", "mae_pred"):
            assert torch.equal(a[key], b[key]), key
        # each sample uses its own dataset's prompt: batched == alone, and another prompt changes it
        _perturb_adapters(prompted)
        both = prompted(*args)
        for i in range(2):
            one = prompted(batch["images"][i:i + 1], batch["K"][i:i + 1], batch["ego_T_cam"][i:i + 1],
                           batch["points"][i:i + 1], batch["dataset_index"][i:i + 1], mask[6 * i:6 * i + 6])
            for key in ("cam_bev", "lidar_bev"):
                torch.testing.assert_close(both[key][i:i + 1], one[key], rtol=1e-4, atol=1e-5)
            other = prompted(batch["images"][i:i + 1], batch["K"][i:i + 1], batch["ego_T_cam"][i:i + 1],
                             batch["points"][i:i + 1], 1 - batch["dataset_index"][i:i + 1], mask[6 * i:6 * i + 6])
            for key in ("cam_bev", "lidar_bev"):
                assert (other[key] - one[key]).abs().max() > 1e-4, key
    with pytest.raises(ValueError, match="dataset_index"):
        prompted(*args[:4], None, mask)


def test_one_epoch_on_the_trainer_writes_finite_metrics(worlds, tmp_path):
    from bevlib.train import TrainConfig, read_metrics, train
    cfg = CombinedConfig(prompt=True, n_datasets=2, k=64)
    train_ds = mixed_keyframes([(n, t[:2]) for n, t in worlds], list(RIGS), cfg.image_wh)
    val_ds = mixed_keyframes([(n, t[-1:]) for n, t in worlds], list(RIGS), cfg.image_wh)
    task = CombinedPretrainTask(cfg, train_ds, val_ds, data_identity={"rigs": list(RIGS), "test": True})
    run = train(task, TrainConfig(epochs=1, batch_size=2, lr=1e-3, device="cpu", schedule="constant",
                                  eval_batch_size=2), tmp_path, "combined", progress=False)
    rows = read_metrics(run)
    assert len(rows) >= 1
    last = rows[-1]
    for key in ("mae", "cl", "train_loss", "val_mae", "val_cl", "val_loss"):
        assert key in last and math.isfinite(float(last[key])), (key, last)
    assert abs(last["train_loss"] - last["mae"] - last["cl"]) < 1e-5 * max(1.0, abs(last["train_loss"]))  # Eq. 1
    assert abs(last["val_loss"] - last["val_mae"] - last["val_cl"]) < 1e-6 * max(1.0, abs(last["val_loss"]))
    assert last["cl"] > 0 and last["mae"] > 0


def test_config_checks_and_paper_preset():
    for kw, name in ((dict(image_wh=(170, 64)), "image_wh"), (dict(use_mae=False, use_cl=False), "use_mae"),
                     (dict(point_feature="rgb"), "point_feature"), (dict(tau=0.0), "tau"),
                     (dict(mask_ratio=1.5), "mask_ratio"), (dict(k=0), "k")):
        with pytest.raises(ValueError, match=name):
            CombinedConfig(**kw)
    p = paper_config()
    assert (p.swin, p.lss_channels, p.bev_size, p.image_wh, p.lr) == ("tiny", 80, 128, (704, 256), 4e-4)
    assert paper_config(multi_dataset=True).lr == 2e-4
    tc = paper_train_config(p, n_train=64)
    assert (tc.batch_size, tc.epochs, tc.warmup_steps, tc.weight_decay, tc.min_lr_ratio) == (32, 50, 10, 0.01, 0.01)
    with pytest.raises(ValueError, match="n_train"):
        paper_train_config(p, 0)
    task = CombinedPretrainTask(CombinedConfig(), None)
    with pytest.raises(ValueError, match="image_wh"):
        task.terms(CombinedModel(CombinedConfig()), {"images": torch.zeros(1, 6, 3, 32, 32)})


def test_branch_encoders_for_downstream(batch):
    torch.manual_seed(0)
    model = CombinedModel(CombinedConfig(prompt=True, n_datasets=2)).eval()
    _perturb_adapters(model)
    cam, lid = BranchEncoder(model, "camera"), BranchEncoder(model, "lidar")
    params = {id(p) for p in cam.parameters()}
    assert all(id(p) in params for p in list(model.swin.parameters()) + list(model.lss.parameters()))
    assert not any(id(p) in params for p in model.decoder.parameters())
    assert {id(p) for p in lid.parameters()} == {id(p) for p in model.lidar.parameters()}
    assert (cam.out_channels, lid.out_channels) == (16, 32)
    with torch.no_grad():
        # as BEVSegModel calls them: inside an outer per-sample (B,) prompt context
        with dataset_prompt(torch.nn.ModuleList([cam, lid]), batch["dataset_index"]):
            c, l_ = cam(batch), lid(batch)
        torch.testing.assert_close(c, model.camera_bev(batch["images"], batch["K"], batch["ego_T_cam"],
                                                       batch["dataset_index"]))
        torch.testing.assert_close(l_, model.lidar(batch["points"], batch["dataset_index"]))
        assert c.shape == (2, 16, 128, 128) and l_.shape == (2, 32, 128, 128)
        # Table 5 "w/o prompt": plain LayerNorms, no index needed
        set_prompt_mode(cam, "none")
        plain = cam({k: v for k, v in batch.items() if k != "dataset_index"})
        assert (plain - c).abs().max() > 1e-4
    with pytest.raises(ValueError, match="branch"):
        BranchEncoder(model, "radar")

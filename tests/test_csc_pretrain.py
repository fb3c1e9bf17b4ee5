"""CSC / SLidR pre-training task (bevlib.experiments.csc) on the tiny embedded world: items and their
superpoints against a brute-force projection, pooled pairs against direct means, the prototype loss against a
loop, one short run of every Table 5 row on the shared trainer (L_pro off before lambda, on after), the frozen
encoder, and bad configurations."""
import math

import numpy as np
import pytest
import torch
from conftest import TINY

from bevlib.data.nuscenes_data import CAMERAS, open_nuscenes, scene_sample_tokens, split_scenes
from bevlib.experiments.csc import (CSCConfig, CSCItems, CSCModel, CSCPretrainTask, collate_csc, table5_config)
from bevlib.train import TrainConfig, load_checkpoint, read_metrics, train

WH = (96, 64)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # the CPUs are shared: small ops with several threads stall on each other
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def world(tiny_world):
    nusc = open_nuscenes(tiny_world, TINY.version)
    sp = split_scenes(nusc)
    return nusc, scene_sample_tokens(nusc, sp["train"]), scene_sample_tokens(nusc, sp["val"])


@pytest.fixture(scope="module")
def slic_items(world):
    return CSCItems(world[0], world[1], WH, "slic", n_segments=40)


@pytest.fixture(scope="module")
def sem_items(world):
    return CSCItems(world[0], world[1], WH, "semantic", noise=0.0, n_split=2)


@pytest.fixture(scope="module")
def sem_val(world):
    return CSCItems(world[0], world[2], WH, "semantic", noise=0.0, n_split=2)


def _brute_superpoint(item):
    """Each point's superpixel by an independent numpy projection, first camera that sees it (-1: none)."""
    pts = item["points"][:, :3].double().numpy()
    ids = item["superpixels"].numpy()
    H, W = ids.shape[1:]
    out = np.full(len(pts), -1, np.int64)
    for c in range(ids.shape[0]):
        cam_T_ego = np.linalg.inv(item["ego_T_cam"][c].double().numpy())
        pc = pts @ cam_T_ego[:3, :3].T + cam_T_ego[:3, 3]
        uvw = pc @ item["K"][c].double().numpy().T
        with np.errstate(divide="ignore", invalid="ignore"):
            u, v = np.floor(uvw[:, 0] / uvw[:, 2] + 0.5), np.floor(uvw[:, 1] / uvw[:, 2] + 0.5)
        ok = (pc[:, 2] > 1.0) & (u >= 0) & (u < W) & (v >= 0) & (v < H) & (out < 0)
        out[ok] = ids[c, v[ok].astype(int), u[ok].astype(int)]
    return out


@pytest.mark.parametrize("kind", ["slic", "semantic"])
def test_items_shapes_and_superpoints(kind, slic_items, sem_items, world):
    items = slic_items if kind == "slic" else sem_items
    it = items[0]
    w, h = WH
    assert it["images"].shape == (6, 3, h, w) and it["images"].dtype == torch.float32
    assert it["points"].ndim == 2 and it["points"].shape[1] == 4 and len(it["points"]) > 100
    assert 0 <= float(it["points"][:, 3].min()) and float(it["points"][:, 3].max()) <= 1.0
    S = it["n_superpixels"]
    assert it["superpixels"].shape == (6, h, w) and it["superpixels"].dtype == torch.int64
    assert torch.equal(torch.unique(it["superpixels"]), torch.arange(S))    # every id used, contiguous
    # no superpixel spans two cameras
    for c in range(6):
        others = torch.cat([it["superpixels"][d].flatten() for d in range(6) if d != c])
        assert not np.intersect1d(it["superpixels"][c].numpy(), others.numpy()).size
    ref = _brute_superpoint(it)
    assert np.array_equal(it["superpoint"].numpy(), ref)
    assert (ref >= 0).sum() > 50 and (ref < 0).sum() > 0
    if kind == "slic":
        assert "signs" not in it
    else:
        # noise 0: each superpixel's sign is the class of all its pixels in the resized camera semantics
        import cv2

        from bevlib.data.world import load_camera_semantics
        sample = world[0].get("sample", items.tokens[0])
        assert it["signs"].shape == (S,)
        for c, cam in enumerate(CAMERAS):
            sem = cv2.resize(load_camera_semantics(world[0].dataroot, sample["data"][cam]), WH,
                             interpolation=cv2.INTER_NEAREST)
            assert np.array_equal(it["signs"].numpy()[it["superpixels"][c].numpy()], sem.astype(np.int64))


def test_collate_offsets(sem_items):
    a, b = sem_items[0], sem_items[1]
    batch = collate_csc([a, b])
    Sa = a["n_superpixels"]
    assert batch["n_superpixels"] == Sa + b["n_superpixels"]
    assert torch.equal(batch["superpixels"][1], b["superpixels"] + Sa)
    sp = batch["superpoint"]
    assert torch.equal(sp[:len(a["points"])], a["superpoint"])
    tail = sp[len(a["points"]):]
    assert torch.equal(tail, torch.where(b["superpoint"] >= 0, b["superpoint"] + Sa, b["superpoint"]))
    assert torch.equal(batch["signs"], torch.cat([a["signs"], b["signs"]]))
    with pytest.raises(ValueError, match="signs"):
        collate_csc([a, {k: v for k, v in b.items() if k != "signs"}])


def test_pairs_are_direct_means(sem_items):
    torch.manual_seed(0)
    cfg = CSCConfig(superpixels="semantic")
    model = CSCModel(cfg).eval()
    batch = collate_csc([sem_items[0], sem_items[2]])
    with torch.no_grad():
        out = model(batch)
        pts = model.point_features(batch["points"])
        pix = model.pixel_features(batch["images"])                      # (B*6, D, H, W)
    pix = pix.view(2, 6, *pix.shape[1:])
    ids = out["ids"]
    # a pair exists exactly where some point lands in the superpixel
    assert torch.equal(ids, torch.unique(batch["superpoint"][batch["superpoint"] >= 0]))
    for k in torch.linspace(0, len(ids) - 1, 7).long().tolist():
        g = int(ids[k])
        m = batch["superpixels"] == g                                   # (B, 6, H, W)
        direct_pix = pix.permute(0, 1, 3, 4, 2)[m].mean(0)
        direct_pts = pts[batch["superpoint"] == g].mean(0)
        torch.testing.assert_close(out["pixel"][k], direct_pix, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(out["point"][k], direct_pts, rtol=1e-5, atol=1e-6)
        assert int(out["n_pixels"][k]) == int(m.sum()) and int(out["n_points"][k]) == int((batch["superpoint"] == g).sum())


def test_prototype_loss_matches_loop(sem_items):
    cfg = table5_config(3, lam=0)
    task = CSCPretrainTask(cfg, sem_items)
    torch.manual_seed(0)
    model = task.build_model().eval()
    batch = collate_csc([sem_items[0], sem_items[1]])
    with torch.no_grad():
        terms, out = task.terms(model, batch, return_pairs=True)
    f3d, signs = out["point"].double(), batch["signs"][out["ids"]]
    protos = {int(t): f3d[signs == t].mean(0) for t in torch.unique(signs)}
    loss = 0.0
    for i in range(len(f3d)):
        logits = {t: float(f3d[i] @ p) / cfg.tau_pro for t, p in protos.items()}
        mx = max(logits.values())
        lse = mx + math.log(sum(math.exp(v - mx) for v in logits.values()))
        loss += lse - logits[int(signs[i])]
    assert float(terms["pro"]) == pytest.approx(loss / len(f3d), rel=1e-5)
    # Eq. 5 by a loop as well: superpoint i against all superpixels
    p2d, p3d = out["pixel"].double(), out["point"].double()
    sp = 0.0
    for i in range(len(p3d)):
        logits = (p2d @ p3d[i]) / cfg.tau_sp
        sp += float(torch.logsumexp(logits, 0) - logits[i])
    assert float(terms["sp"]) == pytest.approx(sp / len(p3d), rel=1e-5)


@pytest.mark.parametrize("row", [1, 2, 3, 4])
def test_table5_row_trains(row, slic_items, sem_items, sem_val, tmp_path):
    # rows with L_pro: lambda = 1, two epochs, so the prototype term is absent in epoch 1 and present in epoch 2
    epochs = 2 if row >= 3 else 1
    cfg = table5_config(row, lam=1, epochs=epochs)
    train_items = slic_items if row == 1 else sem_items
    enc = None
    if row == 4:   # an explicit encoder state (e.g. a pretrained ViT student); it must stay frozen
        torch.manual_seed(123)
        enc = {k: v.clone() for k, v in CSCModel(cfg).encoder.state_dict().items()}
    task = CSCPretrainTask(cfg, train_items, sem_val if row >= 2 else None, encoder_state=enc,
                           data_identity={"row": row})
    run = train(task, TrainConfig(epochs=epochs, batch_size=2, lr=1e-3, device="cpu", seed=0), tmp_path,
                f"csc{row}", progress=False)
    rows = read_metrics(run)
    assert len(rows) == epochs and all(math.isfinite(r["train_loss"]) for r in rows)
    if row >= 2:
        assert math.isfinite(rows[0]["val_sp"]) and rows[0]["val_pairs"] > 10
    if row >= 3:
        assert rows[0].get("pro", "") == "" and rows[0].get("val_pro", "") == ""
        assert math.isfinite(rows[1]["pro"]) and math.isfinite(rows[1]["val_pro"]) and math.isfinite(rows[1]["sp"])
        assert rows[1]["train_loss"] == pytest.approx(rows[1]["sp"] + rows[1]["pro"], rel=1e-6)
    ck = load_checkpoint(sorted((run / "checkpoints").glob("epoch_*.pt"))[-1])
    torch.manual_seed(0)   # the trainer's seed before build_model: same initial weights
    fresh = CSCModel(cfg, enc).state_dict()
    enc_keys = [k for k in fresh if k.startswith("encoder.")]
    assert enc_keys and all(torch.equal(ck["model"][k], fresh[k]) for k in enc_keys)
    if enc is not None:
        assert all(torch.equal(ck["model"]["encoder." + k], v) for k, v in enc.items())
    trained = ["backbone.final.weight", "head3d.weight", "head2d.weight"] + (["mmpb.fusion.0.weight"] if row == 4 else [])
    assert all(not torch.equal(ck["model"][k], fresh[k]) for k in trained)


def test_bad_configs_raise(slic_items, sem_items):
    for kw, name in [(dict(use_prototypes=True), "use_prototypes"),
                     (dict(superpixels="semantic", use_mmpb=True), "use_mmpb"),
                     (dict(tau_sp=0.0), "tau_sp"), (dict(tau_pro=-1.0), "tau_pro"), (dict(lam=-1), "lam"),
                     (dict(backbone="huge"), "backbone"), (dict(image_wh=(90, 64)), "image_wh"),
                     (dict(superpixels="felzenszwalb"), "superpixels"), (dict(dim=0), "dim"),
                     (dict(backbone={"width": 0.25, "bogus": 1}), "backbone"),
                     (dict(vit={"hidden_size": 30, "num_attention_heads": 4}), "vit")]:
        with pytest.raises(ValueError, match=name):
            CSCConfig(**kw)
    with pytest.raises(ValueError, match="row"):
        table5_config(5)
    with pytest.raises(ValueError, match="superpixels"):
        CSCPretrainTask(table5_config(3), slic_items)
    with pytest.raises(ValueError, match="superpixels"):
        CSCItems(None, ["x"], WH, "sam")
    # the prototype loss is due but the batch carries no signs (SLIC superpixels)
    task = CSCPretrainTask(table5_config(3, lam=0), sem_items)
    torch.manual_seed(0)
    model = task.build_model()
    with pytest.raises(ValueError, match="signs"):
        task.loss(model, collate_csc([slic_items[0]]))
    with pytest.raises(ValueError, match="epochs"):
        task.after_step(model, 1, 7 * 50 + 1)

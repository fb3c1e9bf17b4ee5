"""S3PT pre-training task (wozniak2025): multi-crop geometry, one step of DINO / CrIBo / S3PT, the EMA
teacher outside the optimiser, task state round trip, and resume through the shared trainer."""
import math
import shutil

import numpy as np
import pytest
import torch

from bevlib.experiments.s3pt.multicrop import (MultiCropConfig, crop_image, multicrop, random_resized_crop_box,
                                               token_depth, token_positions)
from bevlib.experiments.s3pt.pretrain import S3PTConfig, S3PTTask, paper_config, paper_train_config
from bevlib.train import TrainConfig, build_optimizer, checkpoint_at, load_checkpoint, read_metrics, train

VIT = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, patch_size=8,
           image_size=32)


def tiny_cfg(method="s3pt", **kw):
    base = dict(method=method, vit=VIT, crops=dict(global_size=32, local_size=16, n_local=2 if method == "dino" else 1),
                head_hidden=32, head_bottleneck=16, n_prototypes=16, vmf=method == "s3pt", n_clusters=4,
                sk_iters=1 if method == "s3pt" else 5, depth_beta=4.0 if method == "s3pt" else 0.0, queue_size=64,
                epochs=2, warmup_teacher_temp_epochs=2)
    base.update(kw)
    return S3PTConfig(**base)


def synthetic_source(n=4, hw=(40, 64), seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        img = rng.integers(0, 255, (*hw, 3), dtype=np.uint8)
        depth = rng.uniform(1, 50, hw).astype(np.float32)
        depth[:5] = 0.0   # "sky"
        out.append((img, depth))
    return out


def batch_of(task, idx, seed=0):
    ds = task.train_dataset()
    np.random.seed(seed)
    return task.collate([ds[i] for i in idx])


# ---- multi-crop --------------------------------------------------------------------------------------

def test_crop_boxes_inside_the_image_and_scales_in_range():
    np.random.seed(0)
    h, w = 90, 160
    for scale in [(0.25, 1.0), (0.05, 0.25)]:
        for _ in range(200):
            b = random_resized_crop_box(h, w, scale)
            assert b[0] >= 0 and b[1] >= 0 and b[2] <= w and b[3] <= h and b[2] > b[0] and b[3] > b[1]
            share = (b[2] - b[0]) * (b[3] - b[1]) / (h * w)
            # rounding to whole pixels moves the share by at most ~ (bw + bh) / (h w)
            tol = ((b[2] - b[0]) + (b[3] - b[1]) + 1) / (h * w)
            assert scale[0] - tol <= share <= scale[1] + tol
            r = (b[2] - b[0]) / (b[3] - b[1])
            assert 3 / 4 * 0.9 < r < 4 / 3 * 1.1
    with pytest.raises(ValueError, match="global_scale"):
        MultiCropConfig(global_scale=(0.5, 1.5))


def test_token_positions_and_depth_hand_made():
    box = np.array([10.0, 20.0, 42.0, 52.0])   # 32 x 32 pixels -> 16 x 16 output, patch 8: 2 x 2 tokens
    pos = token_positions(box, 16, 8, flip=False)
    np.testing.assert_allclose(pos, [[18, 28], [34, 28], [18, 44], [34, 44]])
    pos_f = token_positions(box, 16, 8, flip=True)
    np.testing.assert_allclose(pos_f, [[34, 28], [18, 28], [34, 44], [18, 44]])
    # depth = column index + 1: a token's median is the middle of its 16 columns
    depth = np.tile(np.arange(64, dtype=np.float32) + 1, (64, 1))
    depth[36:52, 26:42] = 0.0                         # no depth under the bottom-right token
    d = token_depth(depth, box, 16, 8, flip=False)
    np.testing.assert_allclose(d[:3], [18.5, 34.5, 18.5])
    assert np.isnan(d[3])
    d_f = token_depth(depth, box, 16, 8, flip=True)
    np.testing.assert_allclose(d_f[[0, 1, 3]], [34.5, 18.5, 18.5])
    assert np.isnan(d_f[2])
    with pytest.raises(ValueError, match="multiple of the patch"):
        token_positions(box, 15, 8, flip=False)


def test_token_positions_follow_a_marked_pixel_through_the_crop():
    """Independent check: paint one bright block, crop and resize it, find the token it landed in."""
    np.random.seed(3)
    cfg = MultiCropConfig(global_size=32, local_size=16, n_local=0, global_scale=(0.3, 0.6))
    img = np.zeros((90, 160, 3), np.uint8)
    hits = 0
    for _ in range(20):
        img[:] = 0
        x, y = np.random.randint(40, 120), np.random.randint(25, 65)
        img[y - 2:y + 3, x - 2:x + 3] = 255
        c = multicrop(img, None, cfg, patch=8)
        for v in range(2):
            crop = c["global"][v, ..., 0].astype(float)
            if crop.max() < 128:
                continue                       # the block is outside this crop
            tok = crop.reshape(4, 8, 4, 8).sum(axis=(1, 3)).argmax()
            px, py = c["positions"][v, tok]
            bw = (c["global_boxes"][v, 2] - c["global_boxes"][v, 0]) / 4   # token footprint in original px
            bh = (c["global_boxes"][v, 3] - c["global_boxes"][v, 1]) / 4
            assert abs(px - x) <= bw / 2 + 3 and abs(py - y) <= bh / 2 + 3
            hits += 1
    assert hits > 10


def test_multicrop_shapes_and_crop_flip():
    np.random.seed(1)
    img, depth = synthetic_source(1)[0]
    c = multicrop(img, depth, MultiCropConfig(global_size=32, local_size=(16, 24), n_local=3), patch=8)
    assert c["global"].shape == (2, 32, 32, 3) and c["local"].shape == (3, 16, 24, 3)
    assert c["positions"].shape == (2, 16, 2) and c["token_depth"].shape == (2, 16)
    box = np.array([0, 0, 64, 40.0])
    np.testing.assert_array_equal(crop_image(img, box, (40, 64), True), img[:, ::-1])


# ---- the task -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["dino", "cribo", "s3pt"])
def test_one_step_gives_finite_terms_and_the_teacher_moves_by_ema(method):
    torch.manual_seed(0)
    task = S3PTTask(tiny_cfg(method), synthetic_source(4))
    model = task.build_model()
    opt = build_optimizer(task.param_groups(model), TrainConfig(lr=1e-2))
    opt_ids = {id(p) for g in opt.param_groups for p in g["params"]}
    assert not opt_ids & {id(p) for p in model.teacher.parameters()}
    assert opt_ids == {id(p) for p in model.student.parameters() if p.requires_grad}
    batch = batch_of(task, [0, 1, 2])
    expected = {"global"} if method == "dino" else {"global", "object_cross_view", "object_cross_image"}
    teacher0 = {k: v.clone() for k, v in model.teacher.state_dict().items()}
    for step in (1, 2):   # the second step has a filled queue
        terms = task.loss(model, batch)
        assert set(terms) == expected and all(torch.isfinite(t) for t in terms.values())
        if step == 2 and method != "dino":
            assert terms["object_cross_image"].item() > 0
        opt.zero_grad(set_to_none=True)
        sum(terms.values()).backward()
        assert all(p.grad is None for p in model.teacher.parameters())
        # epoch 0 < freeze_last_layer_epochs: the prototypes get no gradient (DINO's freeze)
        assert all(p.grad is None for n, p in model.student.named_parameters() if ".last_layer." in n)
        assert model.student.backbone.embeddings.patch_embeddings.projection.weight.grad is not None
        opt.step()
        for k, v in model.teacher.state_dict().items():          # the optimiser left the teacher alone
            assert torch.equal(v, teacher0[k])
        task.after_step(model, step, total_steps=10)
        m = task.momentum(step, 10)
        assert 0.996 <= m < 1
        s = model.student.state_dict()
        moved = 0
        for k, v in model.teacher.state_dict().items():
            if k in dict(model.teacher.named_parameters()):
                ref = m * teacher0[k].double() + (1 - m) * s[k].double()
                torch.testing.assert_close(v.double(), ref, rtol=0, atol=3e-7)
                moved += int(not torch.equal(v, teacher0[k]))
        assert moved > 0
        teacher0 = {k: v.clone() for k, v in model.teacher.state_dict().items()}
    assert task.step == 2 and task.steps_per_epoch == 5


def test_task_state_round_trip_and_frozen_last_layer_ends():
    torch.manual_seed(0)
    cfg = tiny_cfg("s3pt", freeze_last_layer_epochs=1)
    task = S3PTTask(cfg, synthetic_source(4))
    model = task.build_model()
    batch = batch_of(task, [0, 1])
    task.loss(model, batch)
    task.after_step(model, 1, total_steps=2)     # 1 step per epoch: the next step is in epoch 1
    task.loss(model, batch)
    state = task.state_dict()
    assert len(task.queue) > 0 and not torch.equal(state["global_center"], torch.full_like(state["global_center"],
                                                                                         1 / cfg.n_prototypes))
    other = S3PTTask(cfg, synthetic_source(4))
    other.load_state_dict(state)
    for k, v in other.state_dict().items():
        if isinstance(v, dict):
            for kk in v:
                assert torch.equal(v[kk], state[k][kk])
        elif isinstance(v, torch.Tensor):
            assert torch.equal(v, state[k])
        else:
            assert v == state[k]
    assert other.epoch == 1
    # epoch 1 >= freeze epochs: the last layer learns now
    terms = other.loss(model, batch)
    sum(terms.values()).backward()
    assert model.student.head.last_layer.weight.grad is not None
    # the trainer's checkpoint holds the teacher inside the model state
    assert any(k.startswith("teacher.") for k in model.state_dict())


def test_bad_config_raises():
    with pytest.raises(ValueError, match="method"):
        S3PTConfig(method="mae")
    with pytest.raises(ValueError, match="n_local"):
        S3PTConfig(crops=dict(n_local=-1))
    p = paper_config("s3pt")
    assert (p.n_clusters, p.sk_iters, p.queue_size, p.vmf, p.n_prototypes) == (128, 1, 2500, True, 65536)
    t = paper_train_config(p, n_train=512, batch_size=256)
    assert t.lr == pytest.approx(5e-4) and t.min_lr_ratio == pytest.approx(0.02) and t.warmup_steps == 20
    assert (t.weight_decay, t.weight_decay_end) == (0.04, 0.4)           # Table 5: cosine 0.04 -> 0.4
    assert paper_train_config(tiny_cfg(weight_decay_end=None), 8, 4).weight_decay_end is None
    with pytest.raises(ValueError, match="weight_decay_end"):
        S3PTConfig(weight_decay_end=-1.0)


def test_run_hash_without_the_weight_decay_schedule_is_unchanged():
    """Literal hash of a fixed run computed before weight_decay_end existed: runs that leave it None
    (S3PTConfig and hence TrainConfig) keep their names and are reused; the schedule gives another run."""
    from bevlib.io import config_hash

    def h(cfg):
        task = S3PTTask(cfg, [], None, {"d": 1})
        return config_hash({"name": "y", "task": task.config(), "train": paper_train_config(cfg, 10, 4).hash_dict()})

    assert h(S3PTConfig(weight_decay_end=None)) == "9d1dcc8bae70"
    assert h(S3PTConfig()) != "9d1dcc8bae70"


def test_keyframe_camera_images_read_each_keyframe_once(tiny_world, tmp_path, monkeypatch):
    import bevlib.data.fields as F
    from bevlib.data.fields import DepthConfig, KeyframeConfig, load_keyframe
    from bevlib.data.nuscenes_data import open_nuscenes
    from bevlib.experiments.s3pt.pretrain import KeyframeCameraImages

    monkeypatch.setenv("BEVLIB_CACHE", str(tmp_path / "cache"))
    nusc = open_nuscenes(tiny_world, "v1.0-mini")
    toks = [s["token"] for s in nusc.sample[:3]]
    calls = []
    real = F.load_keyframe
    monkeypatch.setattr(F, "load_keyframe", lambda *a, **k: calls.append(a[1]) or real(*a, **k))
    src = KeyframeCameraImages(nusc, toks, (64, 36), depth_source="lidar_completed")
    assert len(src) == 18
    order = np.random.default_rng(0).permutation(18)
    first = [src[int(i)] for i in order]                                 # epoch 1: shuffled, one read per keyframe
    assert sorted(calls) == sorted(toks)
    second = [src[int(i)] for i in order]                                # epoch 2: nothing read
    assert len(calls) == 3
    for (a, da), (b, db) in zip(first, second):
        assert np.shares_memory(a, b) and np.shares_memory(da, db)      # the held arrays, not a re-read
    monkeypatch.undo()
    ref = load_keyframe(nusc, toks[1], KeyframeConfig(fields=("cameras", "depth"), image_wh=(64, 36), cache=False,
                                                      depth=DepthConfig(source="lidar_completed")))
    assert ref["depth_source"] == "lidar_completed"
    for c in range(6):
        img, depth = src[6 + c]
        np.testing.assert_array_equal(img, ref["images"][c])
        np.testing.assert_array_equal(depth, ref["depth"][c])
        assert img.shape == (36, 64, 3) and depth.dtype == np.float32
    world = KeyframeCameraImages(nusc, toks[1:2], (64, 36), cache=False)      # default: the world's exact depth
    assert (world[0][1] > 0).mean() < (src[6][1] > 0).mean()             # the sky has no world depth
    with pytest.raises(ValueError, match="source"):
        KeyframeCameraImages(nusc, toks, (64, 36), depth_source="exact")


def test_resume_after_epoch_1_equals_a_straight_run(tiny_world, tmp_path):
    from bevlib.data.nuscenes_data import open_nuscenes, scene_sample_tokens, split_scenes
    from bevlib.experiments.s3pt.pretrain import KeyframeCameraImages
    nusc = open_nuscenes(tiny_world, "v1.0-mini")
    split = split_scenes(nusc)
    tr = KeyframeCameraImages(nusc, scene_sample_tokens(nusc, split["train"])[:2], (64, 36), cache=False)
    va = KeyframeCameraImages(nusc, scene_sample_tokens(nusc, split["val"])[:1], (64, 36), cache=False)
    cfg = tiny_cfg("s3pt", epochs=2)
    tcfg = TrainConfig(epochs=2, batch_size=4, lr=1e-3, schedule="constant", device="cpu", eval_batch_size=6)

    def task():
        return S3PTTask(cfg, tr, va, {"world": "tiny"})

    d = train(task(), tcfg, tmp_path / "a", "s3pt", progress=False)
    rows = read_metrics(d)
    assert [r["epoch"] for r in rows] == [1, 2]
    for r in rows:
        for k in ("global", "object_cross_view", "object_cross_image", "val_global_ce", "teacher_cls_std",
                  "teacher_entropy", "objects_per_image"):
            assert math.isfinite(r[k]), k
    # "kill" after epoch 1: drop everything written later and resume with a fresh task
    b = tmp_path / "b" / d.name
    shutil.copytree(d, b)
    (b / "done.json").unlink()
    step1 = rows[0]["step"]
    (b / "checkpoints" / "epoch_002.pt").unlink()
    for c in (b / "checkpoints").glob("step_*.pt"):
        if int(c.stem.split("_")[1]) > step1:
            c.unlink()
    ck1 = load_checkpoint(checkpoint_at(b, 1))
    assert ck1["task"]["queue"]["count"] > 0 and any(k.startswith("teacher.") for k in ck1["model"])
    assert train(task(), tcfg, tmp_path / "b", "s3pt", progress=False) == b
    assert (b / "metrics.csv").read_bytes() == (d / "metrics.csv").read_bytes()
    x, y = load_checkpoint(checkpoint_at(b, 2)), load_checkpoint(checkpoint_at(d, 2))
    for k in x["model"]:
        assert torch.equal(x["model"][k], y["model"][k]), k
    for k in ("global_center", "object_center", "cross_image_center"):
        assert torch.equal(x["task"][k], y["task"][k])
    assert torch.equal(x["task"]["queue"]["features"], y["task"]["queue"]["features"])


def test_no_shared_cluster_gives_zero_object_terms(monkeypatch):
    torch.manual_seed(0)
    task = S3PTTask(tiny_cfg("cribo"), synthetic_source(2))
    model = task.build_model()
    monkeypatch.setattr(task, "_objects", lambda *a, **k: [torch.zeros(32, 0), torch.zeros(32, 0)])
    terms = task.loss(model, batch_of(task, [0, 1]))
    assert terms["object_cross_view"].item() == 0 and terms["object_cross_image"].item() == 0
    assert torch.isfinite(terms["global"]) and len(task.queue) == 0

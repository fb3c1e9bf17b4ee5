"""BEV heatmaps of the camera branch (combined-datasets paper Figs. 3/4): the reduction against a direct
norm of the camera BEV, prompt modes (identity at init, distinct after perturbing the adapters, "none" =
the prompt-less model, "own" = the sample's fixed index), restoring modes and the train flag, the
forward-right display orientation against the grid's cell centres and a front-only rig, the figure and
the headless widget. Synthetic batches (random images, a hand-made 6-camera rig): no world is needed."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bevlib.experiments.combined import CombinedConfig, CombinedModel
from bevlib.experiments.combined.heatmaps import (bev_heatmap, display_extent, display_heatmap, heatmap_figure,
                                                  heatmap_widget)
from bevlib.models.promptnorm import prompt_norms, set_prompt_mode

WH = (176, 64)
SURROUND = (0.0, 55.0, -55.0, 110.0, -110.0, 180.0)   # yaw (deg) of nuScenes' 6 cameras, roughly


def _rig(yaws_deg):
    """K (6, 3, 3) at WH and ego_T_cam (6, 4, 4): OpenCV cameras (z forward, x right, y down) at 1.6 m,
    1.5 m from the ego origin along their yaw."""
    w, h = WH
    K = torch.tensor([[100.0, 0, w / 2], [0, 100.0, h / 2], [0, 0, 1]]).expand(len(yaws_deg), 3, 3).clone()
    T = torch.zeros(len(yaws_deg), 4, 4)
    for n, yaw in enumerate(yaws_deg):
        c, s = math.cos(math.radians(yaw)), math.sin(math.radians(yaw))
        # columns: the camera's x (right), y (down), z (forward) axes in ego coordinates
        T[n, :3, :3] = torch.tensor([[s, 0.0, c], [-c, 0.0, s], [0.0, -1.0, 0.0]])
        T[n, :3, 3] = torch.tensor([1.5 * c, 1.5 * s, 1.6])
        T[n, 3, 3] = 1.0
    return K, T


def _item(seed, dataset_index, yaws=SURROUND):
    g = torch.Generator().manual_seed(seed)
    K, T = _rig(yaws)
    return {"images": torch.randn(6, 3, WH[1], WH[0], generator=g), "K": K, "ego_T_cam": T,
            "points": torch.zeros(1, 4), "dataset_index": dataset_index}


def _batch(items):
    from bevlib.experiments.combined import collate_keyframes
    return collate_keyframes(items)


@pytest.fixture(scope="module")
def batch():
    return _batch([_item(0, 1), _item(1, 0)])


def _model(prompt=True, seed=3):
    torch.manual_seed(seed)
    return CombinedModel(CombinedConfig(prompt=prompt, n_datasets=3))


def _perturb_adapters(model, seed=1, scale=0.1):
    # zero-initialised adapters make every prompt the identity; random last layers make prompts matter
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in prompt_norms(model):
            m.adapter[-1].weight.copy_(torch.randn(m.adapter[-1].weight.shape, generator=g) * scale)
            m.adapter[-1].bias.copy_(torch.randn(m.adapter[-1].bias.shape, generator=g) * scale)


def _direct(model, batch, s, index):
    with torch.no_grad():
        bev = model.camera_bev(batch["images"][s:s + 1], batch["K"][s:s + 1], batch["ego_T_cam"][s:s + 1], index)
    n = bev[0].double().pow(2).sum(0).sqrt()
    return (n / n.max()).numpy()


def test_heatmap_is_normalised_channel_norm_and_prompts_identity_at_init(batch):
    model = _model().eval()
    plain = _model(prompt=False).eval()       # same seed: the prompted model's weights, plain LayerNorms
    hm = bev_heatmap(model, batch, "own", sample=1)
    S = model.cfg.bev_size
    assert hm.shape == (S, S) and hm.dtype == np.float32
    assert hm.min() >= 0 and math.isclose(float(hm.max()), 1.0, rel_tol=1e-6) and (hm > 0).sum() > 100
    set_prompt_mode(model, "none")
    np.testing.assert_allclose(hm, _direct(model, batch, 1, None), rtol=1e-5, atol=1e-6)
    set_prompt_mode(model, "own")
    # identity initialisation: every prompt mode gives the prompt-less model's map
    ref = bev_heatmap(plain, batch, "none", sample=1)
    for p in ("none", "own", 0, 1, 2):
        assert np.array_equal(bev_heatmap(model, batch, p, sample=1), ref), p
    assert np.array_equal(bev_heatmap(plain, batch, "own", sample=1), ref)


def test_prompts_differ_after_perturbing_adapters_and_own_uses_sample_index(batch):
    model = _model().eval()
    _perturb_adapters(model)
    plain = _model(prompt=False).eval()
    maps = {p: bev_heatmap(model, batch, p, sample=0) for p in ("none", "own", 0, 1, 2)}
    for a, b in ((0, 1), (0, 2), (1, 2), ("none", 1)):
        assert np.abs(maps[a] - maps[b]).max() > 1e-3, (a, b)
    # sample 0 is dataset 1's: "own" == the fixed index 1; "none" == the plain model (base LayerNorms)
    np.testing.assert_array_equal(maps["own"], maps[1])
    np.testing.assert_allclose(maps["none"], bev_heatmap(plain, batch, "none", sample=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(bev_heatmap(model, batch, "own", sample=1), bev_heatmap(model, batch, 0, sample=1))
    # the fixed prompt == the model's own path with that index per sample
    np.testing.assert_allclose(maps[2], _direct(model, batch, 0, torch.tensor([2])), rtol=1e-5, atol=1e-6)


def test_modes_and_train_flag_restored_and_bad_input(batch):
    model = _model()
    _perturb_adapters(model)
    norms = prompt_norms(model)
    set_prompt_mode(model, "none")
    model.train()
    bev_heatmap(model, batch, 2)
    assert all(m.prompt_mode == "none" for m in norms) and model.training
    set_prompt_mode(model, 1)
    with pytest.raises(ValueError, match="prompt"):
        bev_heatmap(model, batch, 5)            # out of range: raised inside, modes still restored
    assert all(m.prompt_mode == 1 for m in norms) and model.training
    with pytest.raises(ValueError, match="prompt"):
        bev_heatmap(model, batch, "lyft")
    with pytest.raises(ValueError, match="sample"):
        bev_heatmap(model, batch, "none", sample=2)
    with pytest.raises(ValueError, match="dataset_index"):
        bev_heatmap(model, {k: v for k, v in batch.items() if k != "dataset_index"}, "own")
    with pytest.raises(ValueError, match="prompt"):
        bev_heatmap(_model(prompt=False), batch, 0)


def test_display_orientation_forward_right():
    from bevlib.bev import BEVGrid
    grid = BEVGrid(x_min=-20.0, x_max=40.0, y_min=-15.0, y_max=5.0, H=30, W=10)   # asymmetric, non-square
    # independent reference: the grid's cell centres, displayed like a map, run +x to the right, +y up
    centres = grid.cell_centers()
    dx, dy = display_heatmap(centres[..., 0]), display_heatmap(centres[..., 1])
    assert (np.diff(dx, axis=1) > 0).all() and (np.diff(dx, axis=0) == 0).all()
    assert (np.diff(dy, axis=0) < 0).all() and (np.diff(dy, axis=1) == 0).all()
    left, right, bottom, top = display_extent(grid)
    assert (left, right, bottom, top) == (grid.x_min, grid.x_max, grid.y_min, grid.y_max)
    assert left < dx[0, 0] < dx[0, -1] < right and bottom < dy[-1, 0] < dy[0, 0] < top
    model = _model(prompt=False).eval()
    # a rig with every camera looking forward fills only the front half: the right half on display
    front = _batch([_item(0, 0, yaws=(0.0,) * 6)])
    hm = bev_heatmap(model, front, "none")
    S = hm.shape[0]
    assert hm[S // 2:].max() == 0 and hm[:S // 2].max() == 1
    disp = display_heatmap(hm)
    assert disp[:, :S // 2].max() == 0 and disp[:, S // 2:].max() == 1
    with pytest.raises(ValueError, match="heatmap"):
        display_heatmap(np.zeros(3))


def test_figure_written(batch, tmp_path):
    model = _model().eval()
    _perturb_adapters(model)
    path = heatmap_figure(model, batch, {"nuScenes prompt": 0, "Lyft prompt": 1, "ONCE prompt": 2}, tmp_path / "f.png",
                          baseline=_model(prompt=False, seed=4), title="Lyft-like sample")
    assert path.exists() and path.stat().st_size > 1000 and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="prompts"):
        heatmap_figure(model, batch, {}, tmp_path / "g.png")
    assert not (tmp_path / "g.png").exists()


def test_widget_builds_and_updates_headless(batch):
    pytest.importorskip("ipywidgets")
    import matplotlib
    matplotlib.use("Agg")
    model = _model().eval()
    _perturb_adapters(model)
    baseline = _model(prompt=False, seed=4).eval()
    items = [_item(0, 1), _item(1, 0)]
    names = ["nuscenes", "lyft", "once"]
    box = heatmap_widget(model, items, names, baseline=baseline)
    c = box.controls
    assert [v for _, v in c["prompt"].options][:3] == [0, 1, 2] and c["sample"].max == 1
    first = box.update()
    np.testing.assert_array_equal(first, bev_heatmap(model, _batch(items[:1]), 0))
    c["prompt"].value = "__baseline__"             # observers redraw
    c["sample"].value = 1
    np.testing.assert_array_equal(box.update(), bev_heatmap(baseline, _batch(items[1:]), "none"))
    c["prompt"].value = "own"
    np.testing.assert_array_equal(box.update(), bev_heatmap(model, _batch(items[1:]), 0))
    with pytest.raises(ValueError, match="names"):
        heatmap_widget(model, items, names[:2])
    with pytest.raises(ValueError, match="items"):
        heatmap_widget(model, [], names)

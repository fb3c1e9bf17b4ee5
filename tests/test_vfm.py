"""The VFM segmenter (bevlib.data.vfm, chen2024 CSC Sec. 3.2) with a randomly initialised Mask2Former: its maps
against a direct computation of Mask2Former's semantic inference, and the CSC items built from it."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bevlib.data.vfm import VFMSegmenter, tiny_mask2former_config


@pytest.fixture(scope="module")
def vfm():
    torch.manual_seed(0)
    return VFMSegmenter(config=tiny_mask2former_config(num_labels=12))


def _images(n=2, hw=(64, 112), seed=0):
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, (n, hw[0] // 8, hw[1] // 8, 3), dtype=np.uint8)
    return np.repeat(np.repeat(base, 8, 1), 8, 2)           # blocky, so the maps are not one class


def test_maps_equal_a_direct_semantic_inference(vfm):
    imgs = _images()
    seg = vfm(imgs)
    assert seg.shape == (2, 64, 112) and seg.dtype == np.int64
    assert seg.min() >= 0 and seg.max() < vfm.n_classes == 12
    # Mask2Former's semantic inference written out: class softmax without "no object" x mask sigmoid, summed over
    # queries, bilinear to the image size, argmax; pixels normalised with the ImageNet statistics
    x = torch.from_numpy(imgs).float().permute(0, 3, 1, 2) / 255.0
    mean, std = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        out = vfm.model(pixel_values=(x - mean) / std)
    cls = out.class_queries_logits.softmax(-1)[..., :-1]
    masks = F.interpolate(out.masks_queries_logits, size=(384, 384), mode="bilinear", align_corners=False).sigmoid()
    score = torch.einsum("bqc,bqhw->bchw", cls, masks)
    ref = F.interpolate(score, size=(64, 112), mode="bilinear", align_corners=False).argmax(1).numpy()
    agree = (ref == seg).mean()
    assert agree > 0.99, agree
    assert np.array_equal(vfm(imgs), seg)                     # deterministic
    assert vfm.identity.startswith("random-init:")


def test_bad_input_and_weights(vfm, tmp_path):
    with pytest.raises(ValueError, match="images"):
        vfm(np.zeros((1, 8, 8), np.uint8))
    with pytest.raises(ValueError, match="images"):
        vfm(np.zeros((1, 8, 8, 3), np.float32))
    with pytest.raises(FileNotFoundError, match="no_such"):
        VFMSegmenter(weights=str(tmp_path / "no_such"))


def test_saved_weights_load_from_a_local_directory(vfm, tmp_path):
    vfm.model.save_pretrained(tmp_path / "m2f")
    again = VFMSegmenter(weights=str(tmp_path / "m2f"))
    imgs = _images(1, seed=3)
    assert np.array_equal(again(imgs), vfm(imgs)) and again.n_classes == 12


def test_csc_items_take_their_signs_from_the_vfm(vfm, tiny_world):
    from bevlib.data.nuscenes_data import open_nuscenes, scene_sample_tokens, split_scenes
    from bevlib.data.superpixels import semantic_superpixels
    from bevlib.experiments.csc.pretrain import CSCItems

    nusc = open_nuscenes(tiny_world, "v1.0-mini")
    tok = scene_sample_tokens(nusc, split_scenes(nusc)["train"])[0]
    items = CSCItems(nusc, [tok], (112, 64), superpixels="semantic", segmenter=vfm, cache=False)
    it = items[0]
    assert items.n_classes == 12 and items.identity()["vfm"] == vfm.identity
    rgb = np.clip((it["images"].numpy() * np.array([0.229, 0.224, 0.225]).reshape(1, 3, 1, 1)
                   + np.array([0.485, 0.456, 0.406]).reshape(1, 3, 1, 1)) * 255 + 0.5, 0, 255).astype(np.uint8)
    sem = vfm(rgb.transpose(0, 2, 3, 1))
    ids0, sign0 = semantic_superpixels(sem[0], None, n_split=4, noise=0.0, n_classes=12)
    n0 = int(ids0.max()) + 1
    assert np.array_equal(it["superpixels"][0].numpy(), ids0)            # camera 0: no id offset
    assert np.array_equal(it["signs"][:n0].numpy(), sign0)
    with pytest.raises(ValueError, match="segmenter"):
        CSCItems(nusc, [tok], (112, 64), superpixels="slic", segmenter=vfm)

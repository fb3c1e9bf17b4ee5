"""DINO's photometric augmentations (bevlib.experiments.s3pt.augment) against closed forms and OpenCV."""
import cv2
import numpy as np
import pytest

from bevlib.experiments.s3pt import augment as A


@pytest.fixture
def img():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)


def test_pointwise_adjustments_match_their_closed_forms(img):
    x = img.astype(np.float64)
    grey = x @ [0.299, 0.587, 0.114]
    assert np.abs(A.adjust_brightness(img, 1.3) - np.clip(np.rint(x * 1.3), 0, 255)).max() <= 1   # float32 rounding
    np.testing.assert_array_equal(A.adjust_brightness(img, 1.0), img)
    m = grey.mean()
    assert np.abs(A.adjust_contrast(img, 0.5).astype(float) - np.clip(np.rint(m + 0.5 * (x - m)), 0, 255)).max() <= 1
    sat = A.adjust_saturation(img, 0.0).astype(float)
    assert np.abs(sat - np.rint(grey)[..., None]).max() <= 1     # saturation 0 is grey
    g = A.grayscale(img)
    assert (g[..., 0] == g[..., 1]).all() and np.abs(g[..., 0] - grey).max() <= 0.5 + 1e-6
    # PIL's convert("L") agrees within rounding
    from PIL import Image
    assert np.abs(np.asarray(Image.fromarray(img).convert("L")).astype(int) - g[..., 0]).max() <= 1


def test_hue_solarize_and_blur(img):
    np.testing.assert_array_equal(A.adjust_hue(A.adjust_hue(img, 0.25), -0.25).shape, img.shape)
    red = np.zeros((2, 2, 3), np.uint8)
    red[..., 0] = 200
    assert (A.adjust_hue(red, 1 / 3)[..., 1] > 150).all()           # a third of a turn: red -> green
    assert (A.adjust_hue(red, 0.0) == red).all()
    s = A.solarize(img)
    assert ((img >= 128) <= (s == 255 - img)).all() and (s[img < 128] == img[img < 128]).all()
    ref = cv2.GaussianBlur(img, (7, 7), 1.0, borderType=cv2.BORDER_REFLECT_101)
    np.testing.assert_array_equal(A.gaussian_blur(img, 1.0), ref)
    assert A.gaussian_blur(img, 1.0).std() < img.std()


def test_pipeline_probabilities_follow_dino(monkeypatch):
    monkeypatch.setattr(A, "JITTER_P", 0.0)      # grey 200 then only changes by solarisation (-> 55)
    grey = np.full((8, 8, 3), 200, np.uint8)
    np.random.seed(0)
    solar = [bool((A.dino_photometric(grey.copy(), "global2", 64) == 55).all()) for _ in range(400)]
    assert 0.14 < np.mean(solar) < 0.26          # p = 0.2
    for kind in ("global1", "local"):
        assert all((A.dino_photometric(grey.copy(), kind, 64) == 200).all() for _ in range(100))
    monkeypatch.setattr(A, "JITTER_P", 1.0)
    changed = [not (A.dino_photometric(grey.copy(), "local", 64) == 200).all() for _ in range(50)]
    assert np.mean(changed) > 0.9                # brightness moves a grey image almost always
    with pytest.raises(ValueError, match="kind"):
        A.dino_photometric(grey, "global3", 64)
    with pytest.raises(ValueError, match="uint8"):
        A.dino_photometric(grey.astype(np.float32), "local", 32)


def test_multicrop_applies_the_pipeline_per_crop_kind(monkeypatch):
    from bevlib.experiments.s3pt import multicrop as M

    calls = []
    monkeypatch.setattr(M, "dino_photometric", lambda crop, kind, size: calls.append((kind, size)) or 255 - crop)
    image = np.random.default_rng(1).integers(0, 256, (40, 64, 3), dtype=np.uint8)
    cfg = M.MultiCropConfig(global_size=32, local_size=16, n_local=3, dino_augment=True)
    np.random.seed(3)
    out = M.multicrop(image, None, cfg, patch=8)
    assert calls == [("global1", 32), ("global2", 32), ("local", 16), ("local", 16), ("local", 16)]
    np.random.seed(3)
    plain = M.multicrop(image, None, M.MultiCropConfig(global_size=32, local_size=16, n_local=3), patch=8)
    np.testing.assert_array_equal(out["global"][0], 255 - plain["global"][0])   # same crop, then the pipeline
    np.testing.assert_array_equal(out["positions"], plain["positions"])

"""lukkassen2024 (MultiViT) part 2 as tasks of the shared trainer: CameraViT on the box-derived
pseudo-labels, MultiViT joint training (optionally with the contrastive alignment of Sec. 4.5), and
RangeViT whose ViT starts from a trained CameraViT (pretrain -> fine-tune, Tables 1 / 4)."""
from __future__ import annotations

import torch
from torch.utils.data import Dataset

from ...classes import IGNORE, MULTIVIT_CAMERA, NUSCENES_LIDARSEG_16
from ...train import Task, unwrap
from .camera_data import AlignedPairDataset, CameraDataset, collate_camera, collate_pairs
from .task import RangeSweepDataset, RangeViTTask, collate_sweeps, predict_classes, sliding_window_forward

#: Object classes shared by the camera labels and lidarseg (same indices 1..10 in both label sets).
SHARED_CLASSES = tuple(range(1, 11))


def _camera_metrics(cm) -> dict:
    """ConfusionMatrix(MULTIVIT_CAMERA).compute() with every key prefixed ``cam_``."""
    return {f"cam_{k}": v for k, v in cm.compute().items()}


def _lidar_point_decoder_features(features: torch.Tensor, u, v, batch) -> torch.Tensor:
    """(B, C, H, W) decoder features -> (N, C) at each point's pixel (as the refiner gathers them)."""
    b, c, h, w = features.shape
    return features.permute(0, 2, 3, 1).reshape(-1, c)[(batch * h + v) * w + u]


def camera_loss(logits: torch.Tensor, labels: torch.Tensor, lambda_focal: float) -> torch.Tensor:
    """L_camera = L_Lovasz + lambda_c L_focal (lukkassen2024 Sec. 3.2.2) over (B, 11, h, w) logits
    and (B, h, w) labels (255 ignored)."""
    from ...losses import multivit_segmentation_loss

    if not bool((labels != IGNORE).any()):
        return logits.sum() * 0.0
    return multivit_segmentation_loss(logits, labels, lambda_focal=lambda_focal, ignore_index=IGNORE)


def lidar_loss(point_logits: torch.Tensor, labels: torch.Tensor, lambda_focal: float) -> torch.Tensor:
    """L_LiDAR = L_Lovasz + lambda_l L_focal on (N, 17) point logits against (N,) labels (0 ignored)."""
    from ...losses import multivit_segmentation_loss

    if not bool((labels != NUSCENES_LIDARSEG_16.ignore_index).any()):
        return point_logits.sum() * 0.0
    return multivit_segmentation_loss(point_logits.t().unsqueeze(0), labels.unsqueeze(0), lambda_focal=lambda_focal,
                                      ignore_index=NUSCENES_LIDARSEG_16.ignore_index)


class KeyframeValDataset(Dataset):
    """Validation items, one per val keyframe: the full range image and every point (``lidar``, as
    :class:`RangeSweepDataset` with no crop), its six camera images (``cams``) and the six aligned
    (crop, image) pairs without augmentation (``pairs``, for the cross-modal feature statistics)."""

    def __init__(self, sweeps, camera_items, proj, crop_w: int):
        self.lidar = RangeSweepDataset(sweeps, proj, None)
        self.cams = CameraDataset(camera_items, train=False)
        self.pairs = AlignedPairDataset(sweeps, camera_items, proj, crop_w, train=False)

    def __len__(self):
        return len(self.lidar)

    def __getitem__(self, i: int) -> dict:
        return {"lidar": self.lidar[i], "cams": [self.cams[6 * i + c] for c in range(6)],
                "pairs": [self.pairs[6 * i + c] for c in range(6)]}


def collate_val(items: list[dict]) -> dict:
    """Batch :class:`KeyframeValDataset` items: ``lidar`` (collate_sweeps), ``cams`` (collate_camera),
    ``pairs`` (collate_pairs)."""
    return {"lidar": collate_sweeps([it["lidar"] for it in items]),
            "cams": collate_camera([c for it in items for c in it["cams"]]),
            "pairs": collate_pairs([p for it in items for p in it["pairs"]])}


def cosine_update(cmc, lidar_out: dict, pairs: dict, cam_out: dict, correct_only: bool = True) -> None:
    """Add one batch of aligned pairs to a :class:`bevlib.metrics.ClassMeanCosine` over
    :data:`NUSCENES_LIDARSEG_16` (lukkassen2024 Table 5): the ViT encoder-output feature of every
    correctly predicted point and pixel (its patch's token); camera background falls on the
    label set's ignore index 0 and 255 is never predicted, so only object classes count.
    ``correct_only=False`` takes every labelled point and pixel instead (our addition: a weak model
    may predict no object pixel correctly, and the paper's statistic is then undefined)."""
    from .analysis import class_cosine_update, encoder_point_features, tokens_to_pixels

    tok_l = encoder_point_features(lidar_out["tokens"], pairs["u"], pairs["v"], pairs["batch"], (2, 8))
    lab_c = pairs["cam_labels"].clone()
    lab_c[lab_c == IGNORE] = 0   # the cosine's label set has no 255
    pix = tokens_to_pixels(cam_out["tokens"], tuple(lab_c.shape[-2:]))
    if correct_only:
        class_cosine_update(cmc, "lidar", tok_l, predict_classes(lidar_out["point_logits"]), pairs["labels"])
        class_cosine_update(cmc, "camera", pix, cam_out["logits"].argmax(1), lab_c, channel_dim=1)
    else:
        cmc.update("lidar", tok_l, pairs["labels"])
        cmc.update("camera", pix, lab_c, channel_dim=1)


def shared_cosines(cmc, suffix: str = "") -> dict:
    """``<class>_cos`` of the shared object classes and ``mean_cos`` (each + ``suffix``)."""
    return {k + suffix: v for k, v in cmc.compute().items()
            if k == "mean_cos" or NUSCENES_LIDARSEG_16.index(k[:-4]) in SHARED_CLASSES}


class CameraViTTask(Task):
    """CameraViT on the box-derived pseudo-labels (lukkassen2024 Sec. 3.2.1, Table 3 "CameraViT").

    Loss ``L_Lovasz + lambda_c L_focal`` (lambda_c = 3) over the labelled pixels; random flip /
    scale / rotation (:class:`CameraDataset`). Metrics: ``cam_<class>_iou`` and ``cam_miou`` (percent,
    the 11 classes of :data:`MULTIVIT_CAMERA`, background included) over the val keyframes' images.
    """

    headline_metrics = ("cam_miou",)

    def __init__(self, model_cfg: dict, train_items, val_items, lambda_focal: float = 3.0, data_id: dict | None = None):
        self.model_cfg, self.train_items, self.val_items = dict(model_cfg), train_items, val_items
        self.lambda_focal, self.data_id = float(lambda_focal), dict(data_id or {})

    def config(self) -> dict:
        from ...io import config_hash
        return {"model_name": "cameravit", "model": self.model_cfg, "data": self.data_id, "lambda_focal": self.lambda_focal,
                "n_train": len(self.train_items), "n_val": len(self.val_items),
                "train_tokens_hash": config_hash([it["token"] for it in self.train_items]),
                "val_tokens_hash": config_hash([it["token"] for it in self.val_items])}

    def build_model(self):
        from ...models.registry import build_model
        return build_model("cameravit", self.model_cfg)

    def train_dataset(self):
        return CameraDataset(self.train_items, train=True)

    def val_dataset(self):
        return CameraDataset(self.val_items, train=False)

    def collate(self, items):
        return collate_camera(items)

    def loss(self, model, batch: dict) -> dict:
        out = model(batch["image"])
        return {"loss": camera_loss(out["logits"], batch["labels"], self.lambda_focal)}

    @torch.no_grad()
    def evaluate(self, model, batches, reduce) -> dict:
        from ...metrics import ConfusionMatrix

        cm = ConfusionMatrix(MULTIVIT_CAMERA)
        for b in batches:
            cm.update(model(b["image"])["logits"].argmax(1), b["labels"])
        cm.load_state(reduce(cm.counts))
        return _camera_metrics(cm)


class MultiViTTask(Task):
    """MultiViT: one ViT encoder, two stems and two decoders, trained jointly on aligned (range
    crop, camera image) pairs (lukkassen2024 Sec. 3.2.1 / 4.1): ``L_total = L_LiDAR + L_camera``
    (+ ``lambda_contrast`` x the contrastive alignment of Sec. 4.5 on the decoder features when
    ``contrast`` is "pull" or "pull_push").

    Metrics: LiDAR (MultiViT.L, sliding-window inference on the full val sweeps) ``miou`` and
    ``<class>_iou``; camera (MultiViT.C) ``cam_miou`` and ``cam_<class>_iou``; the cross-modal
    cosine of Table 5 at the ViT encoder output on the val pairs, ``<class>_cos`` and ``mean_cos``
    (correctly predicted points / pixels, the paper's) and ``<class>_cos_all`` / ``mean_cos_all``
    (every labelled one).
    """

    headline_metrics = ("miou", "cam_miou", "mean_cos")

    def __init__(self, lidar_cfg: dict, camera_cfg: dict, train_sweeps, val_sweeps, train_items, val_items,
                 range_hw: tuple, crop_w: int, stride: int, lambda_lidar: float = 1.0, lambda_camera: float = 3.0,
                 contrast: str | None = None, lambda_contrast: float = 1.0, temperature: float = 0.1,
                 data_id: dict | None = None):
        from ...range_view import RangeProjection

        if contrast not in (None, "pull", "pull_push"):
            raise ValueError(f"contrast must be None, 'pull' or 'pull_push', got {contrast!r}")
        self.lidar_cfg, self.camera_cfg = dict(lidar_cfg), dict(camera_cfg)
        self.train_sweeps, self.val_sweeps, self.train_items, self.val_items = train_sweeps, val_sweeps, train_items, val_items
        self.proj = RangeProjection(H=int(range_hw[0]), W=int(range_hw[1]), row="ring")
        self.crop_w, self.stride = int(crop_w), int(stride)
        self.lambda_lidar, self.lambda_camera = float(lambda_lidar), float(lambda_camera)
        self.contrast, self.lambda_contrast, self.temperature = contrast, float(lambda_contrast), float(temperature)
        self.data_id = dict(data_id or {})

    def config(self) -> dict:
        from ...io import config_hash
        return {"model_name": "multivit", "lidar": self.lidar_cfg, "camera": self.camera_cfg, "data": self.data_id,
                "range_hw": [self.proj.H, self.proj.W], "crop_w": self.crop_w, "stride": self.stride,
                "lambda_lidar": self.lambda_lidar, "lambda_camera": self.lambda_camera, "contrast": self.contrast,
                "lambda_contrast": self.lambda_contrast, "temperature": self.temperature,
                "train_tokens_hash": config_hash([s["token"] for s in self.train_sweeps]),
                "val_tokens_hash": config_hash([s["token"] for s in self.val_sweeps])}

    def build_model(self):
        from ...models.registry import build_model
        return build_model("multivit", {"lidar": self.lidar_cfg, "camera": self.camera_cfg})

    def train_dataset(self):
        return AlignedPairDataset(self.train_sweeps, self.train_items, self.proj, self.crop_w, train=True)

    def val_dataset(self):
        return KeyframeValDataset(self.val_sweeps, self.val_items, self.proj, self.crop_w)

    def collate(self, items):
        return collate_pairs(items) if "cam_image" in items[0] else collate_val(items)

    def loss(self, model, batch: dict) -> dict:
        # one call through the (possibly DDP-wrapped) model, so gradient sync sees both branches
        out = model(batch["image"], batch["points"], batch["u"], batch["v"], batch["batch"], images=batch["cam_image"])
        out_l, out_c = out["lidar"], out["camera"]
        terms = {"lidar": lidar_loss(out_l["point_logits"], batch["labels"], self.lambda_lidar),
                 "camera": camera_loss(out_c["logits"], batch["cam_labels"], self.lambda_camera)}
        if self.contrast is not None:
            from ...losses import multivit_contrastive_loss

            f_l = _lidar_point_decoder_features(out_l["features"], batch["u"], batch["v"], batch["batch"])
            f_c = out_c["features"].permute(0, 2, 3, 1).reshape(-1, out_c["features"].shape[1])
            terms["contrast"] = self.lambda_contrast * multivit_contrastive_loss(
                f_c, batch["cam_labels"].reshape(-1), f_l, batch["labels"], mode=self.contrast,
                temperature=self.temperature, classes=SHARED_CLASSES)
        return terms

    @torch.no_grad()
    def evaluate(self, model, batches, reduce) -> dict:
        from ...metrics import ClassMeanCosine, ConfusionMatrix

        cm_l, cm_c = ConfusionMatrix(NUSCENES_LIDARSEG_16), ConfusionMatrix(MULTIVIT_CAMERA)
        dim = self.lidar_cfg["embed_dim"]
        cos = {"": ClassMeanCosine(NUSCENES_LIDARSEG_16, dim), "_all": ClassMeanCosine(NUSCENES_LIDARSEG_16, dim)}
        m = unwrap(model)
        for b in batches:
            lb = b["lidar"]
            out = sliding_window_forward(m.lidar, lb["image"], lb["points"], lb["u"], lb["v"], lb["batch"],
                                         self.crop_w, self.stride)
            cm_l.update(predict_classes(out["point_logits"]), lb["labels"])
            cm_c.update(m.camera(b["cams"]["image"])["logits"].argmax(1), b["cams"]["labels"])
            p = b["pairs"]
            out_l, out_c = m.lidar(p["image"], p["points"], p["u"], p["v"], p["batch"]), m.camera(p["cam_image"])
            for suffix, cmc in cos.items():
                cosine_update(cmc, out_l, p, out_c, correct_only=suffix == "")
        cm_l.load_state(reduce(cm_l.counts))
        cm_c.load_state(reduce(cm_c.counts))
        res = {**cm_l.compute(), **_camera_metrics(cm_c)}
        for suffix, cmc in cos.items():
            cmc.load_state({k: {"sums": reduce(v["sums"]), "counts": reduce(v["counts"])} for k, v in cmc.state().items()})
            res.update(shared_cosines(cmc, suffix))
        return res


class CameraPretrainedRangeViTTask(RangeViTTask):
    """RangeViT whose ViT encoder starts from a trained CameraViT (lukkassen2024 Table 1 row 2,
    Table 4 rows 6 / 8: "camera pretraining ... used for initiating the weights of the ViT"). Only
    the shared ViT (layers, final LayerNorm, [CLS], position embeddings resized to the range
    grid) is copied (:func:`bevlib.models.multivit.transfer_encoder`); stem, decoder and refiner
    start from random init, as they are modality specific."""

    def __init__(self, *args, camera_cfg: dict, camera_checkpoint: str, **kw):
        super().__init__(*args, **kw)
        self.camera_cfg, self.camera_checkpoint = dict(camera_cfg), str(camera_checkpoint)

    def config(self) -> dict:
        from ...train.checkpoint import load_checkpoint
        return {**super().config(), "encoder_init": {"camera_model": self.camera_cfg,
                                                     "checkpoint_checksum": load_checkpoint(self.camera_checkpoint)["checksum"]}}

    def build_model(self):
        from ...models.multivit import transfer_encoder
        from ...models.registry import build_model
        from ...train.checkpoint import load_checkpoint

        model = super().build_model()
        cam = build_model("cameravit", self.camera_cfg)
        cam.load_state_dict(load_checkpoint(self.camera_checkpoint)["model"])
        transfer_encoder(cam, model)
        return model

"""Image backbones from ``transformers`` (ResNet), truncated to one output stage.

BEVFormer (Li et al., ECCV 2022) reads a single feature level in its tiny / small variants: the
C5 map of a ResNet (stride 32) projected to the embedding width. busch2026 Sec. IV-A uses an
ImageNet-pretrained ResNet-50. Here the backbone is a ``transformers`` ``ResNetModel`` whose
stages after ``out_stage`` are dropped, so they cost neither time nor memory.

No weights are ever downloaded: pretrained weights come from a local directory (written with
``save_pretrained``, or a copy of a hub checkpoint such as ``microsoft/resnet-50``).
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from transformers import ResNetConfig, ResNetModel

#: ImageNet channel statistics (what ImageNet-pretrained backbones expect), shaped for (B, N, 3, h, w).
IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 1, 3, 1, 1)
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 1, 3, 1, 1)


def normalize_images(images_u8: torch.Tensor) -> torch.Tensor:
    """(B, N, 3, h, w) uint8 RGB -> float32 ImageNet-normalised, on the input's device."""
    mean, std = IMAGENET_MEAN.to(images_u8.device), IMAGENET_STD.to(images_u8.device)
    return (images_u8.float() / 255.0 - mean) / std


#: Named architectures: ``transformers.ResNetConfig`` keyword arguments.
RESNET_PRESETS: dict[str, dict] = {
    # He et al. 2016, as microsoft/resnet-50: bottleneck blocks, C2..C5 = 256..2048 channels.
    "resnet-50": dict(layer_type="bottleneck", depths=[3, 4, 6, 3], hidden_sizes=[256, 512, 1024, 2048],
                      embedding_size=64),
    "resnet-18": dict(layer_type="basic", depths=[2, 2, 2, 2], hidden_sizes=[64, 128, 256, 512],
                      embedding_size=64),
    # A few thousand parameters: for CPU tests and smoke presets only.
    "tiny": dict(layer_type="basic", depths=[1, 1, 1], hidden_sizes=[16, 32, 64], embedding_size=16),
}


class ResNetFeatures(nn.Module):
    """A ResNet stem plus its first ``out_stage`` stages: images -> one feature map.

    Input ``images`` (B, 3, h, w) float, ImageNet-normalised RGB (:func:`normalize_images`).
    Output (B, ``out_channels``, ceil(h / stride), ceil(w / stride)) float.

    Attributes:
        out_channels: channels of the output map.
        stride: pixels of the input per output cell (4 * 2 ** (out_stage - 1): C3 = 8, C4 = 16,
            C5 = 32).
        norm_eval: keep BatchNorm layers in eval mode during training, as BEVFormer does with a
            pretrained backbone (its statistics come from ImageNet and a batch of a few camera
            images would only add noise to them).
    """

    def __init__(self, resnet: ResNetModel, out_stage: int, norm_eval: bool):
        super().__init__()
        n = len(resnet.config.depths)
        if not 1 <= out_stage <= n:
            raise ValueError(f"out_stage must be in 1..{n} for this backbone, got {out_stage}")
        self.embedder = resnet.embedder
        self.stages = nn.ModuleList(list(resnet.encoder.stages)[:out_stage])
        self.out_channels = int(resnet.config.hidden_sizes[out_stage - 1])
        first = 2 if resnet.config.downsample_in_first_stage else 1
        self.stride = 4 * first * 2 ** (out_stage - 1)
        self.norm_eval = norm_eval

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, h, w) ImageNet-normalised float -> (B, out_channels, ceil(h / stride), ceil(w / stride))."""
        x = self.embedder(images)
        for stage in self.stages:
            x = stage(x)
        return x

    def train(self, mode: bool = True):
        """``nn.Module.train``, except that BatchNorm stays in eval mode when ``norm_eval``."""
        super().train(mode)
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        return self


def build_resnet_backbone(depth: str = "resnet-50", weights_path: str | None = None, out_stage: int | None = 3,
                          norm_eval: bool | None = None) -> ResNetFeatures:
    """Build a ResNet feature extractor (random init, or local pretrained weights).

    Args:
        depth: ``"resnet-50"`` (bottleneck, depths 3-4-6-3, 256..2048 channels), ``"resnet-18"``
            (basic, 2-2-2-2, 64..512) or ``"tiny"`` (basic, 1-1-1, 16-32-64, CPU tests only).
        weights_path: local directory of a ``transformers`` ResNet checkpoint (``ResNetModel`` or
            ``ResNetForImageClassification``, e.g. ``microsoft/resnet-50`` saved locally), loaded
            with ``local_files_only=True``; ``None`` means random initialisation.
        out_stage: last stage kept (1-based); the output is that stage's map. ``None`` keeps all
            stages (C5 for the ResNets, as BEVFormer tiny / small).
        norm_eval: freeze BatchNorm statistics in training (see :class:`ResNetFeatures`);
            default: True with pretrained weights, False with random init.
    Returns: :class:`ResNetFeatures` with ``out_channels`` and ``stride``.
    Raises:
        KeyError: unknown ``depth``.
        FileNotFoundError: ``weights_path`` does not exist (named in the message).
        ValueError: the checkpoint's architecture differs from ``depth``, or ``out_stage`` is out
            of range.
    """
    if depth not in RESNET_PRESETS:
        raise KeyError(f"unknown backbone {depth!r}; known: {', '.join(RESNET_PRESETS)}")
    preset = RESNET_PRESETS[depth]
    if weights_path is None:
        resnet = ResNetModel(ResNetConfig(**preset))
    else:
        path = Path(weights_path).expanduser()
        if not path.exists():
            raise FileNotFoundError(f"backbone weights not found: {path} (a local directory saved with "
                                    f"save_pretrained; nothing is downloaded)")
        resnet = ResNetModel.from_pretrained(str(path), local_files_only=True)
        got = {k: getattr(resnet.config, k) for k in preset}
        got = {k: list(v) if isinstance(v, (list, tuple)) else v for k, v in got.items()}
        if got != preset:
            raise ValueError(f"checkpoint {path} is not a {depth}: its config has {got}, expected {preset}")
    n = len(resnet.config.depths)
    if norm_eval is None:
        norm_eval = weights_path is not None
    return ResNetFeatures(resnet, n if out_stage is None else out_stage, norm_eval)

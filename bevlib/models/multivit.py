"""CameraViT and MultiViT (lukkassen2024, "MultiViT", Sec. 3.2.1).

CameraViT: RangeViT's convolutional stem, ViT encoder and decoder (the same classes,
:mod:`bevlib.models.rangevit`) on camera images with 8 x 8 patches; the 3D refiner is replaced by
a 2D head, conv 3x3 -> BatchNorm -> ReLU -> linear (1x1 conv), one logit vector per pixel.

MultiViT: a RangeViT (LiDAR branch, MultiViT.L) and a CameraViT (camera branch, MultiViT.C) whose
ViT encoder is one set of weights: "Both modalities are processed by the same ViT encoder with the
same weights but the data is not fused. The model consists of two modality-specific stems and two
modality-specific decoders." The branches are ordinary :class:`RangeViT` / :class:`CameraViT`
modules (``model.lidar``, ``model.camera``), so everything written for one of those (sliding-window
inference, checkpoints with a ``lidar.`` prefix stripped) works on a branch unchanged.

Parameter sharing: ``camera.encoder.layers``, ``camera.encoder.layernorm`` and
``camera.encoder.cls_token`` *are* ``lidar.encoder``'s modules / parameter (the same Python
objects), so a gradient step moves both views at once and ``model.parameters()`` yields each
shared tensor once (PyTorch de-duplicates by identity; an optimiser built from it updates each
once). ``state_dict()`` lists a shared tensor under both names, which loads back consistently.

Position embeddings are per modality (our choice; the paper does not say): a range-image token row
is an elevation angle and its column an azimuth, a camera token row a pixel row, so one learned
table for both would tie unrelated positions. Each branch's table starts from the checkpoint's
(resized to its own token grid) or, without a checkpoint, from its own random init.
"""
from __future__ import annotations

from dataclasses import dataclass, fields

import torch
from torch import nn

from .rangevit import (ConvStem, RangeViT, RangeViTConfig, TokenViTEncoder, UpConvDecoder, check_backbone_config,
                       config_dict, resize_pos_embed)

__all__ = ["CameraViTConfig", "CameraViT", "MultiViT", "transfer_encoder",
           "build_cameravit_from_dict", "build_multivit_from_dict", "multivit_config_dict"]

#: Config fields that define the shared ViT; MultiViT needs them equal in both branches.
SHARED_VIT_FIELDS = ("embed_dim", "depth", "heads", "mlp_ratio", "vit_weights", "dropout")


@dataclass
class CameraViTConfig:
    """CameraViT hyper-parameters; defaults are the paper's (lukkassen2024 Sec. 3.2.1 / 4.1, ViT-S).

    Attributes:
        in_channels: image channels (3, RGB normalised as the caller likes).
        stem_channels: D_h, channels of the stem output / decoder skip (256).
        stem_base_channels: channels of the first three stem blocks (32, as RangeViT).
        patch: (P_H, P_W) patch size / token stride in pixels (8 x 8 for camera images).
        image_size: (H, W) of the training images in pixels (256 x 704); the learned position
            embeddings live on its token grid (32 x 88).
        embed_dim: D, the ViT width (384, ViT-S).
        depth: transformer layers (12).
        heads: attention heads (6).
        mlp_ratio: MLP hidden width / D (4).
        num_classes: logits per pixel (11: :data:`bevlib.classes.MULTIVIT_CAMERA`, background + the
            10 object classes).
        decoder_channels: channels of the decoder output and of the 2D head's hidden conv (256).
        vit_weights: local directory of a ``transformers`` ``ViTModel`` checkpoint, or None for
            random init. Never downloaded.
        dropout: hidden / attention dropout of the ViT (0).

    Raises: ValueError for a patch that is not two positive ints, an image size not divisible by
        the patch, embed_dim not divisible by heads, or num_classes < 1.
    """

    in_channels: int = 3
    stem_channels: int = 256
    stem_base_channels: int = 32
    patch: tuple[int, int] = (8, 8)
    image_size: tuple[int, int] = (256, 704)
    embed_dim: int = 384
    depth: int = 12
    heads: int = 6
    mlp_ratio: float = 4
    num_classes: int = 11
    decoder_channels: int = 256
    vit_weights: str | None = None
    dropout: float = 0.0

    def __post_init__(self):
        check_backbone_config(self)
        if self.num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {self.num_classes}")

    @property
    def token_grid(self) -> tuple[int, int]:
        """(H / P_H, W / P_W) of a training image."""
        return self.image_size[0] // self.patch[0], self.image_size[1] // self.patch[1]


class CameraViT(nn.Module):
    """CameraViT (lukkassen2024 Sec. 3.2.1): RangeViT's stem, ViT encoder and decoder on camera
    images with 8 x 8 patches, and a 2D head instead of the 3D refiner.

    Submodules: ``stem`` (:class:`~bevlib.models.rangevit.ConvStem`), ``encoder``
    (:class:`~bevlib.models.rangevit.TokenViTEncoder`), ``decoder``
    (:class:`~bevlib.models.rangevit.UpConvDecoder`), ``head`` ("a single 2D convolution with a
    BatchNorm, a Relu, and a linear layer": conv 3x3 -> BN -> ReLU -> 1x1 conv to ``num_classes``).
    """

    def __init__(self, cfg: CameraViTConfig | None = None):
        super().__init__()
        cfg = cfg or CameraViTConfig()
        self.cfg = cfg
        self.stem = ConvStem(cfg)
        self.encoder = TokenViTEncoder(cfg)
        self.decoder = UpConvDecoder(cfg)
        c = cfg.decoder_channels
        # no conv bias: the BatchNorm's shift that follows makes it redundant
        self.head = nn.Sequential(nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(),
                                  nn.Conv2d(c, cfg.num_classes, 1))

    def features_2d(self, images: torch.Tensor, return_tokens: bool = False):
        """Stem -> ViT -> decoder.

        Args:
            images: (B, in_channels, H, W) float, normalised RGB; H, W divisible by the patch
                (any size: position embeddings are resized on the fly for other token grids).
            return_tokens: also return the ViT encoder output.
        Returns: (B, decoder_channels, H, W) float; with ``return_tokens`` the pair (that,
            tokens (B, embed_dim, H / P_H, W / P_W)).
        Raises: ValueError for a wrong shape / channel count or a size not divisible by the patch.
        """
        ph, pw = self.cfg.patch
        if images.dim() != 4 or images.shape[1] != self.cfg.in_channels or images.shape[2] % ph \
                or images.shape[3] % pw:
            raise ValueError(f"images must be (B, {self.cfg.in_channels}, H, W) with H % {ph} == 0 and "
                             f"W % {pw} == 0, got {tuple(images.shape)}")
        tokens, skip = self.stem(images)
        enc = self.encoder(tokens)
        feats = self.decoder(enc, skip)
        return (feats, enc) if return_tokens else feats

    def forward(self, images: torch.Tensor) -> dict:
        """Pixel logits of camera images.

        Args:
            images: (B, in_channels, H, W) float (see :meth:`features_2d`).
        Returns: dict with ``logits`` (B, num_classes, H, W), ``features`` (B, decoder_channels,
            H, W) (decoder output) and ``tokens`` (B, embed_dim, H / P_H, W / P_W) (ViT encoder
            output).
        Raises: ValueError as :meth:`features_2d`.
        """
        feats, tokens = self.features_2d(images, return_tokens=True)
        return {"logits": self.head(feats), "features": feats, "tokens": tokens}


def _check_shared(lidar_cfg, camera_cfg) -> None:
    bad = [f for f in SHARED_VIT_FIELDS if getattr(lidar_cfg, f) != getattr(camera_cfg, f)]
    if bad:
        diff = ", ".join(f"{f}: lidar {getattr(lidar_cfg, f)!r} vs camera {getattr(camera_cfg, f)!r}" for f in bad)
        raise ValueError(f"MultiViT shares one ViT encoder, so lidar_cfg and camera_cfg must agree on {bad} ({diff})")


class MultiViT(nn.Module):
    """MultiViT (lukkassen2024 Sec. 3.2.1): RangeViT (``lidar``, MultiViT.L) and CameraViT
    (``camera``, MultiViT.C) sharing one ViT encoder (transformer layers, final LayerNorm, [CLS]
    token); stems, decoders, position embeddings and heads are per modality (see the module
    docstring for why the position embeddings are).

    Args:
        lidar_cfg: the LiDAR branch (default: the paper's RangeViT).
        camera_cfg: the camera branch (default: the paper's CameraViT).
    Raises: ValueError when the configs differ in a field of the shared ViT
        (:data:`SHARED_VIT_FIELDS`: embed_dim, depth, heads, mlp_ratio, vit_weights, dropout; the
        dropout rates live inside the shared layers, so they cannot differ either).
    """

    def __init__(self, lidar_cfg: RangeViTConfig | None = None, camera_cfg: CameraViTConfig | None = None):
        super().__init__()
        lidar_cfg, camera_cfg = lidar_cfg or RangeViTConfig(), camera_cfg or CameraViTConfig()
        _check_shared(lidar_cfg, camera_cfg)
        # with vit_weights both branches read the checkpoint (each resizes its own position
        # embeddings from it); the camera copy of the shared part is then dropped for the LiDAR one
        self.lidar = RangeViT(lidar_cfg)
        self.camera = CameraViT(camera_cfg)
        src, dst = self.lidar.encoder, self.camera.encoder
        # the camera view of the encoder keeps only its own position embeddings; the rest is the
        # LiDAR branch's modules, so both branches read and train one set of weights
        dst.layers = src.layers
        dst.layernorm = src.layernorm
        dst.cls_token = src.cls_token

    @property
    def lidar_cfg(self) -> RangeViTConfig:
        """The LiDAR branch's config."""
        return self.lidar.cfg

    @property
    def camera_cfg(self) -> CameraViTConfig:
        """The camera branch's config."""
        return self.camera.cfg

    def forward(self, range_image: torch.Tensor | None = None, points=None, u=None, v=None,
                batch: torch.Tensor | None = None, images: torch.Tensor | None = None) -> dict:
        """Both branches in one call (joint training: L_total = L_LiDAR + L_camera, Sec. 3.2.2);
        one forward also keeps DistributedDataParallel's hooks on every used parameter.

        Args:
            range_image, points, u, v, batch: the LiDAR inputs of :meth:`RangeViT.forward`
                (range image (B_l, 5, H, W); points (N, 3) m with u, v, batch (N,) int64) or None.
            images: (B_c, 3, H', W') normalised camera images or None.
        Returns: ``{"lidar": RangeViT's dict, "camera": CameraViT's dict}`` for the inputs given.
        Raises: ValueError when neither input is given, and as the branches' forwards.
        """
        if range_image is None and images is None:
            raise ValueError("MultiViT.forward needs range_image and/or images")
        out = {}
        if range_image is not None:
            out["lidar"] = self.lidar(range_image, points, u, v, batch)
        if images is not None:
            out["camera"] = self.camera(images)
        return out


# ------------------------------------------------------------------------------ weight transfer
def _encoders(model, role: str) -> dict[str, TokenViTEncoder]:
    """{name prefix: encoder} of a model given to :func:`transfer_encoder`."""
    if isinstance(model, TokenViTEncoder):
        return {"": model}
    if isinstance(model, MultiViT):
        if role == "src":
            raise ValueError("src is a MultiViT, whose branches have different position embeddings: pass "
                             "src.camera or src.lidar")
        return {"lidar.encoder.": model.lidar.encoder, "camera.encoder.": model.camera.encoder}
    enc = getattr(model, "encoder", None)
    if isinstance(enc, TokenViTEncoder):
        return {"encoder.": enc}
    raise TypeError(f"{role} must be a RangeViT, CameraViT, MultiViT (dst only) or TokenViTEncoder, "
                    f"got {type(model).__name__}")


def _vit_shape(enc: TokenViTEncoder) -> tuple[int, int, int, int]:
    vc = enc.vit_config
    return vc.hidden_size, len(enc.layers), vc.num_attention_heads, vc.intermediate_size


@torch.no_grad()
def transfer_encoder(src, dst) -> list[str]:
    """Copy the ViT encoder of ``src`` into ``dst`` (lukkassen2024 Sec. 4.2 / Table 1 rows 2 and 5:
    camera pretraining "initiat[es] the weights of the ViT" of the LiDAR model).

    Copied: the transformer layers, the final LayerNorm, the [CLS] token, and the position
    embeddings, resized with :func:`~bevlib.models.rangevit.resize_pos_embed` from ``src``'s token
    grid to ``dst``'s (e.g. CameraViT's 32 x 88 to RangeViT's 16 x 48; an equal grid copies them
    unchanged). Stems, decoders and heads are left alone (the paper transfers "the ViT").

    Args:
        src: a CameraViT, RangeViT (e.g. ``MultiViT.camera``) or TokenViTEncoder. Not a MultiViT
            (its two position-embedding tables make the source ambiguous).
        dst: a RangeViT, CameraViT, TokenViTEncoder or MultiViT (then the shared weights once and
            each branch's position embeddings from ``src``'s).
    Returns: the names of the copied parameters in ``dst``'s ``named_parameters()`` (shared ones
        once).
    Raises: TypeError for other model types; ValueError when the ViTs differ in
        (hidden size, depth, heads, MLP width) or src is a MultiViT.
    """
    (_, s), = _encoders(src, "src").items()
    copied: list[str] = []
    for prefix, d in _encoders(dst, "dst").items():
        if _vit_shape(s) != _vit_shape(d):
            raise ValueError(f"src ViT (hidden, depth, heads, mlp) = {_vit_shape(s)} differs from dst {_vit_shape(d)}")
        shared = [(d.layers, s.layers, "layers"), (d.layernorm, s.layernorm, "layernorm")]
        for dm, sm, name in shared:
            if dm is not sm:
                dm.load_state_dict(sm.state_dict())
            copied += [f"{prefix}{name}.{k}" for k, _ in dm.named_parameters()]
        if d.cls_token is not s.cls_token:
            d.cls_token.copy_(s.cls_token)
        copied.append(f"{prefix}cls_token")
        d.position_embeddings.copy_(resize_pos_embed(s.position_embeddings, s.grid, d.grid))
        copied.append(f"{prefix}position_embeddings")
    # a MultiViT's shared tensors appear under both prefixes: report each once, by its first name
    if isinstance(dst, nn.Module):
        first = {id(p): n for n, p in dst.named_parameters()}
        by_name = dict(dst.named_parameters(remove_duplicate=False))
        copied = list(dict.fromkeys(first[id(by_name[n])] for n in copied))
    return copied


# ------------------------------------------------------------------------------------- registry
def _config_from_dict(cls, cfg: dict, what: str):
    known = {f.name for f in fields(cls)}
    bad = sorted(set(cfg) - known)
    if bad:
        raise TypeError(f"unknown {cls.__name__} field(s) {bad} in {what}; known: {sorted(known)}")
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in cfg.items()})


def build_cameravit_from_dict(cfg: dict) -> CameraViT:
    """Registry entry ``"cameravit"``: a :class:`CameraViT` from a JSON-style dict of
    :class:`CameraViTConfig` fields (lists become tuples; missing fields take the defaults).

    Raises: TypeError naming unknown fields; ValueError from the config's checks."""
    return CameraViT(_config_from_dict(CameraViTConfig, dict(cfg), "the cameravit config"))


def build_multivit_from_dict(cfg: dict) -> MultiViT:
    """Registry entry ``"multivit"``: ``{"lidar": {RangeViTConfig fields}, "camera":
    {CameraViTConfig fields}}`` (either may be left out: the paper's defaults).

    Raises: TypeError naming unknown top-level keys or unknown fields of a branch; ValueError from
        the configs' checks or when the shared-ViT fields differ."""
    bad = sorted(set(cfg) - {"lidar", "camera"})
    if bad:
        raise TypeError(f"unknown multivit config key(s) {bad}; known: ['camera', 'lidar']")
    lidar = _config_from_dict(RangeViTConfig, dict(cfg.get("lidar") or {}), "multivit['lidar']")
    camera = _config_from_dict(CameraViTConfig, dict(cfg.get("camera") or {}), "multivit['camera']")
    return MultiViT(lidar, camera)


def multivit_config_dict(lidar_cfg: RangeViTConfig, camera_cfg: CameraViTConfig) -> dict:
    """JSON-ready ``{"lidar": {...}, "camera": {...}}`` (inverse of :func:`build_multivit_from_dict`)."""
    return {"lidar": config_dict(lidar_cfg), "camera": config_dict(camera_cfg)}

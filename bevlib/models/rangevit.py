"""RangeViT (Ando et al., "RangeViT: Towards Vision Transformers for 3D Semantic Segmentation in
Autonomous Driving", CVPR 2023), the LiDAR branch of lukkassen2024 MultiViT (Sec. 3.2.1).

Range image (B, 5, H, W) -> convolutional stem (SalsaNext residual blocks, D_h channels at full
resolution) -> tokens (overlapping average pool to the P_H x P_W patch grid, 1x1 conv to D) ->
ViT encoder (``transformers`` ViT layers + final LayerNorm, learned position embeddings with a
[CLS] token) -> decoder (1x1 conv to D_h * P_H * P_W, pixel shuffle back to H x W, concatenation
with the stem features, conv 3x3 and conv 1x1, each + LeakyReLU + BN) -> 2D features (decoder
channels) -> 3D refiner (gather at each point's pixel, KPConv, BN, ReLU, linear) -> point logits.
A 1x1 conv on the 2D features gives pixel logits as well.

Written from the papers and from reading RangeViT's code (valeoai/rangevit, ``models/stems.py``,
``models/decoders.py``, ``models/rangevit_kpconv.py``); differences are listed where they occur.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn

from .kpconv import KPConv

__all__ = ["RangeViTConfig", "RangeViT", "build_rangevit", "build_rangevit_from_dict",
           "resize_pos_embed", "pixel_shuffle_2d", "BackboneConfig"]


class BackboneConfig(Protocol):
    """The fields :class:`ConvStem`, :class:`TokenViTEncoder` and :class:`UpConvDecoder` read, so
    that RangeViT (:class:`RangeViTConfig`) and CameraViT (:class:`bevlib.models.multivit.
    CameraViTConfig`) build the same stem / encoder / decoder classes (lukkassen2024 Sec. 3.2.1:
    "the convolutional stem, the ViT, and the decoder are kept exactly the same").
    Meanings as in :class:`RangeViTConfig`."""

    in_channels: int
    stem_channels: int
    stem_base_channels: int
    patch: tuple[int, int]
    image_size: tuple[int, int]
    embed_dim: int
    depth: int
    heads: int
    mlp_ratio: float
    decoder_channels: int
    vit_weights: str | None
    dropout: float

    @property
    def token_grid(self) -> tuple[int, int]: ...


@dataclass
class RangeViTConfig:
    """RangeViT hyper-parameters; defaults are the paper's (lukkassen2024 Sec. 3.2 / RangeViT, ViT-S).

    Attributes:
        in_channels: input channels of the range image (range, intensity, x, y, z).
        stem_channels: D_h, channels of the stem output (the decoder's skip features).
        stem_base_channels: channels of the three context blocks before the last stem block
            (RangeViT's ``base_channels`` = 32).
        patch: (P_H, P_W) patch size / token stride in pixels (2 x 8 for range images).
        image_size: (H, W) of the training crops in pixels (32 x 384); the learned position
            embeddings live on the token grid (H / P_H, W / P_W) of this size.
        embed_dim: D, the ViT width (384 for ViT-S).
        depth: number of transformer layers (12).
        heads: attention heads (6).
        mlp_ratio: MLP hidden width / D (4).
        num_classes: logits per point / pixel (17: nuScenes-lidarseg's 16 classes + ignore 0,
            :data:`bevlib.classes.NUSCENES_LIDARSEG_16`).
        decoder_channels: channels of the decoder output / 3D refiner (256).
        kpconv_radius: KPConv neighbourhood radius in metres (RangeViT: 0.6).
        kpconv_sigma: KPConv influence extent in metres; None -> KPConv's default 0.4 x radius
            (RangeViT passes KP_extent = 1.2 to KPConv-PyTorch).
        kpconv_kernel_size: number of kernel points (15).
        kpconv_max_neighbors: at most this many neighbours per point (None: all in the radius).
        vit_weights: local directory of a ``transformers`` ``ViTModel`` checkpoint (e.g. an
            ImageNet-21k ViT-S/16, saved with ``save_pretrained``) or None for random init.
            Never downloaded: the path must exist locally.
        dropout: hidden / attention dropout of the ViT (0 in RangeViT's ViT-S).
    """

    in_channels: int = 5
    stem_channels: int = 256
    stem_base_channels: int = 32
    patch: tuple[int, int] = (2, 8)
    image_size: tuple[int, int] = (32, 384)
    embed_dim: int = 384
    depth: int = 12
    heads: int = 6
    mlp_ratio: float = 4
    num_classes: int = 17
    decoder_channels: int = 256
    kpconv_radius: float = 0.6
    kpconv_sigma: float | None = None
    kpconv_kernel_size: int = 15
    kpconv_max_neighbors: int | None = 64
    vit_weights: str | None = None
    dropout: float = 0.0

    def __post_init__(self):
        check_backbone_config(self)

    @property
    def token_grid(self) -> tuple[int, int]:
        """(H / P_H, W / P_W) of a training crop."""
        return self.image_size[0] // self.patch[0], self.image_size[1] // self.patch[1]


def check_backbone_config(cfg) -> None:
    """Normalise and check the stem / ViT fields shared by RangeViT and CameraViT configs in place:
    ``patch`` and ``image_size`` become int pairs.

    Raises: ValueError for a patch that is not two positive ints, an image size not divisible by
        the patch, or ``embed_dim`` not divisible by ``heads``."""
    cfg.patch = tuple(int(p) for p in cfg.patch)
    cfg.image_size = tuple(int(s) for s in cfg.image_size)
    if len(cfg.patch) != 2 or min(cfg.patch) < 1:
        raise ValueError(f"patch must be two positive ints, got {cfg.patch}")
    if len(cfg.image_size) != 2 or any(s % p for s, p in zip(cfg.image_size, cfg.patch)):
        raise ValueError(f"image_size {cfg.image_size} must be divisible by patch {cfg.patch}")
    if cfg.embed_dim % cfg.heads:
        raise ValueError(f"embed_dim ({cfg.embed_dim}) must be divisible by heads ({cfg.heads})")


# ---------------------------------------------------------------------------------------- stem
class ResContextBlock(nn.Module):
    """SalsaNext residual context block (Cortinhal et al. 2020), resolution-preserving.

    shortcut = LReLU(conv1x1(x)); out = shortcut + BN(LReLU(conv3x3_d2(BN(LReLU(conv3x3(shortcut))))))
    The dilated 3x3 widens the receptive field to 7x7 at full resolution (range images are only
    32 rows high, so no downsampling here). (B, C_in, H, W) -> (B, C_out, H, W).
    """

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.proj = nn.Sequential(nn.Conv2d(cin, cout, 1), nn.LeakyReLU())
        self.body = nn.Sequential(
            nn.Conv2d(cout, cout, 3, padding=1), nn.LeakyReLU(), nn.BatchNorm2d(cout),
            nn.Conv2d(cout, cout, 3, padding=2, dilation=2), nn.LeakyReLU(), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.proj(x)
        return s + self.body(s)


class ResBlock(nn.Module):
    """SalsaNext residual block without pooling (RangeViT's fourth stem block).

    Three stacked convs (3x3, 3x3 dilation 2, 2x2 dilation 2), each LReLU + BN, whose three outputs
    are concatenated and fused by a 1x1 conv (+ LReLU + BN), plus a 1x1 shortcut from the input:
    features at several receptive fields in one block. (B, C_in, H, W) -> (B, C_out, H, W).
    """

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1), nn.LeakyReLU())
        self.c1 = nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.LeakyReLU(), nn.BatchNorm2d(cout))
        self.c2 = nn.Sequential(nn.Conv2d(cout, cout, 3, padding=2, dilation=2), nn.LeakyReLU(),
                                nn.BatchNorm2d(cout))
        # 2x2 kernel, dilation 2, padding 1: effective 3x3 footprint, so H x W is kept.
        self.c3 = nn.Sequential(nn.Conv2d(cout, cout, 2, padding=1, dilation=2), nn.LeakyReLU(),
                                nn.BatchNorm2d(cout))
        self.fuse = nn.Sequential(nn.Conv2d(3 * cout, cout, 1), nn.LeakyReLU(), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.c1(x)
        b = self.c2(a)
        c = self.c3(b)
        return self.shortcut(x) + self.fuse(torch.cat([a, b, c], 1))


class ConvStem(nn.Module):
    """Convolutional stem + tokenizer (RangeViT ``ConvStem``; lukkassen2024 Sec. 3.2.1).

    Four SalsaNext residual blocks at full resolution: three context blocks (C_in -> base -> base
    -> base) and one multi-dilation residual block (base -> D_h), exactly RangeViT's layout (the
    paper's "four residual blocks of SalsaNext"). Tokens: average pooling with stride
    (P_H, P_W) and an overlapping (P_H + 1) x (P_W + 1) window (padding P / 2), as RangeViT, so
    each token also sees half a pixel row / column of its neighbours; then a 1x1 conv to D.

    forward: (B, C_in, H, W) -> (tokens (B, D, H / P_H, W / P_W), stem features (B, D_h, H, W)).
    """

    def __init__(self, cfg: BackboneConfig):
        super().__init__()
        b = cfg.stem_base_channels
        self.blocks = nn.Sequential(ResContextBlock(cfg.in_channels, b), ResContextBlock(b, b),
                                    ResContextBlock(b, b), ResBlock(b, cfg.stem_channels))
        ph, pw = cfg.patch
        if ph % 2 or pw % 2:
            # The overlapping window needs an even stride to stay centred; fall back to a plain one.
            self.pool = nn.AvgPool2d(cfg.patch, stride=cfg.patch)
        else:
            self.pool = nn.AvgPool2d((ph + 1, pw + 1), stride=cfg.patch, padding=(ph // 2, pw // 2))
        self.proj = nn.Conv2d(cfg.stem_channels, cfg.embed_dim, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats = self.blocks(x)
        return self.proj(self.pool(feats)), feats


# ------------------------------------------------------------------------------------- encoder
def resize_pos_embed(pos: torch.Tensor, old_grid: tuple[int, int], new_grid: tuple[int, int],
                     num_extra_tokens: int = 1) -> torch.Tensor:
    """Resize learned position embeddings to another token grid (timm / RangeViT style).

    The extra tokens ([CLS]) keep their embeddings; the grid part is reshaped to
    (1, D, gh, gw) and bicubically interpolated (``align_corners=False``, as timm's
    ``resample_abs_pos_embed``; Segmenter-derived code such as RangeViT uses bilinear).
    An unchanged grid returns ``pos`` itself (no interpolation round-off).

    Args:
        pos: (1, num_extra_tokens + gh * gw, D) float.
        old_grid: (gh, gw) of ``pos``.
        new_grid: (gh', gw') wanted.
        num_extra_tokens: leading tokens that are not on the grid (1 for [CLS]).

    Returns: (1, num_extra_tokens + gh' * gw', D), dtype of ``pos``.

    Raises: ValueError when ``pos`` does not hold ``old_grid``.
    """
    old_grid, new_grid = tuple(old_grid), tuple(new_grid)
    n, d = pos.shape[1] - num_extra_tokens, pos.shape[2]
    if n != old_grid[0] * old_grid[1]:
        raise ValueError(f"pos has {n} grid tokens, not {old_grid[0]} x {old_grid[1]}")
    if old_grid == new_grid:
        return pos
    extra, grid = pos[:, :num_extra_tokens], pos[:, num_extra_tokens:]
    grid = grid.reshape(1, *old_grid, d).permute(0, 3, 1, 2)
    # bicubic is not implemented for half on CPU; compute in float32.
    grid = F.interpolate(grid.float(), size=new_grid, mode="bicubic", align_corners=False).to(pos.dtype)
    return torch.cat([extra, grid.permute(0, 2, 3, 1).reshape(1, -1, d)], 1)


def _grid_of(vit_config) -> tuple[int, int]:
    """Token grid of a ``ViTConfig`` (image_size / patch_size, ints or pairs)."""
    pair = lambda v: (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))  # noqa: E731
    (ih, iw), (ph, pw) = pair(vit_config.image_size), pair(vit_config.patch_size)
    return ih // ph, iw // pw


class TokenViTEncoder(nn.Module):
    """A ``transformers`` ViT fed with external tokens: [CLS] + tokens + position embeddings ->
    the ViT layers -> final LayerNorm (the ``ViTModel`` body without its patch embedding/pooler).

    Weights come from a ``ViTModel`` (random init from a ``ViTConfig``, or ``from_pretrained`` on
    a local directory); its position embeddings are resized once, at build time, from the
    checkpoint's grid to ``grid`` (as RangeViT does when loading ImageNet weights), and again on
    the fly for inputs whose token grid differs (e.g. a full 32 x 2048 scan).

    forward: (B, D, gh, gw) tokens -> (B, D, gh, gw) encoded tokens ([CLS] dropped, as RangeViT).
    """

    def __init__(self, cfg: BackboneConfig):
        super().__init__()
        from transformers import ViTConfig, ViTModel

        if cfg.vit_weights is not None:
            import os
            if not os.path.isdir(cfg.vit_weights):
                raise FileNotFoundError(f"vit_weights must be a local ViTModel directory, got {cfg.vit_weights!r}")
            vit = ViTModel.from_pretrained(cfg.vit_weights, add_pooling_layer=False, local_files_only=True)
            vc = vit.config
            want = (cfg.embed_dim, cfg.depth, cfg.heads, int(cfg.mlp_ratio * cfg.embed_dim))
            got = (vc.hidden_size, vc.num_hidden_layers, vc.num_attention_heads, vc.intermediate_size)
            if want != got:
                raise ValueError(f"vit_weights (hidden, depth, heads, mlp) = {got} do not match the config {want}")
        else:
            vc = ViTConfig(hidden_size=cfg.embed_dim, num_hidden_layers=cfg.depth,
                           num_attention_heads=cfg.heads, intermediate_size=int(cfg.mlp_ratio * cfg.embed_dim),
                           hidden_dropout_prob=cfg.dropout, attention_probs_dropout_prob=cfg.dropout,
                           image_size=list(cfg.image_size), patch_size=list(cfg.patch), num_channels=1)
            vit = ViTModel(vc, add_pooling_layer=False)
        self.vit_config = vit.config
        self.grid = cfg.token_grid
        pos = resize_pos_embed(vit.embeddings.position_embeddings.data, _grid_of(vit.config), self.grid)
        self.cls_token = vit.embeddings.cls_token
        self.position_embeddings = nn.Parameter(pos.clone())
        self.dropout = nn.Dropout(vit.config.hidden_dropout_prob)
        self.layers = vit.layers
        self.layernorm = vit.layernorm
        # the patch embedding (3-channel 16x16 conv) is discarded: our tokens come from the stem

    def pos_embed(self, grid: tuple[int, int]) -> torch.Tensor:
        """(1, 1 + gh * gw, D) position embeddings for a token grid (interpolated if it differs)."""
        return resize_pos_embed(self.position_embeddings, self.grid, grid)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        b, d, gh, gw = tokens.shape
        x = torch.cat([self.cls_token.expand(b, -1, -1), tokens.flatten(2).transpose(1, 2)], 1)
        x = self.dropout(x + self.pos_embed((gh, gw)))
        for layer in self.layers:
            x = layer(x, None)
        x = self.layernorm(x)[:, 1:]
        return x.transpose(1, 2).reshape(b, d, gh, gw)


# ------------------------------------------------------------------------------------- decoder
def pixel_shuffle_2d(x: torch.Tensor, factor: tuple[int, int]) -> torch.Tensor:
    """Pixel shuffle with unequal factors: (B, C * s0 * s1, h, w) -> (B, C, h * s0, w * s1).

    ``nn.PixelShuffle`` takes one factor; RangeViT handles the 2 x 8 patch with einops'
    ``'b (c s0 s1) h w -> b c (h s0) (w s1)'``, the same channel order as PixelShuffle (equal to
    it when s0 == s1). Written here as view + permute + reshape.
    """
    s0, s1 = factor
    b, c, h, w = x.shape
    if c % (s0 * s1):
        raise ValueError(f"channels {c} not divisible by {s0} x {s1}")
    c //= s0 * s1
    return x.view(b, c, s0, s1, h, w).permute(0, 1, 4, 2, 5, 3).reshape(b, c, h * s0, w * s1)


class UpConvDecoder(nn.Module):
    """RangeViT decoder (``UpConvBlock``): 1x1 conv D -> D_h * P_H * P_W, pixel shuffle to full
    resolution, concatenation with the stem features (D_h), then conv 3x3 and conv 1x1, each
    followed by LeakyReLU and BN (RangeViT's order), to ``decoder_channels``.

    forward: (tokens (B, D, gh, gw), skip (B, D_h, H, W)) -> (B, decoder_channels, H, W).
    """

    def __init__(self, cfg: BackboneConfig):
        super().__init__()
        self.patch = cfg.patch
        dh, dc = cfg.stem_channels, cfg.decoder_channels
        self.up = nn.Conv2d(cfg.embed_dim, dh * cfg.patch[0] * cfg.patch[1], 1)
        self.fuse = nn.Sequential(
            nn.Conv2d(2 * dh, dc, 3, padding=1), nn.LeakyReLU(), nn.BatchNorm2d(dc),
            nn.Conv2d(dc, dc, 1), nn.LeakyReLU(), nn.BatchNorm2d(dc))

    def forward(self, tokens: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = pixel_shuffle_2d(self.up(tokens), self.patch)
        return self.fuse(torch.cat([x, skip], 1))


# --------------------------------------------------------------------------------- 3D refiner
class KPRefiner(nn.Module):
    """RangeViT's 3D refiner (``KPClassifier``): one KPConv on the points' gathered 2D features,
    BN, ReLU, point-wise linear (RangeViT's 1x1 conv head).

    forward(points (N, 3) m, features (N, C), batch (N,)) -> (N, num_classes) logits.
    """

    def __init__(self, cfg: RangeViTConfig):
        super().__init__()
        c = cfg.decoder_channels
        self.kpconv = KPConv(c, c, cfg.kpconv_kernel_size, radius=cfg.kpconv_radius, sigma=cfg.kpconv_sigma,
                             max_neighbors=cfg.kpconv_max_neighbors)
        self.bn = nn.BatchNorm1d(c)
        self.head = nn.Linear(c, cfg.num_classes)

    def forward(self, points: torch.Tensor, features: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.bn(self.kpconv(points, features, batch=batch))))


# --------------------------------------------------------------------------------------- model
def _cat_points(points, u, v, batch):
    """Lists of per-scan (N_b, 3) / (N_b,) -> concatenated tensors with a batch index."""
    if isinstance(points, (list, tuple)):
        if batch is not None:
            raise ValueError("give batch only with concatenated points")
        batch = torch.cat([torch.full((len(p),), i, dtype=torch.long, device=p.device) for i, p in enumerate(points)])
        return torch.cat(list(points)), torch.cat(list(u)), torch.cat(list(v)), batch
    if batch is None:
        batch = torch.zeros(points.shape[0], dtype=torch.long, device=points.device)
    return points, u, v, batch


class RangeViT(nn.Module):
    """RangeViT with its 3D refiner (lukkassen2024 Sec. 3.2.1; Ando et al. 2023).

    Submodules: ``stem`` (:class:`ConvStem`), ``encoder`` (:class:`TokenViTEncoder`), ``decoder``
    (:class:`UpConvDecoder`), ``pixel_head`` (1x1 conv, 2D logits), ``refiner`` (:class:`KPRefiner`).
    """

    def __init__(self, cfg: RangeViTConfig):
        super().__init__()
        self.cfg = cfg
        self.stem = ConvStem(cfg)
        self.encoder = TokenViTEncoder(cfg)
        self.decoder = UpConvDecoder(cfg)
        self.pixel_head = nn.Conv2d(cfg.decoder_channels, cfg.num_classes, 1)
        self.refiner = KPRefiner(cfg)

    def features_2d(self, range_image: torch.Tensor, return_tokens: bool = False):
        """Stem -> ViT -> decoder.

        Args:
            range_image: (B, in_channels, H, W) float, channels range (m), intensity, x, y, z (m)
                (:func:`bevlib.range_view.project_to_range`'s ``image``, normalised as the caller
                likes); H, W divisible by the patch (RangeViT pads; we require it).
            return_tokens: also return the ViT encoder output (lukkassen2024 Table 5 / Fig. 8
                analyse the shared feature space there).
        Returns: (B, decoder_channels, H, W) float; with ``return_tokens`` the pair (that, encoder
            tokens (B, embed_dim, H / P_H, W / P_W)).
        Raises: ValueError for a wrong channel count or a size not divisible by the patch.
        """
        b, c, h, w = range_image.shape
        ph, pw = self.cfg.patch
        if c != self.cfg.in_channels or h % ph or w % pw:
            raise ValueError(f"range_image must be (B, {self.cfg.in_channels}, H, W) with H % {ph} == 0 and "
                             f"W % {pw} == 0, got {tuple(range_image.shape)}")
        tokens, skip = self.stem(range_image)
        enc = self.encoder(tokens)
        feats = self.decoder(enc, skip)
        return (feats, enc) if return_tokens else feats

    def forward(self, range_image: torch.Tensor, points=None, u=None, v=None,
                batch: torch.Tensor | None = None) -> dict:
        """Semantic logits per pixel and (with points) per point.

        Args:
            range_image: (B, in_channels, H, W) float (see :meth:`features_2d`).
            points: (N, 3) float x, y, z in metres (sensor frame) of all scans concatenated, with
                ``batch``; or a list of B (N_b, 3) tensors (then ``u``, ``v`` are lists too). None:
                only pixel logits.
            u: (N,) int64 column of each point in the range image (0..W-1, as
                :func:`bevlib.range_view.project_to_range`, after any cropping).
            v: (N,) int64 row of each point (0..H-1).
            batch: (N,) int64 scan index of each point (None: all in scan 0).

        Returns: dict with ``pixel_logits`` (B, num_classes, H, W), ``features`` (B,
            decoder_channels, H, W), ``tokens`` (B, embed_dim, H / P_H, W / P_W) (the ViT encoder
            output) and, with points, ``point_logits`` (N, num_classes).

        The 2D feature of a point is that of its (integer) pixel: every point, also one that lost
        its pixel to a nearer point, gets its pixel's feature and the KPConv then mixes in its 3D
        neighbours (RangeViT samples bilinearly at the unrounded projection with ``grid_sample``;
        with integer u, v as our projection gives, that reduces to this gather).
        """
        feats, tokens = self.features_2d(range_image, return_tokens=True)
        out = {"features": feats, "pixel_logits": self.pixel_head(feats), "tokens": tokens}
        if points is not None:
            if u is None or v is None:
                raise ValueError("points need their pixel coordinates u and v")
            pts, uu, vv, bb = _cat_points(points, u, v, batch)
            _, c, h, w = feats.shape
            if uu.numel() and (uu.min() < 0 or uu.max() >= w or vv.min() < 0 or vv.max() >= h):
                raise ValueError(f"u / v outside the {h} x {w} image")
            flat = feats.permute(0, 2, 3, 1).reshape(-1, c)
            pf = flat[(bb * h + vv) * w + uu]
            out["point_logits"] = self.refiner(pts.to(pf.dtype), pf, bb)
        return out


def build_rangevit(cfg: RangeViTConfig | None = None) -> RangeViT:
    """A :class:`RangeViT` from a :class:`RangeViTConfig` (defaults: the paper's ViT-S model)."""
    return RangeViT(cfg or RangeViTConfig())


def build_rangevit_from_dict(cfg: dict) -> RangeViT:
    """Registry entry ``"rangevit"``: a :class:`RangeViT` from a JSON-style dict (lists become
    tuples). Raises TypeError naming an unknown field."""
    known = {f.name for f in fields(RangeViTConfig)}
    bad = sorted(set(cfg) - known)
    if bad:
        raise TypeError(f"unknown RangeViTConfig field(s) {bad}; known: {sorted(known)}")
    return build_rangevit(RangeViTConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in cfg.items()}))


def config_dict(cfg: RangeViTConfig) -> dict:
    """JSON-ready dict of a config (inverse of :func:`build_rangevit_from_dict`'s input)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(cfg).items()}

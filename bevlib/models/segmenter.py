"""Segmenter's decoder heads (Strudel et al., "Segmenter: Transformer for Semantic Segmentation",
ICCV 2021, Sec. 3.2) on the patch tokens of a ViT, as used by wozniak2025 (S3PT) Sec. 4 and
appendix A.2 to evaluate frozen self-supervised backbones:

* :class:`LinearHead` -- Segmenter's linear decoder ("linear probing"): a per-token linear layer
  to class logits, reshaped to the token grid and bilinearly upsampled to the image.
* :class:`MaskTransformerHead` -- Segmenter's mask transformer: K learnable class embeddings are
  processed jointly with the projected patch tokens by a few transformer blocks; masks are the
  scalar products of the L2-normalised patch and class embeddings, layer-normalised over the
  classes, then upsampled.

Both take ``(B, N, D)`` patch tokens in row-major token-grid order (no [CLS] token) and return
``(B, K, H, W)`` logits at the image size. The input image size must be a multiple of the patch
size (Segmenter pads to one; callers here resize instead).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["LinearHead", "MaskTransformerHead", "token_grid"]


def token_grid(image_hw: tuple[int, int], patch: int) -> tuple[int, int]:
    """(gh, gw) token grid of an ``image_hw`` (pixels) image cut into ``patch`` x ``patch`` patches.

    Raises: ValueError when ``patch`` < 1 or an image side is not a positive multiple of ``patch``.
    """
    h, w = (int(v) for v in image_hw)
    if patch < 1:
        raise ValueError(f"patch must be >= 1, got {patch}")
    if h < patch or w < patch or h % patch or w % patch:
        raise ValueError(f"image_hw {(h, w)} must be positive multiples of patch={patch}")
    return h // patch, w // patch


def _check_tokens(tokens: torch.Tensor, embed_dim: int, grid: tuple[int, int]) -> None:
    if tokens.dim() != 3 or tokens.shape[-1] != embed_dim:
        raise ValueError(f"tokens must be (B, N, {embed_dim}), got {tuple(tokens.shape)}")
    if tokens.shape[1] != grid[0] * grid[1]:
        raise ValueError(f"tokens hold {tokens.shape[1]} patches but image_hw gives a {grid[0]}x{grid[1]} grid "
                         f"(pass patch tokens without [CLS])")


def _init_segmenter(m: nn.Module) -> None:
    # Segmenter's init_weights (ViT convention): truncated normal 0.02 for linear layers, unit LayerNorm.
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


def _to_image(grid_logits: torch.Tensor, image_hw: tuple[int, int]) -> torch.Tensor:
    # Segmenter upsamples with F.interpolate(mode="bilinear") and the default align_corners=False.
    return F.interpolate(grid_logits, size=tuple(int(v) for v in image_hw), mode="bilinear", align_corners=False)


class LinearHead(nn.Module):
    """Segmenter's linear decoder (Strudel et al. 2021 Sec. 3.2 "Linear"; S3PT's linear probe).

    Args:
        embed_dim: D, the width of the backbone's patch tokens.
        n_classes: K.
        patch: the backbone's patch size in pixels (token grid = image size / patch).
    Raises: ValueError for ``embed_dim``, ``n_classes`` or ``patch`` < 1.
    """

    def __init__(self, embed_dim: int, n_classes: int, patch: int):
        super().__init__()
        for k, v in (("embed_dim", embed_dim), ("n_classes", n_classes), ("patch", patch)):
            if int(v) < 1:
                raise ValueError(f"{k} must be >= 1, got {v}")
        self.embed_dim, self.n_classes, self.patch = int(embed_dim), int(n_classes), int(patch)
        self.head = nn.Linear(self.embed_dim, self.n_classes)
        self.apply(_init_segmenter)

    def forward(self, tokens: torch.Tensor, image_hw: tuple[int, int]) -> torch.Tensor:
        """Per-pixel class logits.

        Args:
            tokens: (B, N, D) float patch tokens, row-major over the (gh, gw) grid, no [CLS].
            image_hw: (H, W) output size in pixels, multiples of ``patch``.
        Returns: (B, K, H, W) float logits (bilinear from the (B, K, gh, gw) token logits).
        Raises: ValueError when the token count or width does not fit ``image_hw`` / ``embed_dim``.
        """
        gh, gw = token_grid(image_hw, self.patch)
        _check_tokens(tokens, self.embed_dim, (gh, gw))
        logits = self.head(tokens)                                    # (B, N, K)
        logits = logits.transpose(1, 2).reshape(tokens.shape[0], self.n_classes, gh, gw)
        return _to_image(logits, image_hw)


class MaskTransformerHead(nn.Module):
    """Segmenter's mask transformer decoder (Strudel et al. 2021 Sec. 3.2 "Mask Transformer").

    ``z = Blocks([proj_dec(tokens); cls_emb])`` (pre-norm transformer blocks, GELU MLP of width
    ``4 d_model``), ``z = LayerNorm(z)``; patches ``P = z_patch W_p``, classes ``C = z_cls W_c``,
    both L2-normalised; ``masks = LayerNorm_K(P C^T)`` reshaped to (B, K, gh, gw) and bilinearly
    upsampled. Segmenter's defaults: 2 layers, ``d_model`` = the encoder width, heads = d_model / 64,
    dropout 0.1 (S3PT appendix A.2 uses "the same default configuration proposed in Segmenter").

    Args:
        embed_dim: D, the width of the backbone's patch tokens.
        n_classes: K.
        n_layers: transformer blocks (Segmenter: 2).
        n_heads: attention heads (must divide ``d_model``; Segmenter: d_model // 64).
        patch: the backbone's patch size in pixels.
        d_model: decoder width (default ``embed_dim``).
        dropout: dropout inside the blocks (Segmenter: 0.1).
    Raises: ValueError for sizes < 1 or ``n_heads`` not dividing ``d_model``.
    """

    def __init__(self, embed_dim: int, n_classes: int, n_layers: int = 2, n_heads: int = 6, patch: int = 16,
                 d_model: int | None = None, dropout: float = 0.1):
        super().__init__()
        d_model = int(embed_dim if d_model is None else d_model)
        for k, v in (("embed_dim", embed_dim), ("n_classes", n_classes), ("n_layers", n_layers),
                     ("n_heads", n_heads), ("patch", patch), ("d_model", d_model)):
            if int(v) < 1:
                raise ValueError(f"{k} must be >= 1, got {v}")
        if d_model % int(n_heads):
            raise ValueError(f"n_heads={n_heads} must divide d_model={d_model}")
        self.embed_dim, self.n_classes, self.patch, self.d_model = int(embed_dim), int(n_classes), int(patch), d_model
        self.proj_dec = nn.Linear(self.embed_dim, d_model)
        self.cls_emb = nn.Parameter(torch.empty(1, self.n_classes, d_model))
        layer = nn.TransformerEncoderLayer(d_model, int(n_heads), dim_feedforward=4 * d_model, dropout=float(dropout),
                                           activation="gelu", batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, int(n_layers), enable_nested_tensor=False)
        self.decoder_norm = nn.LayerNorm(d_model)
        scale = d_model ** -0.5
        self.proj_patch = nn.Parameter(scale * torch.randn(d_model, d_model))
        self.proj_classes = nn.Parameter(scale * torch.randn(d_model, d_model))
        self.mask_norm = nn.LayerNorm(self.n_classes)
        self.apply(_init_segmenter)
        nn.init.trunc_normal_(self.cls_emb, std=0.02)

    def embeddings(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The L2-normalised patch and class embeddings the masks are made of.

        Args: tokens: (B, N, D) float patch tokens (no [CLS]).
        Returns: patches (B, N, d_model) and classes (B, K, d_model), unit L2 norm along the last dim.
        """
        x = self.proj_dec(tokens)
        x = torch.cat([x, self.cls_emb.expand(x.shape[0], -1, -1)], dim=1)
        x = self.decoder_norm(self.blocks(x))
        n = tokens.shape[1]
        patches = F.normalize(x[:, :n] @ self.proj_patch, dim=-1)
        classes = F.normalize(x[:, n:] @ self.proj_classes, dim=-1)
        return patches, classes

    def masks_from_embeddings(self, patches: torch.Tensor, classes: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """(B, K, gh, gw) token-grid masks: ``LayerNorm_K(patches @ classes^T)`` reshaped to the grid."""
        masks = self.mask_norm(patches @ classes.transpose(1, 2))    # (B, N, K)
        return masks.transpose(1, 2).reshape(patches.shape[0], self.n_classes, *grid)

    def forward(self, tokens: torch.Tensor, image_hw: tuple[int, int]) -> torch.Tensor:
        """Per-pixel class logits.

        Args:
            tokens: (B, N, D) float patch tokens, row-major over the (gh, gw) grid, no [CLS].
            image_hw: (H, W) output size in pixels, multiples of ``patch``.
        Returns: (B, K, H, W) float logits.
        Raises: ValueError when the token count or width does not fit ``image_hw`` / ``embed_dim``.
        """
        grid = token_grid(image_hw, self.patch)
        _check_tokens(tokens, self.embed_dim, grid)
        patches, classes = self.embeddings(tokens)
        return _to_image(self.masks_from_embeddings(patches, classes, grid), image_hw)

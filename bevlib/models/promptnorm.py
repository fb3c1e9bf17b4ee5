"""PromptNorm: LayerNorm whose scale and shift come from a learnable per-dataset prompt.

Combined-datasets BEV pre-training (combined-datasets-bev-pretraining.md, Sec. 3.2, Eq. 5, Fig. 2)::

    alpha, beta = Adapter(r_i)
    PromptNorm(d_i^j) = alpha * LayerNorm(d_i^j) + beta

with one learnable prompt ``r_i`` per dataset and an MLP adapter, after the prompt adapters of Point
Prompt Training (Wu et al., CVPR 2024, ref. [67]; its adaptive norm is ``norm(x) * (1 + scale) + shift``
with a zero-initialised modulation layer). Here::

    out = (1 + s) * LN_affine(x) + t,   (s, t) = Adapter(r_i),   alpha = 1 + s, beta = t

``LN_affine`` is the LayerNorm with its own (base) weight and bias -- copied from the LayerNorm it
replaces, so a pretrained or freshly initialised model keeps its behaviour. The adapter's last layer
starts at zero, so at initialisation ``s = t = 0`` exactly and PromptNorm equals the LayerNorm bit for
bit (``x * 1.0 + 0.0`` is exact in floating point).

Which prompt a sample uses is set per call, not per module:

* ``prompt_mode`` ``"own"`` (default): each sample's own dataset index (``dataset_index``);
* ``"none"``: the plain LayerNorm (base affine only; Table 5's "w/o prompt" at fine-tuning);
* an ``int`` d: dataset d's prompt for every sample (Table 5's "wrong" / "correspond" strategies).

The per-sample index reaches the norms deep inside a model through :func:`dataset_prompt` (a context
manager) or :func:`set_dataset_index`; :meth:`PromptNorm.forward` also takes it as a keyword. An index
of shape (N,) applies to an input whose first dimension is N (e.g. (B, L, C) tokens of B samples).
"""
from __future__ import annotations

from contextlib import contextmanager

import torch
import torch.nn as nn
import torch.nn.functional as F

PromptMode = str | int


class DatasetPrompts(nn.Module):
    """The table of soft prompts ``r_i`` (Eq. 5), one row per dataset; may be shared by many norms.

    Args:
        n_datasets: number of datasets (>= 1).
        prompt_dim: prompt length (>= 1).
        init_std: standard deviation of the normal initialisation.
    Raises: ValueError for a non-positive size.
    """

    def __init__(self, n_datasets: int, prompt_dim: int, init_std: float = 0.02):
        super().__init__()
        if n_datasets < 1 or prompt_dim < 1:
            raise ValueError(f"n_datasets and prompt_dim must be >= 1, got {n_datasets}, {prompt_dim}")
        self.weight = nn.Parameter(torch.randn(n_datasets, prompt_dim) * init_std)

    @property
    def n_datasets(self) -> int:
        return self.weight.shape[0]

    def forward(self, index: torch.Tensor) -> torch.Tensor:
        """(N,) int64 dataset indices -> (N, prompt_dim) prompts."""
        return self.weight[index]


class PromptNorm(nn.Module):
    """LayerNorm with a dataset-prompted scale and shift (Eq. 5; see module docstring).

    Args:
        normalized_shape: as ``nn.LayerNorm`` (int or tuple of trailing sizes).
        n_datasets: number of dataset prompts (ignored when ``prompts`` is given).
        prompt_dim: prompt length (ignored when ``prompts`` is given).
        adapter_hidden: hidden width of the adapter MLP (Linear -> SiLU -> Linear(zero-init)).
        eps: LayerNorm epsilon.
        elementwise_affine: whether the base LayerNorm has a weight and bias (initialised 1 / 0).
        prompts: an existing :class:`DatasetPrompts` to share (one prompt table per model, as the
            paper's single ``r_i`` per dataset); by default the norm owns its own.
    Forward:
        x: (N, ..., *normalized_shape) float.
        dataset_index: optional (N,) int64 per-sample dataset index, or an int for all samples;
            overrides the index set by :func:`dataset_prompt`.
        Returns: same shape and dtype as ``x``.
    Raises (forward): ValueError when mode ``"own"`` has no index, an index is out of range, or its
        length does not match ``x.shape[0]``.
    """

    def __init__(self, normalized_shape, n_datasets: int = 1, prompt_dim: int = 16, adapter_hidden: int = 64,
                 eps: float = 1e-5, elementwise_affine: bool = True, prompts: DatasetPrompts | None = None):
        super().__init__()
        if isinstance(normalized_shape, int):
            normalized_shape = (normalized_shape,)
        self.normalized_shape = tuple(int(s) for s in normalized_shape)
        if not self.normalized_shape or min(self.normalized_shape) < 1:
            raise ValueError(f"normalized_shape must be positive sizes, got {normalized_shape}")
        if adapter_hidden < 1:
            raise ValueError(f"adapter_hidden must be >= 1, got {adapter_hidden}")
        self.eps = float(eps)
        if elementwise_affine:
            self.weight = nn.Parameter(torch.ones(self.normalized_shape))
            self.bias = nn.Parameter(torch.zeros(self.normalized_shape))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        self.prompts = prompts if prompts is not None else DatasetPrompts(n_datasets, prompt_dim)
        numel = 1
        for s in self.normalized_shape:
            numel *= s
        self.adapter = nn.Sequential(nn.Linear(self.prompts.weight.shape[1], adapter_hidden), nn.SiLU(),
                                     nn.Linear(adapter_hidden, 2 * numel))
        # zero last layer: alpha = 1, beta = 0 at init, so the swap leaves a model's outputs unchanged
        nn.init.zeros_(self.adapter[-1].weight)
        nn.init.zeros_(self.adapter[-1].bias)
        self.prompt_mode: PromptMode = "own"
        self._dataset_index: torch.Tensor | int | None = None

    @property
    def n_datasets(self) -> int:
        return self.prompts.n_datasets

    def alpha_beta(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N,) int64 dataset indices -> alpha, beta, each (N, *normalized_shape) (Eq. 5)."""
        st = self.adapter(self.prompts(index))
        s, t = st.chunk(2, dim=-1)
        shape = (index.shape[0],) + self.normalized_shape
        return 1.0 + s.reshape(shape), t.reshape(shape)

    def _resolve_index(self, x: torch.Tensor, dataset_index) -> torch.Tensor | None:
        mode = self.prompt_mode
        if mode == "none":
            return None
        if isinstance(mode, int) and not isinstance(mode, bool):
            idx = torch.full((x.shape[0],), mode, dtype=torch.long, device=x.device)
        elif mode == "own":
            idx = dataset_index if dataset_index is not None else self._dataset_index
            if idx is None:
                raise ValueError("PromptNorm prompt_mode 'own' needs a dataset_index (forward keyword, "
                                 "dataset_prompt(...) or set_dataset_index(...)); use prompt_mode='none' "
                                 "for the plain LayerNorm")
            if isinstance(idx, int):
                idx = torch.full((x.shape[0],), idx, dtype=torch.long, device=x.device)
            idx = torch.as_tensor(idx, device=x.device).long().reshape(-1)
            if idx.shape[0] != x.shape[0]:
                raise ValueError(f"dataset_index has {idx.shape[0]} entries but the PromptNorm input "
                                 f"{tuple(x.shape)} has {x.shape[0]} samples in its first dimension")
        else:
            raise ValueError(f"prompt_mode must be 'own', 'none' or a dataset index, got {mode!r}")
        if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= self.n_datasets):
            raise ValueError(f"dataset_index values must lie in [0, {self.n_datasets}), got "
                             f"[{int(idx.min())}, {int(idx.max())}]")
        return idx

    def forward(self, x: torch.Tensor, dataset_index=None) -> torch.Tensor:
        base = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        idx = self._resolve_index(x, dataset_index)
        if idx is None:
            return base
        alpha, beta = self.alpha_beta(idx)
        # per-sample (N, *shape) -> broadcast over the middle dims of x (N, ..., *shape)
        view = (x.shape[0],) + (1,) * (x.dim() - 1 - len(self.normalized_shape)) + self.normalized_shape
        return base * alpha.reshape(view).to(base.dtype) + beta.reshape(view).to(base.dtype)

    def extra_repr(self) -> str:
        return (f"{self.normalized_shape}, n_datasets={self.n_datasets}, eps={self.eps}, "
                f"affine={self.weight is not None}, prompt_mode={self.prompt_mode!r}")


def _is_layernorm(m: nn.Module) -> bool:
    """nn.LayerNorm (and subclasses), or a library LayerNorm over the last dims with the same fields
    (e.g. a transformers ``*LayerNorm`` class); channels-first variants are left alone."""
    if isinstance(m, PromptNorm):
        return False
    if isinstance(m, nn.LayerNorm):
        return True
    # RMS norms (e.g. T5LayerNorm: no ``eps`` / ``normalized_shape``) are not LayerNorms and stay
    return (type(m).__name__.endswith("LayerNorm") and hasattr(m, "normalized_shape") and hasattr(m, "eps")
            and getattr(m, "data_format", "channels_last") == "channels_last")


def replace_layernorms(module: nn.Module, n_datasets: int, prompt_dim: int = 16, adapter_hidden: int = 64,
                       share_prompts: bool = True) -> int:
    """Swap every LayerNorm in ``module`` (in place) for a :class:`PromptNorm` (paper Sec. 3.2: "We
    replace all LayerNorm layers in both the image and point cloud backbone networks with PromptNorm").

    Each PromptNorm copies the replaced norm's weight, bias and eps as its base affine and gets its own
    zero-initialised adapter, so the model's outputs are unchanged at initialisation (with any prompt).

    Args:
        module: the model (e.g. a ``transformers`` SwinModel / ViTModel, a VoxelSetTransformer).
        n_datasets, prompt_dim, adapter_hidden: as :class:`PromptNorm`.
        share_prompts: one :class:`DatasetPrompts` table for all swapped norms (the paper's one prompt
            r_i per dataset; default) or one per norm.
    Returns: the number of norms swapped.
    Raises: ValueError if ``module`` itself is a LayerNorm (it cannot be swapped in place) or a size is
        not positive.
    """
    if _is_layernorm(module):
        raise ValueError("replace_layernorms needs a container module; wrap a bare LayerNorm in one")
    shared = DatasetPrompts(n_datasets, prompt_dim) if share_prompts else None
    targets = [(name, child) for name, child in module.named_modules() if _is_layernorm(child)]
    for name, old in targets:
        parent_name, _, attr = name.rpartition(".")
        parent = module.get_submodule(parent_name) if parent_name else module
        shape = old.normalized_shape
        affine = getattr(old, "weight", None) is not None
        new = PromptNorm(shape, n_datasets, prompt_dim, adapter_hidden, eps=float(old.eps),
                         elementwise_affine=affine, prompts=shared)
        ref = old.weight if affine else next(module.parameters(), None)
        if ref is not None:
            new = new.to(device=ref.device, dtype=ref.dtype)
        if affine:
            with torch.no_grad():
                new.weight.copy_(old.weight)
                if getattr(old, "bias", None) is not None:
                    new.bias.copy_(old.bias)
                else:
                    new.bias.zero_()
                    new.bias.requires_grad_(False)
        setattr(parent, attr, new)
    return len(targets)


def prompt_norms(module: nn.Module) -> list[PromptNorm]:
    """All :class:`PromptNorm` modules inside ``module`` (itself included)."""
    return [m for m in module.modules() if isinstance(m, PromptNorm)]


def set_dataset_index(module: nn.Module, index) -> None:
    """Set the per-sample dataset index ((N,) int64 tensor, an int, or None to clear) on every
    PromptNorm inside ``module``; used by prompt mode ``"own"``."""
    for m in prompt_norms(module):
        m._dataset_index = index


def set_prompt_mode(module: nn.Module, mode: PromptMode) -> None:
    """Set the prompt mode (``"own"``, ``"none"`` or a fixed dataset index) of every PromptNorm in
    ``module``. Raises: ValueError for any other value or an index out of range."""
    norms = prompt_norms(module)
    if isinstance(mode, bool) or not (mode in ("own", "none") or isinstance(mode, int)):
        raise ValueError(f"prompt mode must be 'own', 'none' or a dataset index, got {mode!r}")
    for m in norms:
        if isinstance(mode, int) and not 0 <= mode < m.n_datasets:
            raise ValueError(f"prompt mode {mode} is not a dataset index in [0, {m.n_datasets})")
        m.prompt_mode = mode


@contextmanager
def dataset_prompt(module: nn.Module, index):
    """Context manager: PromptNorms inside ``module`` use ``index`` ((N,) int64 per sample, or an int)
    for the duration; the previous indices are restored afterwards (also on error)."""
    norms = prompt_norms(module)
    saved = [m._dataset_index for m in norms]
    try:
        for m in norms:
            m._dataset_index = index
        yield module
    finally:
        for m, s in zip(norms, saved):
            m._dataset_index = s

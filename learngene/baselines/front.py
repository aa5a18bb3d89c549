"""FRONT (Lu et al., ICML 2026): initialize a timm ViT of any depth, width, heads and MLP ratio from a trained
one, with no training, through the frequency domain. A pure state-dict transform.

It follows the authors' released ``front_init_deit.py`` (github LUcy0505/FRONT, commit d156e73), in three steps:

1. Every parent tensor (``ToDCT``): standardized as a whole (its mean and unbiased std kept), viewed as a
   matrix (a 3-D or 4-D tensor as ``(shape[0] * shape[1], rest)``; one with a single row or column as a
   vector), taken to the frequency domain by a DCT on every axis (``mlp_dct_dim="1d"``: MLP weights only
   along their hidden axis), and its leading ``int(n * keep_ratio)`` coefficients per transformed axis kept.
2. Every block tensor name, e.g. ``attn.qkv.weight`` (``get_top_n_modules_dim_dct``): the parent layers'
   coefficients stacked, a DCT along the layer axis, the first ``min(depth, parent depth, select_n)`` layer
   frequencies kept and brought to the Des-Net's depth by ``depth_mode``, the inverse DCT along that axis.
3. Every Des-Net tensor (``reconstruct_weights``): the coefficients in the top-left corner of a zero matrix of
   its own matrix shape (cut where they do not fit), the inverse DCT, times the area ratio if ``use_ratio``,
   de-standardized with the parent tensor's mean and std.

Fused ``attn.qkv`` is one matrix (its q, k and v rows one frequency axis), as released. A tensor the parent lacks
and a ``skip`` group keep the Des-Net's own init, and so does a head of another class count: the released code
means this too, but its check compares the head with its reconstruction (always of the head's shape) and never
fires. Where the released code fails (a Des-Net of depth 1, ``repeat`` deeper than the parent), FRONT refuses.
docs/baselines.md has the table of what each Des-Net tensor is made from.
"""
from __future__ import annotations

import dataclasses
import math

import torch

from learngene.errors import LearngeneError
from learngene.expand.state_dict import LAYER_KEY

DEPTH_MODES = ("zero", "random", "consistence", "repeat")
# A class-token parent (ImageNet's ViT-L) for a pooled Des-Net (the SWS Des-B): "released" transforms the parent as
# it is, its class-token row of pos_embed included (N + 1 rows into N), and leaves fc_norm, which the parent lacks,
# at its init; "pooled" first drops the class token and its position and moves the final norm to fc_norm, as weight
# selection reads such a parent (``weight_selection.pooled_layout``).
CLASS_TOKEN_LAYOUTS = ("released", "pooled")
MLP_DCT_DIMS = ("2d", "1d")
# The released skip list: each name and the Des-Net tensors (by a substring of their key) it leaves at their init.
SKIP_GROUPS = {"qkv": "qkv.", "o": "attn.proj.", "mlp": ".mlp.", "norm": "norm"}
HEAD_KEYS = ("head.weight", "head.bias")
EPS = 1e-8  # added to the std when standardizing (and not when de-standardizing), as released


# Up to this length a transform is a product with the cosine basis, beyond it an FFT: along the layer stack
# (a short axis with a huge stride) the FFT was 80x slower than the product.
DIRECT_MAX = 64


def dct(x: torch.Tensor, dim: int = -1, keep: int | None = None) -> torch.Tensor:
    """DCT-II along ``dim`` with the released scaling, ``X[k] = sum_n x[n] cos(pi k (2n + 1) / 2N)``: half of
    ``scipy.fft.dct(x, type=2, norm="backward")`` (not orthonormal); only the first ``keep`` coefficients if
    given. Beyond ``DIRECT_MAX``, O(N log N) by Makhoul's N-point FFT of the even samples then the odd ones
    reversed."""
    n = x.shape[dim]
    keep = n if keep is None else keep
    if n <= DIRECT_MAX:
        return torch.tensordot(cosine_basis(n, x)[:keep], x, dims=([1], [dim])).movedim(0, dim)
    x = x.movedim(dim, -1)
    reordered = torch.cat([x[..., ::2], x[..., 1::2].flip(-1)], dim=-1)
    spectrum = torch.fft.fft(reordered)[..., :keep] * half_sample_shift(n, x, -1)[:keep]
    return spectrum.real.movedim(-1, dim)


def idct(coefficients: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """The inverse of :func:`dct`, ``x[n] = (X[0] + 2 sum_{k>0} X[k] cos(pi k (2n + 1) / 2N)) / N``: twice
    ``scipy.fft.idct(X, type=2, norm="backward")``. A size change between them scales a tensor by N / M."""
    n = coefficients.shape[dim]
    if n <= DIRECT_MAX:
        weights = torch.full((n, 1), 2.0, dtype=coefficients.dtype, device=coefficients.device)
        weights[0] = 1.0
        inverse = (cosine_basis(n, coefficients) * weights).T / n
        return torch.tensordot(inverse, coefficients, dims=([1], [dim])).movedim(0, dim)
    coefficients = coefficients.movedim(dim, -1)
    spectrum = coefficients * half_sample_shift(n, coefficients, 1)
    return torch.fft.irfft(spectrum, n=2 * n)[..., :n].mul(2).movedim(-1, dim)


def cosine_basis(n: int, like: torch.Tensor) -> torch.Tensor:
    """``C[k, j] = cos(pi k (2j + 1) / 2n)``, in ``like``'s precision: :func:`dct` along an axis is ``C @ x``."""
    k = torch.arange(n, dtype=like.dtype, device=like.device).unsqueeze(1)
    j = torch.arange(n, dtype=like.dtype, device=like.device)
    return torch.cos(torch.pi * k * (2 * j + 1) / (2 * n))


def half_sample_shift(n: int, like: torch.Tensor, sign: int) -> torch.Tensor:
    """``exp(sign * i pi k / 2n)`` for k < n, in ``like``'s precision."""
    k = torch.arange(n, dtype=like.dtype, device=like.device)
    return torch.polar(torch.ones_like(k), sign * torch.pi * k / (2 * n))


@dataclasses.dataclass
class Spectrum:
    """A standardized tensor's kept DCT coefficients and the mean and std that de-standardize it."""

    coefficients: torch.Tensor
    mean: float
    std: float


def one_axis_dct(key: str, mlp_dct_dim: str) -> int | None:
    """The one axis an MLP weight is transformed along with ``mlp_dct_dim="1d"`` (its hidden axis), else None."""
    if mlp_dct_dim == "1d":
        if "mlp.fc1" in key:
            return 0
        if "mlp.fc2" in key:
            return 1
    return None


def matrix_shape(shape: torch.Size) -> tuple[int, ...]:
    """The released 2-D view: a 3-D or 4-D tensor as ``(shape[0] * shape[1], rest)``, else as it is."""
    return (shape[0] * shape[1], math.prod(shape[2:])) if len(shape) > 2 else tuple(shape)


def spectral_view(key: str, shape: torch.Size, mlp_dct_dim: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The shape a parent tensor is transformed in (its matrix, or a vector for one row or column) and the axes
    the DCT runs along."""
    view = matrix_shape(shape)
    if len(view) == 2 and 1 in view:  # one row or column: a vector
        view = (math.prod(view),)
    if len(view) == 1:
        return view, (0,)
    axis = one_axis_dct(key, mlp_dct_dim)
    return view, (0, 1) if axis is None else (axis,)


def check_keep_ratio(parent_state: dict[str, torch.Tensor], keys: list[str], keep_ratio: float,
                     mlp_dct_dim: str) -> None:
    """Refuse a ``keep_ratio`` that keeps no coefficient on an axis of a transformed parent tensor (``keys``): it
    would be its mean alone (a patch embedding of 2x2 patches at 0.2: a Des-Net whose output ignores its input)."""
    sizes = [(view[axis], key) for key in keys
             for view, axes in [spectral_view(key, parent_state[key].shape, mlp_dct_dim)] for axis in axes]
    size, key = min(sizes, default=(0, ""))
    if sizes and int(size * keep_ratio) < 1:
        raise LearngeneError(f"keep_ratio {keep_ratio} keeps no DCT coefficient of {key}, whose smallest axis has "
                             f"{size} (int({size} x {keep_ratio}) = 0): the Des-Net tensor would be a constant; use "
                             f"keep_ratio >= {1 / size:.4g}")


def to_spectrum(key: str, tensor: torch.Tensor, keep_ratio: float, mlp_dct_dim: str) -> Spectrum:
    """A parent tensor in the frequency domain (released ``ToDCT.frequency_regularization`` and
    ``_process_single_layer``)."""
    matrix = tensor.double().reshape(matrix_shape(tensor.shape))
    mean, std = matrix.mean().item(), matrix.std().item()
    view, axes = spectral_view(key, tensor.shape, mlp_dct_dim)
    coefficients = z = ((matrix - mean) / (std + EPS)).reshape(view)
    for axis in axes:
        coefficients = dct(coefficients, axis, keep=int(z.shape[axis] * keep_ratio))
    return Spectrum(coefficients, mean, std)


def along_depth(layers: list[Spectrum], depth: int, select_n: int | None, depth_mode: str,
                generator: torch.Generator) -> list[Spectrum]:
    """One block tensor's parent layers brought to ``depth`` Des-Net layers (released
    ``get_top_n_modules_dim_dct`` with its only reachable ``freq_mode``, ``first``)."""
    n_parent = len(layers)
    n = min(depth, n_parent, select_n or n_parent)
    frequencies = dct(torch.stack([layer.coefficients for layer in layers]), 0, keep=n)
    if depth_mode == "consistence":  # each kept frequency repeated, the first depth % n ones once more
        base, extra = divmod(depth, n)
        padded = frequencies.repeat_interleave(torch.tensor([base + (i < extra) for i in range(n)]), dim=0)
    else:
        rows = n_parent if depth_mode == "repeat" else depth  # repeat: the parent's depth, its first layers taken
        shape = (rows, *frequencies.shape[1:])
        if depth_mode == "random":
            padded = torch.normal(frequencies.mean().item(), frequencies.std().item(), shape, generator=generator,
                                  dtype=frequencies.dtype)
        else:
            padded = frequencies.new_zeros(shape)
        padded[:n] = frequencies
    coefficients = idct(padded, 0)
    # Released quirk: Des-Net layers from the parent's last index on share one record that every one of them
    # overwrites, so all of them end with the last Des-Net layer's coefficients (and the parent's last statistics).
    last = n_parent - 1
    return [Spectrum(coefficients[i if i < last else depth - 1], layers[min(i, last)].mean, layers[min(i, last)].std)
            for i in range(depth)]


def from_spectrum(key: str, spectrum: Spectrum, shape: torch.Size, use_ratio: bool, mlp_dct_dim: str) -> torch.Tensor:
    """A Des-Net tensor of ``shape`` from a spectrum (released ``reconstruct_weights``), in float64."""
    target = matrix_shape(shape)
    coefficients = spectrum.coefficients
    if len(target) == 2 and coefficients.dim() == 1:  # a vector back as a row (a 3-D token tensor, one row) or column
        coefficients = coefficients.unsqueeze(0 if len(shape) == 3 or target[0] == 1 else 1)
    block = coefficients.new_zeros(target)
    kept = tuple(slice(0, min(c, t)) for c, t in zip(coefficients.shape, target))
    block[kept] = coefficients[kept]
    axis = one_axis_dct(key, mlp_dct_dim) if len(target) == 2 else None
    for axis in range(len(target)) if axis is None else (axis,):
        block = idct(block, axis)
        if use_ratio:  # the area ratio: Des-Net size over kept coefficients, per transformed axis
            block = block * (target[axis] / coefficients.shape[axis])
    return (block * spectrum.std + spectrum.mean).reshape(shape)


def check_options(keep_ratio: float, depth_mode: str, select_n: int | None, mlp_dct_dim: str,
                  skip) -> None:
    if not 0 < keep_ratio <= 1:
        raise LearngeneError(f"keep_ratio {keep_ratio} is not in (0, 1]: it is the fraction of frequencies kept per axis")
    if depth_mode not in DEPTH_MODES:
        raise LearngeneError(f"unknown depth mode {depth_mode!r}: use one of {', '.join(DEPTH_MODES)}")
    if select_n is not None and (isinstance(select_n, bool) or not isinstance(select_n, int) or select_n < 1):
        raise LearngeneError(f"select_n must be an integer >= 1 (layer frequencies kept), got {select_n!r}")
    if mlp_dct_dim not in MLP_DCT_DIMS:
        raise LearngeneError(f"unknown mlp_dct_dim {mlp_dct_dim!r}: use one of {', '.join(MLP_DCT_DIMS)}")
    unknown = sorted(set(skip) - set(SKIP_GROUPS))
    if unknown:
        raise LearngeneError(f"unknown skip group(s) {', '.join(map(repr, unknown))}: use any of "
                             f"{', '.join(SKIP_GROUPS)} (qkv, attention output proj, MLP, every norm)")


def tensor_groups(state: dict[str, torch.Tensor]) -> dict[str, list[str]]:
    """Keys by released group: a block tensor's name within its block (``attn.qkv.weight``, its keys in layer
    order), every other tensor its own key."""
    layers: dict[str, dict[int, str]] = {}
    for key in state:
        match = LAYER_KEY.match(key)
        if match and match.group(1) == "blocks":
            layers.setdefault(key[match.end():], {})[int(match.group(2))] = key
        else:
            layers[key] = {-1: key}
    return {group: [by_index[i] for i in sorted(by_index)] for group, by_index in layers.items()}


def front_transfer(parent_state: dict[str, torch.Tensor], target_state: dict[str, torch.Tensor],
                   keep_ratio: float = 1.0, depth_mode: str = "zero", select_n: int | None = None,
                   mlp_dct_dim: str = "2d", use_ratio: bool = False, skip=(), seed: int = 0) -> dict[str, torch.Tensor]:
    """A state dict with exactly ``target_state``'s keys, shapes and dtypes, made from ``parent_state`` by FRONT.

    ``target_state`` is the Des-Net's own init, kept where FRONT gives nothing (a tensor the parent lacks, a
    head of another class count, a ``skip`` group). ``seed`` draws ``depth_mode="random"``'s high frequencies.
    Defaults are the released script's.
    """
    check_options(keep_ratio, depth_mode, select_n, mlp_dct_dim, skip)
    parent_groups, target_groups = tensor_groups(parent_state), tensor_groups(target_state)
    check_keep_ratio(parent_state, [key for group in target_groups if group in parent_groups
                                    for key in parent_groups[group]], keep_ratio, mlp_dct_dim)
    generator = torch.Generator().manual_seed(seed)
    out = {key: value.clone() for key, value in target_state.items()}
    for group, keys in target_groups.items():
        if group not in parent_groups:
            continue
        if parent_state[parent_groups[group][0]].dim() != target_state[keys[0]].dim():
            raise LearngeneError(f"parent tensor {parent_groups[group][0]} and Des-Net tensor {keys[0]} differ in "
                                 "rank: FRONT needs a parent of the Des-Net's family (timm ViTs)")
        spectra = [to_spectrum(key, parent_state[key], keep_ratio, mlp_dct_dim) for key in parent_groups[group]]
        if group not in keys:  # block tensors
            if len(keys) == 1:
                raise LearngeneError("FRONT needs a Des-Net of depth >= 2: the released code fails at depth 1")
            if depth_mode == "repeat" and len(keys) > len(spectra):
                raise LearngeneError(f"depth mode 'repeat' cannot make {len(keys)} layers from a parent of "
                                     f"{len(spectra)} (the released code fails): use another depth mode")
            spectra = along_depth(spectra, len(keys), select_n, depth_mode, generator)
        for key, spectrum in zip(keys, spectra):
            if key in HEAD_KEYS and target_state[key].shape[0] != parent_state[key].shape[0]:
                continue  # another class count (a new label space): the Des-Net's own head, as released means
            if any(name in skip and pattern in key for name, pattern in SKIP_GROUPS.items()):
                continue
            shape, dtype = target_state[key].shape, target_state[key].dtype
            out[key] = from_spectrum(key, spectrum, shape, use_ratio, mlp_dct_dim).to(dtype)
    return out

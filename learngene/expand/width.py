"""Width changes of learngenes and Des-Nets: pure functions on state dicts, and a small serializable plan.

Every tensor of a pooled ViT (timm ``VisionTransformer(class_token=False, global_pool="avg")``, or an SWS
Aux-Net, whose stage blocks carry the same names) has its axes in a few *channel kinds*:

* ``embed``: the residual stream (patch embed and pos embed outputs, every LayerNorm, proj and fc2
  outputs, the inputs of qkv, fc1 and head);
* ``qkv``: the rows of the fused qkv projection, laid out (q|k|v, head, head dim) as timm splits them;
* ``attn``: the concatenated head outputs read by proj, laid out (head, head dim);
* ``hidden``: the MLP hidden units (fc1 rows, fc2 columns).

A width change picks, for each kind, which old channel every new channel comes from (``ChannelMap``):

* **Narrowing** (:func:`narrow_width`) keeps the leading channels: the first ``h`` heads of each of q, k
  and v, the first ``h * head_dim`` proj inputs, the first MLP hidden units and the first ``width``
  embedding channels. A LayerNorm over a prefix normalizes over that prefix only, which is what a
  narrower timm LayerNorm does, so the result is a plain timm ViT of that width. It works with no
  tuning when the learngene was trained width-nested (``learngene.engine.elastic``).
* **Growth** (:func:`grow_width`) repeats channels cyclically (new channel ``j`` copies old ``j % n``,
  so new heads ``H .. 2H-1`` copy heads ``0 .. H-1``) and divides every weight that *reads* a repeated
  input by that input's number of copies, so every sum is unchanged (Net2Net / HyperCloning). When every
  embedding channel has the same number of copies k, a LayerNorm sees k copies of the same values: mean
  and variance are unchanged and the grown Des-Net computes the same function. The head dim is kept, so
  the attention scale is too. Heads and hidden units may be repeated unevenly: nothing normalizes them.

  An embedding growth by a non-integer ratio cannot be a repetition (some channels would weigh more in
  every LayerNorm's mean and variance). ``partial="orthogonal"`` (default) still gives an exact
  construction: fold every LayerNorm's weight and bias into the layer that reads it (qkv, fc1, head), then
  carry the stream through an isometry ``U`` (new x old, ``U^T U = I``) that maps the all-ones direction
  to the all-ones direction, scaled by ``sqrt(new / old)``: the wide stream's mean and variance equal
  the narrow stream's, so each LayerNorm output is ``sqrt(new / old) U`` times the old one, and readers
  multiply by ``U^T / sqrt(new / old)``. ``U`` is the isometry closest to the (uneven) repetition on the
  centered subspace. The wide Des-Net's LayerNorms then have weight 1 and bias 0. What is exact is the
  logits: a Des-Net without its head (another label space) has no reader for ``fc_norm``, which then keeps
  its weight and bias copied as at integer ratios, so its pre-logit features are close to, not equal to,
  copies of the old ones (docs/width.md). ``partial="duplicate"`` repeats unevenly anyway (not exact; kept
  to measure, docs/width.md).

Optional symmetry-breaking noise (``noise_std``) perturbs the weights that read repeated channels with
noise that sums to zero over the copies of each channel, so the function stays the same while the
copies receive different gradients.
"""
from __future__ import annotations

import dataclasses
import math
import re
from typing import Callable

import torch

from learngene.errors import LearngeneError

EMBED, QKV, ATTN, HIDDEN = "embed", "qkv", "attn", "hidden"
PARTIAL_RULES = ("orthogonal", "duplicate")

# The channel kind of each axis, by parameter name without its block prefix (``stages.{s}.`` / ``blocks.{i}.``).
AXIS_KINDS = {
    "pos_embed": (None, None, EMBED),
    "patch_embed.proj.weight": (EMBED, None, None, None),
    "patch_embed.proj.bias": (EMBED,),
    "norm1.weight": (EMBED,), "norm1.bias": (EMBED,),
    "attn.qkv.weight": (QKV, EMBED), "attn.qkv.bias": (QKV,),
    "attn.proj.weight": (EMBED, ATTN), "attn.proj.bias": (EMBED,),
    "norm2.weight": (EMBED,), "norm2.bias": (EMBED,),
    "mlp.fc1.weight": (HIDDEN, EMBED), "mlp.fc1.bias": (HIDDEN,),
    "mlp.fc2.weight": (EMBED, HIDDEN), "mlp.fc2.bias": (EMBED,),
    "fc_norm.weight": (EMBED,), "fc_norm.bias": (EMBED,),
    "head.weight": (None, EMBED), "head.bias": (None,),
}
# Which linear layer reads each LayerNorm's output (pre-norm blocks: the norms are the stream's only readers).
NORM_READERS = {"norm1": "attn.qkv", "norm2": "mlp.fc1", "fc_norm": "head"}
BLOCK_KEY = re.compile(r"^(stages|blocks)\.\d+\.")


def parameter_name(key: str) -> str:
    """``stages.3.attn.qkv.weight`` -> ``attn.qkv.weight``; top-level names are returned as they are."""
    return BLOCK_KEY.sub("", key)


def axis_kinds(key: str, tensor: torch.Tensor) -> tuple:
    kinds = AXIS_KINDS.get(parameter_name(key))
    if kinds is None or len(kinds) != tensor.ndim:
        raise LearngeneError(f"cannot change the width of {key!r} {tuple(tensor.shape)}: width changes support "
                             "pooled timm ViTs and SWS Aux-Nets (no class token, no layer scale)")
    return kinds


@dataclasses.dataclass
class ViTWidth:
    """The widths of a pooled ViT: embedding, heads (head dim = embed_dim / num_heads) and MLP hidden units."""

    embed_dim: int
    num_heads: int
    mlp_hidden: int

    @property
    def head_dim(self) -> int:
        return self.embed_dim // self.num_heads


def state_width(state: dict[str, torch.Tensor], num_heads: int) -> ViTWidth:
    """The widths of ``state`` (the number of heads is not in the tensors' shapes, so it is given)."""
    embed_dim = state["pos_embed"].shape[-1]
    fc1 = next((v for k, v in state.items() if parameter_name(k) == "mlp.fc1.weight"), None)
    if fc1 is None:
        raise LearngeneError("state dict has no mlp.fc1 layer: is it a ViT or an SWS Aux-Net?")
    if embed_dim % num_heads:
        raise LearngeneError(f"num_heads={num_heads} does not divide the state's width {embed_dim}")
    return ViTWidth(embed_dim, num_heads, fc1.shape[0])


@dataclasses.dataclass
class ChannelMap:
    """New channel ``j`` comes from old channel ``source[j]``; readers divide by the copies of their input.

    ``mix`` (new x old), when set, replaces the copying by a dense map: writers get ``mix * scale``, readers
    ``mix / scale`` (the orthogonal embedding growth).
    """

    source: torch.Tensor
    old_size: int
    mix: torch.Tensor | None = None
    scale: float = 1.0

    def copies(self) -> torch.Tensor:
        return torch.bincount(self.source, minlength=self.old_size)

    def write(self, tensor: torch.Tensor, axis: int) -> torch.Tensor:
        """The new tensor along an axis that produces these channels."""
        if self.mix is not None:
            return apply_along(tensor, self.mix.to(tensor) * self.scale, axis)
        return tensor.index_select(axis, self.source.to(tensor.device))

    def read(self, tensor: torch.Tensor, axis: int) -> torch.Tensor:
        """The new tensor along an axis that reads these channels: the old sums are kept."""
        if self.mix is not None:
            return apply_along(tensor, self.mix.to(tensor) / self.scale, axis)
        divisor = self.copies()[self.source].to(tensor)
        shape = [1] * tensor.ndim
        shape[axis] = -1
        return tensor.index_select(axis, self.source.to(tensor.device)) / divisor.view(shape)


def apply_along(tensor: torch.Tensor, matrix: torch.Tensor, axis: int) -> torch.Tensor:
    """``matrix @ tensor`` along ``axis`` (``matrix`` is new x old)."""
    return torch.movedim(torch.tensordot(matrix, tensor, dims=([1], [axis])), 0, axis)


def fused_qkv_rows(heads: torch.Tensor, head_dims: torch.Tensor, num_heads: int,
                   head_dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of timm's fused qkv (q|k|v, head, head dim) and of proj's input (head, head dim) that keep dims
    ``head_dims`` of heads ``heads``, of a layer with ``num_heads`` heads of ``head_dim``: the same heads and
    dims in each of q, k and v."""
    attn = (heads[:, None] * head_dim + head_dims[None, :]).flatten()
    return torch.cat([part * num_heads * head_dim + attn for part in range(3)]), attn


def head_maps(head_source: torch.Tensor, old_heads: int, head_dim: int) -> tuple[ChannelMap, ChannelMap]:
    """The ``qkv`` and ``attn`` channel maps of the heads ``head_source`` (new head -> old head)."""
    qkv, attn = fused_qkv_rows(head_source, torch.arange(head_dim, device=head_source.device), old_heads, head_dim)
    return ChannelMap(qkv, 3 * old_heads * head_dim), ChannelMap(attn, old_heads * head_dim)


def remap(state: dict[str, torch.Tensor], maps: dict[str, ChannelMap]) -> dict[str, torch.Tensor]:
    """Every tensor with each axis written or read through the map of its channel kind.

    Axis 1 of a 2-D weight (a linear layer's input) reads its channels; every other axis writes them.
    """
    out = {}
    for key, tensor in state.items():
        for axis, kind in enumerate(axis_kinds(key, tensor)):
            if kind is None:
                continue
            reads = tensor.ndim == 2 and axis == 1
            tensor = maps[kind].read(tensor, axis) if reads else maps[kind].write(tensor, axis)
        out[key] = tensor
    return out


def check_partial(partial: str) -> None:
    if partial not in PARTIAL_RULES:
        raise LearngeneError(f"unknown partial rule {partial!r}: use one of {', '.join(PARTIAL_RULES)}")


def mlp_units(width: int, mlp_ratio: float) -> int | None:
    """The MLP hidden units of a ViT of ``width`` at ``mlp_ratio``, or None when ``width * mlp_ratio`` is not a
    positive whole number (timm would build ``int()`` of it, which no other width's rule agrees with).

    The one rule for narrowing, growth, elastic training and :func:`plan_width`; timm rebuilds the units from
    ``mlp_ratio = units / width`` (:meth:`WidthPlan.model_args`).
    """
    units = round(width * mlp_ratio)
    if units < 1 or abs(width * mlp_ratio - units) > 1e-6 or int(width * (units / width)) != units:
        return None
    return units


def nearest_widths(width, head_dim: int, usable: Callable[[int], bool]) -> str:
    """The usable multiples of ``head_dim`` nearest below and above ``width``, for an error message ("16 or 24")."""
    if not isinstance(width, (int, float)) or isinstance(width, bool):
        return f"a multiple of {head_dim}"
    start = max(int(width) // head_dim, 0) * head_dim
    below = next((w for w in range(start, 0, -head_dim) if usable(w)), None)
    above = next((w for w in range(start + head_dim, start + 64 * head_dim, head_dim) if usable(w)), None)
    return " or ".join(str(w) for w in (below, above) if w) or f"a multiple of {head_dim}"


def check_target(source: ViTWidth, width: int, mlp_hidden: int | None,
                 usable: Callable[[int], bool] = lambda width: True) -> tuple[int, int]:
    """The target's number of heads (head dim kept) and MLP hidden units (default: the source's MLP ratio).

    ``usable``: which multiples of the head dim a refusal suggests (a learngene: trained or wider widths).
    """
    head_dim = source.head_dim
    if not isinstance(width, int) or isinstance(width, bool) or width < 1 or width % head_dim:
        raise LearngeneError(f"width {width!r} is not a positive multiple of the head dim {head_dim}: "
                             f"use {nearest_widths(width, head_dim, usable)}")
    if mlp_hidden is None:
        mlp_hidden = mlp_units(width, source.mlp_hidden / source.embed_dim)
        if mlp_hidden is None:
            raise LearngeneError(f"width {width} at the MLP ratio {source.mlp_hidden}/{source.embed_dim} is not a "
                                 "whole number of MLP units: give mlp_hidden")
    if mlp_hidden < 1:
        raise LearngeneError(f"mlp_hidden={mlp_hidden} must be >= 1")
    return width // head_dim, mlp_hidden


def narrow_width(state: dict[str, torch.Tensor], num_heads: int, width: int,
                 mlp_hidden: int | None = None) -> dict[str, torch.Tensor]:
    """The leading ``width`` channels, ``width / head_dim`` heads and ``mlp_hidden`` MLP units of ``state``.

    ``num_heads`` is the state's own number of heads; ``mlp_hidden`` defaults to the same MLP ratio. The
    slices are views chained by ``index_select``, so gradients flow back to ``state`` (elastic training).
    """
    source = state_width(state, num_heads)
    heads, mlp_hidden = check_target(source, width, mlp_hidden)
    if width > source.embed_dim or mlp_hidden > source.mlp_hidden:
        raise LearngeneError(f"cannot narrow width {source.embed_dim} (MLP {source.mlp_hidden}) to {width} "
                             f"(MLP {mlp_hidden}): use grow_width for a wider net")
    device = state["pos_embed"].device  # index tensors where the state is (elastic training on a GPU)
    qkv, attn = head_maps(torch.arange(heads, device=device), num_heads, source.head_dim)
    maps = {EMBED: ChannelMap(torch.arange(width, device=device), source.embed_dim), QKV: qkv, ATTN: attn,
            HIDDEN: ChannelMap(torch.arange(mlp_hidden, device=device), source.mlp_hidden)}
    return remap(state, maps)


def orthogonal_embedding(old: int, new: int) -> torch.Tensor:
    """The isometry ``U`` (new x old, float64) closest to repeating channel ``j % old`` that maps ones to ones.

    ``U = f e^T + polar(P_f S P_e)`` with ``e``, ``f`` the unit all-ones vectors and ``S`` the repetition
    scaled to unit columns; at integer ratios it is ``S`` itself.
    """
    source = torch.arange(new) % old
    copies = torch.bincount(source, minlength=old).double()
    repeat = torch.zeros(new, old, dtype=torch.float64)
    repeat[torch.arange(new), source] = copies[source].rsqrt()
    e = torch.full((old, 1), old ** -0.5, dtype=torch.float64)
    f = torch.full((new, 1), new ** -0.5, dtype=torch.float64)
    projected = repeat - f @ (f.T @ repeat)
    centered = projected - projected @ e @ e.T
    left, values, right_t = torch.linalg.svd(centered, full_matrices=False)
    if old > 1 and values[old - 2] < 1e-6:
        raise LearngeneError(f"no orthogonal embedding from width {old} to {new}: use partial='duplicate'")
    return f @ e.T + left[:, :old - 1] @ right_t[:old - 1]


def is_norm(key: str) -> bool:
    return parameter_name(key).rpartition(".")[0] in NORM_READERS


def neutral_norm(tensor: torch.Tensor, key: str) -> torch.Tensor:
    """Weight 1 or bias 0: a LayerNorm whose affine part was folded into its reader."""
    return torch.ones_like(tensor) if key.endswith(".weight") else torch.zeros_like(tensor)


def fold_norms(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """The same function with every LayerNorm's weight and bias moved into the linear layer reading it, and the
    norms folded (``blocks.0.norm1``, ...). Without its head a Des-Net's ``fc_norm`` has no reader and stays."""
    out, folded = dict(state), []
    for key in state:
        name = parameter_name(key)
        norm, _, field = name.rpartition(".")
        if norm not in NORM_READERS or field != "weight":
            continue
        prefix = key[:len(key) - len(name)]
        reader = prefix + NORM_READERS[norm]
        weight, bias = state[f"{prefix}{norm}.weight"], state[f"{prefix}{norm}.bias"]
        if f"{reader}.weight" not in state:  # a Des-Net without its head: nothing reads fc_norm here
            continue
        if f"{reader}.bias" not in state:
            raise LearngeneError(f"cannot grow to a non-integer multiple of the width: {prefix}{norm}'s bias would "
                                 f"move into {reader}, which has none (qkv_bias=False); grow to a whole multiple")
        out[f"{reader}.bias"] = state[f"{reader}.bias"] + state[f"{reader}.weight"] @ bias
        out[f"{reader}.weight"] = state[f"{reader}.weight"] * weight
        out[f"{prefix}{norm}.weight"] = torch.ones_like(weight)
        out[f"{prefix}{norm}.bias"] = torch.zeros_like(bias)
        folded.append(prefix + norm)
    return out, folded


def grow_width(state: dict[str, torch.Tensor], num_heads: int, width: int, mlp_hidden: int | None = None,
               partial: str = "orthogonal", noise_std: float = 0.0, seed: int = 0) -> dict[str, torch.Tensor]:
    """A wider ``state`` computing the same function (see the module docstring for the rule).

    ``num_heads`` is the state's own; the head dim is kept, so the result has ``width / head_dim`` heads.
    ``mlp_hidden`` defaults to the same MLP ratio. ``partial`` picks the rule for a non-integer embedding
    ratio; ``noise_std`` > 0 adds function-preserving symmetry-breaking noise (reproducible per ``seed``).
    A LayerNorm that nothing reads (``fc_norm`` of a Des-Net without its head) keeps its weight and bias
    copied (new channel ``j`` from ``j % n``) at every ratio; see :func:`reset_norms` for the others.
    """
    check_partial(partial)
    if noise_std < 0:
        raise LearngeneError(f"noise_std={noise_std} must be >= 0")
    source = state_width(state, num_heads)
    heads, mlp_hidden = check_target(source, width, mlp_hidden)
    if width < source.embed_dim or mlp_hidden < source.mlp_hidden:
        raise LearngeneError(f"cannot grow width {source.embed_dim} (MLP {source.mlp_hidden}) to {width} "
                             f"(MLP {mlp_hidden}): use narrow_width for a narrower net")
    embed = ChannelMap(torch.arange(width) % source.embed_dim, source.embed_dim)
    folded = []
    if folds_norms(width, source.embed_dim, partial):
        original, (state, folded) = state, fold_norms(state)
        embed.mix = orthogonal_embedding(source.embed_dim, width)
        embed.scale = math.sqrt(width / source.embed_dim)
    qkv, attn = head_maps(torch.arange(heads) % num_heads, num_heads, source.head_dim)
    maps = {EMBED: embed, QKV: qkv, ATTN: attn,
            HIDDEN: ChannelMap(torch.arange(mlp_hidden) % source.mlp_hidden, source.mlp_hidden)}
    grown = remap(state, maps)
    if embed.mix is not None:  # folded LayerNorms: weight 1, bias 0; an unread one: copies, as at integer ratios
        copies = ChannelMap(embed.source, embed.old_size)
        grown = {k: (neutral_norm(v, k) if k.rpartition(".")[0] in folded else copies.write(original[k], 0))
                 if is_norm(k) else v for k, v in grown.items()}
    if noise_std:
        grown = add_copy_noise(grown, maps, noise_std, seed)
    return grown


def add_copy_noise(state: dict[str, torch.Tensor], maps: dict[str, ChannelMap], std: float,
                   seed: int) -> dict[str, torch.Tensor]:
    """Noise on the weights reading repeated channels, summing to zero over each channel's copies."""
    generator = torch.Generator().manual_seed(seed)
    out = dict(state)
    for key, tensor in state.items():
        kinds = axis_kinds(key, tensor)
        if tensor.ndim != 2 or kinds[1] is None or maps[kinds[1]].mix is not None:
            continue
        channel = maps[kinds[1]]
        noise = torch.randn(tensor.shape, generator=generator, dtype=torch.float64) * std
        groups = torch.zeros(channel.source.numel(), channel.old_size, dtype=torch.float64)
        groups[torch.arange(channel.source.numel()), channel.source] = 1.0
        group_mean = (noise @ groups) / channel.copies().double()
        out[key] = tensor + (noise - group_mean @ groups.T).to(tensor)
    return out


@dataclasses.dataclass
class WidthPlan:
    """How a Des-Net's width is made from a learngene's: plain data, JSON-serializable (``init.json``'s ``width``)."""

    width: int
    num_heads: int
    mlp_hidden: int
    source_width: int
    source_heads: int
    source_mlp_hidden: int
    embedding: str  # narrow | grow | keep
    mlp: str  # narrow | grow | keep
    trained_widths: list[int]  # the widths the learngene was trained at (elastic.widths, or its own width)
    # [width, MLP units] of the trained size the learngene is narrowed to before any growth: only sizes it was
    # trained at are used (plan_width refuses the others)
    trained_size: list[int]
    partial: str = "orthogonal"  # growth rule for a non-integer embedding ratio
    noise_std: float = 0.0
    seed: int = 0
    # LayerNorms left at weight 1, bias 0, their affine folded into the layer reading them (reset_norms)
    norms_reset: list[str] = dataclasses.field(default_factory=list)

    @property
    def mlp_ratio(self) -> float:
        return self.mlp_hidden / self.width

    def model_args(self) -> dict:
        """The timm VisionTransformer arguments of this width."""
        return dict(embed_dim=self.width, num_heads=self.num_heads, mlp_ratio=self.mlp_ratio)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "WidthPlan":
        return cls(**data)


def direction(new: int, old: int) -> str:
    return "narrow" if new < old else "grow" if new > old else "keep"


def folds_norms(width: int, grown_from: int, partial: str) -> bool:
    """Whether growing from ``grown_from`` to ``width`` folds the LayerNorms' affine into their readers: a
    non-integer ratio with the orthogonal rule (:func:`fold_norms`)."""
    return width > grown_from and width % grown_from != 0 and partial == "orthogonal"


def reset_norms(width: int, grown_from: int, partial: str, include_head: bool) -> list[str]:
    """The LayerNorms :func:`grow_width` from ``grown_from`` to ``width`` leaves at weight 1, bias 0.

    A non-integer ratio with the orthogonal rule folds every LayerNorm's affine into the layer reading it:
    norm1 into qkv, norm2 into fc1, and fc_norm into the head when the head is kept (logits exact). Without
    the head fc_norm keeps its weight and bias, copied. Integer ratios and narrowing reset nothing.
    """
    if not folds_norms(width, grown_from, partial):
        return []
    return [norm for norm, reader in NORM_READERS.items() if include_head or reader != "head"]


def plan_width(learngene, width: int | None = None, num_heads: int | None = None, mlp_ratio: float | None = None,
               partial: str = "orthogonal", noise_std: float = 0.0, seed: int = 0,
               include_head: bool = True) -> WidthPlan:
    """Decide narrowing, growth or neither for a Des-Net of ``width`` from a loaded ``Learngene``.

    The head dim is the learngene's: ``num_heads`` defaults to ``width / head_dim`` and must equal it;
    ``mlp_ratio`` defaults to the learngene's. One rule for every size: the Des-Net starts from a size the
    learngene was trained at (a width of ``elastic.widths`` with its MLP units, or a plain learngene's own
    size) and only grows from there, which keeps the function. A narrower width, or fewer MLP units, that
    it was never trained at (a plain learngene's prefixes, an elastic one's widths between or below its
    trained widths, an MLP ratio below the learngene's) is refused: those prefixes are untrained weights.
    ``include_head``: whether the Des-Net keeps the learngene's head (it decides ``norms_reset``).
    """
    source = state_width(learngene.state_dict, learngene.model_args["num_heads"])
    source_width, source_heads, source_hidden = source.embed_dim, source.num_heads, source.mlp_hidden
    width = source_width if width is None else width
    trained = sorted((learngene.extra.get("elastic") or {}).get("widths") or [source_width])
    check_target(source, width, source_hidden,
                 usable=lambda w: w in trained or (w > source_width and source_width in trained))
    head_dim = source.head_dim
    if num_heads is not None and (num_heads < 1 or width % num_heads):
        raise LearngeneError(f"--num-heads {num_heads} does not divide the width {width}: use {width // head_dim}")
    if num_heads is not None and width // num_heads != head_dim:
        raise LearngeneError(f"--num-heads {num_heads} gives {width // num_heads}-dim heads but the learngene's are "
                             f"{head_dim}-dim: use --num-heads {width // head_dim} (or leave it out)")
    if mlp_ratio is not None and not (math.isfinite(mlp_ratio) and mlp_ratio > 0):
        raise LearngeneError(f"--mlp-ratio {mlp_ratio} is not a finite positive number: give e.g. --mlp-ratio 4, or "
                             "leave it out for the learngene's")
    ratio = source_hidden / source_width if mlp_ratio is None else mlp_ratio
    mlp_hidden = mlp_units(width, ratio)
    if mlp_hidden is None:
        raise LearngeneError(f"--mlp-ratio {ratio} times width {width} is not a whole number of MLP units: "
                             f"pick a ratio R with {width} * R a positive integer")
    elastic = "elastic" in learngene.extra
    kind = "elastic learngene" if elastic else "learngene (not elastic)"
    start_width = min(width, source_width)
    if start_width not in trained:
        raise LearngeneError(f"width {width} was never trained in this {kind}: its leading channels are untrained; "
                             f"use one of its trained widths {trained} or a wider one (growth keeps the function), "
                             f"train an Aux-Net with elastic.widths including {width}, or expand a Des-Net at the "
                             "learngene's width and select from it (tools/expand.py DES --method weight-selection "
                             "--model-args ...)")
    start_hidden = mlp_units(start_width, source_hidden / source_width)
    if start_hidden is None:  # an elastic learngene written before check_elastic refused such widths
        raise LearngeneError(f"width {start_width} has no whole number of MLP units at this {kind}'s MLP ratio "
                             f"{source_hidden}/{source_width}: use one of its trained widths {trained} that has")
    if mlp_hidden < start_hidden:
        raise LearngeneError(f"--mlp-ratio {ratio:g} gives {mlp_hidden} MLP units, fewer than the {start_hidden} this "
                             f"{kind} was trained with at width {start_width}: the leading units alone were never "
                             f"trained; leave --mlp-ratio out or give at least {start_hidden} units (growth keeps "
                             "the function)")
    check_partial(partial)
    return WidthPlan(width, width // head_dim, mlp_hidden, source_width, source_heads, source_hidden,
                     direction(width, source_width), direction(mlp_hidden, source_hidden), trained,
                     [start_width, start_hidden], partial, noise_std, seed,
                     reset_norms(width, start_width, partial, include_head))


def apply_width_plan(state: dict[str, torch.Tensor], plan: WidthPlan) -> dict[str, torch.Tensor]:
    """``state`` (at the plan's source width) narrowed to the plan's trained size, then grown to its width."""
    start_width, start_hidden = plan.trained_size
    if (start_width, start_hidden) != (plan.source_width, plan.source_mlp_hidden):
        state = narrow_width(state, plan.source_heads, start_width, start_hidden)
    if (start_width, start_hidden) == (plan.width, plan.mlp_hidden):
        return state
    heads = start_width // (plan.source_width // plan.source_heads)
    return grow_width(state, heads, plan.width, plan.mlp_hidden, plan.partial, plan.noise_std, plan.seed)

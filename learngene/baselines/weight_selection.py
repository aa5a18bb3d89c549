"""Weight selection (IMwLM, Xu et al., ICLR 2024): initialize a model from a larger one of its family.

Three steps, all on state dicts:

1. **Layer selection** maps each child layer to a parent layer within the same layer group: ViT
   ``blocks.i``, ConvNeXt ``stages.s.blocks.i`` (per stage), ResNet ``layerK.i``. ``first`` (default,
   the paper's first-N), ``uniform`` (evenly spaced, by the same index rule as elements), ``last``, ``mid``.
2. **Component mapping** is by name: the child tensor ``blocks.2.mlp.fc1.weight`` comes from the parent
   tensor of the same name in the selected layer.
3. **Element selection** picks, on every axis, ``n_child`` of the parent's ``n_parent`` slices:

   * ``uniform``: the authors' released rule (after their PR #8): stride ``n_parent // n_child`` when it
     divides, else ``round(linspace(0, n_parent - 1, n_child))``.
   * ``consecutive``: the first ``n_child`` slices.
   * ``random`` (with consistency): a sorted random subset, one per *logical dimension*. We identify a
     logical dimension by its size pair ``(n_parent, n_child)``: every axis that is truly the same
     dimension (e.g. the embedding axis of patch embed, pos embed, norms, qkv input, proj output, fc1
     input, fc2 output) has the same pair, so it gets the same index set, exactly as the deterministic
     rules above (which also depend on the sizes only). Unrelated dimensions of equal sizes share a set
     too, which is harmless.
   * ``random-inconsistent``: a fresh random subset for every axis of every tensor (the paper's ablation).

   Keys containing ``"head"`` keep the child's own values, as in the released code (this includes
   ConvNeXt's ``head.norm``): such a child is at chance before any training. ``select_head=True`` selects
   them like every other layer instead, for a parent with the child's classes (every class is kept), so that
   a selected child can be compared with other initializers before training.

Fused attention (``attn.qkv`` weight and bias, ``attn.proj.weight``) is selected **per q/k/v part** by
every rule except ``uniform``: one index set of the parent's embedding width picks the child's q, k and
v rows alike (row ``part * D_p + i``), and ``attn.proj``'s input axis takes the same set as v, so each
child dimension keeps a matching query, key, value and output column. Taking the first or a random
``3 * D_c`` of the fused ``3 * D_p`` rows would instead give the child keys made of parent queries, or
pair unrelated q and k dimensions. Under ``random-inconsistent`` the set is drawn afresh per tensor (q,
k and v still share it within ``attn.qkv``). ``uniform`` keeps the released rule on the fused axis, bit
for bit, unless ``head_aware``.

``head_aware=True`` also keeps heads whole (for every rule, ``uniform`` included): child heads are
chosen among the parent heads and head dims within every head (both by the element rule), and each
child head's q, k and v rows come from one parent head with the same head dims; ``attn.proj``'s input
axis uses the same heads and dims. The released ``uniform`` rule treats qkv as one axis, mixing heads
and, with non-divisible widths, q/k/v boundaries.
"""
from __future__ import annotations

import torch

from learngene.errors import LearngeneError
from learngene.expand.state_dict import LAYER_KEY, layer_counts
from learngene.expand.width import fused_qkv_rows

LAYER_SELECTIONS = ("first", "uniform", "last", "mid")
ELEMENT_SELECTIONS = ("uniform", "consecutive", "random", "random-inconsistent")

QKV_SUFFIXES = ("attn.qkv.weight", "attn.qkv.bias")
PROJ_SUFFIX = "attn.proj.weight"


def uniform_indices(n_parent: int, n_child: int) -> torch.Tensor:
    """The released uniform rule: ``arange(n_child) * (n_parent // n_child)`` when it divides, else linspace."""
    if n_parent % n_child == 0:
        return torch.arange(n_child) * (n_parent // n_child)
    return torch.round(torch.linspace(0, n_parent - 1, n_child, dtype=torch.float32)).long()


def check_choice(value: str, choices: tuple[str, ...], what: str) -> str:
    if value not in choices:
        raise LearngeneError(f"unknown {what} {value!r}: use one of {', '.join(choices)}")
    return value


def layer_indices(n_parent: int, n_child: int, layers: str = "first") -> list[int]:
    """Which of ``n_parent`` layers initialize the ``n_child <= n_parent`` layers of a group, in order."""
    check_choice(layers, LAYER_SELECTIONS, "layer selection")
    if layers == "first":
        return list(range(n_child))
    if layers == "last":
        return list(range(n_parent - n_child, n_parent))
    if layers == "mid":
        start = (n_parent - n_child) // 2
        return list(range(start, start + n_child))
    return uniform_indices(n_parent, n_child).tolist()


class ElementIndices:
    """Index sets for element selection: ``indices(n_parent, n_child)`` -> sorted LongTensor of n_child indices."""

    def __init__(self, elements: str = "uniform", seed: int = 0):
        self.elements = check_choice(elements, ELEMENT_SELECTIONS, "element selection")
        self.generator = torch.Generator().manual_seed(seed)
        self.shared: dict[tuple[int, int], torch.Tensor] = {}

    def __call__(self, n_parent: int, n_child: int) -> torch.Tensor:
        if self.elements == "uniform":
            return uniform_indices(n_parent, n_child)
        if self.elements == "consecutive":
            return torch.arange(n_child)
        if self.elements == "random-inconsistent":
            return self.draw(n_parent, n_child)
        if (n_parent, n_child) not in self.shared:  # random with consistency: one set per logical dimension
            self.shared[(n_parent, n_child)] = self.draw(n_parent, n_child)
        return self.shared[(n_parent, n_child)]

    def draw(self, n_parent: int, n_child: int) -> torch.Tensor:
        # Sorted, so kept slices stay in their original order (and n_child == n_parent keeps everything as is).
        return torch.randperm(n_parent, generator=self.generator)[:n_child].sort().values


def select_weights(parent_state: dict[str, torch.Tensor], child_state: dict[str, torch.Tensor],
                   layers: str = "first", elements: str = "uniform", seed: int = 0, head_aware: bool = False,
                   num_heads: tuple[int, int] | None = None, select_head: bool = False) -> dict[str, torch.Tensor]:
    """A state dict with exactly ``child_state``'s keys and shapes, selected from ``parent_state``.

    ``num_heads = (parent_heads, child_heads)`` is required with ``head_aware=True`` (a state dict does not
    record how its attention is split into heads). ``select_head``: select the classifier too (same classes).
    """
    check_choice(layers, LAYER_SELECTIONS, "layer selection")
    indices = ElementIndices(elements, seed)
    parent_counts = layer_counts(parent_state)
    layer_map = {}
    for group, n_child in layer_counts(child_state).items():
        if group not in parent_counts:
            raise LearngeneError(f"parent has no {group}.* layers: weight selection needs a parent of the child's "
                                 "family (e.g. vit_small for vit_tiny)")
        if n_child > parent_counts[group]:
            raise LearngeneError(f"child has {n_child} layers in {group} but the parent only {parent_counts[group]}: "
                                 "weight selection cannot deepen a model; use a parent at least as deep")
        layer_map[group] = layer_indices(parent_counts[group], n_child, layers)
    if head_aware and not any(key.endswith(QKV_SUFFIXES[0]) for key in child_state):
        raise LearngeneError("head_aware=True needs fused attn.qkv tensors (a timm ViT): drop it for this model")

    if select_head:
        for key, child in child_state.items():
            parent = parent_state.get(key)
            if "head" in key and child.dim() == 2 and parent is not None and parent.shape[0] != child.shape[0]:
                raise LearngeneError(f"select_head needs a parent with the child's classes: {key} has "
                                     f"{parent.shape[0]} in the parent, {child.shape[0]} in the child; drop "
                                     "select_head to keep the child's own head")

    selected = {}
    for key, child in child_state.items():
        if "head" in key and not select_head:  # the released rule: classifier keys keep the child's own init
            selected[key] = child.clone()
            continue
        parent_key = key
        match = LAYER_KEY.match(key)
        if match:
            group = match.group(1)
            parent_key = f"{group}.{layer_map[group][int(match.group(2))]}.{key[match.end():]}"
        parent = parent_state.get(parent_key)
        fits = parent is not None and parent.dim() == child.dim() and all(
            c <= p for p, c in zip(parent.shape, child.shape))
        if not fits and parent_key != key and key in parent_state:
            raise LearngeneError(f"layer selection {layers!r} maps {key} to {parent_key}, which does not fit it (a "
                                 "ResNet stage's first block differs from the others): use layers='first'")
        if parent is None or parent.dim() != child.dim():
            raise LearngeneError(f"parent has no tensor {parent_key} shaped like the child's {key} "
                                 f"{tuple(child.shape)}: weight selection needs a parent of the child's family")
        if any(c > p for p, c in zip(parent.shape, child.shape)):
            raise LearngeneError(f"child tensor {key} {tuple(child.shape)} is wider than the parent's "
                                 f"{tuple(parent.shape)}: weight selection only makes models narrower")
        if key.endswith((*QKV_SUFFIXES, PROJ_SUFFIX)) and (head_aware or elements != "uniform"):
            # per q/k/v part; without head_aware the width counts as one head, so only parts are kept apart
            axes = attention_axes(key, parent.shape, child.shape, indices, num_heads if head_aware else (1, 1))
        else:
            axes = [indices(p, c) for p, c in zip(parent.shape, child.shape)]
        out = parent
        for axis, axis_indices in enumerate(axes):
            out = out.index_select(axis, axis_indices)
        selected[key] = out.to(child.dtype).clone()
    return selected


def pooled_layout(parent_state: dict[str, torch.Tensor], prefix_positions: int) -> dict[str, torch.Tensor]:
    """A class-token ViT's state dict in the layout of a pooled timm ViT (no class token, the mean of the patch
    tokens, then ``fc_norm``), to select a pooled child from, e.g. an SWS Des-B from timm's ViT-L.

    The class and register tokens go, and so do the ``prefix_positions`` leading rows of ``pos_embed`` (the class
    token's position; 0 for a ViT whose prefix tokens get none); the final ``norm``, the last LayerNorm before the
    head, becomes ``fc_norm``, which holds that place in a pooled ViT.
    """
    state = {k: v for k, v in parent_state.items() if k not in ("cls_token", "reg_token") and not k.startswith("norm.")}
    if "pos_embed" in state:
        state["pos_embed"] = parent_state["pos_embed"][:, prefix_positions:]
    state.update({f"fc_norm.{k[len('norm.'):]}": v for k, v in parent_state.items() if k.startswith("norm.")})
    return state


def attention_axes(key: str, parent_shape, child_shape, indices: ElementIndices,
                   num_heads: tuple[int, int] | None) -> list[torch.Tensor]:
    """Per-axis indices for fused ``attn.qkv`` (weight, bias) and ``attn.proj.weight``: one set of rows per
    q/k/v part (proj's input axis: the same set), keeping ``num_heads = (parent_heads, child_heads)`` whole."""
    if num_heads is None:
        raise LearngeneError("head_aware=True needs num_heads=(parent_heads, child_heads)")
    parent_heads, child_heads = num_heads
    is_proj = key.endswith(PROJ_SUFFIX)
    # The embedding width: proj's input axis, or a third of qkv's output axis.
    axis, parts = (1, 1) if is_proj else (0, 3)
    parent_dim, child_dim = parent_shape[axis] // parts, child_shape[axis] // parts
    if parent_dim % parent_heads or child_dim % child_heads or child_heads > parent_heads:
        raise LearngeneError(f"cannot split widths {parent_dim}->{child_dim} into {parent_heads}->{child_heads} heads: "
                             "give the models' real num_heads, the child with no more heads than the parent")
    parent_head_dim, child_head_dim = parent_dim // parent_heads, child_dim // child_heads
    if child_head_dim > parent_head_dim:
        raise LearngeneError(f"child head dim {child_head_dim} exceeds the parent's {parent_head_dim}: "
                             "head-aware selection needs child heads no wider than the parent's")
    heads = indices(parent_heads, child_heads)
    qkv_rows, proj_columns = fused_qkv_rows(heads, indices(parent_head_dim, child_head_dim), parent_heads,
                                            parent_head_dim)
    embed = indices(parent_dim, child_dim)
    if is_proj:
        return [embed, proj_columns]
    return [qkv_rows, embed] if key.endswith("weight") else [qkv_rows]

"""Initialize a timm ViT from any larger one, or a Des-Net from a learngene, and record where every tensor came from.

:func:`initialize` takes a source and a target:

* source: a timm model name (created with ``pretrained=True``: timm downloads or reads its cache), an ``hf-hub:``
  id timm loads, a local model folder (``config.json`` + weights, e.g. timm's ``save_pretrained`` layout or
  ``learngene.checkpoint.save_model_folder``'s; a shared folder is checked against its card), or, for ``sws``
  and ``tleg``, a learngene file (or its shared folder or hub id);
* target: a timm model name plus constructor arguments (``num_classes``, ``img_size``, ``embed_dim``, ...);
  for ``sws``/``tleg`` the learngene's Des-Net, with ``depth``, ``num_classes`` and ``img_size``.

Methods: ``weight-selection`` (IMwLM, the released rule: uniform elements, first-N layers, the head left at
the target's init) and ``front`` (the released FRONT script's defaults) from a ViT, through the same state-dict
functions as ``learngene.methods``; ``sws`` and ``tleg`` from a learngene, through ``learngene.methods``'s own
initializers. Where the target's patch grid differs from the source's, ``pos_embed`` is first resampled to it
the timm way (``VisionTransformer.set_input_size``, i.e. ``timm.layers.resample_abs_pos_embed``, bicubic): the
source's before selection or FRONT, the Des-Net's after SWS or TLEG.

The record (``init.json``) has one entry per target tensor: ``copied``, ``selected`` or ``transformed`` (from
which source tensors, of which shapes), ``interpolated`` (pos_embed on another grid, then selected or
transformed), or ``fresh`` (the target's own timm init, and why). A classifier of another class count is fresh
by design (weight selection's released rule leaves it fresh always). Any other tensor the method should fill
but cannot (the source has no such tensor, e.g. LayerScale gammas of a target with ``init_values``) is an
error unless ``allow_fresh`` names it (``fnmatch`` patterns, e.g. ``blocks.*.ls?.gamma``).
"""
from __future__ import annotations

import dataclasses
import fnmatch
from pathlib import Path

import timm
import torch
from timm.data import resolve_data_config
from timm.models import VisionTransformer
from torch import nn

from learngene.baselines.front import SKIP_GROUPS, front_transfer, tensor_groups
from learngene.baselines.weight_selection import layer_indices, select_weights
from learngene.checkpoint import PREPROCESSING_KEYS, load_learngene
from learngene.errors import LearngeneError, first_line
from learngene.expand.state_dict import LAYER_KEY, layer_counts
from learngene.hub import HUB_PREFIX, resolve_source
from learngene.methods import METHODS, attention_heads, count_parameters, fresh_model, parent_state_for, \
    read_model_folder

VIT_METHODS = ("weight-selection", "front")
LEARNGENE_METHODS = ("sws", "tleg")
INIT_METHODS = VIT_METHODS + LEARNGENE_METHODS
HEAD_PREFIX = "head."


@dataclasses.dataclass
class Initialized:
    """The initialized target model, what rebuilds it (``timm.create_model(architecture, **model_args)``), the
    preprocessing its source was trained with (None if unknown) and the record written as ``init.json``."""

    model: nn.Module
    architecture: str
    model_args: dict
    preprocessing: dict | None
    record: dict


def load_vit_source(source: str) -> tuple[nn.Module, dict | None]:
    """A source ViT (eval mode) and the preprocessing its weights expect (None where the folder records none)."""
    import learngene.models  # noqa: F401  (a folder may name an architecture registered there)

    if Path(source).exists():
        folder = resolve_source(source)
        if not Path(folder).is_dir():
            raise LearngeneError(f"source {source} is a file: pass a model folder, a timm model name or an hf-hub: id "
                                 "(learngene files are sources of --method sws and tleg)")
        model, _, _, preprocessing = read_model_folder(folder)
    elif source.startswith(HUB_PREFIX) or timm.is_model(source):
        try:
            model = timm.create_model(source, pretrained=True)
        except Exception as e:  # noqa: BLE001  offline, no such repository, no weights for that tag: one line each
            raise LearngeneError(f"cannot load pretrained {source} ({type(e).__name__}: {first_line(e)}): check the "
                                 "name and the network (HF_HUB_OFFLINE=1 reads only the local cache), or pass a "
                                 "local model folder") from None
        data_config = resolve_data_config({}, model=model)
        preprocessing = {key: data_config[key] for key in PREPROCESSING_KEYS if key in data_config}
    else:
        raise LearngeneError(f"source {source!r} is neither an existing folder, an hf-hub: id nor a timm model name: "
                             "check the spelling (timm.list_models lists the names)")
    if not isinstance(model, VisionTransformer):
        raise LearngeneError(f"source {source} is a {type(model).__name__}, not a timm VisionTransformer: "
                             "weight selection and FRONT here initialize ViTs from ViTs")
    return model.eval(), preprocessing


def create_target(target: str, target_args: dict, seed: int) -> nn.Module:
    """The target with timm's default init under ``seed`` (``learngene.methods.fresh_model``), in this tool's terms
    when timm refuses it."""
    if not timm.is_model(target):
        raise LearngeneError(f"unknown timm model {target!r}: give a name timm.list_models() lists, e.g. "
                             "vit_tiny_patch16_224")
    try:
        return fresh_model(target, target_args, seed)
    except LearngeneError as e:  # its advice names tools/expand.py's flags; timm's own reason is its context
        raise LearngeneError(f"timm cannot create {target} with {target_args} ({first_line(e.__context__)}): give "
                             "key=value arguments it accepts (num_heads must divide embed_dim)") from None


def patch_grid(model: VisionTransformer, what: str) -> tuple[int, int]:
    """The model's patch grid; an image size the patches do not tile exactly is refused."""
    img, patch = model.patch_embed.img_size, model.patch_embed.patch_size
    if any(i % p for i, p in zip(img, patch)):
        raise LearngeneError(f"{what} img_size {list(img)} is not a multiple of its patch size {list(patch)}, so "
                             f"no patch grid reaches it: use a multiple, e.g. img_size={img[0] // patch[0] * patch[0]}")
    return tuple(model.patch_embed.grid_size)


def match_grid(model: VisionTransformer, grid: tuple[int, int]) -> dict | None:
    """Resample ``model``'s pos_embed to ``grid`` the timm way; what changed (None if nothing did)."""
    old_grid = tuple(model.patch_embed.grid_size)
    if old_grid == tuple(grid):
        return None
    patch = model.patch_embed.patch_size
    model.set_input_size(img_size=(grid[0] * patch[0], grid[1] * patch[1]))
    return dict(from_grid=list(old_grid), to_grid=list(grid), resampled_shape=list(model.pos_embed.shape),
                how="timm.layers.resample_abs_pos_embed, bicubic")


def entry(kind: str, shape, **details) -> dict:
    return dict(kind=kind, shape=list(shape), **details)


def fresh_reason(key: str, method: str, source_classes: int | None, target_classes: int) -> str | None:
    """Why a classifier tensor stays at the target's init by design; None for any other tensor."""
    if not key.startswith(HEAD_PREFIX):
        return None
    if source_classes != target_classes:
        return f"new classifier: num_classes {target_classes} differs from the source's {source_classes}"
    if method == "weight-selection":
        return "weight selection's released rule leaves the classifier at the target's init"
    return None


def check_fresh(fresh: list[str], allow_fresh) -> None:
    refused = [key for key in fresh if not any(fnmatch.fnmatchcase(key, pattern) for pattern in allow_fresh)]
    if refused:
        more = f" and {len(refused) - 3} more" if len(refused) > 3 else ""
        raise LearngeneError(f"the source has nothing to initialize {', '.join(refused[:3])}{more} from: pick a source "
                             f"of the target's family, or leave them at the target's init by name with "
                             f"--allow-fresh {refused[0]} (patterns like 'blocks.*.ls1.gamma' work)")


def from_vit(source: str, method: str, target: str, target_args: dict, allow_fresh, seed: int,
             options: dict) -> Initialized:
    parent, preprocessing = load_vit_source(source)
    child = create_target(target, target_args, seed)
    if not isinstance(child, VisionTransformer):
        raise LearngeneError(f"target {target} is a {type(child).__name__}, not a timm VisionTransformer")
    grid = patch_grid(child, f"target {target}")
    source_shapes = {key: list(value.shape) for key, value in parent.state_dict().items()}
    interpolated = match_grid(parent, grid)
    parent_state, child_state = parent_state_for(parent, child), child.state_dict()
    classes = (parent.num_classes, child.num_classes)
    # parent_state_for gives a class-token source a pooled target's layout: its final norm is the target's fc_norm
    pooled = parent_state.keys() != parent.state_dict().keys()

    def source_name(name: str) -> str:
        return f"norm.{name[len('fc_norm.'):]}" if pooled and name.startswith("fc_norm.") else name

    if method == "weight-selection":
        parent_layers = layer_counts(parent_state)
        for group, n in layer_counts(child_state).items():
            if n > parent_layers.get(group, 0):
                raise LearngeneError(f"target {target} has {n} {group} layers, the source {source} "
                                     f"{parent_layers.get(group, 0)}: weight selection cannot deepen a model; use a "
                                     "source at least as deep, or front")
        layer_maps = {group: layer_indices(parent_layers[group], n, options.get("layers", "first"))
                      for group, n in layer_counts(child_state).items()}

        def sources_of(key: str) -> list[str]:
            match = LAYER_KEY.match(key)
            return [f"{match[1]}.{layer_maps[match[1]][int(match[2])]}.{key[match.end():]}" if match else key]
    else:
        parent_groups = tensor_groups(parent_state)
        group_of = {key: group for group, keys in tensor_groups(child_state).items() for key in keys}
        skipped = [pattern for name, pattern in SKIP_GROUPS.items() if name in options.get("skip", ())]

        def sources_of(key: str) -> list[str]:
            return parent_groups.get(group_of[key], [])

    tensors, by_design, missing = {}, {}, []
    for key, value in child_state.items():
        reason = fresh_reason(key, method, *classes)
        if method == "front" and any(pattern in key for pattern in skipped):
            reason = "a FRONT skip group (--skip): the target's init, as asked"
        if reason:
            by_design[key] = entry("fresh", value.shape, reason=reason)
        elif not sources_of(key) or any(name not in parent_state for name in sources_of(key)):
            missing.append(key)
    check_fresh(missing, allow_fresh)
    fillable = {k: v for k, v in child_state.items() if k not in missing}
    if method == "weight-selection":
        heads = (attention_heads(parent), attention_heads(child)) if options.get("head_aware") else None
        state = select_weights(parent_state, fillable, options.get("layers", "first"),
                               options.get("elements", "uniform"), seed, bool(heads), heads)
        state.update({k: child_state[k] for k in missing})
    else:
        state = front_transfer(parent_state, child_state, seed=seed, **options)
    for key, value in child_state.items():
        if key in by_design:
            tensors[key] = by_design[key]
        elif key in missing:
            tensors[key] = entry("fresh", value.shape,
                                 reason="the source has no such tensor (allowed by --allow-fresh)")
        else:
            kind = "transformed" if method == "front" else (
                "copied" if parent_state[sources_of(key)[0]].shape == value.shape else "selected")
            names = [source_name(name) for name in sources_of(key)]
            details = dict(source=names if method == "front" else names[0], source_shape=source_shapes[names[0]])
            if key == "pos_embed" and pooled:
                details["note"] = "the class token's position dropped (the target has no class token)"
            if key == "pos_embed" and interpolated:
                details.update(interpolated, then=kind)
                kind = "interpolated"
            tensors[key] = entry(kind, value.shape, **details)
    child.load_state_dict(state)
    record = dict(method=method, source=source, target=target, target_args=target_args, seed=seed, options=options,
                  allow_fresh=list(allow_fresh), parameters_stored=count_parameters(parent.parameters()),
                  tensors=tensors)
    if preprocessing is not None:
        preprocessing = {**preprocessing, "input_size": [3, *child.patch_embed.img_size]}
    return Initialized(child, target, target_args, preprocessing, record)


def from_learngene(source: str, method: str, target: str | None, target_args: dict, allow_fresh, seed: int,
                   options: dict) -> Initialized:
    unknown = sorted(set(target_args) - {"depth", "num_classes", "img_size"})
    if unknown or "depth" not in target_args:
        raise LearngeneError(f"{method} builds the learngene's own Des-Net: give depth=D (and optionally num_classes, "
                             f"img_size){f', not {unknown}' if unknown else ''}")
    init = METHODS[method](source, target_args["depth"], num_classes=target_args.get("num_classes"), seed=seed,
                           **options)
    if target not in (None, init.architecture):
        raise LearngeneError(f"{source}'s Des-Nets are {init.architecture}, not {target}: drop the target name or "
                             f"use weight-selection or front from a ViT for another architecture")
    learngene = load_learngene(resolve_source(source))
    des = init.build()
    model_args = {**init.model_args, **target_args}
    interpolated = None
    if "img_size" in target_args:
        interpolated = match_grid(des, patch_grid(create_target(init.architecture, model_args, seed), "target"))
    layer_sources = init.plan.layer_sources if init.plan else None
    tensors = {}
    for key, value in des.state_dict().items():
        match = LAYER_KEY.match(key)
        name = key[match.end():] if match else key
        if match and method == "sws":
            names = [f"stages.{layer_sources[int(match[2])]}.{name}"]
        elif match:
            names = [f"base.{name}", f"slope.{name}"]
        else:
            names = [key]
        if not all(n in learngene.state_dict and learngene.state_dict[n].shape == init.state_dict[key].shape
                   for n in names):
            tensors[key] = entry("fresh", value.shape, reason=fresh_reason(key, method, learngene.state_dict.get(
                "head.weight", torch.empty(0)).shape[0], value.shape[0]) or "the learngene has no such tensor")
            continue
        details = dict(source=names[0] if len(names) == 1 else names,
                       source_shape=list(learngene.state_dict[names[0]].shape))
        kind = "copied" if len(names) == 1 else "transformed"
        if len(names) > 1:
            details["formula"] = f"base + {int(match[2])}/{target_args['depth']} * slope"
        if key == "pos_embed" and interpolated:
            details.update(interpolated, then=kind)
            kind = "interpolated"
        tensors[key] = entry(kind, value.shape, **details)
    check_fresh([k for k, e in tensors.items() if e["kind"] == "fresh" and not k.startswith(HEAD_PREFIX)], allow_fresh)
    record = dict(init.info, target=init.architecture, target_args=target_args, seed=seed, options=options,
                  allow_fresh=list(allow_fresh), tensors=tensors)
    preprocessing = init.preprocessing
    if preprocessing is not None:
        preprocessing = {**preprocessing, "input_size": [preprocessing["input_size"][0], *des.patch_embed.img_size]}
    return Initialized(des, init.architecture, model_args, preprocessing, record)


def initialize(source: str, method: str, target: str | None, target_args: dict | None = None, allow_fresh=(),
               seed: int = 0, **options) -> Initialized:
    """Initialize ``target`` (a timm name; ``target_args`` its constructor arguments) from ``source`` by ``method``
    (see the module docstring); ``options`` are the method's own (weight-selection: ``layers``, ``elements``,
    ``head_aware``; front: ``learngene.baselines.front.front_transfer``'s; sws: ``strategy``, ``order``)."""
    if method not in INIT_METHODS:
        raise LearngeneError(f"unknown method {method!r}: use one of {', '.join(INIT_METHODS)}")
    if method in LEARNGENE_METHODS:
        return from_learngene(source, method, target, dict(target_args or {}), tuple(allow_fresh), seed, options)
    if target is None:
        raise LearngeneError(f"{method} needs a target: a timm model name such as vit_tiny_patch16_224")
    return from_vit(source, method, target, dict(target_args or {}), tuple(allow_fresh), seed, options)

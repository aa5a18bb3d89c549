"""Every way this project initializes a Des-Net, SWS and its baselines, behind one interface.

``METHODS[name](source, depth, num_classes=None, **options) -> Initialization``: the Des-Net's complete
state dict, the timm model it belongs to, and a JSON-serializable ``info`` record (method, source,
parameters stored to initialize, the plan). ``source`` is a learngene file (sws, tleg), a trained timm
model folder (simple-lg, vanilla-lg, weight-selection, front, pf) or nothing (scratch; a learngene or folder
given to scratch only names the architecture).

The Des-Net architecture is the source's (a learngene's Des-Net, or the folder's model) at ``depth``;
``model`` / ``model_args`` override it where a method allows a different one (weight-selection,
front, scratch). A different ``num_classes`` keeps the target's own head init. Weights the method does not
provide come from the target's timm default init under ``seed``.

``init_sws_select`` (post-hoc width selection of an SWS Des-Net) is the benchmark's baseline for the depth x width
grid (``learngene.benchmark.config.BENCHMARK_METHODS``), not a method of ``tools/expand.py``.

``parameters_stored`` counts what must be kept to initialize: the whole learngene (sws, tleg), the whole
source model (simple-lg, weight-selection, front, pf), the tensors copied from the ancestry (vanilla-lg), none
(scratch).
"""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import timm
import torch
from timm.layers import trunc_normal_
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from learngene.baselines.front import CLASS_TOKEN_LAYOUTS, front_transfer
from learngene.baselines.simple_lg import expand_simple_lg
from learngene.baselines.tleg import expand_tleg
from learngene.baselines.vanilla_lg import expand_vanilla_lg
from learngene.baselines.weight_selection import pooled_layout, select_weights
from learngene.checkpoint import load_learngene, load_model_folder, recorded_preprocessing
from learngene.errors import LearngeneError, first_line
from learngene.expand import ExpansionPlan, expand_sws, layer_counts, load_expanded, make_plan
from learngene.expand.plan import check_depth, check_positive_int
from learngene.hub import resolve_source
from learngene.expand.width import apply_width_plan, plan_width
from learngene.models import PooledViT, SWSAuxViT, TLEGAuxViT, des_architecture


@dataclasses.dataclass
class Initialization:
    """A Des-Net's full state dict, the timm model it belongs to, and how it was made (plain data).

    ``plan`` is the layer plan of the methods that place learngene layers by one (sws, simple-lg); it is also
    part of ``info``. ``preprocessing`` is what the source was trained on (``checkpoint.preprocessing_of``), which
    the Des-Net's folder records; None for a model with no trained source.
    """

    state_dict: dict[str, torch.Tensor]
    architecture: str
    model_args: dict
    info: dict
    plan: ExpansionPlan | None = None
    preprocessing: dict | None = None

    def build(self) -> nn.Module:
        model = timm.create_model(self.architecture, **self.model_args)
        load_expanded(model, self.state_dict)
        return model


# Copies of a Des-Net's float32 weights held at once while it is made and written: the state dict, the model
# built from it, and the tensors being saved.
WEIGHT_COPIES = 3


def timm_model(architecture: str, model_args: dict) -> nn.Module:
    try:
        return timm.create_model(architecture, **model_args)
    except (AssertionError, RuntimeError, TypeError, ValueError) as e:
        # unknown name, arguments it does not take, or values it asserts against (num_heads not dividing embed_dim)
        raise LearngeneError(f"cannot create {architecture!r} with {model_args}: {first_line(e)}: choose --model "
                             "and --model-args that timm accepts (num_heads must divide embed_dim)") from None


def check_fits_in_memory(architecture: str, model_args: dict) -> None:
    """Refuse a Des-Net whose weights would not fit in this machine's memory (e.g. ``--width 100000``), before any
    of it is allocated: its parameters are counted on the meta device."""
    with torch.device("meta"):
        parameters = count_parameters(timm_model(architecture, model_args).parameters())
    needed = WEIGHT_COPIES * 4 * parameters
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if needed > memory:
        size = ", ".join(f"{k} {model_args[k]}" for k in ("embed_dim", "depth", "mlp_ratio") if k in model_args)
        raise LearngeneError(f"a {architecture} of {size} has {parameters:,} parameters: making it needs about "
                             f"{needed / 2**30:,.1f} GiB of memory ({WEIGHT_COPIES} float32 copies), more than this "
                             f"machine's {memory / 2**30:,.1f} GiB: choose a smaller width or depth")


def fresh_model(architecture: str, model_args: dict, seed: int) -> nn.Module:
    """The target with timm's default init, reproducible per ``seed``, leaving the global RNG alone."""
    check_fits_in_memory(architecture, model_args)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return timm_model(architecture, model_args)


def count_parameters(tensors) -> int:
    """Number of values in ``tensors`` (e.g. ``model.parameters()`` or a state dict's values)."""
    return sum(t.numel() for t in tensors)


def forward_flops(architecture: str, model_args: dict) -> int:
    """FLOPs of one forward pass of one image through timm model ``architecture(**model_args)``, counted by torch's
    ``FlopCounterMode`` on meta tensors (nothing is computed or downloaded). A multiply-add counts 2: the papers'
    FLOPs(G), fvcore's count, are half of it. Attention runs through the math kernel, whose matmuls the counter
    sees (it does not see inside the fused CPU kernel)."""
    with torch.device("meta"):
        model = timm.create_model(architecture, **model_args).eval()
        default = model.pretrained_cfg.get("input_size", (3, 224, 224))
        size = model_args.get("img_size", default[-1])
        height, width = (size, size) if isinstance(size, int) else size
        images = torch.empty(1, model_args.get("in_chans", default[0]), height, width)
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        model(images)
    return counter.get_total_flops()


def with_new_classifier(init: Initialization, num_classes: int, seed: int) -> Initialization:
    """``init`` with timm's new classifier for ``num_classes`` classes (its init under ``seed``) in place of its own:
    what both papers give a Des-Net for a new label set."""
    args = {**init.model_args, "num_classes": num_classes}
    fresh = fresh_model(init.architecture, args, seed)
    head = {f"{name}.{key}" for name, module in fresh.named_modules() if module is fresh.get_classifier()
            for key in module.state_dict()}
    state = {k: v for k, v in init.state_dict.items() if k not in head}
    state.update({k: v for k, v in fresh.state_dict().items() if k in head})
    info = dict(init.info, classifier=f"new, {num_classes} classes (timm's init, seed {seed})")
    return dataclasses.replace(init, state_dict=state, model_args=args, info=info)


def target_args(base_args: dict, depth: int | None, num_classes: int | None, model_args: dict | None = None) -> dict:
    """``base_args`` with ``model_args`` applied, then ``depth`` and ``num_classes`` where given; both must be >= 1."""
    args = {**base_args, **(model_args or {})}
    if depth is not None:
        args["depth"] = depth
    if num_classes is not None:
        args["num_classes"] = num_classes
    for name in ("depth", "num_classes"):
        if name in args:
            check_positive_int(args[name], name)
    return args


def load_aux_learngene(source: str | None, method: str, model_type: type):
    """A learngene file's contents and its rebuilt Aux-Net, which must be a ``model_type``."""
    if source is None:
        raise LearngeneError(f"{method} needs a source: a learngene file written by tools/train_aux.py")
    source = resolve_source(source)  # a shared folder or hf-hub:ORG/NAME id -> its checksum-verified weights
    if Path(source).is_dir():
        raise LearngeneError(f"{source} is a model folder, not a learngene file: folders are sources of simple-lg, "
                             "vanilla-lg, weight-selection, pf and scratch")
    learngene = load_learngene(source)
    aux = learngene.build_aux()
    if not isinstance(aux, model_type):
        raise LearngeneError(f"{source} holds a {learngene.model} learngene, not a {model_type.__name__} one: "
                             "pick the --method that trained it")
    return learngene, aux


def load_source_folder(source: str | None, method: str) -> tuple[nn.Module, str, dict, dict | None]:
    """A trained model folder (or a shared one, or its hub id): the model, its timm architecture name, its
    constructor arguments and the preprocessing it records."""
    if source is None:
        raise LearngeneError(f"{method} needs a source: a trained timm model folder")
    return read_model_folder(resolve_source(source))


def read_model_folder(folder: str) -> tuple[nn.Module, str, dict, dict | None]:
    """:func:`load_source_folder` of a folder already resolved (:func:`learngene.hub.resolve_source`)."""
    model = load_model_folder(folder)
    config = json.loads((Path(folder) / "config.json").read_text())
    return model, config["architecture"], config.get("model_args", {}), recorded_preprocessing(config)


def attention_heads(model: nn.Module) -> int:
    try:
        return model.blocks[0].attn.num_heads
    except AttributeError:
        raise LearngeneError(f"head-aware selection needs timm ViTs, not {type(model).__name__}") from None


def with_fresh_head(state: dict, architecture: str, args: dict, seed: int) -> dict:
    """Complete ``state`` with the target's own init for what it lacks (a head for another label space)."""
    return {**fresh_model(architecture, args, seed).state_dict(), **state}


def init_sws(source: str, depth: int, num_classes: int | None = None, strategy: str = "cyclic", order=None,
             seed: int = 0, width: int | None = None, num_heads: int | None = None,
             mlp_ratio: float | None = None) -> Initialization:
    learngene, aux = load_aux_learngene(source, "sws", SWSAuxViT)
    if order is not None and strategy != "cyclic":
        raise LearngeneError("--order applies to --strategy cyclic only")
    plan = make_plan(depth, aux.stage_sizes, strategy, order, seed, source=source)
    args = target_args(aux.des_model_args(depth), depth, num_classes)
    architecture = des_architecture(learngene.model)
    include_head = num_classes in (None, aux.num_classes)
    width_plan = None
    if (width, num_heads, mlp_ratio) != (None, None, None):  # narrowing or growth (docs/width.md)
        width_plan = plan_width(learngene, width, num_heads, mlp_ratio, include_head=include_head)
        args.update(width_plan.model_args())
    check_fits_in_memory(architecture, args)
    state = expand_sws(learngene.state_dict, plan.layer_sources, include_head=include_head)
    info = dict(method="sws", **plan.to_dict(), parameters_stored=count_parameters(learngene.state_dict.values()))
    if width_plan is not None:
        state = apply_width_plan(state, width_plan)
        info["width"] = width_plan.to_dict()
    return Initialization(with_fresh_head(state, architecture, args, seed), architecture, args, info, plan,
                          learngene.preprocessing)


def init_tleg(source: str, depth: int, num_classes: int | None = None, seed: int = 0) -> Initialization:
    check_depth(depth)
    learngene, aux = load_aux_learngene(source, "tleg", TLEGAuxViT)
    args = target_args(aux.des_model_args(depth), depth, num_classes)
    architecture = des_architecture(learngene.model)
    state = expand_tleg(learngene.state_dict, depth, include_head=num_classes in (None, aux.num_classes))
    info = dict(method="tleg", source=source, coefficients=[i / depth for i in range(depth)],
                parameters_stored=count_parameters(learngene.state_dict.values()))
    return Initialization(with_fresh_head(state, architecture, args, seed), architecture, args, info,
                          preprocessing=learngene.preprocessing)


def init_simple_lg(source: str, depth: int, num_classes: int | None = None, order=None,
                   seed: int = 0) -> Initialization:
    model, architecture, base_args, preprocessing = load_source_folder(source, "simple-lg")
    args = target_args(base_args, depth, num_classes)
    state, plan = expand_simple_lg(model.state_dict(), depth, order,
                                   include_head=num_classes in (None, model.num_classes))
    plan.source = source
    info = dict(method="simple-lg", **plan.to_dict(), parameters_stored=count_parameters(model.parameters()))
    return Initialization(with_fresh_head(state, architecture, args, seed), architecture, args, info, plan,
                          preprocessing)


def init_vanilla_lg(source: str, depth: int, num_classes: int | None = None, num_layers: int = 3,
                    seed: int = 0) -> Initialization:
    check_depth(depth)
    ancestry, architecture, base_args, preprocessing = load_source_folder(source, "vanilla-lg")
    args = target_args(base_args, depth, num_classes)
    state, copied = expand_vanilla_lg(ancestry.state_dict(), fresh_model(architecture, args, seed).state_dict(),
                                      num_layers)
    info = dict(method="vanilla-lg", source=source, num_layers=num_layers, seed=seed,
                parameters_stored=count_parameters(state[key] for key in copied))
    return Initialization(state, architecture, args, info, preprocessing=preprocessing)


def parent_state_for(parent: nn.Module, child: nn.Module, layout: str = "pooled") -> dict[str, torch.Tensor]:
    """The parent's state dict in the child's layout where the two differ in pooling (``layout="pooled"``): a
    class-token parent (timm's ViT-L for the SWS Des-B) loses its token, and its final norm becomes ``fc_norm``;
    ``"released"``: as it is."""
    state = parent.state_dict()
    if layout == "pooled" and getattr(parent, "has_class_token", False) \
            and getattr(child, "has_class_token", True) is False:
        state = pooled_layout(state, 0 if parent.no_embed_class else parent.num_prefix_tokens)
    return state


def init_weight_selection(source: str, depth: int, num_classes: int | None = None, model: str | None = None,
                          model_args: dict | None = None, layers: str = "first", elements: str = "uniform",
                          head_aware: bool = False, select_head: bool = False, seed: int = 0) -> Initialization:
    parent, parent_architecture, base_args, preprocessing = load_source_folder(source, "weight-selection")
    architecture = model or parent_architecture
    args = target_args(base_args, depth, num_classes, model_args)
    child = fresh_model(architecture, args, seed)
    num_heads = (attention_heads(parent), attention_heads(child)) if head_aware else None
    state = select_weights(parent_state_for(parent, child), child.state_dict(), layers, elements, seed, head_aware,
                           num_heads, select_head)
    info = dict(method="weight-selection", source=source, layers=layers, elements=elements, head_aware=head_aware,
                select_head=select_head, seed=seed, parameters_stored=count_parameters(parent.parameters()))
    return Initialization(state, architecture, args, info, preprocessing=preprocessing)


def init_front(source: str, depth: int | None = None, num_classes: int | None = None, model: str | None = None,
               model_args: dict | None = None, keep_ratio: float = 1.0, depth_mode: str = "zero",
               select_n: int | None = None, mlp_dct_dim: str = "2d", use_ratio: bool = False, skip=(),
               class_token: str = "released", seed: int = 0) -> Initialization:
    """FRONT from a trained ViT folder to a Des-Net of the folder's architecture changed by ``model_args`` and
    ``depth``; the options and their defaults are the released script's (docs/baselines.md). ``class_token``: how
    a class-token parent meets a pooled Des-Net (``front.CLASS_TOKEN_LAYOUTS``)."""
    if class_token not in CLASS_TOKEN_LAYOUTS:
        raise LearngeneError(f"class_token={class_token!r}: use one of {', '.join(CLASS_TOKEN_LAYOUTS)}")
    parent, parent_architecture, base_args, preprocessing = load_source_folder(source, "front")
    architecture = model or parent_architecture
    args = target_args(base_args, depth, num_classes, model_args)
    des = fresh_model(architecture, args, seed)
    state = front_transfer(parent_state_for(parent, des, class_token), des.state_dict(), keep_ratio, depth_mode,
                           select_n, mlp_dct_dim, use_ratio, tuple(skip), seed)
    info = dict(method="front", source=source, keep_ratio=keep_ratio, depth_mode=depth_mode, select_n=select_n,
                mlp_dct_dim=mlp_dct_dim, use_ratio=use_ratio, skip=list(skip), class_token=class_token, seed=seed,
                parameters_stored=count_parameters(parent.parameters()))
    parent_depth, depth = layer_counts(parent.state_dict()).get("blocks", 0), len(getattr(des, "blocks", ()))
    if depth > parent_depth > 0:
        info["note"] = (f"FRONT as released gives Des-Net layers {parent_depth - 1} to {depth - 1} identical weights "
                        f"when it is deeper than its parent ({parent_depth} layers; docs/baselines.md)")
    return Initialization(state, architecture, args, info, preprocessing=preprocessing)


def init_sws_select(source: str, depth: int, width: int, elements: str = "uniform", seed: int = 0) -> Initialization:
    """Post-hoc width selection: the plain SWS Des-Net of ``depth`` (the learngene's width), then weight selection
    to ``width``, head-aware (whole heads, the learngene's head dim), with one element rule for every axis.

    Unlike IMwLM's released rule, the classifier is selected too (its input channels, every class): the
    Des-Net solves the learngene's own task, so keeping its trained head is the strongest post-hoc baseline.
    """
    full = init_sws(source, depth, seed=seed)
    source_width, source_heads = full.model_args["embed_dim"], full.model_args["num_heads"]
    head_dim = source_width // source_heads
    if width % head_dim or not head_dim <= width < source_width:
        raise LearngeneError(f"sws-select makes widths narrower than the learngene's {source_width} in multiples of "
                             f"its head dim {head_dim}, not {width}: drop that width or the method")
    args = dict(full.model_args, embed_dim=width, num_heads=width // head_dim)
    child = fresh_model(full.architecture, args, seed).state_dict()
    state = select_weights(full.state_dict, child, "first", elements, seed, head_aware=True,
                           num_heads=(source_heads, width // head_dim), select_head=True)
    info = dict(method="sws-select", sws=full.info, width=width, num_heads=width // head_dim, elements=elements,
                head_aware=True, parameters_stored=full.info["parameters_stored"])
    return Initialization(state, full.architecture, args, info, full.plan, full.preprocessing)


def init_scratch(source: str | None, depth: int | None, num_classes: int | None = None, model: str | None = None,
                 model_args: dict | None = None, seed: int = 0, pos_embed_std: float = 0.0) -> Initialization:
    """timm's init under ``seed``; ``pos_embed_std`` > 0 draws the position embedding with that std instead of
    timm's 0.02, as the project's from-scratch recipes do on tiny patches (``model.pos_embed_std``)."""
    if source is None:
        if model is None:
            raise LearngeneError("scratch needs --model (a timm model name) or a source whose architecture to copy")
        architecture, base_args, preprocessing = model, {}, None
    elif Path(resolved := resolve_source(source)).is_dir():  # resolved once: a shared source is verified once
        _, architecture, base_args, preprocessing = read_model_folder(resolved)
    else:  # a learngene file: the architecture of its Des-Nets
        if depth is None:
            raise LearngeneError("scratch from a learngene needs --depth: its Des-Nets have no depth of their own")
        learngene, aux = load_aux_learngene(resolved, "scratch", PooledViT)
        architecture, base_args = des_architecture(learngene.model), aux.des_model_args(depth)
        preprocessing = learngene.preprocessing
    architecture = model or architecture
    args = target_args(base_args, depth, num_classes, model_args)
    info = dict(method="scratch", source=source, seed=seed, parameters_stored=0)
    model = fresh_model(architecture, args, seed)
    if pos_embed_std:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            trunc_normal_(model.pos_embed, std=pos_embed_std)
        info["pos_embed_std"] = pos_embed_std
    return Initialization(model.state_dict(), architecture, args, info, preprocessing=preprocessing)


def init_pf(source: str, depth: int | None = None, num_classes: int | None = None, seed: int = 0) -> Initialization:
    """Pre-train-then-fine-tune: the Des-Net is a same-size model trained on the source data, as it is."""
    model, architecture, base_args, preprocessing = load_source_folder(source, "pf")
    source_depth = layer_counts(model.state_dict()).get("blocks")
    if depth is not None and depth != source_depth:
        raise LearngeneError(f"pf reuses a trained model as it is: give its depth ({source_depth}) or no --depth")
    args = target_args(base_args, None, num_classes)
    state = model.state_dict()
    if num_classes not in (None, model.num_classes):
        state = {k: v for k, v in state.items() if not k.startswith("head.")}
    info = dict(method="pf", source=source, parameters_stored=count_parameters(model.parameters()))
    return Initialization(with_fresh_head(state, architecture, args, seed), architecture, args, info,
                          preprocessing=preprocessing)


METHODS = {
    "sws": init_sws,
    "tleg": init_tleg,
    "simple-lg": init_simple_lg,
    "vanilla-lg": init_vanilla_lg,
    "weight-selection": init_weight_selection,
    "front": init_front,
    "scratch": init_scratch,
    "pf": init_pf,
}

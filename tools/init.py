"""Initialize a timm ViT from any larger ViT (weight selection, FRONT) or a Des-Net from a learngene (SWS, TLEG).

    python tools/init.py vit_small_patch16_224.augreg_in21k vit_tiny_patch16_224 num_classes=100 --out runs/vit_t
    python tools/init.py hf-hub:timm/vit_small_patch16_224.augreg_in21k vit_tiny_patch16_224 img_size=160 \\
        --out runs/vit_t160   # pos_embed resampled to the 10x10 grid, then selected
    python tools/init.py runs/digits/ancestry/model vit_tiny_patch16_224 img_size=8 patch_size=2 in_chans=1 \\
        embed_dim=64 num_heads=4 depth=6 num_classes=10 class_token=false global_pool=avg --method front \\
        --out runs/front6
    python tools/init.py runs/digits/aux/learngene.safetensors depth=12 --method sws --out runs/sws12

SOURCE: a timm model name (pretrained=True), an hf-hub: id, a local model folder, or a learngene file (sws,
tleg). TARGET: a timm model name and its constructor arguments as key=value (sws/tleg: the learngene's Des-Net
with depth=, num_classes=, img_size=). Writes a timm model folder plus init.json, one entry per target tensor:
copied, selected, transformed, interpolated or fresh, and from which source tensor (docs/init.md).
"""
from __future__ import annotations

from collections import Counter

import yaml

from learngene.baselines.front import DEPTH_MODES
from learngene.baselines.weight_selection import ELEMENT_SELECTIONS, LAYER_SELECTIONS
from learngene.checkpoint import INIT_RECORD, check_output_dir, save_model_folder
from learngene.cli import entry_point, int_at_least, tool_parser
from learngene.errors import LearngeneError
from learngene.expand import STRATEGIES
from learngene.expand.plan import check_positive_int
from learngene.init import INIT_METHODS, initialize

# Which options each method takes (the rest must keep their defaults).
METHOD_OPTIONS = {"weight-selection": ("layers", "elements", "head_aware"),
                  "front": ("keep_ratio", "depth_mode", "skip"), "sws": ("strategy",), "tleg": ()}


def make_parser():
    parser = tool_parser(__doc__, "init.py")
    parser.add_argument("source", help="timm model name, hf-hub:ORG/NAME, model folder, or learngene file (sws, tleg)")
    parser.add_argument("target", nargs="*", metavar="TARGET [KEY=VALUE ...]",
                        help="timm model name of the target (sws, tleg: none, the learngene's Des-Net) and its "
                             "constructor arguments, e.g. vit_tiny_patch16_224 num_classes=100 img_size=160")
    parser.add_argument("--method", default="weight-selection", choices=INIT_METHODS,
                        help="weight-selection (IMwLM, default), front (from a ViT), sws, tleg (from a learngene)")
    parser.add_argument("--out", required=True, help="output folder (must not exist or be empty)")
    parser.add_argument("--allow-fresh", action="append", default=[], metavar="NAME",
                        help="leave this target tensor (fnmatch pattern) at its init where the source has nothing "
                             "for it; repeatable. Without it such a tensor is an error")
    parser.add_argument("--seed", type=int_at_least(0), default=0, help="seed of the target's own init (default 0)")
    parser.add_argument("--layers", default="first", choices=LAYER_SELECTIONS,
                        help="weight-selection: which source layers (default first, the released rule)")
    parser.add_argument("--elements", default="uniform", choices=ELEMENT_SELECTIONS,
                        help="weight-selection: which elements per axis (default uniform, the released rule)")
    parser.add_argument("--head-aware", action="store_true", help="weight-selection: keep attention heads whole")
    parser.add_argument("--keep-ratio", type=float, default=1.0, help="front: DCT frequencies kept per axis")
    parser.add_argument("--depth-mode", default="zero", choices=DEPTH_MODES, help="front: layer frequencies to depth")
    parser.add_argument("--skip", type=lambda text: tuple(filter(None, text.split(","))), default=(),
                        help="front: comma-separated tensor groups left at their init (qkv, o, mlp, norm)")
    parser.add_argument("--strategy", default="cyclic", choices=STRATEGIES, help="sws: layer plan (default cyclic)")
    return parser


def number_or_text(value):
    """YAML 1.1 reads ``1e-5`` (no dot) as text: such a value is the number it spells."""
    try:
        return float(value) if isinstance(value, str) else value
    except ValueError:
        return value


def split_target(items: list[str]) -> tuple[str | None, dict]:
    """``[NAME] KEY=VALUE ...`` -> (NAME or None, {KEY: YAML value})."""
    names = [item for item in items if "=" not in item]
    if len(names) > 1:
        raise LearngeneError(f"more than one target name ({', '.join(names)}): give one timm name, then key=value "
                             "arguments")
    args = {}
    for item in items:
        if "=" in item:
            key, _, text = item.partition("=")
            try:
                value = yaml.safe_load(text)
            except yaml.YAMLError:
                raise LearngeneError(f"target argument {item!r}: {text!r} is not a value; write e.g. "
                                     "num_classes=100") from None
            args[key] = number_or_text(value)
    for name in ("depth", "num_classes", "img_size"):
        if name in args:
            check_positive_int(args[name], name)
    return (names[0] if names else None), args


@entry_point(on_interrupt="nothing was written; run the same command again")
def main(argv=None) -> int:
    parser = make_parser()
    args = parser.parse_args(argv)
    target, target_args = split_target(args.target)
    options = {name: getattr(args, name) for name in METHOD_OPTIONS[args.method]}
    for method, names in METHOD_OPTIONS.items():
        for name in names:
            if name not in options and getattr(args, name) != parser.get_default(name):
                raise LearngeneError(f"--{name.replace('_', '-')} applies to --method {method}, not {args.method}")
    check_output_dir(args.out)  # before the work, not after it

    init = initialize(args.source, args.method, target, target_args, args.allow_fresh, args.seed, **options)
    save_model_folder(init.model, args.out, preprocessing=init.preprocessing, model_args=init.model_args,
                      extra_files={INIT_RECORD: init.record})
    kinds = Counter(entry["kind"] for entry in init.record["tensors"].values())
    fresh = [key for key, entry in init.record["tensors"].items() if entry["kind"] == "fresh"]
    fresh = ", ".join(fresh[:4]) + (f" and {len(fresh) - 4} more" if len(fresh) > 4 else "")
    counts = ", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items()))
    print(f"wrote {args.out}: {init.architecture} by {args.method} from {args.source}; {counts} tensors"
          f"{f' (fresh: {fresh})' if fresh else ''}; details in {args.out}/{INIT_RECORD}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

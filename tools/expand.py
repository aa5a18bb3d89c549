"""Initialize a Des-Net with SWS or a baseline, written as a timm local-dir model folder.

    python tools/expand.py runs/digits/aux/learngene.safetensors --depth 12 --out runs/des12
    python tools/expand.py runs/digits/aux_elastic/learngene.safetensors --depth 9 --width 32 --out runs/des9_w32
    python tools/expand.py runs/digits/tleg_aux/learngene.safetensors --method tleg --depth 12 --out runs/tleg12
    python tools/expand.py runs/digits/ancestry/model --method weight-selection --depth 6 \\
        --model-args '{"embed_dim": 64, "num_heads": 4}' --out runs/ws6   # the width of the digits Des-Nets
    python tools/expand.py runs/digits/ancestry/model --method front --depth 9 \\
        --model-args '{"embed_dim": 64, "num_heads": 4}' --out runs/front9   # FRONT, the released defaults
    python tools/expand.py runs/digits/aux/learngene.safetensors --method scratch --depth 12 --out runs/scratch12
    python -c "import timm; timm.create_model('local-dir:runs/des12', pretrained=True)"   # no learngene needed

Every method writes the same kind of folder; ``init.json`` records the method, its choices and the
parameters stored to initialize (see learngene/methods.py and docs/baselines.md).
Weight selection keeps the parent's width, heads and MLP ratio unless --model-args sets them: without
it, a child of the digits ancestry is 128 wide, twice the width of the SWS Des-Nets.
"""
from __future__ import annotations

import argparse
import inspect
import json

from timm.models import VisionTransformer

from learngene.baselines.front import CLASS_TOKEN_LAYOUTS, DEPTH_MODES, MLP_DCT_DIMS, SKIP_GROUPS
from learngene.baselines.weight_selection import ELEMENT_SELECTIONS, LAYER_SELECTIONS
from learngene.checkpoint import INIT_RECORD, check_output_dir, save_model_folder
from learngene.cli import ArgumentParser, entry_point, int_at_least, tool_parser
from learngene.errors import LearngeneError
from learngene.methods import METHODS, count_parameters
from learngene.expand import ORDER_NAMES, STRATEGIES


def json_object(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise argparse.ArgumentTypeError(f"not JSON ({e})") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("must be a JSON object like '{\"embed_dim\": 192}'")
    return value


def skip_groups(text: str) -> tuple[str, ...]:
    names = tuple(name for name in text.split(",") if name)
    unknown = [name for name in names if name not in SKIP_GROUPS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown group(s) {', '.join(unknown)}: use any of {', '.join(SKIP_GROUPS)}")
    return names


def make_parser() -> ArgumentParser:
    parser = tool_parser(__doc__, "expand.py")
    parser.add_argument("source", nargs="?",
                        help="learngene file (sws, tleg), trained timm model folder (simple-lg, vanilla-lg, "
                             "weight-selection, front, pf), or nothing (scratch, with --model)")
    parser.add_argument("--method", default="sws", choices=list(METHODS), help="initializer (default sws)")
    parser.add_argument("--depth", type=int_at_least(1), default=None,
                        help="number of Des-Net layers (>= 1); weight-selection, front, scratch and pf default to "
                             "the source's")
    parser.add_argument("--out", required=True, help="output folder (must not exist or be empty)")
    parser.add_argument("--num-classes", type=int_at_least(1), default=None,
                        help="Des-Net classes; when it differs from the source's, the head keeps timm's init")
    parser.add_argument("--seed", type=int_at_least(0), default=0,
                        help="seed of random plans and selections and of any weights left at timm's init")
    parser.add_argument("--strategy", default="cyclic", choices=STRATEGIES,
                        help="sws: cyclic (default); random: random layers per stage, stage order kept; "
                             "shuffled: any stage at any position (ablation)")
    parser.add_argument("--order", default=None,
                        help=f"sws, simple-lg: cyclic stage order, one of {', '.join(ORDER_NAMES)} or a "
                             "permutation like 0,1,2,3,4 (default front-mid-last)")
    parser.add_argument("--width", type=int_at_least(1), default=None,
                        help="sws: Des-Net width; narrower takes the learngene's leading channels (only widths an "
                             "elastic learngene was trained at), wider grows it keeping its function (docs/width.md)")
    parser.add_argument("--num-heads", type=int_at_least(1), default=None,
                        help="sws: heads of that width; the head dim is kept, so the one valid value is width / "
                             "the learngene's head dim, the default (a check, nothing to choose)")
    parser.add_argument("--mlp-ratio", type=float, default=None,
                        help="sws: MLP ratio (default the learngene's; larger grows the MLP, fewer units than trained "
                             "are refused)")
    parser.add_argument("--num-layers", type=int_at_least(1), default=3,
                        help="vanilla-lg: ancestry blocks put on top (default 3)")
    parser.add_argument("--model", default=None,
                        help="weight-selection, front, scratch: timm model name of the Des-Net (default the source's)")
    parser.add_argument("--model-args", type=json_object, default=None,
                        help="weight-selection, front, scratch: JSON constructor overrides, e.g. "
                             "'{\"embed_dim\": 64, \"num_heads\": 4}'; weight selection and front keep the "
                             "parent's width, heads and MLP ratio unless set here")
    parser.add_argument("--layers", default="first", choices=LAYER_SELECTIONS,
                        help="weight-selection: which parent layers (default %(default)s)")
    parser.add_argument("--elements", default="uniform", choices=ELEMENT_SELECTIONS,
                        help="weight-selection: which elements per axis (default %(default)s)")
    parser.add_argument("--head-aware", action="store_true",
                        help="weight-selection: keep attention heads whole in fused qkv and proj")
    parser.add_argument("--keep-ratio", type=float, default=1.0,
                        help="front: fraction of DCT frequencies kept per axis, in (0, 1] (default %(default)s)")
    parser.add_argument("--depth-mode", default="zero", choices=DEPTH_MODES,
                        help="front: how the layer frequencies fill the Des-Net's depth (default %(default)s)")
    parser.add_argument("--select-n", type=int_at_least(1), default=None,
                        help="front: layer frequencies kept (default all: min of the two depths)")
    parser.add_argument("--mlp-dct-dim", default="2d", choices=MLP_DCT_DIMS,
                        help="front: MLP weights transformed on both axes (2d, default) or the hidden axis only (1d)")
    parser.add_argument("--use-ratio", action="store_true",
                        help="front: scale by the Des-Net-to-kept size ratio per axis after the inverse DCT")
    parser.add_argument("--skip", type=skip_groups, default=(),
                        help=f"front: comma-separated tensor groups left at their init, of {', '.join(SKIP_GROUPS)}")
    parser.add_argument("--class-token", default="released", choices=CLASS_TOKEN_LAYOUTS,
                        help="front, from a class-token parent to a pooled Des-Net: released (default: the parent as "
                             "it is, pos_embed's N + 1 rows into N, fc_norm at its init) or pooled (the class token's "
                             "position dropped, the final norm as fc_norm, as weight selection reads it)")
    return parser


@entry_point(on_interrupt="nothing was written; run the same command again")
def main(argv=None) -> int:
    parser = make_parser()
    args = parser.parse_args(argv)
    init_method = METHODS[args.method]
    accepted = inspect.signature(init_method).parameters
    options = {name: value for name, value in vars(args).items() if name in accepted}
    for name, value in vars(args).items():
        if name not in accepted and name not in ("method", "out") and value != parser.get_default(name):
            raise LearngeneError(f"--{name.replace('_', '-')} does not apply to --method {args.method}")
    check_output_dir(args.out)  # before the work, not after it

    init = init_method(**options)
    des = init.build()
    save_model_folder(des, args.out, preprocessing=init.preprocessing, model_args=init.model_args,
                      extra_files={INIT_RECORD: init.info})

    params = count_parameters(des.parameters())
    vit = isinstance(des, VisionTransformer)
    shape = f"depth {len(des.blocks)}, width {des.embed_dim}" if vit else type(des).__name__
    plan = f", {init.plan.describe()}, plan {init.plan.layer_sources}" if init.plan else ""
    print(f"wrote {args.out}: {args.method}, {shape}, {params / 1e6:.3f}M params, "
          f"{init.info['parameters_stored'] / 1e6:.3f}M stored to initialize{plan}")
    if "note" in init.info:  # a method's known quirk that shaped this Des-Net (also in init.json)
        print(f"note: {init.info['note']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

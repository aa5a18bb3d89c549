"""Convert an official SWS or TLEG Aux-Net checkpoint (checkpoint.pth) into a learngene file.

    python tools/convert.py sws_aux_s/checkpoint.pth --from sws-official --out runs/official/sws_s.safetensors
    python tools/convert.py sws_aux_s/checkpoint.pth --from sws-official --num-heads 6 --out sws_s_6heads.safetensors
    python tools/convert.py tleg_aux_s/checkpoint.pth --from tleg-official --out runs/official/tleg_s.safetensors
    python tools/expand.py runs/official/sws_s.safetensors --depth 12 --out runs/official/des12

The key tables, and what differs from the official Aux-Nets (LayerNorm eps, pooling, head count), are in
docs/sharing.md; the learngene's metadata records them.
"""
from __future__ import annotations

import argparse

from learngene.cli import ArgumentParser, entry_point, tool_parser
from learngene.convert import CONVERTERS, convert_checkpoint
from learngene.convert.official import OFFICIAL_SWS_NUM_HEADS, OFFICIAL_TLEG_NUM_LAYERS
from learngene.errors import LearngeneError
from learngene.methods import count_parameters
from learngene.models import DEFAULT_STAGE_SIZES


def stage_sizes(text: str) -> list[int]:
    try:
        return [int(n) for n in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of integers, e.g. "
                                         "3,3,4,3,3") from None


def make_parser() -> ArgumentParser:
    parser = tool_parser(__doc__, prog=None)
    parser.add_argument("checkpoint", help="the official code's checkpoint.pth (or a bare state dict)")
    parser.add_argument("--from", dest="source", required=True, choices=list(CONVERTERS), help="official code")
    parser.add_argument("--out", required=True, help="learngene file to write (must not exist)")
    parser.add_argument("--num-heads", type=int, default=None,
                        help=f"attention heads of the Aux-Net and its Des-Nets (default: the official ones, "
                             f"{OFFICIAL_SWS_NUM_HEADS} for sws-official, width / 64 for tleg-official)")
    parser.add_argument("--stage-sizes", type=stage_sizes, default=None,
                        help=f"sws-official: applied layers per stage (default "
                             f"{','.join(map(str, DEFAULT_STAGE_SIZES))}, the official schedule)")
    parser.add_argument("--num-layers", type=int, default=None,
                        help=f"tleg-official: applied layers of the Aux-Net (default {OFFICIAL_TLEG_NUM_LAYERS})")
    parser.add_argument("--state", default="model", choices=["model", "model_ema"],
                        help="which weights of the checkpoint (default model: the official learngene is non-EMA)")
    return parser


@entry_point
def main(argv=None) -> int:
    args = make_parser().parse_args(argv)
    options = {"num_heads": args.num_heads, "stage_sizes": args.stage_sizes, "num_layers": args.num_layers}
    if args.source == "sws-official" and args.num_layers is not None:
        raise LearngeneError("--num-layers applies to --from tleg-official; SWS takes --stage-sizes")
    if args.source == "tleg-official" and args.stage_sizes is not None:
        raise LearngeneError("--stage-sizes applies to --from sws-official; TLEG takes --num-layers")
    learngene = convert_checkpoint(args.checkpoint, args.source, args.out, state_key=args.state,
                                   **{name: value for name, value in options.items() if value is not None})
    print(f"wrote {args.out}: {learngene.kind} learngene {learngene.model}, "
          f"{count_parameters(learngene.state_dict.values()) / 1e6:.3f}M values, "
          f"{learngene.model_args['num_heads']} heads (official {learngene.extra['official_num_heads']}), "
          f"LayerNorm eps 1e-6 (official 1e-5), mean-then-LN pooling (official LN-then-mean)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Expand a learngene into a Des-Net of any depth, written as a timm local-dir model folder.

    python tools/expand.py runs/digits/aux/learngene.safetensors --depth 12 --out runs/des12
    python -c "import timm; timm.create_model('local-dir:runs/des12', pretrained=True)"   # no learngene needed
"""
from __future__ import annotations

import timm

from learngene.checkpoint import load_learngene, save_model_folder
from learngene.cli import ArgumentParser, entry_point
from learngene.errors import LearngeneError
from learngene.expand import ORDER_NAMES, STRATEGIES, expand_sws, load_expanded, make_plan
from learngene.models.registry import des_architecture


def parse_args(argv):
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("learngene", help="learngene file written by tools/train_aux.py")
    parser.add_argument("--depth", type=int, required=True, help="number of Des-Net layers (>= 1)")
    parser.add_argument("--out", required=True, help="output folder (must not exist or be empty)")
    parser.add_argument("--strategy", default="cyclic", choices=STRATEGIES,
                        help="cyclic (default); random: random layers per stage, stage order kept; "
                             "shuffled: any stage at any position (ablation)")
    parser.add_argument("--order", default=None,
                        help=f"cyclic stage order: one of {', '.join(ORDER_NAMES)} or a permutation like 0,1,2,3,4 "
                             "(default front-mid-last)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random and shuffled strategies")
    parser.add_argument("--num-classes", type=int, default=None,
                        help="Des-Net classes; when it differs from the learngene's, the head keeps timm's init")
    return parser.parse_args(argv)


@entry_point
def main(argv=None) -> int:
    args = parse_args(argv)
    learngene = load_learngene(args.learngene)
    if learngene.kind != "sws":
        raise LearngeneError(f"{args.learngene} is a {learngene.kind!r} learngene, not an SWS one")
    aux_args = learngene.model_args
    if args.order is not None and args.strategy != "cyclic":
        raise LearngeneError("--order applies to --strategy cyclic only")
    plan = make_plan(args.depth, aux_args["stage_sizes"], args.strategy, args.order, args.seed, source=args.learngene)
    num_classes = aux_args["num_classes"] if args.num_classes is None else args.num_classes
    des_args = {k: v for k, v in aux_args.items() if k != "stage_sizes"}
    des_args.update(depth=args.depth, num_classes=num_classes, class_token=False, global_pool="avg")

    state = expand_sws(learngene.state_dict, plan.layer_sources, include_head=num_classes == aux_args["num_classes"])
    des = timm.create_model(des_architecture(learngene.model), **des_args)
    load_expanded(des, state)
    save_model_folder(des, args.out, extra_files={"plan.json": dict(method="sws", **plan.to_dict())})

    params = sum(p.numel() for p in des.parameters())
    print(f"wrote {args.out}: depth {args.depth}, {params / 1e6:.3f}M params, {plan.strategy} plan {plan.layer_sources}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

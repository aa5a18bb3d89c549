"""Write a learngene or a model folder as a shareable hub-style folder with a model card; optionally upload it.

    python tools/share.py runs/digits/aux/learngene.safetensors --out runs/share/sws-digits
    python tools/share.py runs/des12 --out runs/share/des12                 # a Des-Net (any timm model folder)
    python tools/share.py runs/share/sws-digits --push my-org/sws-digits    # upload; needs a token (hf auth login)
    python tools/expand.py runs/share/sws-digits --depth 12 --out runs/des12_shared   # or hf-hub:my-org/sws-digits

The card's YAML front matter records the lineage (ancestry, data, recipe, accuracy, code version, sha256 of
the weights); see docs/sharing.md.
"""
from __future__ import annotations

import argparse
import re

from learngene.cli import ArgumentParser, entry_point, tool_parser
from learngene.errors import LearngeneError
from learngene.hub import is_shared_folder, push_folder, write_shared_folder


def license_id(text: str) -> str:
    """A hub license id's shape: lowercase letters, digits, '.', '-' (the hub checks the id itself on upload)."""
    if not re.fullmatch(r"[a-z0-9][a-z0-9.-]*", text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a license id: write the hub's id, e.g. apache-2.0, mit, "
                                         "cc-by-4.0, or other")
    return text


def make_parser() -> ArgumentParser:
    parser = tool_parser(__doc__, prog=None)
    parser.add_argument("artifact", help="learngene file, timm model folder, or a shared folder to --push")
    parser.add_argument("--out", default=None, help="shared folder to write (must not exist or be empty)")
    parser.add_argument("--run", default=None,
                        help="training run folder with config.yaml / summary.json (default: the folder the "
                             "artifact sits in, when it has them)")
    parser.add_argument("--license", type=license_id, default=None,
                        help="the hub's license id for the card, e.g. apache-2.0, mit, cc-by-4.0, or other (see "
                             "huggingface.co/docs/hub/repositories-licenses; default: none written, shown as unknown)")
    parser.add_argument("--push", default=None, metavar="ORG/NAME",
                        help="upload the shared folder to this Hugging Face hub model repository (needs a token)")
    parser.add_argument("--private", action="store_true", help="with --push: create the repository private")
    return parser


@entry_point
def main(argv=None) -> int:
    args = make_parser().parse_args(argv)
    if is_shared_folder(args.artifact):
        if args.out or not args.push:
            raise LearngeneError(f"{args.artifact} is already a shared folder: upload it with --push ORG/NAME "
                                 "(without --out)")
        folder = args.artifact
    else:
        if not args.out:
            raise LearngeneError("--out is required: the shared folder to write")
        metadata = write_shared_folder(args.artifact, args.out, run_dir=args.run, license=args.license)
        lineage = metadata["lineage"]
        print(f"wrote {args.out}: {lineage['weights']} (sha256 {lineage['sha256'][:12]}...), config.json, "
              f"README.md; ancestry {(lineage.get('ancestry') or {}).get('name')}, top-1 {lineage.get('val_top1')}")
        folder = args.out
    if args.push:
        print(f"uploaded {folder}: {push_folder(folder, args.push, private=args.private)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

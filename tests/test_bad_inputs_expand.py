"""Every bad input to tools/expand.py: exit code 2, one ``error: ...`` line, nothing written (issue 10)."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import save_file

from learngene.checkpoint import save_learngene, save_model_folder
from learngene.tools import expand

ROOT = Path(__file__).resolve().parents[1]

# A 3-channel parent: timm's inherited mean/std then match its channels and it prints no warning when loaded.
PARENT = dict(img_size=8, patch_size=2, in_chans=3, num_classes=10, embed_dim=32, num_heads=4, depth=3)


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """A learngene, a model folder, and damaged or foreign files, in a folder of their own."""
    root = tmp_path_factory.mktemp("sources")
    torch.manual_seed(0)
    aux = timm.create_model("sws_aux_vit_tiny_patch16_224", img_size=8, patch_size=2, in_chans=1, num_classes=10,
                            embed_dim=32, num_heads=4)
    save_learngene(aux, root / "lg.safetensors")
    save_model_folder(timm.create_model("vit_tiny_patch16_224", **PARENT), root / "parent", preprocessing=None,
                      model_args=PARENT)
    (root / "truncated.safetensors").write_bytes((root / "lg.safetensors").read_bytes()[:3000])
    (root / "empty.pt").write_bytes(b"")
    save_file({"w": torch.zeros(2)}, root / "foreign.safetensors")
    (root / "file.txt").write_text("a regular file")
    damaged = root / "damaged_parent"
    damaged.mkdir()
    (damaged / "config.json").write_bytes((root / "parent" / "config.json").read_bytes())
    (damaged / "model.safetensors").write_bytes((root / "parent" / "model.safetensors").read_bytes()[:2000])
    return root


SCRATCH_ARGS = ("{'img_size': [8, 8], 'patch_size': [2, 2], 'in_chans': 1, 'num_classes': 10, 'embed_dim': 32, "
                "'num_heads': 5, 'mlp_ratio': 4.0, 'qkv_bias': True, 'depth': 3, 'class_token': False, "
                "'global_pool': 'avg'}")
PARENT_ARGS = ("{'img_size': [8, 8], 'patch_size': 2, 'in_chans': 3, 'num_classes': 10, 'embed_dim': 30, "
               "'num_heads': 4, 'depth': 3, 'global_pool': 'token'}")
NOT_DIVISIBLE = ": dim should be divisible by num_heads: choose --model and --model-args that timm accepts " \
                "(num_heads must divide embed_dim)"

# name: (argv, the exact error line), {lg}, {parent} and {root} standing for the sources
CASES = {
    "num-classes -1": ("{lg} --depth 12 --num-classes -1",
                       "argument --num-classes: must be an integer >= 1, got -1 (see expand.py --help)"),
    "num-classes 0": ("{lg} --depth 12 --num-classes 0",
                      "argument --num-classes: must be an integer >= 1, got 0 (see expand.py --help)"),
    "scratch depth 0": ("{lg} --method scratch --depth 0",
                        "argument --depth: must be an integer >= 1, got 0 (see expand.py --help)"),
    "weight-selection depth 0": ("{parent} --method weight-selection --depth 0",
                                 "argument --depth: must be an integer >= 1, got 0 (see expand.py --help)"),
    "model-args depth 0": ("{parent} --method weight-selection --model-args {\"depth\":0}",
                           "depth must be a positive integer, got 0"),
    "model-args num_classes 0": ("{lg} --method scratch --depth 3 --model-args {\"num_classes\":0}",
                                 "num_classes must be a positive integer, got 0"),
    "seed -1": ("{lg} --depth 4 --seed -1", "argument --seed: must be an integer >= 0, got -1 (see expand.py --help)"),
    "scratch from a learngene without depth": ("{lg} --method scratch",
                                               "scratch from a learngene needs --depth: its Des-Nets have no depth "
                                               "of their own"),
    "scratch num_heads 5": ("{lg} --method scratch --depth 3 --model-args {\"num_heads\":5}",
                            f"cannot create 'vit_tiny_patch16_224' with {SCRATCH_ARGS}{NOT_DIVISIBLE}"),
    "weight-selection embed_dim 30": ("{parent} --method weight-selection --model-args {\"embed_dim\":30}",
                                      f"cannot create 'vit_tiny_patch16_224' with {PARENT_ARGS}{NOT_DIVISIBLE}"),
    "out below a regular file": ("{lg} --depth 4 --out {root}/file.txt/des4",
                                 "output {root}/file.txt/des4 cannot be created: {root}/file.txt is a file, not a "
                                 "folder; choose another --out"),
    "out is a regular file": ("{lg} --depth 4 --out {root}/file.txt",
                              "output {root}/file.txt already exists and is not empty: choose a new --out or "
                              "remove it"),
    "truncated learngene": ("{root}/truncated.safetensors --depth 4",
                            "{root}/truncated.safetensors is truncated or not a safetensors learngene file (SafetensorError: Error "
                            "while deserializing header: invalid header length): write it again with "
                            "tools/train_aux.py"),
    "empty .pt as learngene": ("{root}/empty.pt --depth 4",
                               "{root}/empty.pt is not a learngene file but a torch one (a training state like "
                               "last.pt, or an official checkpoint): pass the run's learngene.safetensors (written "
                               "when an Aux-Net run finishes), or convert an official checkpoint with "
                               "tools/convert.py"),
    "foreign safetensors": ("{root}/foreign.safetensors --depth 4",
                            "{root}/foreign.safetensors is not a learngene file (no 'learngene/v2' metadata): pass "
                            "a file written by tools/train_aux.py"),
    "learngene of another method": ("{lg} --method tleg --depth 4",
                                    "{lg} holds a sws_aux_vit_tiny_patch16_224 learngene, not a TLEGAuxViT one: pick "
                                    "the --method that trained it"),
    "folder as a learngene": ("{parent} --depth 4",
                              "{parent} is a model folder, not a learngene file: folders are sources of simple-lg, "
                              "vanilla-lg, weight-selection, pf and scratch"),
    "learngene as a folder": ("{lg} --method weight-selection",
                              "{lg} is a learngene file: expand it into a Des-Net first (tools/expand.py LEARNGENE "
                              "--depth D --out DES) and pass DES"),
    "truncated model folder": ("{root}/damaged_parent --method weight-selection",
                               "cannot load model folder {root}/damaged_parent: Error while deserializing header: "
                               "invalid header length"),
    "unknown model": ("{lg} --method scratch --depth 3 --model no_such_vit",
                      "cannot create 'no_such_vit' with "
                      + SCRATCH_ARGS.replace("'num_heads': 5", "'num_heads': 4")
                      + ": Unknown model (no_such_vit): choose --model and --model-args that timm accepts "
                        "(num_heads must divide embed_dim)"),
    # degenerate or impossible models
    "width beyond memory": ("{lg} --depth 4 --width 100000",
                            "a vit_tiny_patch16_224 of embed_dim 100000, depth 4, mlp_ratio 4.0 has 480,008,500,010 "
                            "parameters: making it needs about 5,364.5 GiB of memory (3 float32 copies), more than "
                            "this machine's {memory} GiB: choose a smaller width or depth"),
    "model-args embed_dim beyond memory": ("{parent} --method weight-selection --model-args "
                                           "{\"embed_dim\":400000,\"num_heads\":4}",
                                           "a vit_tiny_patch16_224 of embed_dim 400000, depth 3 has "
                                           "5,760,032,800,010 parameters: making it needs about 64,373.4 GiB of "
                                           "memory (3 float32 copies), more than this machine's {memory} GiB: "
                                           "choose a smaller width or depth"),
    "mlp-ratio inf": ("{lg} --depth 4 --mlp-ratio inf", "--mlp-ratio inf is not a finite positive number: give e.g. "
                                                        "--mlp-ratio 4, or leave it out for the learngene's"),
    "mlp-ratio nan": ("{lg} --depth 4 --mlp-ratio nan", "--mlp-ratio nan is not a finite positive number: give e.g. "
                                                        "--mlp-ratio 4, or leave it out for the learngene's"),
    "mlp-ratio 0": ("{lg} --depth 4 --mlp-ratio 0", "--mlp-ratio 0.0 is not a finite positive number: give e.g. "
                                                    "--mlp-ratio 4, or leave it out for the learngene's"),
    "front keeps no patch coefficient": ("{parent} --method front --keep-ratio 0.2",
                                         "keep_ratio 0.2 keeps no DCT coefficient of patch_embed.proj.weight, whose "
                                         "smallest axis has 4 (int(4 x 0.2) = 0): the Des-Net tensor would be a "
                                         "constant; use keep_ratio >= 0.25"),
    "front keep-ratio 0.05": ("{parent} --method front --keep-ratio 0.05",
                              "keep_ratio 0.05 keeps no DCT coefficient of patch_embed.proj.weight, whose smallest "
                              "axis has 4 (int(4 x 0.05) = 0): the Des-Net tensor would be a constant; use keep_ratio "
                              ">= 0.25"),
}
# this machine's memory as the memory check reads it
MEMORY = f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:,.1f}"


def fill(text: str, sources: Path) -> str:
    for name, path in (("{lg}", sources / "lg.safetensors"), ("{parent}", sources / "parent"), ("{root}", sources),
                       ("{memory}", MEMORY)):
        text = text.replace(name, str(path))
    return text


def run(argv: str, sources: Path, out: Path, capsys) -> tuple[int, str, str]:
    args = fill(argv, sources).split()
    if "--out" not in args:
        args += ["--out", str(out)]
    code = expand.main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("name", CASES)
def test_bad_input_is_one_error_line_and_writes_nothing(name, sources, tmp_path, capsys):
    argv, message = CASES[name]
    before = sorted(p.relative_to(sources) for p in sources.rglob("*"))
    out = tmp_path / "des"
    code, stdout, stderr = run(argv, sources, out, capsys)
    assert (code, stdout) == (2, "")
    assert stderr.splitlines() == ["error: " + fill(message, sources)]
    assert list(tmp_path.iterdir()) == []  # no --out folder, no temporary folder beside it
    assert sorted(p.relative_to(sources) for p in sources.rglob("*")) == before
    assert (sources / "file.txt").read_text() == "a regular file"


def test_a_good_input_passes_the_same_checks(sources, tmp_path, capsys):
    """The table's harness is not what makes the cases fail: a valid call through it writes its folder."""
    code, stdout, stderr = run("{lg} --method scratch --depth 3", sources, tmp_path / "des", capsys)
    assert (code, stderr) == (0, "")
    assert stdout.startswith(f"wrote {tmp_path / 'des'}: scratch, depth 3, width 32,")


def test_exit_code_of_the_real_process(sources, tmp_path):
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "expand.py"), str(sources / "lg.safetensors"),
                             "--depth", "12", "--num-classes", "-1", "--out", str(tmp_path / "des")],
                            capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr.splitlines() == [
        "error: argument --num-classes: must be an integer >= 1, got -1 (see expand.py --help)"]
    assert list(tmp_path.iterdir()) == []

"""The `learngene` console command (and `python -m learngene`): the tools/*.py scripts after a pip install."""
import importlib.util
import json
import sys
from pathlib import Path

import pytest
from setuptools import find_packages

from learngene import cli

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser as the tomli package (the dev extra installs it there)
    import tomli as tomllib
ROOT = Path(__file__).resolve().parents[1]


def test_pyproject_ships_every_package_and_the_tools():
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())
    project, tool = setuptools["project"], setuptools["tool"]["setuptools"]
    assert project["scripts"] == {"learngene": "learngene.cli:main"}
    assert tool["package-dir"] == {"learngene.tools": "tools", "learngene.configs": "configs"}
    assert sorted(tool["packages"]) == sorted(find_packages(str(ROOT), include=["learngene*"]) +
                                              ["learngene.tools", "learngene.configs"])
    assert {f"{module}.py" for module in cli.COMMANDS.values()} == \
        {p.name for p in (ROOT / "tools").glob("*.py")} - {"__init__.py"}


def test_help_and_unknown_command(capsys):
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: learngene COMMAND [ARGS...]") and all(f"\n  {c} " in out for c in cli.COMMANDS)
    assert cli.main(["expnad", "x"]) == 2
    assert capsys.readouterr().err == ("error: unknown command 'expnad': choose one of expand, init, share, convert, "
                                       "train-aux, finetune, benchmark, bench-speed (see learngene --help)\n")
    assert cli.main([]) == 2
    assert capsys.readouterr().err.startswith("error: no command given: choose one of expand")


@pytest.mark.skipif(importlib.util.find_spec("learngene.tools") is None,
                    reason="learngene.tools exists once the package is installed (pip install -e .), as in CI")
def test_command_runs_the_tool(tiny_aux, tmp_path, capsys):
    from learngene.checkpoint import save_learngene

    save_learngene(tiny_aux, tmp_path / "lg.safetensors")
    assert cli.main(["expand", str(tmp_path / "lg.safetensors"), "--depth", "4", "--out", str(tmp_path / "des")]) == 0
    assert json.loads((tmp_path / "des" / "init.json").read_text())["method"] == "sws"
    assert capsys.readouterr().out.startswith(f"wrote {tmp_path / 'des'}: sws, depth 4")
    assert sys.modules["learngene.tools.expand"].__file__ == str(ROOT / "tools" / "expand.py")


def test_the_command_imports_no_torch():
    """What makes `learngene --help` and a mistyped command answer at once: neither imports torch (or timm)."""
    import subprocess

    code = ("import sys; from learngene import cli; cli.main(['--help']); cli.main(['nope']); "
            "print(sorted(m for m in ('torch', 'timm', 'learngene.models') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                            env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert result.stdout.splitlines()[-1] == "[]", result.stderr
    import learngene

    assert learngene.models.SWSAuxViT.__name__ == "SWSAuxViT"  # still reachable as an attribute


def test_import_learngene_registers_the_aux_nets_once_timm_loads():
    """``import learngene`` imports neither torch nor timm, and timm imported after it knows every Aux-Net."""
    import subprocess

    names = [f"{family}_vit_{size}_patch16_224" for family in ("sws_aux", "tleg_aux")
             for size in ("tiny", "small", "base")]
    code = ("import sys; import learngene; print(sorted(m for m in ('torch', 'timm') if m in sys.modules)); "
            f"import timm; print([timm.is_model(n) for n in {names!r}]); "
            "print(type(timm.create_model('tleg_aux_vit_tiny_patch16_224', img_size=32)).__name__)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                            env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"})
    assert result.stdout.splitlines() == ["[]", str([True] * 6), "TLEGAuxViT"], result.stderr

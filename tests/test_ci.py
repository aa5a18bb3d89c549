""".ci/run: the README's test command, with the tested versions; Slurm installed only where it can be, else one line
saying that its tests are skipped and why. Run with stand-ins for id, apt-get, Slurm and python3 on PATH."""
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README_TEST_BLOCK = re.compile(r"^Tests:\n\n```bash[^\n]*\n(.*?)\n```", re.M | re.S)


def stand_ins(folder: Path, uid: int, programs: tuple[str, ...]) -> dict:
    """A PATH of ``folder`` alone: ``id`` says ``uid``, ``python3`` prints its arguments and whether the Slurm tests
    are required, each of ``programs`` exists and does nothing."""
    folder.mkdir()
    (folder / "dirname").symlink_to(subprocess.run(["which", "dirname"], capture_output=True, text=True,
                                                   check=True).stdout.strip())
    scripts = {"id": f'[ "$1" = -u ] && echo {uid} || echo tester',
               "python3": 'echo "python3 $* (LEARNGENE_REQUIRE_SLURM=${LEARNGENE_REQUIRE_SLURM-unset})"',
               **{name: "exit 0" for name in programs}}
    for name, body in scripts.items():
        (folder / name).write_text(f"#!/bin/sh\n{body}\n")
        (folder / name).chmod(0o755)
    return {"PATH": str(folder)}


def run_ci(env: dict) -> list[str]:
    done = subprocess.run(["/bin/bash", str(ROOT / ".ci" / "run")], env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    return done.stdout.splitlines()


def test_the_readme_test_command_is_the_one_ci_runs():
    readme = README_TEST_BLOCK.search((ROOT / "README.md").read_text()).group(1)
    assert (ROOT / ".ci" / "run").read_text().rstrip().splitlines()[-1] == readme
    assert readme == """python3 -m pip install -q -c constraints.txt -e '.[dev]' && HF_HUB_OFFLINE=1 python3 -m pytest -q -m \"\" -n 2 --dist loadgroup"""


@pytest.mark.parametrize("uid,programs", [(1000, ("apt-get",)), (0, ())], ids=["not root", "no apt-get"])
def test_without_slurm_and_the_means_to_install_it_the_slurm_tests_are_skipped_in_one_line(tmp_path, uid, programs):
    lines = run_ci(stand_ins(tmp_path / "bin", uid, programs))
    apt = "present" if programs else "missing"
    assert lines == [
        "Slurm tests skipped: slurm-wlm and munge are not installed, and installing them needs root and apt-get "
        f"(tester, apt-get {apt})",
        "python3 -m pip install -q -c constraints.txt -e .[dev] (LEARNGENE_REQUIRE_SLURM=unset)",
        "python3 -m pytest -q -m  -n 2 --dist loadgroup (LEARNGENE_REQUIRE_SLURM=unset)"]


def test_with_slurm_installed_its_tests_are_required(tmp_path):
    lines = run_ci(stand_ins(tmp_path / "bin", 1000, ("slurmctld", "munged")))
    assert lines == ["python3 -m pip install -q -c constraints.txt -e .[dev] (LEARNGENE_REQUIRE_SLURM=1)",
                     "python3 -m pytest -q -m  -n 2 --dist loadgroup (LEARNGENE_REQUIRE_SLURM=1)"]


def test_constraints_pin_every_package_to_one_version():
    pins = [line for line in (ROOT / "constraints.txt").read_text().splitlines() if line and not line.startswith("#")]
    assert pins and all(re.fullmatch(r"[a-z0-9-]+==[0-9][0-9a-z.]*", pin) for pin in pins), pins
    names = [pin.split("==")[0] for pin in pins]
    assert len(set(names)) == len(names)
    assert {"torch", "torchvision", "timm", "pillow", "numpy", "pytest"} <= set(names)

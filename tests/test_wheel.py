"""The package as a user installs it: a wheel built from the checkout, installed into a fresh virtual environment
outside the repository, runs the `learngene` command with the configs and presets it ships (learngene.configs)."""
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run(command: list, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run([str(c) for c in command], cwd=cwd, env=env, capture_output=True, text=True)
    assert result.returncode == 0, f"{command} failed:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.mark.slow
def test_installed_wheel_runs_the_presets_and_a_training_outside_a_checkout(tmp_path):
    source = tmp_path / "source"  # a copy of the checkout's files: building writes build/ and *.egg-info
    files = run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], ROOT).stdout.split()
    for name in files:
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            (source / name).write_bytes((ROOT / name).read_bytes())
    run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", ".", "-w", tmp_path / "dist"],
        source)
    wheel, = (tmp_path / "dist").glob("learngene_sws-*.whl")
    shipped = {n for n in zipfile.ZipFile(wheel).namelist() if n.startswith("learngene/configs/")}
    assert shipped == {f"learngene/{p.relative_to(ROOT)}" for p in (ROOT / "configs").rglob("*")
                       if p.suffix in (".yaml", ".py")}

    venv = tmp_path / "venv"  # torch and timm come from this interpreter's site-packages
    run([sys.executable, "-m", "venv", "--system-site-packages", venv], tmp_path)
    run([venv / "bin" / "python", "-m", "pip", "install", "-q", "--no-deps", wheel], tmp_path)
    work = tmp_path / "work"  # no configs/ here: every config comes from the package
    work.mkdir()
    env = {"PATH": f"{venv / 'bin'}:{os.environ['PATH']}", "HOME": str(tmp_path), "HF_HUB_OFFLINE": "1",
           "OMP_NUM_THREADS": "1"}
    where = run(["python", "-c", "import learngene.tools; print(learngene.tools.__file__)"], work, env).stdout
    assert where.startswith(str(venv))

    plan = run(["learngene", "benchmark", "--preset", "quick", "--plan"], work, env).stdout
    checkout = {**env, "PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT)}
    assert plan == run([sys.executable, "tools/benchmark.py", "--preset", "quick", "--plan"], ROOT, checkout).stdout
    assert plan.startswith("plan: ")
    run(["learngene", "finetune", "--config", "configs/digits/ancestry.yaml", "optim.epochs=1", "data.train_limit=64",
         "model.kwargs.depth=2"], work, env)
    run(["learngene", "train-aux", "optim.epochs=1", "data.train_limit=64"], work, env)
    assert (work / "runs" / "digits" / "aux" / "learngene.safetensors").is_file()
    assert not (work / "configs").exists()

"""Every code block of the README and docs/*.md runs as written, in order, so the docs cannot drift from the code.

The rule, for whoever adds a block:

* ```` ```bash ```` and ```` ```python ```` blocks are run; ```` ```yaml ```` blocks must parse; blocks of any other
  language (or none: formulas, console output) are text.
* A block that cannot run here says why in its info string, after the language: ```` ```bash no-test: REASON ````
  (a GPU, the network, the full benchmark, data or files this repository does not have). Markdown shows only the
  language.

Blocks run in a scratch folder that holds copies of tools/ and configs/ whose digits configs train 1 epoch on 64
images (``TINY``), so the commands run as written in seconds. Each shell line runs once per session: the README and
docs/training.md share the pipeline, and a second ``--out runs/des12`` would be refused.
"""
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"^```([^\n]*)\n(.*?)^```[ \t]*$", re.M | re.S)
NO_TEST = re.compile(r"\bno-test:\s*(\S.*)$")
TINY = {"optim": {"epochs": 1, "warmup_epochs": 0}, "data": {"train_limit": 64}}


def blocks(doc: Path) -> list[tuple[str, str, str | None]]:
    """``(language, code, reason not to run it or None)`` of each fenced block of ``doc``."""
    found = []
    for info, code in BLOCK.findall(doc.read_text()):
        language = info.split()[0] if info.split() else ""
        reason = NO_TEST.search(info)
        assert reason or "no-test" not in info, f"{doc.name}: 'no-test:' needs a reason: {info!r}"
        found.append((language, code, reason.group(1) if reason else None))
    return found


def shell_lines(code: str) -> list[str]:
    """The commands of a shell block, one per line (``\\`` continues a line)."""
    return [line for line in code.replace("\\\n", " ").splitlines() if line.strip() and not line.lstrip().startswith("#")]


def merge(config: dict, changes: dict) -> dict:
    for key, value in changes.items():
        config[key] = merge(config.get(key) or {}, value) if isinstance(value, dict) else value
    return config


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    """A folder with tools/ and tiny digits configs/; ``run(argv_or_code)`` runs there."""
    folder = tmp_path_factory.mktemp("docs")
    shutil.copytree(ROOT / "tools", folder / "tools")
    shutil.copytree(ROOT / "configs", folder / "configs")
    for path in (folder / "configs" / "digits").glob("*.yaml"):
        path.write_text(yaml.safe_dump(merge(yaml.safe_load(path.read_text()), TINY)))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    done = set()

    def run(command: list[str], what: str, key: str) -> None:
        if key in done:
            return
        result = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, f"{what} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
        done.add(key)

    return run


def run_blocks(doc: Path, sandbox) -> None:
    for language, code, skipped in blocks(doc):
        if skipped:
            continue
        if language == "yaml":
            yaml.safe_load(code)
        elif language == "bash":
            for line in shell_lines(code):
                line = re.sub(r"^python3? ", f"{sys.executable} ", line)
                sandbox(["bash", "-euo", "pipefail", "-c", line], f"{doc.name}: {line}",
                        " ".join(shlex.split(line, comments=True)))  # the same command, whatever its comment
        elif language == "python":
            sandbox([sys.executable, "-c", code], f"{doc.name}: python block\n{code}", code)


@pytest.mark.slow
@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_code_blocks_run_as_written(doc, sandbox):
    run_blocks(DOCS[0], sandbox)  # the README's pipeline makes the runs/ the docs start from (run once)
    run_blocks(doc, sandbox)


def test_the_rule_reads_info_strings(tmp_path):
    doc = tmp_path / "x.md"
    doc.write_text("```bash no-test: needs a GPU\ntorchrun x\n```\n\n```python\nprint(1)\n```\n\n```\nf = 1\n```\n")
    assert blocks(doc) == [("bash", "torchrun x\n", "needs a GPU"), ("python", "print(1)\n", None), ("", "f = 1\n", None)]
    doc.write_text("```bash no-test:\nx\n```\n")
    with pytest.raises(AssertionError, match="needs a reason"):
        blocks(doc)

import subprocess
import sys
from pathlib import Path

import pytest

from learngene.cli import ArgumentParser, entry_point, int_at_least
from learngene.errors import LearngeneError, first_line
from learngene.tools import bench_speed as speed

ROOT = Path(__file__).resolve().parents[1]


def test_bad_input_and_ctrl_c_are_one_line(capsys):
    @entry_point
    def refuses(argv):
        raise LearngeneError("depth must be a positive integer, got 0")

    @entry_point
    def interrupted(argv):
        raise KeyboardInterrupt

    @entry_point(on_interrupt="run it again with resume=auto to continue")
    def interrupted_with_hint(argv):
        raise KeyboardInterrupt

    @entry_point
    def interrupted_with_message(argv):
        raise KeyboardInterrupt("benchmark stopped by SIGTERM; run the same command again to continue")

    assert refuses([]) == 2
    assert capsys.readouterr().err == "error: depth must be a positive integer, got 0\n"
    assert interrupted([]) == 130
    assert capsys.readouterr().err == "interrupted: stopped by Ctrl-C; run the same command again\n"
    assert interrupted_with_hint([]) == 130
    assert capsys.readouterr().err == "interrupted: run it again with resume=auto to continue\n"
    assert interrupted_with_message([]) == 130
    assert capsys.readouterr().err == \
        "interrupted: benchmark stopped by SIGTERM; run the same command again to continue\n"


def test_a_real_sigint_gives_exit_130_and_no_traceback():
    script = (
        "import os, signal, time\n"
        "from learngene.cli import entry_point\n"
        "@entry_point\n"
        "def main(argv):\n"
        "    os.kill(os.getpid(), signal.SIGINT)\n"
        "    time.sleep(60)\n"  # Python raises KeyboardInterrupt here, at once
        "    return 0\n"
        "raise SystemExit(main())\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert (result.returncode, result.stdout, result.stderr) == (
        130, "", "interrupted: stopped by Ctrl-C; run the same command again\n")


def test_int_at_least_and_first_line():
    parser = ArgumentParser(prog="tool.py")
    parser.add_argument("--depth", type=int_at_least(1))
    assert parser.parse_args(["--depth", "3"]).depth == 3
    for value, message in (("0", "must be an integer >= 1, got 0"), ("x", "invalid int value: 'x'")):
        with pytest.raises(LearngeneError) as e:
            parser.parse_args(["--depth", value])
        assert str(e.value) == f"argument --depth: {message} (see tool.py --help)"
    assert first_line(RuntimeError("Error(s) in loading state_dict:\n\tsize mismatch")) == \
        "Error(s) in loading state_dict:"
    assert first_line(AssertionError()) == "AssertionError"


def test_bench_speed_help_names_the_tool_and_its_sections(capsys):
    with pytest.raises(SystemExit) as e:
        speed.main(["--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith("usage: bench_speed.py ")
    assert "\nMeasure what learngene training costs, as ratios of runs timed side by side in one process.\n" in text
    assert "comma-separated subset of aux, kd, toggles, expand (default all; described below)" in " ".join(text.split())
    assert "\n* ``kd``: student-only step vs online distillation" in text
    assert speed.main(["--sections", "aux,speed"]) == 2
    assert capsys.readouterr().err == "error: unknown --sections ['speed']: choose from aux, kd, toggles, expand\n"

"""The ``sluice`` command as a whole: every subcommand there, usage errors on one line."""

import subprocess
import sys

import pytest


def sluice(*args):
    return subprocess.run([sys.executable, "-m", "sluice_local", *args], capture_output=True,
                          text=True, timeout=120, check=False)


def test_every_subcommand_is_listed():
    done = sluice("--help")
    assert done.returncode == 0
    for command in ("plan", "profile", "simulate"):
        assert command in done.stdout


@pytest.mark.parametrize(("args", "says"), [
    (("simulate", "p.yaml", "--profiles", "f.json", "--rate", "abc"),
     "sluice simulate: error: argument --rate: invalid float value: 'abc'"),
    (("plan",), "sluice plan: error: the following arguments are required"),
    (("diagonal",), "sluice: error: argument command: invalid choice: 'diagonal'"),
])
def test_usage_errors_are_one_line_and_exit_2(args, says):
    done = sluice(*args)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [done.stderr.strip()]
    assert done.stderr.startswith(says)

"""README.md is the learner's entry: its Quick start and reading order name files and
options that exist, and it stays short enough to finish."""
import os
import re
import subprocess
import sys

from conftest import ROOT

README = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
SCRIPTS = ("rnn-numpy.py", "lstm-numpy.py", "dnc-numpy.py", "dnc-debug.py")


def section(title):
    """The text of the README section '## title', up to the next '## '."""
    start = README.index(f"\n## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start:end if end >= 0 else len(README)]


def help_text(script):
    p = subprocess.run([sys.executable, os.path.join(ROOT, script), "--help"], capture_output=True, text=True,
                       timeout=60, cwd=ROOT)
    assert p.returncode == 0, p.stderr
    return p.stdout


def test_readme_is_short():
    assert README.count("\n") <= 250


def test_reading_order_and_layout_name_files_that_exist():
    named = re.findall(r"`([\w./-]+\.(?:py|md)|[\w-]+/)`", section("Reading order") + section("Layout"))
    assert {"rnn-numpy.py", "lstm-numpy.py", "common.py", "train.py", "dnc-numpy.py", "dnc-debug.py",
            "docs/dnc.md"} <= set(named)
    missing = [f for f in named if not os.path.exists(os.path.join(ROOT, f))]
    assert not missing, missing
    order = [re.match(r"\d+\. `([^`]+)`", line).group(1) for line in section("Reading order").splitlines()
             if re.match(r"\d+\. `", line)]
    assert order[:2] == ["rnn-numpy.py", "lstm-numpy.py"] and "train.py" in order


def test_quick_start_commands_run_what_exists():
    block = re.search(r"```\n(.*?)```", section("Quick start"), re.S).group(1).splitlines()
    assert block[-1] == "python -m pytest -q tests"  # the command .ci/run runs
    assert "python -m pytest -q tests" in open(os.path.join(ROOT, ".ci", "run")).read()
    for line in block:
        words = line.split()
        if words[:2] == ["pip", "install"]:
            assert os.path.exists(os.path.join(ROOT, words[-1]))
        elif words[0] == "python" and words[1].endswith(".py"):
            assert os.path.exists(os.path.join(ROOT, words[1]))


def test_every_option_the_readme_names_exists():
    helps = "".join(help_text(s) for s in SCRIPTS)
    named = set(re.findall(r"`[^`]*?(--[a-z][a-z0-9-]*)", README)) | set(re.findall(r"python \S+\.py[^\n`]*", README))
    options = {o for o in named if o.startswith("--")}
    for command in named - options:  # the options of every command line the README shows
        options |= set(re.findall(r"(--[a-z][a-z0-9-]*)", command))
    assert {"--sample", "--load", "--save", "--no-save", "--gradcheck", "--task"} <= options
    missing = sorted(o for o in options if not re.search(rf"(?<![\w-]){re.escape(o)}(?![\w-])", helps))
    assert not missing, missing

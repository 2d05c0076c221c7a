"""Shared fixtures: the project root on sys.path, the model scripts loaded as modules,
small generated texts, and a helper that runs a script as a user would."""
import os
import random
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import common  # noqa: E402

SHARED_ALICE = os.path.join(ROOT, "..", "shared", "data", "alice29.txt")
WORDS = ("alice was beginning to get very tired of sitting by her sister on the bank "
         "and of having nothing to do once or twice she had peeped into the book").split()


def make_text(n_words=400, seed=0):
    """A small English-looking text, the same for the same arguments."""
    r = random.Random(seed)
    lines, line = [], []
    for _ in range(n_words):
        line.append(r.choice(WORDS))
        if len(line) == 9:
            lines.append(" ".join(line).capitalize() + ".\n")
            line = []
    return "".join(lines) + " ".join(line) + "\n"


@pytest.fixture(scope="session")
def rnn():
    return common.load_script("rnn-numpy.py")


@pytest.fixture(scope="session")
def lstm():
    return common.load_script("lstm-numpy.py")


@pytest.fixture(params=["rnn", "lstm"])
def model(request):
    """Each test that takes `model` runs for both models."""
    return request.getfixturevalue(request.param)


@pytest.fixture
def text_file(tmp_path):
    path = tmp_path / "text.txt"
    path.write_text(make_text())
    return path


# sizes small enough that a run of a few dozen iterations takes well under a second
TINY = ["--hidden", "8", "--batch", "4", "--seq", "8", "--report", "5"]


def run_script(kind, *args, timeout=120, cwd=None):
    """Run rnn-numpy.py / lstm-numpy.py in a subprocess. -> CompletedProcess (text)"""
    cmd = [sys.executable, os.path.join(ROOT, f"{kind}-numpy.py"), *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=cwd)


def arrays(path, prefixes=("param/", "opt/", "state/", "best/")):
    """The arrays of a checkpoint whose names start with one of prefixes."""
    import numpy as np
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files if k.startswith(prefixes)}


def assert_same_arrays(a, b):
    import numpy as np
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def stderr_lines(p):
    return [line for line in p.stderr.splitlines() if line.strip()]


@pytest.fixture
def no_matplotlib_env(tmp_path):
    """An environment in which `import matplotlib` fails, as on a machine without it."""
    fake = tmp_path / "fake"
    (fake / "matplotlib").mkdir(parents=True)
    (fake / "matplotlib" / "__init__.py").write_text("raise ImportError('No module named matplotlib')\n")
    return dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(fake), os.environ.get("PYTHONPATH")])))


@pytest.fixture(autouse=True)
def run_in_a_fresh_folder(tmp_path, monkeypatch):
    """Every test runs in a folder of its own, so that the scripts' default checkpoints
    (checkpoints/KIND-NAME.npz) land there, never in the project."""
    monkeypatch.chdir(tmp_path)

"""Shared fixtures: the project root on sys.path, the model scripts loaded as modules,
small generated texts, and a helper that runs a script as a user would."""
import io
import os
import random
import subprocess
import sys

import numpy
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


# ----------------------------------------------------------------------------------
# The DNC tests' shared helpers: an op's vector-Jacobian product against central
# differences, and float64 params moved off their initial values


def as_tuple(x):
    return x if isinstance(x, tuple) else (x,)


def vjp_errors(forward, backward, inputs, seed=0, h=1e-6, zero_ok=()):
    """Check an op's VJP against central differences of loss = sum_k sum(out_k * G_k).

    forward(inputs dict) -> (outputs tuple, cache); backward(G tuple, cache) -> dict with
    the keys of inputs. Every entry of every input is perturbed in place. -> {name: max
    |num - ana| / max |ana|}; an all-zero analytic gradient fails unless listed in zero_ok,
    and then the numerical one must be zero as well (returned as 0)."""
    rng = numpy.random.default_rng(seed)
    outs, cache = forward(inputs)
    G = tuple(rng.standard_normal(o.shape) for o in as_tuple(outs))
    ana = {k: numpy.array(v, dtype=numpy.float64, copy=True) for k, v in backward(G, cache).items()}
    assert ana.keys() == inputs.keys()

    def loss():
        return float(sum((o * g).sum() for o, g in zip(as_tuple(forward(inputs)[0]), G)))

    errors = {}
    for name, x in inputs.items():
        assert x.dtype == numpy.float64
        num = numpy.zeros_like(x)
        for at in numpy.ndindex(x.shape):
            old = x[at]
            x[at] = old + h
            lp = loss()
            x[at] = old - h
            lm = loss()
            x[at] = old
            num[at] = (lp - lm) / (2 * h)
        a = ana[name]
        assert a.shape == x.shape, name
        scale = numpy.abs(a).max()
        if name in zero_ok:
            assert scale == 0 and numpy.abs(num).max() < 1e-9, name
            errors[name] = 0.0
        else:
            assert scale > 0, f"{name}: all-zero analytic gradient"
            errors[name] = float(numpy.abs(num - a).max() / scale)
    return errors


def random_dnc_params(dnc, cfg, V, seed=0, noise=0.3):
    """float64 params of the DNC (the loaded dnc-numpy.py) moved off their initial values,
    and the generator that made them."""
    rng = numpy.random.default_rng(seed)
    params = dnc.init_params(cfg, V, rng, numpy.float64)
    for v in params.values():
        v += noise * rng.standard_normal(v.shape)
    return params, rng


def resume_runs(d, base, options, first, then, plain=None):
    """The exact-resume experiment of an option: `first + then` iterations in one run (one.npz),
    and `first`, then `then` more from its checkpoint without naming the options again (two.npz:
    the checkpoint's cfg must carry them); with plain, also a run of that many iterations without
    the options (plain.npz). base: the run's other arguments. -> runs {name: CompletedProcess},
    each asserted to have exited 0."""
    runs = {"one": run_script("dnc", *base, *options, "--iters", first + then, "--save", d / "one.npz"),
            "first": run_script("dnc", *base, *options, "--iters", first, "--save", d / "two.npz")}
    runs["second"] = run_script("dnc", *base, "--iters", then, "--load", d / "two.npz", "--save", d / "two.npz")
    if plain:
        runs["plain"] = run_script("dnc", *base, "--iters", plain, "--save", d / "plain.npz")
    for name, p in runs.items():
        assert p.returncode == 0, (name, p.stderr)
    return runs


def assert_model_gradients(model, cfg, V, tol, **kwargs):
    """common.check_model_gradients on every parameter of the model, from a carried state:
    each parameter checked (none all-zero, none skipped) and the worst error under tol."""
    out = io.StringIO()
    worst, count = common.check_model_gradients(model, cfg, V=V, out=out, **kwargs)
    assert count == len(model.init_params(cfg, V, numpy.random.default_rng(0), numpy.float64))
    assert "ALL-ZERO" not in out.getvalue() and "not checked" not in out.getvalue()
    assert worst < tol, out.getvalue()

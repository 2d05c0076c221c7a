"""The analytic gradients of both models match central differences in float64, and the
gradient check itself can tell a wrong gradient from a right one."""
import io

import numpy as np
import pytest

import common
from conftest import run_script


@pytest.mark.parametrize("layers", [1, 2])
def test_model_gradients(model, layers):
    out = io.StringIO()
    worst, count = common.check_model_gradients(model, {"hidden": 5, "layers": layers}, out=out)
    assert count == 3 * layers + 2  # Wx, Wh, b per layer, then Wy, by
    assert worst < 1e-7, out.getvalue()
    table = out.getvalue()
    for name in ["Wy", "by"] + [f"{w}{l}" for l in range(layers) for w in ("Wx", "Wh", "b")]:
        assert f"{name}:" in table


def _quadratic_problem():
    """loss = sum(a * x^2) / 2 for two parameters: the gradient is a * x, known exactly."""
    rng = np.random.default_rng(1)
    params = {"x": rng.standard_normal((3, 4)), "y": rng.standard_normal(5)}
    scale = {"x": 2.0, "y": 0.5}

    def loss_fn(p):
        return sum(float((scale[k] * p[k] ** 2).sum()) / 2 for k in p)

    grads = {k: scale[k] * v for k, v in params.items()}
    return loss_fn, params, grads


def test_gradcheck_passes_on_a_known_gradient():
    loss_fn, params, grads = _quadratic_problem()
    before = {k: v.copy() for k, v in params.items()}
    worst = common.gradcheck(loss_fn, params, grads, out=io.StringIO())
    assert worst < 1e-8
    for k in params:  # the perturbations are undone
        np.testing.assert_array_equal(params[k], before[k])


def test_gradcheck_catches_one_wrong_entry():
    loss_fn, params, grads = _quadratic_problem()
    grads["x"][1, 2] += 1.0  # one wrong entry, checked since checks >= size
    worst = common.gradcheck(loss_fn, params, grads, checks=12, out=io.StringIO())
    assert worst > 0.1


def test_gradcheck_flags_an_all_zero_gradient():
    loss_fn, params, grads = _quadratic_problem()
    grads["y"] = np.zeros_like(grads["y"])
    out = io.StringIO()
    worst = common.gradcheck(loss_fn, params, grads, out=out)
    assert worst == np.inf
    assert "ALL-ZERO GRADIENT" in out.getvalue()
    verdict = io.StringIO()
    assert common.gradcheck_verdict(worst, 2, 1e-6, out=verdict) is False
    assert verdict.getvalue().rstrip().endswith("FAIL")


def test_broken_backward_fails_the_model_check(model, monkeypatch):
    """A backward that forgets a factor (here: half of dWh) must not pass."""
    backward = model.backward

    def broken(dlogits, cache):
        grads = backward(dlogits, cache)
        grads["Wh0"] = grads["Wh0"] * 0.5
        return grads

    monkeypatch.setattr(model, "backward", broken)
    worst, _ = common.check_model_gradients(model, {"hidden": 5, "layers": 1}, out=io.StringIO())
    assert worst > 0.1


def test_gradcheck_verdict_line():
    out = io.StringIO()
    assert common.gradcheck_verdict(3e-9, 5, 1e-6, out=out)
    assert out.getvalue() == "gradcheck: max relative error 3.000e-09 over 5 parameters: PASS\n"


@pytest.mark.parametrize("kind", ["rnn", "lstm"])
def test_gradcheck_command_line(kind):
    p = run_script(kind, "--gradcheck", "--hidden", "6", "--layers", "2")
    assert p.returncode == 0, p.stderr
    last = p.stdout.strip().splitlines()[-1]
    assert last.startswith("gradcheck: max relative error ") and last.endswith(": PASS")
    assert "over 8 parameters" in last
    assert "Traceback" not in p.stderr

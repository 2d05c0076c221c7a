"""dnc-numpy.py's feedforward controller (--controller feedforward, docs/dnc.md §1.1): its
layer's backward and the whole model's against central differences (1 and 2 layers, with
and without dropout), that it carries no state of its own, the sampling path, and the
command line (a copy run that learns, saves and resumes bit for bit, the checkpoint's
record of the controller, --eval-lengths and --show on it, --gradcheck, the refusals).

Everything numerical runs in float64 at tiny sizes with fixed seeds."""
import io
import re

import numpy as np
import pytest

import common
from conftest import arrays, assert_same_arrays, random_dnc_params, resume_runs, run_script, stderr_lines

dnc = common.load_script("dnc-numpy.py")
TOL = 1e-6
V = 7  # vocabulary of the numerical tests


def cfg_of(controller="feedforward", layers=1, H=6, N=5, W=4, R=2, dropout=0.0):
    return {"hidden": H, "layers": layers, "controller": controller, "memory": N, "width": W, "reads": R,
            "stop_usage_grad": False, "dropout": dropout}


def random_params(cfg, seed=0, noise=0.3):
    """float64 params moved off their initial values, and the generator that made them."""
    return random_dnc_params(dnc, cfg, V, seed, noise)


# ----------------------------------------------------------------------------------
# 1. The layer and the whole model against central differences


def test_feedforward_step_is_a_capped_relu_and_its_backward_matches_central_differences():
    """h = min(max(z, 0), 20); dz against central differences of sum(h * G) at every entry,
    with z at least 0.1 from the kinks so that no difference crosses one; dz is exactly 0
    where z < 0 or z > 20."""
    rng = np.random.default_rng(1)
    z = rng.standard_normal((3, 8))
    z += 0.1 * np.sign(z)
    z[0, :3] = [20.5, 35.0, 19.5]  # above the cap, far above, just under
    h, active = dnc.feedforward_step_forward(z)
    assert dnc.FF_CAP == 20
    np.testing.assert_array_equal(h, np.where(z > 0, np.minimum(z, 20.0), 0.0))
    G = rng.standard_normal(z.shape)
    dz = dnc.feedforward_step_backward(G, active)
    num, step = np.zeros_like(z), 1e-6
    for at in np.ndindex(z.shape):
        up, down = z.copy(), z.copy()
        up[at] += step
        down[at] -= step
        num[at] = ((dnc.feedforward_step_forward(up)[0] - dnc.feedforward_step_forward(down)[0]) * G).sum() / (2 * step)
    assert np.abs(num - dz).max() / np.abs(dz).max() < TOL
    inside = (z > 0) & (z < 20)
    assert (dz[~inside] == 0).all() and (dz[inside] == G[inside]).all() and (~inside[0, :2]).all()


@pytest.mark.parametrize("layers, dropout", [(1, 0.0), (1, 0.3), (2, 0.0), (2, 0.3)])
def test_feedforward_model_gradients(layers, dropout):
    """Every parameter of the whole model (controller, memory, output, loss) over a window
    from a carried state, against central differences; no Wh: the layers are not recurrent."""
    cfg = cfg_of(layers=layers, H=5, dropout=dropout)
    out = io.StringIO()
    worst, count = common.check_model_gradients(dnc, cfg, S=6, checks=12, out=out)
    names = ["Wxi", "bxi", "Wy", "Wry", "by"] + [f"{w}{l}" for l in range(layers) for w in ("Wx", "Wr", "b")] \
        + [f"Wd{l}" for l in range(1, layers)]
    table = out.getvalue()
    assert count == len(names)
    assert sorted(re.findall(r"^(\w+):", table, re.M)) == sorted(names)
    assert "ALL-ZERO" not in table and "not checked" not in table
    assert worst < TOL, table


def test_discrete_choices_name_the_relu_units_let_through():
    """The gradient check skips a perturbation that changes a discrete choice: with the
    feedforward controller those are the free lists and, after them, which units of each
    layer had z > 0 (dnc-debug.py's default run has a z 3e-6 from 0, which fails the check
    at 7e-2 when differenced across)."""
    cfg = cfg_of(layers=2, H=5, N=6)
    params, rng = random_params(cfg, seed=7)
    ids = rng.integers(0, V, (4, 3))
    _, _, cache = dnc.forward(params, ids, dnc.init_state(cfg, params, 3))
    choices = dnc.discrete_choices(cache)
    assert choices.shape == (4, 3, 6 + 2 * 5)
    for t, step in enumerate(cache.steps):
        phi = np.concatenate([c.allocation.phi for _, c in step.memory])
        np.testing.assert_array_equal(choices[t, :, :6], phi)
        np.testing.assert_array_equal(choices[t, :, 6:], np.concatenate([step.controller[0], step.controller[1]], 1))
    assert 0 < choices[..., 6:].mean() < 1  # some units on, some off


def test_model_gradients_catch_a_wrong_relu_backward(monkeypatch):
    """The whole-model check sees the ReLU's derivative: a backward that passes dh through
    everywhere (relu' = 1, a linear layer's) fails it by orders of magnitude."""
    monkeypatch.setattr(dnc, "feedforward_step_backward", lambda dh, active: dh)
    worst, _ = common.check_model_gradients(dnc, cfg_of(layers=2, H=5), checks=12, out=io.StringIO())
    assert worst > 1e-3


# ----------------------------------------------------------------------------------
# 2. No state of its own


@pytest.mark.parametrize("controller, layers", [("feedforward", 1), ("feedforward", 2), ("lstm", 2)])
def test_params_state_and_model_cfg_follow_the_controller(controller, layers):
    """init_params and init_state build the controller's arrays only (the feedforward one:
    no Wh, no h or c, layers H wide); model_cfg reads the controller and sizes back off them."""
    cfg = cfg_of(controller, layers, H=6)
    params, _ = random_params(cfg)
    state = dnc.init_state(cfg, params, 2)
    lstm = controller == "lstm"
    assert all((f"Wh{l}" in params) == lstm for l in range(layers))
    assert params["b0"].shape == ((4 * 6,) if lstm else (6,))
    carried = {f"{s}{l}" for l in range(layers) for s in "hc"} if lstm else set()
    assert set(state) == set(dnc.MEMORY_STATE) | {"r"} | carried
    run = dnc.model_cfg(params, state)
    assert (run["controller"], run["hidden"], run["layers"]) == (controller, 6, layers)


@pytest.mark.parametrize("layers", [1, 2])
def test_the_controller_sees_the_past_only_through_the_reads(layers):
    """One step from two states that share the previous reads r_{t-1} but have different
    pasts (different memories): the feedforward controller's output is the same, bit for
    bit. The LSTM controller's is not (its h and c remember), so the check can see a state
    that leaks."""
    Bm = 3
    for controller in ("feedforward", "lstm"):
        cfg = cfg_of(controller, layers)
        params, rng = random_params(cfg, seed=3)
        states = [dnc.forward(params, rng.integers(0, V, (6, Bm)), dnc.init_state(cfg, params, Bm))[1]
                  for _ in range(2)]
        assert np.abs(states[0]["M"] - states[1]["M"]).max() > 1e-2  # two different pasts
        states[1]["r"] = states[0]["r"].copy()  # ... and the same previous reads
        run = dnc.model_cfg(params, states[0], cfg)
        x = rng.integers(0, V, Bm)
        hcat = [dnc.dnc_step_forward(params, x, s, run)[0] for s in states]
        if controller == "feedforward":
            np.testing.assert_array_equal(hcat[0], hcat[1])
        else:
            assert np.abs(hcat[0] - hcat[1]).max() > 1e-2


def shut_the_write_gate(params, cfg):
    """g^w = sigmoid(-1000) = 0 exactly at every step: nothing is ever written."""
    at = dnc.interface_layout(cfg["reads"], cfg["width"])
    params["Wxi"][:, at["write_gate"]] = 0
    params["bxi"][at["write_gate"]] = -1e3


@pytest.mark.parametrize("layers", [1, 2])
def test_with_nothing_written_the_output_forgets_the_past(layers):
    """With the write gate shut the memory stays zero, so every read is zero, and the
    feedforward DNC's logits at a step are those of its ReLU layers on that step's character
    alone, computed here independently, whatever came before. With the same memory shut the
    LSTM-controlled DNC's still depend on the earlier characters."""
    S, Bm = 6, 4
    rng = np.random.default_rng(4)
    a, b = rng.integers(0, V, (S, Bm)), rng.integers(0, V, (S, Bm))
    b[-1] = a[-1]  # the same last character, different ones before
    assert (a[:-1] != b[:-1]).any(axis=0).all()
    last = {}
    for controller in ("feedforward", "lstm"):
        cfg = cfg_of(controller, layers)
        params, _ = random_params(cfg, seed=5)
        shut_the_write_gate(params, cfg)
        la, state, _ = dnc.forward(params, a, dnc.init_state(cfg, params, Bm))
        lb, _, _ = dnc.forward(params, b, dnc.init_state(cfg, params, Bm))
        assert not state["M"].any() and not state["r"].any()  # nothing written, nothing read
        last[controller] = la[-1], lb[-1]
        if controller == "feedforward":
            hs, below = [], None
            for l in range(layers):
                z = params[f"Wx{l}"][a[-1]] + params[f"b{l}"] + (below @ params[f"Wd{l}"] if l else 0)
                below = np.maximum(z, 0)
                hs.append(below)
            expect = np.concatenate(hs, axis=1) @ params["Wy"] + params["by"]
            np.testing.assert_allclose(la[-1], expect, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(*last["feedforward"])
    assert np.abs(last["lstm"][0] - last["lstm"][1]).max() > 1e-2


def test_feedforward_windows_carry_and_the_sampling_step_agrees():
    """One window of 10 equals two carried windows of 5 (the memory and reads carried),
    and the sampling path, step() one character at a time, gives the same logits."""
    cfg = cfg_of(layers=2)
    params, rng = random_params(cfg, seed=6)
    ids = rng.integers(0, V, (10, 3))
    state0 = dnc.init_state(cfg, params, 3)
    whole, whole_state, _ = dnc.forward(params, ids, common.copy_state(state0))
    l1, s1, _ = dnc.forward(params, ids[:5], common.copy_state(state0))
    l2, s2, _ = dnc.forward(params, ids[5:], s1)
    np.testing.assert_allclose(np.concatenate([l1, l2]), whole, rtol=0, atol=1e-12)
    state = common.copy_state(state0)
    for t in range(10):
        logits, state = dnc.step(params, ids[t], state)
        np.testing.assert_allclose(logits, whole[t], rtol=0, atol=1e-12)
    assert state.keys() == s2.keys() == whole_state.keys() == state0.keys()
    for k in whole_state:
        np.testing.assert_allclose(s2[k], whole_state[k], rtol=0, atol=1e-12, err_msg=k)
        np.testing.assert_allclose(state[k], whole_state[k], rtol=0, atol=1e-12, err_msg=k)


# ----------------------------------------------------------------------------------
# 3. The command line

# a copy run in seconds; --threads 1, since machine.threads_that_pay (auto) reads params["Wh0"], an LSTM weight
COPY = ["--task", "copy", "--io", "tokens", "--bits", 3, "--length", "1-3", "--hidden", 16, "--batch", 8,
        "--memory", 4, "--width", 4, "--reads", 1, "--optim", "adam", "--lr", 0.01, "--report", 20,
        "--threads", 1, "--seed", 2]
VAL = re.compile(r"^[\d.]+ s, iter (\d+), [\d.]+ nats/seq, [\d.]+ step/s, val ([\d.]+) nats/seq", re.M)


@pytest.fixture(scope="module")
def copy_runs(tmp_path_factory):
    """60 iterations in one run, and 40 then 20 more from the checkpoint (naming the same
    controller again); an LSTM-controlled DNC of 2 iterations beside them."""
    d = tmp_path_factory.mktemp("controller")
    runs = resume_runs(d, [*COPY, "--controller", "feedforward"], [], 40, 20)
    runs["lstm"] = run_script("dnc", *COPY, "--iters", 2, "--save", d / "lstm.npz")
    assert runs["lstm"].returncode == 0, runs["lstm"].stderr
    return d, runs


def test_cli_feedforward_copy_learns_and_resumes_bit_for_bit(copy_runs):
    d, runs = copy_runs
    vals = [(int(it), float(v)) for it, v in VAL.findall(runs["one"].stdout)]
    assert [it for it, _ in vals] == [20, 40, 60], runs["one"].stdout
    assert vals[-1][1] < vals[0][1] - 0.2, vals  # it learns (about 4.4 to 3.8 nats per episode)
    assert "resumed" in runs["second"].stdout and "at iter 40" in runs["second"].stdout
    whole, split = arrays(d / "one.npz"), arrays(d / "two.npz")
    assert any(k.startswith("state/") for k in whole)
    assert_same_arrays(whole, split)  # params, optimiser, state and best params, bit for bit


def test_cli_checkpoint_records_the_controller(copy_runs):
    d, _ = copy_runs
    ck = common.load_checkpoint(str(d / "one.npz"), "dnc")
    assert ck["info"]["cfg"]["controller"] == "feedforward"
    assert "forget_bias" not in ck["info"]["cfg"]  # no forget gate to bias
    assert not any(k.startswith("Wh") for k in ck["param"]) and ck["param"]["b0"].shape == (16,)
    assert set(ck["state"]) == set(dnc.MEMORY_STATE) | {"r"}
    assert common.load_checkpoint(str(d / "lstm.npz"), "dnc")["info"]["cfg"]["controller"] == "lstm"


def test_cli_eval_lengths_and_show_on_a_feedforward_checkpoint(copy_runs):
    """--eval-lengths at a larger memory than trained (train.eval_cfg) and --show (the
    memory pictures) run the checkpoint's feedforward controller."""
    d, _ = copy_runs
    p = run_script("dnc", "--load", d / "one.npz", "--eval-lengths", "3,6", "--memory", 8, "--episodes", 20)
    assert p.returncode == 0, p.stderr
    assert "memory N=8" in p.stdout
    assert [int(m.group(1)) for m in re.finditer(r"^\s+(\d+)\s+[\d.]+\s+\d+\s+[\d.]+%\s", p.stdout, re.M)] == [3, 6]
    p = run_script("dnc", "--load", d / "one.npz", "--show")
    assert p.returncode == 0, p.stderr
    assert "write w^w" in p.stdout and "usage u" in p.stdout


def test_cli_gradcheck_with_the_feedforward_controller():
    p = run_script("dnc", "--gradcheck", "--controller", "feedforward", "--layers", 2, "--dropout", 0.3,
                   "--hidden", 5, "--memory", 5, "--width", 4, "--reads", 2)
    assert p.returncode == 0, p.stdout + p.stderr
    last = p.stdout.strip().splitlines()[-1]
    m = re.fullmatch(r"gradcheck: max relative error (\S+) over (\d+) parameters: PASS", last)
    assert m and float(m.group(1)) < TOL and int(m.group(2)) == 12
    assert "'controller': 'feedforward'" in p.stdout and "Wh0" not in p.stdout


def one_error_line(p):
    assert p.returncode == 2, (p.returncode, p.stdout, p.stderr)
    assert "Traceback" not in p.stderr
    lines = stderr_lines(p)
    assert len(lines) == 1, p.stderr
    assert lines[0].startswith("dnc-numpy.py: error: ")
    return lines[0]


def test_cli_the_other_controller_is_refused_on_load(copy_runs):
    """A checkpoint made with one controller, loaded with --controller naming the other:
    one line, exit 2, whatever the mode (resume, --eval-lengths)."""
    d, _ = copy_runs
    line = one_error_line(run_script("dnc", "--load", d / "one.npz", "--controller", "lstm", "--iters", 1))
    assert "one.npz was trained with --controller feedforward; drop --controller lstm" in line
    line = one_error_line(run_script("dnc", "--load", d / "lstm.npz", "--controller", "feedforward",
                                     "--eval-lengths", 3))
    assert "lstm.npz was trained with --controller lstm; drop --controller feedforward" in line


def test_cli_sharpen_on_a_plain_checkpoint_is_refused(copy_runs):
    """--sharpen adds interface entries a plain checkpoint has no weights for: one line."""
    d, _ = copy_runs
    line = one_error_line(run_script("dnc", "--load", d / "lstm.npz", "--sharpen", "--iters", 1))
    assert "lstm.npz was trained without --sharpen; drop it or start a new run" in line


def test_cli_bad_controller_options_are_one_line():
    line = one_error_line(run_script("dnc", "--controller", "gru", "--gradcheck"))
    assert "--controller" in line and "gru" in line
    line = one_error_line(run_script("dnc", *COPY, "--controller", "feedforward", "--forget-bias", 0.5,
                                     "--iters", 1, "--no-save"))
    assert "--forget-bias" in line and "feedforward" in line


def test_cli_gradcheck_with_stop_usage_grad_is_refused():
    """The cut gradient is not the forward's: --gradcheck could only fail, so it says why in one line."""
    p = run_script("dnc", "--gradcheck", "--stop-usage-grad", "--hidden", 5, "--memory", 5, "--width", 4, "--reads", 2)
    assert p.returncode == 2 and len(stderr_lines(p)) == 1 and "--stop-usage-grad" in p.stderr, p.stderr

"""dnc-numpy.py's --sharpen (docs/dnc.md §4.1): the sharpened weighting S(d, s) of Csordas &
Schmidhuber (2019) against the formula written out, its sums and its limit, its backward
against central differences; the interface with the sharpnesses; the memory step's and the
whole model's gradients with it (each controller at 1 and 2 layers, with and without
--stop-usage-grad); that the model really sharpens, and differs from the plain one on the
same shared parameters; the cfg and model_cfg; and the command line (a copy run that
trains, records the option and resumes bit for bit; a checkpoint from before the option
runs as the plain DNC).

Everything numerical runs in float64 at tiny sizes with fixed seeds. The per-op measure is
that of docs/dnc.md §10: max |num - ana| / max |ana| over each input tensor, every entry checked."""
import io
import json

import numpy as np
import pytest

import common
import train
from conftest import arrays, assert_model_gradients, assert_same_arrays, random_dnc_params, resume_runs, run_script, vjp_errors

dnc = common.load_script("dnc-numpy.py")
TOL = 1e-6
B, N, W, R = 2, 5, 4, 3  # per-op sizes
V = 7  # vocabulary of the model tests


# ----------------------------------------------------------------------------------
# Helpers


def reference_sharpen(d, s, eps=dnc.EPS):
    """S(d, s)_n = (d_n + eps)^s / sum_m (d_m + eps)^s, one head of one row at a time."""
    out = np.empty_like(d)
    for b in range(d.shape[0]):
        for i in range(d.shape[1]):
            x = (d[b, i] + eps) ** s[b, i]
            out[b, i] = x / x.sum()
    return out


def weighting(rng, shape, total=0.9):
    """Non-negative rows summing to `total`, no entry near 0, like a forward weighting."""
    w = rng.random(shape) + 0.05
    return total * w / w.sum(-1, keepdims=True)


def assert_small(errors):
    assert max(errors.values()) < TOL, errors


def cfg_of(controller="lstm", layers=1, H=6, N_=5, W_=4, R_=2, sharpen=True, stop=False):
    return {"hidden": H, "layers": layers, "controller": controller, "memory": N_, "width": W_, "reads": R_,
            "stop_usage_grad": stop, "sharpen": sharpen, "dropout": 0.0}


def random_params(cfg, seed=0, noise=0.3):
    return random_dnc_params(dnc, cfg, V, seed, noise)


def plain_params(params, R_):
    """The plain DNC's params that share every weight with a --sharpen model's: its W_xi and
    b_xi without the last 2R columns, the sharpnesses."""
    return dict(params, Wxi=params["Wxi"][:, :-2 * R_].copy(), bxi=params["bxi"][:-2 * R_].copy())


# ----------------------------------------------------------------------------------
# 1. The op


def test_sharpen_is_the_formula():
    """sharpen_forward (softmax of s log(d + eps)) equals the formula, entries of 0 included;
    at a sharpness where the formula's powers underflow (an empty weighting at s = 80: 0/0),
    it equals Csordas' form, (d + eps) divided by its maximum before the power."""
    rng = np.random.default_rng(1)
    d = weighting(rng, (B, R, N))
    d[0, 1, 2] = 0
    d[1, 0] = 0  # an empty weighting
    s = 1 + 5 * rng.random((B, R))
    S, _ = dnc.sharpen_forward(d, s)
    np.testing.assert_allclose(S, reference_sharpen(d, s), rtol=1e-12, atol=1e-15)
    big = np.full((B, R), 80.0)
    S, _ = dnc.sharpen_forward(d, big)
    with np.errstate(invalid="ignore", under="ignore"):
        naive = reference_sharpen(d, big)
        x = ((d + dnc.EPS) / (d + dnc.EPS).max(-1, keepdims=True)) ** big[:, :, None]
    assert np.isnan(naive[1, 0]).all()  # the formula as written: 0/0
    np.testing.assert_allclose(S, x / x.sum(-1, keepdims=True), rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(S[1, 0], 1 / N, rtol=1e-14)


def test_sharpen_sums_to_one_and_is_normalisation_at_s_1(monkeypatch):
    """S sums to 1 whatever d lost; at s = 1 it is (d + eps) / sum (d + eps), so within
    N eps / sum d of d / sum d, and d / sum d itself as eps -> 0; a larger s is sharper."""
    rng = np.random.default_rng(2)
    d = weighting(rng, (B, R, N), total=0.3)  # weightings that lost 70% of their mass
    s = 1 + 10 * rng.random((B, R))
    np.testing.assert_allclose(dnc.sharpen_forward(d, s)[0].sum(-1), 1, rtol=1e-14)
    ones = np.ones((B, R))
    S1 = dnc.sharpen_forward(d, ones)[0]
    normalised = d / d.sum(-1, keepdims=True)
    np.testing.assert_allclose(S1, (d + dnc.EPS) / (d + dnc.EPS).sum(-1, keepdims=True), rtol=1e-14)
    assert np.abs(S1 - normalised).max() < 2 * N * dnc.EPS / d.sum(-1).min()
    monkeypatch.setattr(dnc, "EPS", 1e-15)  # eps -> 0
    np.testing.assert_allclose(dnc.sharpen_forward(d, ones)[0], normalised, rtol=1e-12)
    assert (dnc.sharpen_forward(d, 3 * ones)[0].max(-1) > S1.max(-1)).all()
    np.testing.assert_array_equal(dnc.sharpen_forward(d, 3 * ones)[0].argmax(-1), d.argmax(-1))


def test_sharpen_vjp():
    rng = np.random.default_rng(3)
    for s in (1 + 3 * rng.random((B, R)), 8 + rng.random((B, R))):
        inputs = {"d": weighting(rng, (B, R, N)), "s": s}
        errors = vjp_errors(lambda I: (lambda S, c: ((S,), c))(*dnc.sharpen_forward(I["d"], I["s"])),
                            lambda G, c: dict(zip(("d", "s"), dnc.sharpen_backward(G[0], c))), inputs)
        assert_small(errors)


def test_sharpen_of_an_empty_weighting_is_uniform_and_finite():
    """d = 0 (the first step of an episode): S is 1/N on every slot, the backward is finite
    and the sharpness gets no gradient (log(d + eps) is the same on every slot)."""
    rng = np.random.default_rng(4)
    d, s = np.zeros((B, R, N)), 1 + 20 * rng.random((B, R))
    with np.errstate(all="raise"):
        S, cache = dnc.sharpen_forward(d, s)
        dd, ds = dnc.sharpen_backward(rng.standard_normal(S.shape), cache)
    np.testing.assert_allclose(S, 1 / N, rtol=1e-14)
    assert np.isfinite(dd).all() and np.abs(ds).max() < 1e-12


# ----------------------------------------------------------------------------------
# 2. The interface and the memory step


def test_interface_with_sharpnesses():
    """--sharpen appends R forward and R backward sharpnesses to xi, oneplus-squashed; the
    other pieces keep their places; an xi of the other width is refused; the VJP of every
    entry matches central differences."""
    plain, sharp = dnc.interface_layout(R, W), dnc.interface_layout(R, W, sharpen=True)
    n = dnc.interface_size(R, W)
    assert dnc.interface_size(R, W, sharpen=True) == n + 2 * R
    assert {k: sharp[k] for k in plain} == plain
    assert sharp["forward_sharpness"] == slice(n, n + R) and sharp["backward_sharpness"] == slice(n + R, n + 2 * R)
    rng = np.random.default_rng(5)
    xi = 2 * rng.standard_normal((B, n + 2 * R))
    parts, _ = dnc.interface_forward(xi, R, W, sharpen=True)
    for name in ("forward_sharpness", "backward_sharpness"):
        assert parts[name].shape == (B, R)
        np.testing.assert_allclose(parts[name], 1 + np.logaddexp(0, xi[:, sharp[name]]), rtol=1e-13)
    with pytest.raises(ValueError):
        dnc.interface_forward(xi, R, W)  # sharpnesses would be dropped silently
    with pytest.raises(ValueError):
        dnc.interface_forward(xi[:, :n], R, W, sharpen=True)
    names = list(parts)

    def fwd(I):
        p, cache = dnc.interface_forward(I["xi"], R, W, sharpen=True)
        return tuple(p[k] for k in names), cache

    assert_small(vjp_errors(fwd, lambda G, c: {"xi": dnc.interface_backward(dict(zip(names, G)), c)}, {"xi": xi}))


@pytest.mark.parametrize("stop", [False, True], ids=["full", "stop-usage-grad"])
def test_memory_step_with_sharpen_vjp(stop):
    """The whole memory step with the sharpnesses among its parts: every part and every state
    input against central differences. With --stop-usage-grad, w^w_{t-1} is no input but a
    constant of usage, the model whose gradient the flag gives."""
    rng = np.random.default_rng(6)
    M = rng.standard_normal((B, N, W))
    mem = {"M": M, "u": np.stack([rng.permutation(np.linspace(0.05, 0.95, N)) for _ in range(B)]),
           "ww": weighting(rng, (B, N), 0.6), "p": weighting(rng, (B, N), 0.7),
           "L": rng.uniform(0.05, 0.95, (B, N, N)) * (1 - np.eye(N)) / N, "wr": weighting(rng, (B, R, N))}
    parts, _ = dnc.interface_forward(rng.standard_normal((B, dnc.interface_size(R, W, True))), R, W, True)
    inputs = {**{"part/" + k: v.copy() for k, v in parts.items()},
              **{"prev/" + k: v.copy() for k, v in mem.items() if not (stop and k == "ww")}}

    def fwd(I):
        prev = {k: I.get("prev/" + k, mem[k]) for k in dnc.MEMORY_STATE}
        new, r, cache = dnc.memory_step_forward({k: I["part/" + k] for k in parts}, prev)
        return tuple(new[k] for k in dnc.MEMORY_STATE) + (r,), cache

    def bwd(G, cache):
        dparts, dprev = dnc.memory_step_backward(G[-1], dict(zip(dnc.MEMORY_STATE, G[:-1])), cache, stop)
        if stop:
            assert not dprev["ww"].any()
        grads = {**{"part/" + k: v for k, v in dparts.items()}, **{"prev/" + k: v for k, v in dprev.items()}}
        return {k: grads[k] for k in inputs}  # with the flag, w^w_{t-1} is no input

    errors = vjp_errors(fwd, bwd, inputs)
    assert len(errors) == 18 - stop  # 12 interface parts, the sharpnesses among them, and the state
    assert_small(errors)


# ----------------------------------------------------------------------------------
# 3. The whole model


@pytest.mark.parametrize("controller, layers", [("lstm", 1), ("lstm", 2), ("feedforward", 1), ("feedforward", 2)])
def test_model_gradients_with_sharpen(controller, layers):
    """Every parameter against central differences, from a carried state, on characters."""
    cfg = cfg_of(controller, layers, H=5)
    assert_model_gradients(dnc, cfg, V, TOL, S=5, checks=12)


def test_model_gradients_with_sharpen_from_a_zero_state():
    """An episode from a zero state, as a memory task runs it: the first step sharpens empty
    forward and backward weightings (uniform, §4.1)."""
    rng = np.random.default_rng(7)
    inputs = rng.integers(0, V, (6, 3))
    targets = rng.integers(0, V, (6, 3))
    mask = np.ones((6, 3), bool)
    out = io.StringIO()
    worst, _ = common.check_model_gradients(dnc, cfg_of(), V=V, checks=12, episodes=(inputs, targets, mask), out=out)
    assert worst < TOL, out.getvalue()


@pytest.mark.parametrize("controller, layers", [("lstm", 1), ("feedforward", 2)])
def test_model_gradients_with_sharpen_and_stop_usage_grad(controller, layers, monkeypatch):
    """With --stop-usage-grad the gradient is that of a model whose usage takes w^w_{t-1} as a
    constant: the unperturbed forward records them, every perturbed one gets them back. The
    flag's gradient passes that check, and the full gradient fails it (the check can tell)."""
    cfg = cfg_of(controller, layers, H=5, N_=6, stop=True)
    params, rng = random_params(cfg, seed=8, noise=0.1)
    ids = rng.integers(0, V, (13, 3))
    _, state, _ = dnc.forward(params, ids[:6], dnc.init_state(cfg, params, 3), cfg)  # a carried state
    inputs, targets = ids[6:12], ids[7:13]
    real, recorded = dnc.usage_forward, []

    def recording(u_prev, ww_prev, psi):
        recorded.append(ww_prev)
        return real(u_prev, ww_prev, psi)

    monkeypatch.setattr(dnc, "usage_forward", recording)
    _, grads_stop, _ = common.loss_and_grads(dnc, params, inputs, targets, common.copy_state(state), cfg)
    monkeypatch.setattr(dnc, "usage_forward", real)
    _, grads_full, _ = common.loss_and_grads(dnc, params, inputs, targets, common.copy_state(state),
                                             dict(cfg, stop_usage_grad=False))

    def frozen_loss(p):
        constants = iter(recorded)
        monkeypatch.setattr(dnc, "usage_forward", lambda u_prev, ww_prev, psi: real(u_prev, next(constants), psi))
        logits, _, _ = dnc.forward(p, inputs, common.copy_state(state), cfg)
        monkeypatch.setattr(dnc, "usage_forward", real)
        return common.cross_entropy(logits, targets)[0]

    worst_stop = common.gradcheck(frozen_loss, params, grads_stop, checks=12, rng=np.random.default_rng(1),
                                  h=1e-6, out=io.StringIO())
    worst_full = common.gradcheck(frozen_loss, params, grads_full, checks=12, rng=np.random.default_rng(1),
                                  h=1e-6, out=io.StringIO())
    assert worst_stop < TOL
    assert worst_full > 10 * TOL


# ----------------------------------------------------------------------------------
# 4. The sharpening is really applied


def test_the_sharpened_model_differs_from_the_plain_one_on_shared_params():
    """The same weights but the sharpnesses, the same inputs and state: different logits
    (the sharpening is applied), and model_cfg tells the two apart by W_xi's width."""
    cfg = cfg_of(R_=2)
    params, rng = random_params(cfg, seed=9)
    plain = plain_params(params, 2)
    state = dnc.init_state(cfg, params, 3)
    ids = rng.integers(0, V, (8, 3))
    logits, last, _ = dnc.forward(params, ids, common.copy_state(state))  # no cfg: model_cfg reads the params
    logits_plain, last_plain, _ = dnc.forward(plain, ids, common.copy_state(state))
    assert dnc.model_cfg(params, state)["sharpen"] and not dnc.model_cfg(plain, state)["sharpen"]
    assert np.abs(logits - logits_plain).max() > 1e-3
    # the plain model's read weightings lose mass along the links; the sharpened ones sum to 1
    assert last_plain["wr"].sum(-1).min() < 1 - 1e-3
    np.testing.assert_allclose(last["wr"].sum(-1), 1, rtol=1e-13)


def test_each_read_weighting_mixes_the_sharpened_forward_and_backward_weightings():
    """At every step, w^r_t = pi[0] S(b, s^b) + pi[1] c^r + pi[2] S(f, s^f), with f = L_t w^r_{t-1}
    and b = L_t^T w^r_{t-1} from the state and S from the formula written out: the sharpening
    sits between the links and the read modes, each direction with its own sharpness."""
    cfg = cfg_of(R_=2)
    params, rng = random_params(cfg, seed=10)
    state = dnc.init_state(cfg, params, 3)
    run = dnc.model_cfg(params, state)
    for t, x in enumerate(rng.integers(0, V, (8, 3))):
        _, _, new, cache = dnc.dnc_step_forward(params, x, state, run)
        parts = cache.interface.parts
        (_, memory), = cache.memory  # one block of batch rows
        cr = memory.read_weighting[1][:, :, 1]  # the read content weighting c^r_t
        f = np.einsum("bij,brj->bri", new["L"], state["wr"])
        b = np.einsum("bji,brj->bri", new["L"], state["wr"])
        pi = parts["read_modes"]
        expect = (pi[:, :, 0:1] * reference_sharpen(b, parts["backward_sharpness"]) + pi[:, :, 1:2] * cr
                  + pi[:, :, 2:3] * reference_sharpen(f, parts["forward_sharpness"]))
        np.testing.assert_allclose(new["wr"], expect, rtol=1e-12, atol=1e-15, err_msg=f"step {t}")
        state = new
    assert np.abs(parts["forward_sharpness"] - parts["backward_sharpness"]).max() > 1e-2  # not interchangeable


# ----------------------------------------------------------------------------------
# 5. The cfg, and the command line


def test_cfg_records_sharpen_and_old_cfgs_are_plain():
    p = train.make_parser(dnc, "", {})
    assert dnc.config(p.parse_args(["--sharpen"]))["sharpen"] is True
    assert dnc.config(p.parse_args([]))["sharpen"] is False
    old = cfg_of(R_=2)
    del old["sharpen"]  # a cfg from before --sharpen
    params = dnc.init_params(old, V, np.random.default_rng(0), np.float64)
    assert params["Wxi"].shape[1] == params["bxi"].shape[0] == dnc.interface_size(2, 4)
    sharp = dnc.init_params(cfg_of(R_=2), V, np.random.default_rng(0), np.float64)
    assert sharp["Wxi"].shape[1] == sharp["bxi"].shape[0] == dnc.interface_size(2, 4) + 4
    assert dnc.memory_floats(cfg_of(), V, 4, 8) > dnc.memory_floats(old, V, 4, 8)
    # a cfg that says plain with the params of --sharpen: refused, never run without the sharpening
    state = dnc.init_state(old, sharp, 2)
    with pytest.raises(ValueError):
        dnc.dnc_step_forward(sharp, np.zeros(2, np.int64), state, dict(dnc.model_cfg(sharp, state), sharpen=False))


COPY = ["--task", "copy", "--io", "tokens", "--bits", 3, "--length", "1-3", "--hidden", 16, "--batch", 8,
        "--memory", 4, "--width", 4, "--reads", 1, "--optim", "adam", "--lr", 0.01, "--report", 20,
        "--threads", 1, "--seed", 2]


@pytest.fixture(scope="module")
def copy_runs(tmp_path_factory):
    """60 iterations of --task copy --sharpen in one run, and 40 then 20 more from the
    checkpoint (the second run not naming --sharpen: the checkpoint's cfg carries it)."""
    d = tmp_path_factory.mktemp("sharpen")
    return d, resume_runs(d, COPY, ["--sharpen"], 40, 20)


def test_cli_copy_with_sharpen_trains_records_it_and_resumes_bit_for_bit(copy_runs):
    d, runs = copy_runs
    vals = [float(v) for v in __import__("re").findall(r"val ([\d.]+) nats/seq", runs["one"].stdout)]
    assert len(vals) >= 3 and vals[-1] < vals[0] - 0.2, runs["one"].stdout  # it learns
    assert "'sharpen': True" in runs["one"].stdout
    ck = common.load_checkpoint(str(d / "one.npz"), "dnc")
    assert ck["info"]["cfg"]["sharpen"] is True
    assert ck["param"]["Wxi"].shape[1] == dnc.interface_size(1, 4, sharpen=True)
    assert dnc.model_cfg(ck["param"], ck["state"])["sharpen"]
    assert "resumed" in runs["second"].stdout and "at iter 40" in runs["second"].stdout
    assert_same_arrays(arrays(d / "one.npz"), arrays(d / "two.npz"))  # params, optimiser, state, best


def test_cli_a_checkpoint_from_before_sharpen_runs_as_the_plain_dnc(tmp_path):
    """A checkpoint whose cfg has no "sharpen" (as every one before the option): it resumes
    and evaluates, as the plain DNC."""
    path = tmp_path / "old.npz"
    p = run_script("dnc", *COPY, "--iters", 2, "--save", path)
    assert p.returncode == 0, p.stderr
    with np.load(path, allow_pickle=False) as z:
        saved = {k: z[k] for k in z.files}
    info = json.loads(str(saved["info"]))
    del info["cfg"]["sharpen"]
    saved["info"] = np.array(json.dumps(info))
    np.savez(path, **saved)
    p = run_script("dnc", *COPY, "--iters", 2, "--load", path, "--save", path)
    assert p.returncode == 0, p.stderr
    p = run_script("dnc", "--load", path, "--eval-lengths", 3, "--episodes", 20)
    assert p.returncode == 0, p.stderr
    ck = common.load_checkpoint(str(path), "dnc")
    assert "sharpen" not in ck["info"]["cfg"]
    assert not dnc.model_cfg(ck["param"], ck["state"])["sharpen"]

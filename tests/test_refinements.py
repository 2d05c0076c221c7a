"""dnc-numpy.py's --mask and --dealloc (docs/dnc.md §4.2, §4.3), Csordas & Schmidhuber's
masked content lookup and de-allocation: each op against the formula written out, at its
limits (a mask of ones is the plain lookup; free gates of 0 make the plain write) and against
central differences; the interface with the masks; the memory step and the whole model with
them (each controller, 1 and 2 layers, with --sharpen and --stop-usage-grad); a behavioural
check that forced-open free gates free memory (usage drops after reads) and that --dealloc
erases what is freed; the cfg and model_cfg; and the command line (resume bit for bit, a plain
checkpoint given --mask or --dealloc refused in one line, an old checkpoint runs plain).

Everything numerical runs in float64 at tiny sizes with fixed seeds; the per-op measure is
that of docs/dnc.md §10: max |num - ana| / max |ana| over each input tensor, every entry checked."""
import io
import json
import os

import numpy as np
import pytest

import common
import train
from conftest import arrays, assert_model_gradients, assert_same_arrays, random_dnc_params, resume_runs, run_script, stderr_lines, vjp_errors

dnc = common.load_script("dnc-numpy.py")
debug = common.load_script("dnc-debug.py")
tasks = common.load_script(os.path.join("data", "tasks.py"))
TOL = 1e-6
B, N, W, R = 2, 5, 4, 3  # per-op sizes
V = 7  # vocabulary of the model tests


def assert_small(errors):
    assert max(errors.values()) < TOL, errors


def weighting(rng, shape, total=0.9):
    """Non-negative rows summing to `total`, no entry near 0."""
    w = rng.random(shape) + 0.05
    return total * w / w.sum(-1, keepdims=True)


def cfg_of(controller="lstm", layers=1, H=5, N_=5, W_=4, R_=2, mask=True, dealloc=True, sharpen=False, stop=False):
    return {"hidden": H, "layers": layers, "controller": controller, "memory": N_, "width": W_, "reads": R_,
            "stop_usage_grad": stop, "sharpen": sharpen, "mask": mask, "dealloc": dealloc, "dropout": 0.0}


def reference_masked_lookup(M, k, beta, m, eps=dnc.EPS):
    """softmax_n(beta D_n), D_n the cosine of k * m with M_n * m (eps inside the square roots),
    one head of one row at a time."""
    C = np.empty(k.shape[:2] + (M.shape[1],))
    for b in range(M.shape[0]):
        for i in range(k.shape[1]):
            key = k[b, i] * m[b, i]
            words = M[b] * m[b, i]
            D = words @ key / (np.sqrt((words ** 2).sum(1) + eps) * np.sqrt(key @ key + eps))
            z = beta[b, i] * D
            C[b, i] = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
    return C


# ----------------------------------------------------------------------------------
# 1. The ops


def test_masked_lookup_is_the_formula_and_a_mask_of_ones_is_the_plain_lookup():
    rng = np.random.default_rng(1)
    M, k = rng.standard_normal((B, N, W)), rng.standard_normal((B, R, W))
    beta, m = 1 + 5 * rng.random((B, R)), rng.uniform(0.1, 1, (B, R, W))
    C, _ = dnc.masked_content_forward(M, k, beta, m)
    np.testing.assert_allclose(C, reference_masked_lookup(M, k, beta, m), rtol=1e-12)
    assert np.abs(C - dnc.content_forward(M, k, beta)[0]).max() > 1e-3  # the mask matters
    ones = dnc.mask_squash(np.full((B, R, W), 1e3))  # huge logits: m = 1
    assert (ones == 1).all()
    np.testing.assert_allclose(dnc.masked_content_forward(M, k, beta, ones)[0], dnc.content_forward(M, k, beta)[0],
                               rtol=1e-14, atol=1e-300)
    # a mask that shuts every entry but one compares the words on that entry alone
    only = np.full((B, R, W), 1e-9)
    only[:, :, 2] = 1
    C, _ = dnc.masked_content_forward(M, k, 50 * np.ones((B, R)), only)
    agree = np.sign(M[:, None, :, 2]) == np.sign(k[:, :, None, 2])  # (B, R, N) cosine +1 on that entry, else -1
    np.testing.assert_allclose(C.sum(-1), 1, rtol=1e-12)
    assert (C[~agree] < 1e-6).all()


def test_mask_squash_is_floored():
    x = np.array([-1e3, -5.0, 0.0, 5.0, 1e3])
    m = dnc.mask_squash(x)
    assert m[0] == dnc.MASK_MIN and m[-1] == 1 and ((m >= dnc.MASK_MIN) & (m <= 1)).all()
    np.testing.assert_allclose(m[2], dnc.MASK_MIN + (1 - dnc.MASK_MIN) / 2, rtol=1e-15)


def test_masked_lookup_vjp():
    rng = np.random.default_rng(2)
    inputs = {"M": rng.standard_normal((B, N, W)), "k": rng.standard_normal((B, R, W)),
              "beta": 1 + 3 * rng.random((B, R)), "m": rng.uniform(dnc.MASK_MIN, 1, (B, R, W))}
    errors = vjp_errors(lambda I: dnc.masked_content_forward(I["M"], I["k"], I["beta"], I["m"]),
                        lambda G, c: dict(zip(("M", "k", "beta", "m"), dnc.masked_content_backward(G[0], c))),
                        inputs)
    assert_small(errors)


def test_dealloc_write_is_the_formula_and_free_gates_of_0_make_the_plain_write():
    rng = np.random.default_rng(3)
    M, ww = rng.standard_normal((B, N, W)), weighting(rng, (B, N))
    e, v, psi = rng.random((B, W)), rng.standard_normal((B, W)), rng.random((B, N))
    out, _ = dnc.dealloc_write_forward(M, ww, e, v, psi)
    for b in range(B):  # M_t = M_{t-1} * (psi 1^T) * (1 - w e^T) + w v^T, written out
        expect = M[b] * psi[b][:, None] * (1 - np.outer(ww[b], e[b])) + np.outer(ww[b], v[b])
        np.testing.assert_allclose(out[b], expect, rtol=1e-13)
    # free gates of 0: psi = 1 (the retention's product of ones), and the plain write exactly
    psi1, _ = dnc.retention_forward(np.zeros((B, R)), weighting(rng, (B, R, N)))
    np.testing.assert_array_equal(dnc.dealloc_write_forward(M, ww, e, v, psi1)[0], dnc.write_forward(M, ww, e, v)[0])
    # a slot freed completely and not written is erased
    psi0, ww0 = psi.copy(), ww.copy()
    psi0[:, 1], ww0[:, 1] = 0, 0
    assert (dnc.dealloc_write_forward(M, ww0, e, v, psi0)[0][:, 1] == 0).all()


def test_dealloc_write_vjp():
    rng = np.random.default_rng(4)
    inputs = {"M_prev": rng.standard_normal((B, N, W)), "ww": weighting(rng, (B, N)), "e": rng.random((B, W)),
              "v": rng.standard_normal((B, W)), "psi": rng.uniform(0.05, 0.95, (B, N))}
    errors = vjp_errors(lambda I: dnc.dealloc_write_forward(I["M_prev"], I["ww"], I["e"], I["v"], I["psi"]),
                        lambda G, c: dict(zip(("M_prev", "ww", "e", "v", "psi"), dnc.dealloc_write_backward(G[0], c))),
                        inputs)
    assert_small(errors)


# ----------------------------------------------------------------------------------
# 2. The interface and the memory step


@pytest.mark.parametrize("sharpen", [False, True])
def test_interface_with_masks(sharpen):
    """--mask appends R read masks of W and a write mask of W, after the sharpnesses; the
    other pieces keep their places; an xi of another width is refused; every entry's VJP."""
    before = dnc.interface_layout(R, W, sharpen)
    at = dnc.interface_layout(R, W, sharpen, mask=True)
    n = dnc.interface_size(R, W, sharpen)
    assert dnc.interface_size(R, W, sharpen, mask=True) == n + W * (R + 1)
    assert {k: at[k] for k in before} == before
    assert at["read_masks"] == slice(n, n + R * W) and at["write_mask"] == slice(n + R * W, n + R * W + W)
    rng = np.random.default_rng(5)
    xi = 2 * rng.standard_normal((B, n + W * (R + 1)))
    parts, _ = dnc.interface_forward(xi, R, W, sharpen, mask=True)
    assert parts["read_masks"].shape == (B, R, W) and parts["write_mask"].shape == (B, 1, W)
    np.testing.assert_allclose(parts["read_masks"].reshape(B, -1),
                               0.1 + 0.9 / (1 + np.exp(-xi[:, at["read_masks"]])), rtol=1e-13)
    with pytest.raises(ValueError):
        dnc.interface_forward(xi, R, W, sharpen)  # the masks would be dropped silently
    names = list(parts)

    def fwd(I):
        p, cache = dnc.interface_forward(I["xi"], R, W, sharpen, mask=True)
        return tuple(p[k] for k in names), cache

    assert_small(vjp_errors(fwd, lambda G, c: {"xi": dnc.interface_backward(dict(zip(names, G)), c)}, {"xi": xi}))


@pytest.mark.parametrize("mask, dealloc, sharpen, stop", [(True, False, False, False), (False, True, False, False),
                                                          (False, True, False, True), (True, True, True, True)],
                         ids=["mask", "dealloc", "dealloc-stop-usage-grad", "all-stop-usage-grad"])
def test_memory_step_vjp(mask, dealloc, sharpen, stop):
    """The whole memory step with the refinements: every part and every state input against
    central differences (with --stop-usage-grad, w^w_{t-1} a constant of usage, §8)."""
    rng = np.random.default_rng(6)
    mem = {"M": rng.standard_normal((B, N, W)), "u": np.stack([rng.permutation(np.linspace(0.05, 0.95, N))
                                                                for _ in range(B)]),
           "ww": weighting(rng, (B, N), 0.6), "p": weighting(rng, (B, N), 0.7),
           "L": rng.uniform(0.05, 0.95, (B, N, N)) * (1 - np.eye(N)) / N, "wr": weighting(rng, (B, R, N))}
    xi = rng.standard_normal((B, dnc.interface_size(R, W, sharpen, mask)))
    parts, _ = dnc.interface_forward(xi, R, W, sharpen, mask)
    inputs = {**{"part/" + k: v.copy() for k, v in parts.items()},
              **{"prev/" + k: v.copy() for k, v in mem.items() if not (stop and k == "ww")}}

    def fwd(I):
        prev = {k: I.get("prev/" + k, mem[k]) for k in dnc.MEMORY_STATE}
        new, r, cache = dnc.memory_step_forward({k: I["part/" + k] for k in parts}, prev, dealloc)
        assert cache.masked == mask and cache.dealloc == dealloc
        return tuple(new[k] for k in dnc.MEMORY_STATE) + (r,), cache

    def bwd(G, cache):
        dparts, dprev = dnc.memory_step_backward(G[-1], dict(zip(dnc.MEMORY_STATE, G[:-1])), cache, stop)
        grads = {**{"part/" + k: v for k, v in dparts.items()}, **{"prev/" + k: v for k, v in dprev.items()}}
        return {k: grads[k] for k in inputs}

    errors = vjp_errors(fwd, bwd, inputs)
    assert len(errors) == 10 + 2 * mask + 2 * sharpen + 6 - stop
    assert_small(errors)


def test_dealloc_sends_the_write_adjoint_into_the_free_gates():
    """With --dealloc the free gates reach M_t through psi directly. With the allocation gate
    at 0 (so that psi cannot reach M_t through usage, allocation and the write weighting) and
    an adjoint on M_t alone, the free gates get a gradient with --dealloc, none without."""
    rng = np.random.default_rng(7)
    mem = {"M": rng.standard_normal((B, N, W)), "u": rng.random((B, N)), "ww": weighting(rng, (B, N)),
           "p": weighting(rng, (B, N)), "L": np.zeros((B, N, N)), "wr": weighting(rng, (B, R, N))}
    parts, _ = dnc.interface_forward(rng.standard_normal((B, dnc.interface_size(R, W))), R, W)
    parts["alloc_gate"] = np.zeros((B, 1))
    dmem = {k: np.zeros_like(v) for k, v in mem.items()}
    dmem["M"] = rng.standard_normal((B, N, W))
    dr = np.zeros((B, R, W))
    for dealloc in (False, True):
        _, _, cache = dnc.memory_step_forward(parts, mem, dealloc)
        dparts, _ = dnc.memory_step_backward(dr, dmem, cache)
        assert (np.abs(dparts["free_gates"]).max() > 1e-3 if dealloc else not dparts["free_gates"].any())


# ----------------------------------------------------------------------------------
# 3. The whole model


@pytest.mark.parametrize("controller, layers, mask, dealloc, sharpen",
                         [("lstm", 1, True, False, False), ("lstm", 2, False, True, False),
                          ("feedforward", 1, True, True, False), ("feedforward", 2, True, True, True)])
def test_model_gradients(controller, layers, mask, dealloc, sharpen):
    """Every parameter against central differences, from a carried state, on characters."""
    cfg = cfg_of(controller, layers, mask=mask, dealloc=dealloc, sharpen=sharpen)
    assert_model_gradients(dnc, cfg, V, TOL, S=5, checks=12)


def test_model_gradients_on_a_series_copy_episode():
    """A series-copy episode in the bit form from a zero state, the bit-wise loss, both refinements."""
    task = tasks.make_task("series-copy", bits=3, min_length=2, max_length=3, max_item_length=2)
    out = io.StringIO()
    worst, _ = common.check_model_gradients(dnc, cfg_of("feedforward", N_=4), V=task.V_in, V_out=task.V_out,
                                            checks=12, episodes=task.episodes(np.random.default_rng(8), 2),
                                            loss=common.sigmoid_cross_entropy, out=out)
    assert worst < TOL, out.getvalue()


@pytest.mark.parametrize("controller, layers", [("lstm", 1), ("feedforward", 2)])
def test_model_gradients_with_stop_usage_grad(controller, layers):
    """With --stop-usage-grad, against the model whose usage takes w^w_{t-1} as a constant
    (dnc-debug.py's check, §8)."""
    cfg = dict(cfg_of(controller, layers, sharpen=True), block_floats=dnc.BLOCK_FLOATS)
    worst, count = debug.check_model_stop_usage_grad(cfg, V=V, B=2, S=5, checks=10, seed=3)
    assert worst < TOL and count == len(dnc.init_params(cfg, V, np.random.default_rng(0), np.float64))


def test_the_refinements_change_the_model():
    """The same weights: --dealloc changes the logits (free gates are about 1/2 at random
    weights); with free gates shut (their biases at -1000: f = 0, psi = 1) it changes nothing,
    bit for bit. A mask of ones (huge mask biases) gives the plain model's logits."""
    cfg = cfg_of(mask=False, dealloc=False)
    params, rng = random_dnc_params(dnc, cfg, V, seed=9)
    state = dnc.init_state(cfg, params, 3)
    ids = rng.integers(0, V, (8, 3))
    plain = dnc.forward(params, ids, common.copy_state(state), cfg)[0]
    dealloc = dnc.forward(params, ids, common.copy_state(state), dict(cfg, dealloc=True))[0]
    assert np.abs(plain - dealloc).max() > 1e-3
    at = dnc.interface_layout(2, 4)
    shut = {k: v.copy() for k, v in params.items()}
    shut["bxi"][at["free_gates"]] = -1000
    np.testing.assert_array_equal(dnc.forward(shut, ids, common.copy_state(state), cfg)[0],
                                  dnc.forward(shut, ids, common.copy_state(state), dict(cfg, dealloc=True))[0])
    n_mask = 4 * 3
    masked = dict(params, Wxi=np.concatenate([params["Wxi"], np.zeros((5, n_mask))], axis=1),
                  bxi=np.concatenate([params["bxi"], np.full(n_mask, 1000.0)]))
    np.testing.assert_allclose(dnc.forward(masked, ids, common.copy_state(state), dict(cfg, mask=True))[0], plain,
                               rtol=1e-12, atol=1e-12)
    masked["bxi"][-n_mask:] = rng.standard_normal(n_mask)
    assert np.abs(dnc.forward(masked, ids, common.copy_state(state), dict(cfg, mask=True))[0] - plain).max() > 1e-3


# ----------------------------------------------------------------------------------
# 4. Freeing memory, seen in a run


def run_episode(params, cfg, inputs):
    """Step by step over one batch of episodes -> per step: (state before, state after, psi_t,
    the squashed interface)."""
    state = dnc.init_state(cfg, params, inputs.shape[1])
    run_cfg, seen = dnc.model_cfg(params, state, cfg), []
    for x in inputs:
        _, _, new, cache = dnc.dnc_step_forward(params, x, state, run_cfg)
        (_, memory), = cache.memory
        seen.append((state, new, memory.usage[2], cache.interface.parts))  # usage's cache: (u_prev, ww_prev, psi, u~)
        state = new
    return seen


def freeing_setup(free_bias):
    """A tiny feedforward DNC on a series-copy episode (12 vectors, N 6), writing at every step
    into allocated slots (write and allocation gates open) and erasing nothing (erase biases
    -20: only --dealloc can remove a word), its read heads on content with a high strength, so
    that each reads mostly one slot; the free gates' biases at free_bias."""
    task = tasks.make_task("series-copy", bits=4, min_length=4, max_length=4, min_item_length=3, max_item_length=3)
    inputs, _, _ = task.episodes(np.random.default_rng(10), 2)
    cfg = cfg_of("feedforward", H=8, N_=6, W_=5, R_=1, mask=False, dealloc=False)
    params, _ = random_dnc_params(dnc, cfg, task.V_in, seed=11, noise=0.5)
    at = dnc.interface_layout(1, 5)
    for name, bias in (("write_gate", 20), ("alloc_gate", 20), ("free_gates", free_bias), ("read_strengths", 30),
                       ("erase", -20)):
        params["bxi"][at[name]] = bias
    params["bxi"][at["read_modes"]] = [-20, 20, -20]  # content mode
    return task, inputs, cfg, params


def test_forced_open_free_gates_free_what_was_read():
    """Free gates shut: usage only rises and the memory fills (12 vectors, 6 slots). Forced
    open: at every step the slot a head read at t-1 loses its usage (u_t <= u~_t (1 - f w^r)),
    total usage drops, and the memory never fills."""
    _, inputs, cfg, shut_params = freeing_setup(-30)
    shut = run_episode(shut_params, cfg, inputs)
    totals = np.array([after["u"].sum(-1) for _, after, _, _ in shut])  # (T, B)
    assert (np.diff(totals, axis=0) >= -1e-12).all() and (totals[-1] > 6 - 0.1).all()
    _, _, cfg, open_params = freeing_setup(30)
    opened = run_episode(open_params, cfg, inputs)
    drops = 0
    for before, after, psi, _ in opened[1:]:
        read = before["wr"][:, 0]  # (B, N) where the one head read at t-1
        u_tilde = before["u"] + before["ww"] - before["u"] * before["ww"]
        np.testing.assert_allclose(psi, 1 - read, rtol=1e-9, atol=1e-12)  # f = 1
        assert (after["u"] <= u_tilde * (1 - read) + 1e-9).all()
        drops += int((after["u"].sum(-1) < before["u"].sum(-1) - 0.1).sum())
    assert drops >= 5
    open_totals = np.array([after["u"].sum(-1) for _, after, _, _ in opened])
    assert open_totals.max() < 6 - 0.5


def test_dealloc_erases_what_was_freed():
    """Free gates forced open, the same run with and without --dealloc, erasing nothing: in
    the slots the retention frees (psi < 0.05), what is left of the old word besides this
    step's write, M_t[n] - w^w_t[n] v, is psi_n M_{t-1}[n] (< 5% of it) with --dealloc, and the
    whole old word without it."""
    _, inputs, cfg, params = freeing_setup(30)
    erased = kept = 0
    for dealloc in (False, True):
        for before, after, psi, parts in run_episode(params, dict(cfg, dealloc=dealloc), inputs)[1:]:
            left = after["M"] - after["ww"][:, :, None] * parts["write_vector"][:, None, :]  # (B, N, W)
            old, rest = np.linalg.norm(before["M"], axis=-1), np.linalg.norm(left, axis=-1)
            freed = (psi < 0.05) & (old > 0.1)  # (B, N) freed slots with a word to erase
            if dealloc:
                assert (rest[freed] <= 0.05 * old[freed] + 1e-9).all()
                erased += freed.sum()
            else:
                assert (rest[freed] >= 0.99 * old[freed]).all()
                kept += freed.sum()
    assert erased >= 5 and kept >= 5


def test_memory_pictures_of_a_series_copy_episode_with_the_refinements():
    """memory_pictures and pictures.py's rows for a ~70-step series-copy episode with --mask
    and --dealloc: every row spans the episode, values in [0, 1]."""
    pictures = common.load_script("pictures.py")
    task = tasks.make_task("series-copy", min_length=10, max_length=10, min_item_length=3, max_item_length=3)
    cfg = cfg_of("feedforward", H=8, N_=10, W_=6, R_=2, sharpen=True)
    rng = np.random.default_rng(12)
    params = dnc.init_params(cfg, task.V_in, rng, np.float64, task.V_out)
    rows, title = pictures.episode_rows(dnc, cfg, params, task, rng, 10)
    T = 10 * 7  # 10 sequences of 3 vectors: 3 in, the delimiter, 3 out
    assert all(a.shape[1] == T for _, a in rows) and title.startswith("series-copy:")
    assert [label for label, _ in rows][-4:] == ["free gates f", "alloc gate", "write gate", "usage u"]
    assert all(a.min() >= 0 and a.max() <= 1 + 1e-9 for _, a in rows)
    lines = pictures.terminal(rows, title).splitlines()
    ruler = next(line for line in lines if line.startswith("step "))
    assert len(ruler) == pictures.LABEL + T  # the whole episode in one block of columns
    assert lines[-10].startswith("usage u") and len(lines) > 10 * 4  # usage: one line per slot, the last rows


# ----------------------------------------------------------------------------------
# 5. The cfg, and the command line


def test_cfg_records_the_refinements_and_model_cfg_reads_them():
    p = train.make_parser(dnc, "", {})
    cfg = dnc.config(p.parse_args(["--mask", "--dealloc"]))
    assert cfg["mask"] is True and cfg["dealloc"] is True
    assert dnc.config(p.parse_args([]))["mask"] is False is dnc.config(p.parse_args([]))["dealloc"]
    full = cfg_of(R_=2, sharpen=True)
    params = dnc.init_params(full, V, np.random.default_rng(0), np.float64)
    assert params["Wxi"].shape[1] == params["bxi"].shape[0] == dnc.interface_size(2, 4, True, True)
    state = dnc.init_state(full, params, 2)
    run = dnc.model_cfg(params, state, full)
    assert run["mask"] and run["dealloc"] and run["sharpen"]
    old = {k: v for k, v in full.items() if k not in ("mask", "dealloc", "sharpen")}  # before all three
    plain = dnc.init_params(old, V, np.random.default_rng(0), np.float64)
    run = dnc.model_cfg(plain, dnc.init_state(old, plain, 2), old)
    assert not (run["mask"] or run["dealloc"] or run["sharpen"])
    assert dnc.memory_floats(full, V, 4, 8) > dnc.memory_floats(dict(full, mask=False), V, 4, 8)


SERIES = ["--task", "series-copy", "--length", "2-3", "--item-length", "1-2", "--bits", 3, "--hidden", 12,
          "--batch", 4, "--memory", 4, "--width", 4, "--reads", 1, "--controller", "feedforward", "--optim", "adam",
          "--lr", 0.01, "--report", 10, "--threads", 1, "--seed", 2]


@pytest.fixture(scope="module")
def series_runs(tmp_path_factory):
    """30 iterations of series-copy with --mask --dealloc in one run, and 20 then 10 more from
    the checkpoint (the second run not naming them: the checkpoint's cfg carries them); and a
    plain run's checkpoint."""
    d = tmp_path_factory.mktemp("refinements")
    return d, resume_runs(d, SERIES, ["--mask", "--dealloc"], 20, 10, plain=2)


def test_cli_refinements_record_and_resume_bit_for_bit(series_runs):
    d, runs = series_runs
    assert "'mask': True, 'dealloc': True" in runs["one"].stdout
    ck = common.load_checkpoint(str(d / "one.npz"), "dnc")
    assert ck["info"]["cfg"]["mask"] is True and ck["info"]["cfg"]["dealloc"] is True
    settings = ck["info"]["task"]["settings"]
    assert (settings["min_item_length"], settings["max_item_length"]) == (1, 2)
    assert ck["param"]["Wxi"].shape[1] == dnc.interface_size(1, 4, mask=True)
    assert "resumed" in runs["second"].stdout and "at iter 20" in runs["second"].stdout
    assert_same_arrays(arrays(d / "one.npz"), arrays(d / "two.npz"))  # params, optimiser, state, best
    p = run_script("dnc", "--load", d / "one.npz", "--eval-lengths", "3,6", "--episodes", 10)
    assert p.returncode == 0, p.stderr
    assert p.stdout.count("%") == 2


@pytest.mark.parametrize("option", ["--mask", "--dealloc"])
def test_cli_a_plain_checkpoint_refuses_a_refinement(series_runs, option):
    d, _ = series_runs
    p = run_script("dnc", "--load", d / "plain.npz", option, "--iters", 2, "--no-save")
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert stderr_lines(p) == [f"dnc-numpy.py: error: {d / 'plain.npz'} was trained without {option}; "
                               f"drop it or start a new run"]


def test_cli_a_checkpoint_from_before_the_refinements_runs_as_the_plain_dnc(series_runs, tmp_path):
    d, _ = series_runs
    with np.load(d / "plain.npz", allow_pickle=False) as z:
        saved = {k: z[k] for k in z.files}
    info = json.loads(str(saved["info"]))
    del info["cfg"]["mask"], info["cfg"]["dealloc"]
    saved["info"] = np.array(json.dumps(info))
    path = tmp_path / "old.npz"
    np.savez(path, **saved)
    p = run_script("dnc", "--load", path, "--iters", 2, "--save", path)
    assert p.returncode == 0, p.stderr
    p = run_script("dnc", "--load", path, "--eval-lengths", 2, "--episodes", 10)
    assert p.returncode == 0, p.stderr
    ck = common.load_checkpoint(str(path), "dnc")
    assert "mask" not in ck["info"]["cfg"] and "dealloc" not in ck["info"]["cfg"]


def test_cli_a_text_model_with_the_refinements_samples(text_file, tmp_path):
    """Sampling runs the model through step(), which must know --mask and --dealloc from the
    checkpoint's cfg (no array shows --dealloc): the same seed samples the same text, and the
    text differs from that of the same params run without --dealloc."""
    path = tmp_path / "text.npz"
    p = run_script("dnc", text_file, "--mask", "--dealloc", "--hidden", 8, "--memory", 4, "--width", 3, "--reads", 1,
                   "--batch", 2, "--seq", 8, "--iters", 3, "--report", 3, "--threads", 1, "--save", path)
    assert p.returncode == 0, p.stderr
    a = run_script("dnc", "--load", path, "--sample", 60, "--seed", 1)
    b = run_script("dnc", "--load", path, "--sample", 60, "--seed", 1)
    assert a.returncode == 0 and a.stdout == b.stdout and len(a.stdout.strip()) > 0, a.stderr
    ck = common.load_checkpoint(str(path), "dnc")
    vocab = ck["vocab"]
    params = ck["best"]
    with_dealloc = common.sample(dnc, ck["info"]["cfg"], params, vocab, 60, rng=np.random.default_rng(1))
    without = common.sample(dnc, dict(ck["info"]["cfg"], dealloc=False), params, vocab, 60,
                            rng=np.random.default_rng(1))
    assert with_dealloc != without

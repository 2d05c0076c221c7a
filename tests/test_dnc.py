"""dnc-numpy.py: every memory operation's backward against central differences, the whole
model's gradient (with and without the stop-gradient on w^w_{t-1} inside usage), the
invariants of §4 of docs/dnc.md, the direction of the temporal links, no
NaN at the epsilon paths, carried state, a memory that is really used, and the command
line (training, sampling, checkpoints, resume, --gradcheck).

Everything numerical runs in float64 at tiny sizes with fixed seeds. The per-op measure is
that of docs/dnc.md §10: max |num - ana| / max |ana| over each input tensor, every entry checked.
"""
import functools
import io
import json
import os
import random
import re
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import common  # noqa: E402
import train  # noqa: E402
from conftest import vjp_errors  # noqa: E402

dnc = common.load_script("dnc-numpy.py")
TOL = 1e-6
B, N, W, R = 2, 5, 4, 3  # per-op sizes; R = 3 so that retention's leave-one-out products matter


# ----------------------------------------------------------------------------------
# Helpers




def assert_small(errors, tol=TOL):
    bad = {k: v for k, v in errors.items() if not v < tol}
    assert not bad, f"VJP does not match central differences: {errors}"


def weighting(rng, shape, total=0.9):
    """Non-negative rows summing to `total`, like a real weighting."""
    w = rng.random(shape) + 0.05
    return total * w / w.sum(-1, keepdims=True)


def distinct_usage(rng, shape):
    """Usages in (0, 1), far apart (gaps >= 0.1 / N) so no perturbation reorders the sort."""
    n = shape[-1]
    base = np.linspace(0.05, 0.95, n)
    u = np.stack([rng.permutation(base) for _ in range(int(np.prod(shape[:-1])))]).reshape(shape)
    return u + 0.01 * rng.random(shape) / n


def min_sorted_gap(u):
    return float(np.diff(np.sort(u, axis=-1), axis=-1).min())


def unit(rng, *shape):
    return rng.uniform(0.05, 0.95, shape)


def model_setup(cfg, V=7, Bm=3, S=6, seed=0, noise=0.1):
    """Random float64 params (moved off the initial values), a warm-up window so the state
    is carried and non-zero, and the next window's inputs and targets."""
    rng = np.random.default_rng(seed)
    params = dnc.init_params(cfg, V, rng, np.float64)
    for v in params.values():
        v += noise * rng.standard_normal(v.shape)
    ids = rng.integers(0, V, size=(2 * S + 1, Bm))
    state = dnc.init_state(cfg, params, Bm)
    _, state, _ = dnc.forward(params, ids[:S], state)
    return params, state, ids[S:2 * S], ids[S + 1:2 * S + 1], rng


def window_loss(params, inputs, targets, state):
    logits, _, _ = dnc.forward(params, inputs, common.copy_state(state))
    return common.cross_entropy(logits, targets)[0]


def cfg_of(H=6, layers=1, N_=5, W_=4, R_=2, stop=False, block_floats=dnc.BLOCK_FLOATS):
    return {"hidden": H, "layers": layers, "controller": "lstm", "memory": N_, "width": W_, "reads": R_,
            "stop_usage_grad": stop, "block_floats": block_floats}


# ----------------------------------------------------------------------------------
# 1. Each memory operation alone against central differences


def test_content_weighting_vjp():
    rng = np.random.default_rng(1)
    M = rng.standard_normal((B, N, W))
    M[0, 2] = 0  # an all-zero row: the eps inside sqrt(|M_n|^2 + eps)
    k = rng.standard_normal((B, R, W))
    beta = 1 + 3 * rng.random((B, R))
    beta[1, 0] = 25.0  # a large strength: a sharp softmax
    inputs = {"M": M, "k": k, "beta": beta}
    errors = vjp_errors(lambda I: dnc.content_forward(I["M"], I["k"], I["beta"]),
                        lambda G, c: dict(zip(("M", "k", "beta"), dnc.content_backward(G[0], c))), inputs)
    assert_small(errors)
    # The zero row's entries dominate M's error (4e-7 at h = 1e-6): the cosine bends on the
    # scale sqrt(eps) = 1e-3 there. It is the finite difference's own h^2 error, not the
    # backward's: at h = 1e-7 it falls 100-fold.
    fine = vjp_errors(lambda I: dnc.content_forward(I["M"], I["k"], I["beta"]),
                      lambda G, c: dict(zip(("M", "k", "beta"), dnc.content_backward(G[0], c))), inputs, h=1e-7)
    assert fine["M"] < errors["M"] / 30 and fine["M"] < 1e-7, (errors, fine)
    # the write head's lookup: one key per row
    inputs = {"M": M, "k": rng.standard_normal((B, 1, W)), "beta": 1 + 3 * rng.random((B, 1))}
    errors = vjp_errors(lambda I: dnc.content_forward(I["M"], I["k"], I["beta"]),
                        lambda G, c: dict(zip(("M", "k", "beta"), dnc.content_backward(G[0], c))), inputs)
    assert_small(errors)


def test_content_weighting_is_cosine_softmax():
    """The forward itself, against an independent computation (eps = 0 is close enough)."""
    rng = np.random.default_rng(2)
    M, k, beta = rng.standard_normal((B, N, W)), rng.standard_normal((B, R, W)), 1 + rng.random((B, R))
    C, _ = dnc.content_forward(M, k, beta)
    cos = np.einsum("bkw,bnw->bkn", k, M) / (np.linalg.norm(k, axis=-1)[:, :, None]
                                             * np.linalg.norm(M, axis=-1)[:, None, :])
    z = np.exp(beta[:, :, None] * cos)
    np.testing.assert_allclose(C, z / z.sum(-1, keepdims=True), rtol=1e-5)


def test_retention_vjp():
    rng = np.random.default_rng(3)
    inputs = {"free": unit(rng, B, R), "wr_prev": weighting(rng, (B, R, N))}
    errors = vjp_errors(lambda I: dnc.retention_forward(I["free"], I["wr_prev"]),
                        lambda G, c: dict(zip(("free", "wr_prev"), dnc.retention_backward(G[0], c))), inputs)
    assert_small(errors)


def test_retention_with_a_zero_factor():
    """A factor 1 - f w = 0 (f = w = 1): the leave-one-out products must not divide by it."""
    rng = np.random.default_rng(4)
    free, wr = unit(rng, B, R), weighting(rng, (B, R, N))
    free[0, 1], wr[0, 1, 3] = 1.0, 1.0
    psi, cache = dnc.retention_forward(free, wr)
    assert psi[0, 3] == 0
    dfree, dwr = dnc.retention_backward(np.ones((B, N)), cache)
    assert np.isfinite(dfree).all() and np.isfinite(dwr).all()
    # d psi_3 / d wr[0, 1, 3] = -f_1 * prod_{j != 1} (1 - f_j w_j3)
    expect = -free[0, 1] * np.prod([1 - free[0, j] * wr[0, j, 3] for j in range(R) if j != 1])
    assert dwr[0, 1, 3] == pytest.approx(expect, rel=1e-12)


def test_usage_vjp():
    rng = np.random.default_rng(5)
    inputs = {"u_prev": distinct_usage(rng, (B, N)), "ww_prev": weighting(rng, (B, N)), "psi": unit(rng, B, N)}
    fwd = lambda I: dnc.usage_forward(I["u_prev"], I["ww_prev"], I["psi"])  # noqa: E731
    errors = vjp_errors(fwd, lambda G, c: dict(zip(("u_prev", "ww_prev", "psi"), dnc.usage_backward(G[0], c))),
                        inputs)
    assert_small(errors)


def test_usage_stop_write_grad_zeroes_only_dww_prev():
    rng = np.random.default_rng(6)
    u_prev, ww_prev, psi = distinct_usage(rng, (B, N)), weighting(rng, (B, N)), unit(rng, B, N)
    u, cache = dnc.usage_forward(u_prev, ww_prev, psi)
    du = rng.standard_normal((B, N))
    full = dnc.usage_backward(du, cache)
    stop = dnc.usage_backward(du, cache, stop_write_grad=True)
    assert np.abs(full[1]).max() > 0.1
    np.testing.assert_array_equal(stop[1], 0)  # dww_prev
    np.testing.assert_array_equal(stop[0], full[0])  # du_prev unchanged
    np.testing.assert_array_equal(stop[2], full[2])  # dpsi unchanged


@pytest.mark.parametrize("backward", ["allocation_backward", "allocation_backward_loop"])
@pytest.mark.parametrize("n", [1, 2, N, 8])
def test_allocation_vjp(n, backward):
    """The backward over the free list, from one slot (nothing before or after it) up: the
    recursive doubling and the plain reverse loop it solves."""
    rng = np.random.default_rng(7)
    u = distinct_usage(rng, (B, n))
    u[1, np.argmin(u[1])] = 0.0  # an exactly zero usage: the naive backward divides by it
    assert n == 1 or min_sorted_gap(u) > 1e-3
    errors = vjp_errors(lambda I: dnc.allocation_forward(I["u"]),
                        lambda G, c: {"u": getattr(dnc, backward)(G[0], c)}, {"u": u}, h=1e-7)
    assert_small(errors)


@pytest.mark.parametrize("n", [1, 2, 3, 5, 6, 16, 33, 64])
def test_allocation_doubling_equals_the_plain_loop(n):
    """allocation_backward solves the reverse recursion T_{k-1} = da_k (1 - u_k) + u_k T_k by
    recursive doubling; its reference, allocation_backward_loop, runs it slot by slot. The
    same adjoints in float64, to 1e-12 of the largest, with ties and a zero usage among them."""
    rng = np.random.default_rng(n)
    u = rng.random((4, n))
    u[1] = 0.0  # a fresh memory: every usage tied at zero
    u[2, 0] = 0.0
    _, cache = dnc.allocation_forward(u)
    da = rng.standard_normal((4, n))
    fast, loop = dnc.allocation_backward(da, cache), dnc.allocation_backward_loop(da, cache)
    assert np.abs(fast - loop).max() <= 1e-12 * np.abs(loop).max()


def test_allocation_forward_values():
    """Least used slot first: a[phi_j] = (1 - u_j) prod_{i<j} u_i on the clamped usages."""
    u = np.array([[0.5, 0.1, 0.9, 0.3]])
    a, _ = dnc.allocation_forward(u)
    uc = dnc.EPS + (1 - dnc.EPS) * u[0]
    expect = np.empty(4)
    expect[1] = 1 - uc[1]
    expect[3] = (1 - uc[3]) * uc[1]
    expect[0] = (1 - uc[0]) * uc[1] * uc[3]
    expect[2] = (1 - uc[2]) * uc[1] * uc[3] * uc[0]
    np.testing.assert_allclose(a[0], expect, rtol=1e-13)
    # ties (all-zero usage at the start) break by slot index: everything goes to slot 0
    a0, _ = dnc.allocation_forward(np.zeros((1, 4)))
    assert np.argmax(a0[0]) == 0 and a0[0, 0] == pytest.approx(1 - dnc.EPS)


def test_allocation_backward_many_slots_is_finite_and_exact():
    """A long free list (products of usages underflow): the division-free recursion still
    matches central differences."""
    rng = np.random.default_rng(8)
    n = 24
    u = rng.permutation(np.linspace(0.0, 0.6, n))[None] + 1e-4 * rng.random((1, n))
    errors = vjp_errors(lambda I: dnc.allocation_forward(I["u"]),
                        lambda G, c: {"u": dnc.allocation_backward(G[0], c)}, {"u": u}, h=1e-7)
    assert_small(errors)


def test_write_weighting_vjp():
    rng = np.random.default_rng(9)
    inputs = {"alloc": weighting(rng, (B, N)), "cw": weighting(rng, (B, N), 1.0),
              "ga": unit(rng, B, 1), "gw": unit(rng, B, 1)}
    errors = vjp_errors(lambda I: dnc.write_weighting_forward(I["alloc"], I["cw"], I["ga"], I["gw"]),
                        lambda G, c: dict(zip(("alloc", "cw", "ga", "gw"), dnc.write_weighting_backward(G[0], c))),
                        inputs)
    assert_small(errors)


def test_erase_write_vjp():
    rng = np.random.default_rng(10)
    inputs = {"M_prev": rng.standard_normal((B, N, W)), "ww": weighting(rng, (B, N)),
              "e": unit(rng, B, W), "v": rng.standard_normal((B, W))}
    errors = vjp_errors(lambda I: dnc.write_forward(I["M_prev"], I["ww"], I["e"], I["v"]),
                        lambda G, c: dict(zip(("M_prev", "ww", "e", "v"), dnc.write_backward(G[0], c))), inputs)
    assert_small(errors)


def test_link_vjp():
    rng = np.random.default_rng(11)
    L_prev = unit(rng, B, N, N) * (1 - np.eye(N)) / N
    inputs = {"L_prev": L_prev, "ww": weighting(rng, (B, N)), "p_prev": weighting(rng, (B, N), 0.7)}
    errors = vjp_errors(lambda I: dnc.link_forward(I["L_prev"], I["ww"], I["p_prev"]),
                        lambda G, c: dict(zip(("L_prev", "ww", "p_prev"), dnc.link_backward(G[0], c))), inputs)
    assert_small(errors)


def test_link_backward_leaves_its_adjoint_untouched():
    """link_backward masks a new array, not the caller's dL (which may be step t+1's inbox)."""
    rng = np.random.default_rng(11)
    L_prev = unit(rng, B, N, N) * (1 - np.eye(N)) / N
    _, cache = dnc.link_forward(L_prev, weighting(rng, (B, N)), weighting(rng, (B, N), 0.7))
    dL = rng.standard_normal((B, N, N))
    before = dL.copy()
    dL_prev, _, _ = dnc.link_backward(dL, cache)
    np.testing.assert_array_equal(dL, before)
    assert (np.diagonal(dL_prev, axis1=1, axis2=2) == 0).all()  # no gradient through the zeroed diagonal


def test_precedence_vjp():
    rng = np.random.default_rng(12)
    inputs = {"p_prev": weighting(rng, (B, N), 0.7), "ww": weighting(rng, (B, N))}
    errors = vjp_errors(lambda I: dnc.precedence_forward(I["p_prev"], I["ww"]),
                        lambda G, c: dict(zip(("p_prev", "ww"), dnc.precedence_backward(G[0], c))), inputs)
    assert_small(errors)


def test_directional_vjp():
    rng = np.random.default_rng(13)
    inputs = {"L": unit(rng, B, N, N) * (1 - np.eye(N)) / N, "wr_prev": weighting(rng, (B, R, N))}

    def fwd(I):
        f, b, cache = dnc.directional_forward(I["L"], I["wr_prev"])
        return (f, b), cache

    errors = vjp_errors(fwd, lambda G, c: dict(zip(("L", "wr_prev"), dnc.directional_backward(G[0], G[1], c))),
                        inputs)
    assert_small(errors)


def test_read_weighting_vjp():
    rng = np.random.default_rng(14)
    inputs = {"modes": common.softmax(rng.standard_normal((B, R, 3))), "bwd": weighting(rng, (B, R, N)),
              "cr": weighting(rng, (B, R, N), 1.0), "fwd": weighting(rng, (B, R, N))}
    errors = vjp_errors(lambda I: dnc.read_weighting_forward(I["modes"], I["bwd"], I["cr"], I["fwd"]),
                        lambda G, c: dict(zip(("modes", "bwd", "cr", "fwd"), dnc.read_weighting_backward(G[0], c))),
                        inputs)
    assert_small(errors)


def test_read_vectors_vjp():
    rng = np.random.default_rng(15)
    inputs = {"M": rng.standard_normal((B, N, W)), "wr": weighting(rng, (B, R, N))}
    errors = vjp_errors(lambda I: dnc.read_forward(I["M"], I["wr"]),
                        lambda G, c: dict(zip(("M", "wr"), dnc.read_backward(G[0], c))), inputs)
    assert_small(errors)


def test_interface_vjp():
    rng = np.random.default_rng(16)
    xi = 2 * rng.standard_normal((B, dnc.interface_size(R, W)))
    names = list(dnc.interface_forward(xi, R, W)[0])

    def fwd(I):
        parts, cache = dnc.interface_forward(I["xi"], R, W)
        return tuple(parts[k] for k in names), cache

    errors = vjp_errors(fwd, lambda G, c: {"xi": dnc.interface_backward(dict(zip(names, G)), c)}, {"xi": xi})
    assert_small(errors)


def test_interface_ranges():
    rng = np.random.default_rng(17)
    xi = 30 * rng.standard_normal((4, dnc.interface_size(R, W)))
    parts, _ = dnc.interface_forward(xi, R, W)
    assert parts["read_keys"].shape == (4, R, W) and parts["write_key"].shape == (4, 1, W)
    assert (parts["read_strengths"] >= 1).all() and (parts["write_strength"] >= 1).all()
    for name in ("erase", "free_gates", "alloc_gate", "write_gate"):
        assert ((parts[name] >= 0) & (parts[name] <= 1)).all(), name
    np.testing.assert_allclose(parts["read_modes"].sum(-1), 1, rtol=1e-14)
    at = dnc.interface_layout(R, W)
    x = xi[:, at["write_strength"]]
    np.testing.assert_allclose(parts["write_strength"], 1 + np.logaddexp(0, x), rtol=1e-13)


def test_oneplus_derivative_is_the_sigmoid():
    """The strengths' backward is sigmoid(raw) for every raw value, large of either sign."""
    at = dnc.interface_layout(R, W)
    x = np.linspace(-40, 40, 2 * 33).reshape(2, 33)
    xi = np.zeros((2 * 33, dnc.interface_size(R, W)))
    xi[:, at["write_strength"]] = x.reshape(-1, 1)
    parts, cache = dnc.interface_forward(xi, R, W)
    np.testing.assert_allclose(parts["write_strength"][:, 0], 1 + np.logaddexp(0, x.reshape(-1)), rtol=1e-15)
    dxi = dnc.interface_backward({"write_strength": np.ones((2 * 33, 1))}, cache)
    np.testing.assert_allclose(dxi[:, at["write_strength"]][:, 0], 1 / (1 + np.exp(-x.reshape(-1))),
                               rtol=1e-9, atol=1e-15)


def memory_step_inputs(rng, Bm=B, Nm=N, Wm=W, Rm=R):
    """A random but plausible previous memory state (distinct usages, a zero memory row)
    and random squashed interface parts, each a fresh array."""
    M = rng.standard_normal((Bm, Nm, Wm))
    M[0, 1] = 0
    mem = {"M": M, "u": distinct_usage(rng, (Bm, Nm)), "ww": weighting(rng, (Bm, Nm), 0.6),
           "p": weighting(rng, (Bm, Nm), 0.7), "L": unit(rng, Bm, Nm, Nm) * (1 - np.eye(Nm)) / Nm,
           "wr": weighting(rng, (Bm, Rm, Nm))}
    parts, _ = dnc.interface_forward(rng.standard_normal((Bm, dnc.interface_size(Rm, Wm))), Rm, Wm)
    parts = {k: np.array(v, copy=True) for k, v in parts.items()}
    return parts, mem


def memory_step_check(stop, seed=18, block_floats=None):
    """The memory step as a VJP check on named inputs; with block_floats, memory_forward and
    memory_backward in blocks of that size instead of the step itself."""
    if block_floats is None:
        step_forward, step_backward = dnc.memory_step_forward, dnc.memory_step_backward
    else:
        step_forward = functools.partial(dnc.memory_forward, block_floats=block_floats)
        step_backward = dnc.memory_backward
    rng = np.random.default_rng(seed)
    parts, mem = memory_step_inputs(rng)
    inputs = {**{"part/" + k: v for k, v in parts.items()}, **{"prev/" + k: v for k, v in mem.items()}}

    ww_const = mem["ww"].copy()

    def fwd(I):
        prev = {k: I["prev/" + k] for k in mem}
        if stop:  # w^w_{t-1} (used by usage alone) enters as an external constant
            prev["ww"] = ww_const
        new, r, cache = step_forward({k: I["part/" + k] for k in parts}, prev)
        return tuple(new[k] for k in dnc.MEMORY_STATE) + (r,), cache

    def bwd(G, cache):
        dparts, dprev = step_backward(G[-1], dict(zip(dnc.MEMORY_STATE, G[:-1])), cache, stop)
        return {**{"part/" + k: v for k, v in dparts.items()}, **{"prev/" + k: v for k, v in dprev.items()}}

    new, _, _ = dnc.memory_step_forward(parts, mem)
    assert min_sorted_gap(new["u"]) > 1e-3  # the sort order is stable under the perturbations
    return inputs, fwd, bwd


def test_memory_step_vjp():
    inputs, fwd, bwd = memory_step_check(stop=False)
    errors = vjp_errors(fwd, bwd, inputs)
    assert len(errors) == 16  # 10 interface parts and 6 state tensors, each checked
    assert_small(errors)


def test_memory_forward_in_blocks_of_one_row_vjp():
    """memory_forward / memory_backward a batch row at a time (blocks, as at large N, in
    miniature) pass the step's check, with and without the stop-gradient."""
    assert len(dnc.batch_blocks(B, N, N * N)) == B
    inputs, fwd, bwd = memory_step_check(stop=False, block_floats=N * N)
    assert_small(vjp_errors(fwd, bwd, inputs))
    inputs, fwd, bwd = memory_step_check(stop=True, block_floats=N * N)
    assert_small(vjp_errors(fwd, bwd, inputs, zero_ok=("prev/ww",)))


@pytest.mark.parametrize("rows, sizes", [(1, [1] * 5), (2, [2, 2, 1]), (3, [3, 2]), (5, [5]), (8, [5])])
def test_memory_forward_in_blocks_equals_the_whole_batch(rows, sizes):
    """memory_forward in blocks of `rows` of 5 batch rows (the last block short at 2 and 3;
    one block at 5 and 8, the step itself) against memory_step_forward / _backward on the
    whole batch: the same new state, reads and adjoints in float64, the inbox untouched."""
    rng = np.random.default_rng(5)
    Bb = 5
    parts, mem = memory_step_inputs(rng, Bm=Bb)
    dmem = {k: rng.standard_normal(mem[k].shape) for k in dnc.MEMORY_STATE}
    dr = rng.standard_normal((Bb, R, W))
    before = {k: v.copy() for k, v in dmem.items()}
    for stop in (False, True):
        new, r, cache = dnc.memory_step_forward(parts, mem)
        dparts, dprev = dnc.memory_step_backward(dr, dmem, cache, stop)
        new_b, r_b, blocks = dnc.memory_forward(parts, mem, block_floats=rows * N * N)
        assert [b.rows.stop - b.rows.start for b in blocks] == sizes
        dparts_b, dprev_b = dnc.memory_backward(dr, dmem, blocks, stop)
        assert dparts_b.keys() == dparts.keys() and dprev_b.keys() == dprev.keys() == new_b.keys() == new.keys()
        for a, b in zip([*new.values(), r, *dparts.values(), *dprev.values()],
                        [*new_b.values(), r_b, *dparts_b.values(), *dprev_b.values()]):
            assert a.shape == b.shape and a.dtype == b.dtype
            np.testing.assert_allclose(b, a, rtol=1e-13, atol=1e-15)
    for k in dnc.MEMORY_STATE:
        np.testing.assert_array_equal(dmem[k], before[k], err_msg=k)


def test_memory_step_backward_leaves_its_inputs_untouched():
    """The step's backward reads its inbox and dr, and writes none of them."""
    rng = np.random.default_rng(5)
    parts, mem = memory_step_inputs(rng)
    dmem = {k: rng.standard_normal(mem[k].shape) for k in dnc.MEMORY_STATE}
    dr = rng.standard_normal((B, R, W))
    before = {k: v.copy() for k, v in dmem.items()}, dr.copy()
    _, _, cache = dnc.memory_step_forward(parts, mem)
    dnc.memory_step_backward(dr, dmem, cache)
    for k in dnc.MEMORY_STATE:
        np.testing.assert_array_equal(dmem[k], before[0][k], err_msg=k)
    np.testing.assert_array_equal(dr, before[1])


def test_memory_step_stop_usage_grad():
    """With the flag, the step's backward is the VJP of a step whose w^w_{t-1} enters usage
    as a constant. Within one step w^w_{t-1} is used by usage alone, so its adjoint must be
    exactly zero and every other adjoint must still match central differences."""
    inputs, fwd, bwd = memory_step_check(stop=True)
    errors = vjp_errors(fwd, bwd, inputs, zero_ok=("prev/ww",))
    assert_small(errors)


# ----------------------------------------------------------------------------------
# 2. The whole model


@pytest.mark.parametrize("cfg", [cfg_of(H=6, N_=5, W_=4, R_=1), cfg_of(H=5, N_=8, W_=6, R_=3),
                                 cfg_of(H=5, layers=2, N_=5, W_=4, R_=2)],
                         ids=["H6-N5-W4-R1", "H5-N8-W6-R3", "L2-H5-N5-W4-R2"])
def test_model_gradients(cfg, monkeypatch):
    # Allocation is discontinuous where two usages tie (the sort order flips; the paper
    # ignores it, and so does the backward). Record the free list phi of every allocation
    # call, so that a failure caused by a perturbation that reorders the usages is told
    # apart from a wrong gradient. (With seed 0, H=4, L=2 this really happens: two usages
    # 1.5e-9 apart at the 4th step, and the check then reports errors near 1.)
    real, phis = dnc.allocation_forward, []

    def recording(u):
        a, cache = real(u)
        phis.append(cache.phi.copy())
        return a, cache

    monkeypatch.setattr(dnc, "allocation_forward", recording)
    out = io.StringIO()
    S = 6
    worst, count = common.check_model_gradients(dnc, cfg, S=S, checks=12, out=out)
    # calls: the warm-up window, the analytic window, then each finite-difference window
    assert len(phis) % S == 0 and len(phis) > 2 * S
    base = phis[S:2 * S]
    flips = sum(not np.array_equal(phis[i], base[i % S]) for i in range(2 * S, len(phis)))
    assert flips == 0, f"{flips} perturbations reorder the usages: a near-tie, not a gradient error"
    names = ["Wxi", "bxi", "Wy", "Wry", "by"] + [f"{w}{l}" for l in range(cfg["layers"])
                                                 for w in ("Wx", "Wr", "Wh", "b")] \
        + [f"Wd{l}" for l in range(1, cfg["layers"])]
    assert count == len(names)
    for name in names:
        assert f"{name}:" in out.getvalue()
    assert "ALL-ZERO" not in out.getvalue()
    assert worst < TOL, out.getvalue()


def test_model_gradients_catch_a_wrong_memory_backward(monkeypatch):
    """The whole-model check is sensitive to the memory path: drop the link's dww term and
    the worst error is far above the bar."""
    real = dnc.link_backward

    def wrong(dL, cache):
        dL_prev, dww, dp_prev = real(dL, cache)
        return dL_prev, 0 * dww, dp_prev

    monkeypatch.setattr(dnc, "link_backward", wrong)
    worst, _ = common.check_model_gradients(dnc, cfg_of(), checks=12, out=io.StringIO())
    assert worst > 1e-4


def test_model_in_blocks_of_rows_equals_one_block():
    """The whole model with memory_forward's blocks of one batch row (cfg's block_floats):
    the same logits, last state, gradients and free-list orders (discrete_choices reads
    every block) as with the whole batch in one block."""
    cfg = cfg_of()
    params, state, inputs, targets, _ = model_setup(cfg, seed=28)
    runs = []
    for block_floats, n_blocks in ((dnc.BLOCK_FLOATS, 1), (cfg["memory"] ** 2, 3)):
        run_cfg = dict(cfg, block_floats=block_floats)
        logits, last, cache = dnc.forward(params, inputs, common.copy_state(state), run_cfg)
        assert all(len(step.memory) == n_blocks for step in cache.steps)
        grads = dnc.backward(common.cross_entropy(logits, targets)[1], cache)
        runs.append((logits, last, grads, dnc.discrete_choices(cache)))
    (logits, last, grads, phi), (logits_b, last_b, grads_b, phi_b) = runs
    assert phi.shape == phi_b.shape == (inputs.shape[0], 3, cfg["memory"])
    np.testing.assert_array_equal(phi_b, phi)
    np.testing.assert_allclose(logits_b, logits, rtol=1e-13, atol=1e-15)
    for k in last:
        np.testing.assert_allclose(last_b[k], last[k], rtol=1e-13, atol=1e-15, err_msg=k)
    for k in grads:
        np.testing.assert_allclose(grads_b[k], grads[k], rtol=1e-12, atol=1e-15, err_msg=k)


# ----------------------------------------------------------------------------------
# 3. The stop-gradient on w^w_{t-1} inside usage


def test_stop_usage_grad_matches_its_own_finite_differences(monkeypatch):
    cfg = cfg_of(H=5, N_=6, W_=4, R_=2, stop=True)
    params, state, inputs, targets, rng = model_setup(cfg, seed=3)
    S = inputs.shape[0]
    real_usage = dnc.usage_forward

    # a normal forward, recording the w^w_{t-1} each step hands to usage
    recorded = []

    def recording(u_prev, ww_prev, psi):
        recorded.append(ww_prev.copy())
        return real_usage(u_prev, ww_prev, psi)

    monkeypatch.setattr(dnc, "usage_forward", recording)
    loss0, grads_stop, _ = common.loss_and_grads(dnc, params, inputs, targets, common.copy_state(state), cfg)
    assert len(recorded) == S
    _, grads_full, _ = common.loss_and_grads(dnc, params, inputs, targets, common.copy_state(state),
                                             dict(cfg, stop_usage_grad=False))
    recorded = recorded[:S]

    # the stop-gradient model: usage sees the recorded w^w_{t-1} as external constants
    calls = [0]

    def frozen(u_prev, ww_prev, psi):
        const = recorded[calls[0]]
        calls[0] += 1
        return real_usage(u_prev, const, psi)

    def loss_frozen(p):
        calls[0] = 0
        loss = window_loss(p, inputs, targets, state)
        assert calls[0] == S
        return loss

    def loss_plain(p):
        return window_loss(p, inputs, targets, state)

    monkeypatch.setattr(dnc, "usage_forward", frozen)
    assert loss_frozen(params) == loss0  # the same model at the recorded point
    worst_stop = common.gradcheck(loss_frozen, params, grads_stop, checks=30, rng=np.random.default_rng(1),
                                  h=1e-6, out=io.StringIO())
    worst_full_vs_frozen = common.gradcheck(loss_frozen, params, grads_full, checks=30,
                                            rng=np.random.default_rng(1), h=1e-6, out=io.StringIO())
    monkeypatch.setattr(dnc, "usage_forward", real_usage)
    worst_stop_vs_plain = common.gradcheck(loss_plain, params, grads_stop, checks=30,
                                           rng=np.random.default_rng(1), h=1e-6, out=io.StringIO())
    worst_full = common.gradcheck(loss_plain, params, grads_full, checks=30, rng=np.random.default_rng(1),
                                  h=1e-6, out=io.StringIO())

    assert worst_stop < TOL, f"stop-gradient variant vs its own finite differences: {worst_stop:.3e}"
    assert worst_full < TOL
    # the flag really changes the gradient: each variant fails the other's check
    print(f"stop vs frozen FD {worst_stop:.3e}, full vs plain FD {worst_full:.3e}, "
          f"stop vs plain FD {worst_stop_vs_plain:.3e}, full vs frozen FD {worst_full_vs_frozen:.3e}")
    assert worst_stop_vs_plain > 10 * TOL, worst_stop_vs_plain
    assert worst_full_vs_frozen > 10 * TOL, worst_full_vs_frozen
    rel = max(float(np.abs(grads_stop[k] - grads_full[k]).max() / np.abs(grads_full[k]).max()) for k in params)
    assert rel > 10 * TOL, rel
    # parameters that cannot reach any usage are unaffected by the flag
    for k in ("Wy", "by"):
        np.testing.assert_array_equal(grads_stop[k], grads_full[k])


def test_stop_usage_grad_flag_from_the_command_line():
    p = train.make_parser(dnc, "", {})
    assert dnc.config(p.parse_args(["--stop-usage-grad"]))["stop_usage_grad"] is True
    assert dnc.config(p.parse_args([]))["stop_usage_grad"] is False


# ----------------------------------------------------------------------------------
# 4. Invariants on a run


@pytest.mark.parametrize("scale", [0.3, 3.0], ids=["mild", "saturated"])
def test_invariants_over_a_run(scale, monkeypatch):
    cfg = cfg_of(H=8, N_=6, W_=4, R_=2)
    rng = np.random.default_rng(20)
    V, Bm, T = 7, 4, 20
    params = dnc.init_params(cfg, V, rng, np.float64)
    for v in params.values():
        v += scale * rng.standard_normal(v.shape)
    # the values inside a step, recorded from the ops' own outputs (not from cache layouts)
    seen = {}

    def recorder(name, fn):
        def wrapped(*args):
            out = fn(*args)
            seen[name] = out
            return out
        return wrapped

    for name in ("interface_forward", "allocation_forward", "directional_forward"):
        monkeypatch.setattr(dnc, name, recorder(name, getattr(dnc, name)))
    state = dnc.init_state(cfg, params, Bm)
    most = {"ww": 0.0, "L": 0.0, "fwd": 0.0, "read": 0.0}
    for t, x in enumerate(rng.integers(0, V, (T, Bm))):
        _, r, state, _ = dnc.dnc_step_forward(params, x, state, cfg)
        ww, p, L, wr, u = state["ww"], state["p"], state["L"], state["wr"], state["u"]
        gw = seen["interface_forward"][0]["write_gate"][:, 0]
        alloc = seen["allocation_forward"][0]
        fwd, bwd = seen["directional_forward"][:2]
        msg = f"step {t}"
        assert (wr >= -1e-15).all() and (wr.sum(-1) <= 1 + 1e-6).all(), msg
        assert (ww >= 0).all() and (ww.sum(-1) <= gw + 1e-12).all() and (gw <= 1).all(), msg
        assert (alloc >= 0).all() and (alloc.sum(-1) <= 1 + 1e-12).all(), msg
        uc = dnc.EPS + (1 - dnc.EPS) * u  # sum of the allocation = 1 - prod of the clamped usages
        np.testing.assert_allclose(alloc.sum(-1), 1 - uc.prod(-1), atol=1e-12, err_msg=msg)
        assert (p >= 0).all() and (p.sum(-1) <= 1 + 1e-12).all(), msg
        assert (L >= -1e-15).all() and (L <= 1 + 1e-12).all(), msg
        assert (np.diagonal(L, axis1=1, axis2=2) == 0).all(), msg
        assert (u >= 0).all() and (u <= 1 + 1e-12).all(), msg
        assert (fwd.sum(-1) <= 1 + 1e-6).all() and (bwd.sum(-1) <= 1 + 1e-6).all(), msg
        assert np.isfinite(r).all()
        most["ww"] = max(most["ww"], ww.sum(-1).max())
        most["L"] = max(most["L"], L.max())
        most["fwd"] = max(most["fwd"], fwd.max(), bwd.max())
        most["read"] = max(most["read"], wr.sum(-1).max())
    # not vacuous: the run really writes, links, follows links and reads
    assert most["ww"] > 0.2 and most["L"] > 0.01 and most["fwd"] > 0.001 and most["read"] > 0.5, most


# ----------------------------------------------------------------------------------
# 5. Direction of the temporal links


def test_link_direction():
    n = 5
    eye = np.eye(n)
    L, p = np.zeros((1, n, n)), np.zeros((1, n))
    for slot in (0, 1, 2):
        ww = eye[[slot]]
        L, _ = dnc.link_forward(L, ww, p)  # with p_{t-1}
        p, _ = dnc.precedence_forward(p, ww)
    # L[i, j] = 1: slot i was written right after slot j
    assert L[0, 1, 0] == 1 and L[0, 2, 1] == 1 and L.sum() == 2
    fwd, bwd, _ = dnc.directional_forward(L, eye[[0]][:, None, :])
    np.testing.assert_array_equal(fwd[0, 0], eye[1])  # forward from slot 0: slot 1
    fwd1, bwd1, _ = dnc.directional_forward(L, eye[[1]][:, None, :])
    np.testing.assert_array_equal(bwd1[0, 0], eye[0])  # backward from slot 1: slot 0
    np.testing.assert_array_equal(fwd1[0, 0], eye[2])
    np.testing.assert_array_equal(bwd[0, 0], 0)  # nothing was written before slot 0
    np.testing.assert_array_equal(p[0], eye[2])


def test_link_direction_through_whole_memory_steps():
    """The same through memory_step_forward: three steps that allocate slot 0, 1, 2 in turn
    (write and allocation gates 1, every other slot fully used), then a step that writes
    nothing and reads in forward mode from slot 0 (-> slot 1) and in backward mode from
    slot 1 (-> slot 0). This checks the op order of the step (links from p_{t-1})."""
    n, w = 5, 4
    rng = np.random.default_rng(27)
    eye = np.eye(n)

    def parts(gate, modes):
        return {"read_keys": rng.standard_normal((1, 2, w)), "read_strengths": np.ones((1, 2)),
                "write_key": rng.standard_normal((1, 1, w)), "write_strength": np.ones((1, 1)),
                "erase": np.zeros((1, w)), "write_vector": rng.standard_normal((1, w)),
                "free_gates": np.zeros((1, 2)), "alloc_gate": np.ones((1, 1)), "write_gate": np.full((1, 1), gate),
                "read_modes": np.array(modes, dtype=float)[None]}

    mem = {"M": np.zeros((1, n, w)), "u": np.zeros((1, n)), "ww": np.zeros((1, n)), "p": np.zeros((1, n)),
           "L": np.zeros((1, n, n)), "wr": np.zeros((1, 2, n))}
    for slot in (0, 1, 2):
        mem["u"] = 1 - eye[[slot]]  # only `slot` is free
        mem, _, _ = dnc.memory_step_forward(parts(1.0, [[0, 1, 0], [0, 1, 0]]), mem)
        np.testing.assert_allclose(mem["ww"][0], eye[slot], atol=1e-5)
    mem["wr"] = np.stack([eye[0], eye[1]])[None]  # head 0 was on slot 0, head 1 on slot 1
    mem, _, _ = dnc.memory_step_forward(parts(0.0, [[0, 0, 1], [1, 0, 0]]), mem)  # forward, backward
    np.testing.assert_allclose(mem["wr"][0, 0], eye[1], atol=1e-5)
    np.testing.assert_allclose(mem["wr"][0, 1], eye[0], atol=1e-5)


def test_read_modes_order_is_backward_content_forward():
    """Mode 0 selects the backward weighting, 2 the forward one (the order of docs/dnc.md §2)."""
    rng = np.random.default_rng(21)
    bwd, cr, fwd = (weighting(rng, (1, 1, N)) for _ in range(3))
    for mode, expect in ((0, bwd), (1, cr), (2, fwd)):
        modes = np.eye(3)[[mode]][None]
        wr, _ = dnc.read_weighting_forward(modes, bwd, cr, fwd)
        np.testing.assert_array_equal(wr, expect)


# ----------------------------------------------------------------------------------
# 6. No NaN at the epsilon paths


def test_content_zero_memory_and_huge_strength_are_finite():
    rng = np.random.default_rng(22)
    M = rng.standard_normal((3, N, W))
    M[0] = 0  # all-zero memory
    M[1, :2] = 0  # some zero rows
    k = rng.standard_normal((3, 2, W))
    k[2, 0] = 0  # a zero key
    beta = np.full((3, 2), 1e4 + 1.0)  # oneplus(1e4)
    with np.errstate(divide="raise", invalid="raise"):
        C, cache = dnc.content_forward(M, k, beta)
        grads = dnc.content_backward(rng.standard_normal(C.shape), cache)
    assert np.isfinite(C).all() and all(np.isfinite(g).all() for g in grads)
    np.testing.assert_allclose(C.sum(-1), 1, rtol=1e-12)
    np.testing.assert_allclose(C[0], 1 / N)  # zero memory: every slot equally similar


def test_full_model_with_huge_strengths_and_zero_memory_is_finite():
    cfg = cfg_of(H=6, N_=5, W_=4, R_=2)
    rng = np.random.default_rng(23)
    params = dnc.init_params(cfg, 7, rng, np.float64)
    at = dnc.interface_layout(2, 4)
    for sign in (1e4, -1e4):
        p = {k: v.copy() for k, v in params.items()}
        p["bxi"][at["read_strengths"]] = sign  # raw strengths: oneplus gives 1e4 + 1 or 1
        p["bxi"][at["write_strength"]] = sign
        ids = rng.integers(0, 7, (9, 3))
        with np.errstate(divide="raise", invalid="raise"):
            state = dnc.init_state(cfg, p, 3)  # all-zero memory
            loss, grads, last = common.loss_and_grads(dnc, p, ids[:-1], ids[1:], state)
        assert np.isfinite(loss)
        assert all(np.isfinite(g).all() for g in grads.values())
        assert all(np.isfinite(v).all() for v in last.values())


# ----------------------------------------------------------------------------------
# 7. Carried state


def test_one_long_window_equals_two_carried_windows():
    cfg = cfg_of(H=6, N_=5, W_=4, R_=2)
    rng = np.random.default_rng(24)
    params = dnc.init_params(cfg, 7, rng, np.float64)
    for v in params.values():
        v += 0.3 * rng.standard_normal(v.shape)
    S, Bm = 5, 3
    ids = rng.integers(0, 7, (2 * S, Bm))
    state0 = dnc.init_state(cfg, params, Bm)
    long_logits, long_state, _ = dnc.forward(params, ids, common.copy_state(state0))
    l1, s1, _ = dnc.forward(params, ids[:S], common.copy_state(state0))
    l2, s2, _ = dnc.forward(params, ids[S:], s1)
    np.testing.assert_allclose(np.concatenate([l1, l2]), long_logits, rtol=0, atol=1e-12)
    assert long_state.keys() == s2.keys() == state0.keys()
    for k in long_state:
        np.testing.assert_allclose(s2[k], long_state[k], rtol=0, atol=1e-12, err_msg=k)
    # step by step through the sampling path gives the same logits
    state = common.copy_state(state0)
    for t in range(2 * S):
        logits, state = dnc.step(params, ids[t], state)
        np.testing.assert_allclose(logits, long_logits[t], rtol=0, atol=1e-12)
    for k in long_state:
        np.testing.assert_allclose(state[k], long_state[k], rtol=0, atol=1e-12, err_msg=k)


def test_forward_leaves_the_given_state_untouched():
    cfg = cfg_of()
    params, state, inputs, targets, _ = model_setup(cfg, seed=25)
    before = common.copy_state(state)
    common.loss_and_grads(dnc, params, inputs, targets, state)
    for k in state:
        np.testing.assert_array_equal(state[k], before[k], err_msg=k)


# ----------------------------------------------------------------------------------
# 8. The memory is really used


def _used_setup():
    cfg = cfg_of(H=8, N_=6, W_=5, R_=2)
    rng = np.random.default_rng(26)
    params = dnc.init_params(cfg, 7, rng, np.float64)
    for v in params.values():
        v += 0.3 * rng.standard_normal(v.shape)
    ids = rng.integers(0, 7, (17, 3))
    state0 = dnc.init_state(cfg, params, 3)
    _, carried, _ = dnc.forward(params, ids[:8], state0)  # the first window writes the memory
    return cfg, params, ids[8:16], ids[9:17], carried


def test_reads_change_the_loss():
    cfg, params, inputs, targets, carried = _used_setup()
    base = window_loss(params, inputs, targets, carried)
    # without the read vectors (carried r zeroed, no read weights into output or controller)
    cut = {k: v.copy() for k, v in params.items()}
    cut["Wry"][:] = 0
    cut["Wr0"][:] = 0
    no_reads = dict(common.copy_state(carried), r=np.zeros_like(carried["r"]))
    assert abs(window_loss(cut, inputs, targets, no_reads) - base) > 1e-3
    # the output layer's reads alone matter too
    out_cut = dict(params, Wry=np.zeros_like(params["Wry"]))
    assert abs(window_loss(out_cut, inputs, targets, carried) - base) > 1e-3
    # and the reads are the memory's only way out: once cut, the memory content is irrelevant
    zero_mem = dict(common.copy_state(no_reads), M=np.zeros_like(carried["M"]))
    l_cut, _, _ = dnc.forward(cut, inputs, common.copy_state(no_reads))
    l_cut0, _, _ = dnc.forward(cut, inputs, zero_mem)
    np.testing.assert_array_equal(l_cut, l_cut0)


def test_memory_content_persists_across_windows():
    cfg, params, inputs, targets, carried = _used_setup()
    assert np.abs(carried["M"]).max() > 1e-2  # the first window left something in memory
    assert carried["u"].max() > 1e-2
    zeroed = dict(common.copy_state(carried), M=np.zeros_like(carried["M"]))
    with_memory = window_loss(params, inputs, targets, carried)
    without = window_loss(params, inputs, targets, zeroed)
    assert abs(with_memory - without) > 1e-4
    # the second window's gradient reaches the carried memory: d loss / d M_0 is non-zero
    logits, _, cache = dnc.forward(params, inputs, common.copy_state(carried))
    _, dlogits = common.cross_entropy(logits, targets)
    grads = dnc.backward(dlogits, cache)
    assert all(np.isfinite(g).all() for g in grads.values())


# ----------------------------------------------------------------------------------
# 9. The command line


def run_dnc(*args, timeout=120, script="dnc-numpy.py", cwd=None):
    cmd = [sys.executable, os.path.join(ROOT, script), *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=cwd)


def structured_text(seed=0, n_lines=160):
    """A few KB of repetitive text with structure: counted patterns, repeated phrases."""
    r = random.Random(seed)
    words = ["abc", "abd", "bca", "cab", "dab", "bad", "cad", "aba"]
    lines = []
    for i in range(n_lines):
        w = [r.choice(words) for _ in range(3)]
        lines.append(f"{w[0]} {w[1]} {w[0]} {w[2]} {w[1]}. ab{'c' * (i % 4)}d\n")
    return "".join(lines)


SIZES = ["--hidden", "16", "--memory", "8", "--width", "8", "--reads", "2", "--batch", "4", "--seq", "8"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    d = tmp_path_factory.mktemp("dnc_cli")
    text = d / "text.txt"
    text.write_text(structured_text())
    assert 2000 < len(text.read_text()) < 10000
    p = run_dnc(text, *SIZES, "--iters", 60, "--report", 20, "--save", d / "ck.npz", "--seed", 1)
    return d, text, p


def bpc_lines(stdout):
    return [(int(m.group(1)), float(m.group(2))) for m in re.finditer(r"iter (\d+), ([\d.]+) BPC", stdout)]


def test_cli_training_learns(trained):
    d, text, p = trained
    assert p.returncode == 0, p.stderr
    assert "Traceback" not in p.stderr
    reports = bpc_lines(p.stdout)
    assert [it for it, _ in reports] == [20, 40, 60], p.stdout
    assert reports[-1][1] < reports[0][1] - 0.1, p.stdout
    assert p.stdout.strip().splitlines()[-1].startswith("done: iter 60")
    assert (d / "ck.npz").exists()


def test_cli_sampling(trained):
    d, text, p = trained
    args = ["--load", d / "ck.npz", "--sample", 50, "--prime", "ab"]
    s1 = run_dnc(*args)
    assert s1.returncode == 0, s1.stderr
    assert s1.stdout.endswith("\n")
    out = s1.stdout[:-1]  # the prime and 50 sampled characters (newlines among them)
    assert out.startswith("ab") and len(out) == 52, repr(s1.stdout)
    assert set(out) <= set(text.read_text())
    s2 = run_dnc(*args)
    assert s2.stdout == s1.stdout  # the same seed, the same text
    s3 = run_dnc(*args, "--seed", 7)
    assert s3.returncode == 0 and s3.stdout.startswith("ab")


def _load(path):
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def test_cli_checkpoint_round_trip(trained):
    d, text, p = trained
    ck = _load(d / "ck.npz")
    info = json.loads(str(ck["info"]))
    assert info["kind"] == "dnc" and info["iter"] == 60
    assert info["cfg"]["memory"] == 8 and info["cfg"]["width"] == 8 and info["cfg"]["reads"] == 2
    assert ck["state/M"].shape == (4, 8, 8) and ck["state/L"].shape == (4, 8, 8)
    assert np.abs(ck["state/M"]).max() > 0  # the memory state is saved, and non-zero
    loaded = common.load_checkpoint(str(d / "ck.npz"), "dnc")
    for k, v in loaded["param"].items():
        np.testing.assert_array_equal(v, ck[f"param/{k}"])


def test_cli_same_seed_same_training(trained, tmp_path):
    d, text, p = trained
    q = run_dnc(text, *SIZES, "--iters", 60, "--report", 20, "--save", tmp_path / "again.npz", "--seed", 1)
    assert q.returncode == 0, q.stderr
    assert [b for _, b in bpc_lines(q.stdout)] == [b for _, b in bpc_lines(p.stdout)]
    a, b = _load(d / "ck.npz"), _load(tmp_path / "again.npz")
    for k in a:
        if k.startswith(("param/", "opt/", "state/")):
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_cli_exact_resume(trained, tmp_path):
    d, text, p = trained
    part = tmp_path / "part.npz"
    q1 = run_dnc(text, *SIZES, "--iters", 40, "--report", 20, "--save", part, "--seed", 1)
    assert q1.returncode == 0, q1.stderr
    q2 = run_dnc(text, *SIZES, "--iters", 20, "--report", 20, "--save", part, "--load", part, "--seed", 1)
    assert q2.returncode == 0, q2.stderr
    assert "resumed" in q2.stdout and "iter 60" in q2.stdout
    whole, split = _load(d / "ck.npz"), _load(part)
    keys = [k for k in whole if k.startswith(("param/", "opt/", "state/"))] + ["cursors"]
    assert sum(k.startswith("param/") for k in keys) >= 9
    for k in keys:
        np.testing.assert_array_equal(whole[k], split[k], err_msg=k)


def test_cli_refuses_an_lstm_checkpoint(trained, tmp_path):
    d, text, p = trained
    lstm_ck = tmp_path / "lstm.npz"
    q = run_dnc(text, "--hidden", 8, "--batch", 4, "--seq", 8, "--iters", 2, "--report", 1, "--save", lstm_ck,
                script="lstm-numpy.py")
    assert q.returncode == 0, q.stderr
    for extra in ([text], ["--sample", 10]):
        r = run_dnc(*extra, "--load", lstm_ck)
        lines = [line for line in r.stderr.splitlines() if line.strip()]
        assert r.returncode != 0
        assert "Traceback" not in r.stderr
        assert len(lines) == 1, r.stderr
        assert "lstm" in lines[0] and "dnc" in lines[0], lines[0]


def test_cli_gradcheck():
    r = run_dnc("--gradcheck", "--hidden", 5, "--memory", 5, "--width", 4, "--reads", 2)
    assert r.returncode == 0, r.stdout + r.stderr
    last = r.stdout.strip().splitlines()[-1]
    m = re.fullmatch(r"gradcheck: max relative error (\S+) over (\d+) parameters: PASS", last)
    assert m, last
    assert float(m.group(1)) < TOL and int(m.group(2)) == 9


def test_dnc_debug_passes():
    """`python dnc-debug.py`, as a user runs it: every op, the whole memory step (also a
    batch row at a time), the sharpening of --sharpen, the interface and the step with it
    (also with --stop-usage-grad), a controller layer of each kind, the bit form's input
    product and loss, the allocation's doubling against its loop, the model with each
    controller at 1 and 2 layers with dropout, without and with --sharpen, on text and on
    bit-form episodes, two of them with --stop-usage-grad too; the ops of --mask and --dealloc,
    the interface with the masks, the step with each, and with all three refinements and
    --stop-usage-grad, and two models more with both (one with --sharpen too, and that one
    with --stop-usage-grad); the ops of --sparse-links, the step with them and two models
    with them; invariants, direction, no NaN."""
    r = run_dnc(script="dnc-debug.py")
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    for section in ("== 1.", "== 2.", "== 3.", "== 4.", "== 5."):
        assert section in out
    assert "-- one whole memory step --" in out
    assert "-- one whole memory step, a batch row at a time --" in out
    for check in ("sharpened weighting (--sharpen)", "interface vector, --sharpen", "one whole memory step, --sharpen",
                  "one whole memory step, --sharpen --stop-usage-grad (w^w_{t-1} a constant of usage)"):
        assert f"-- {check} --" in out
    for check in ("masked content weighting (--mask)", "erase, de-allocate and write (--dealloc)",
                  "interface vector, --mask", "one whole memory step, --mask", "one whole memory step, --dealloc",
                  "one whole memory step, --dealloc, a batch row at a time",
                  "one whole memory step, --mask --dealloc --sharpen --stop-usage-grad"):
        assert f"-- {check} --" in out
    for check in ("sparsified weighting (--sparse-links 3)", "sparse link matrix update (--sparse-links 3)",
                  "sparse forward/backward weightings (--sparse-links 3)", "one whole memory step, --sparse-links 3"):
        assert f"-- {check} --" in out
    assert re.search(r"'controller': 'lstm'.*'sharpen': False.*'sparse_links': 3\}, on characters", out)
    assert re.search(r"'controller': 'feedforward'.*'sharpen': True, 'mask': True, 'dealloc': True.*"
                     r"'sparse_links': 3\}, on repeat-copy", out)
    assert "-- controller layer, LSTM cell --" in out and "-- controller layer, feedforward ReLU --" in out
    assert "-- input product of bit channels, x W_x --" in out and "-- bit-wise sigmoid cross-entropy, masked --" in out
    for title, n in (("the bit-wise loss --", 4), ("the bit-wise loss, --sharpen --", 4),
                     ("the bit-wise loss, --mask --dealloc --", 1),
                     ("the bit-wise loss, --sharpen --mask --dealloc --", 1)):
        assert out.count(f"-- the same on repeat-copy episodes in the bit form (5 channels in, 4 out), {title}\n") == n
    assert re.search(r"-- allocation: recursive doubling equals the plain reverse loop --\n"
                     r"   N = 1, 2, 5, 6, 16, 33: largest difference \S+ of the largest entry \(bar 1e-12\)  ok\n", out)
    models = re.findall(r"^-- \{(?!.*sparse_links)'hidden': 6, 'layers': (\d), 'controller': '(\w+)', "
                        r".*'stop_usage_grad': (\w+), 'sharpen': (\w+), 'mask': (\w+), 'dealloc': (\w+), "
                        r"'dropout': 0.25,", out, re.M)
    plain = [("1", "lstm"), ("2", "lstm"), ("1", "feedforward"), ("2", "feedforward")]
    assert models == ([(*m, "False", "False", "False", "False") for m in plain]
                      + [(*m, "False", "True", "False", "False") for m in plain]
                      + [("1", "lstm", "False", "False", "True", "True"),
                         ("2", "feedforward", "False", "True", "True", "True")]
                      + [("1", "lstm", "True", "True", "False", "False"),
                         ("2", "feedforward", "True", "True", "False", "False"),
                         ("2", "feedforward", "True", "True", "True", "True")])
    errors = [float(e) for e in re.findall(r"max relative error (\S+)\n", out)]
    # 14 memory ops, 4 of --sharpen, 7 of --mask / --dealloc and 4 of --sparse-links, 2 controller
    # layers, 2 of the bit form; 10 models on text (4 plain, 4 with --sharpen, 2 with --mask
    # --dealloc) and the 10 on bits; 3 with --stop-usage-grad; 2 with --sparse-links
    assert len(errors) == 58 and max(errors) < TOL
    m = re.fullmatch(r"gradcheck: max relative error (\S+) over (\d+) parameters: PASS", out.strip().splitlines()[-1])
    # the inputs of the 18 ops (68 + 3), of the 4 of --sharpen (2 + 2 + 18 + 17) and of the 7 of
    # --mask / --dealloc (4 + 5 + 2 + 18 + 16 + 16 + 19); the parameters of the 4 models
    # (9 + 14 + 8 + 12), four times (text and bits, without and with --sharpen), of the two with
    # --mask --dealloc twice (9 + 12), and of three once more with --stop-usage-grad (9 + 12 + 12);
    # the inputs of the 4 of --sparse-links (1 + 3 + 2 + 16) and the parameters of its 2 models (9 + 12)
    assert m and float(m.group(1)) < TOL and int(m.group(2)) == 71 + 39 + 80 + 4 * 43 + 2 * 21 + 33 + 22 + 21, \
        out[-500:]
    assert "sharpened weightings |sum - 1|" in out and "--sharpen: zero memory rows" in out
    assert "links per row or column - K" in out and "--sparse-links 3: zero memory rows" in out


def test_dnc_debug_with_blocks_of_one_row(capfd):
    """--block-floats reaches the model: N 7, blocks of 49 floats, one batch row each."""
    debug = common.load_script("dnc-debug.py")
    assert debug.main(["--memory", "7", "--block-floats", "49", "--seq", "3", "--checks", "4"]) == 0
    out = capfd.readouterr().out
    assert "'block_floats': 49" in out and out.strip().endswith("PASS")


def test_dnc_debug_fails_on_an_allocation_doubling_that_differs(monkeypatch, capfd):
    """A doubling off by 1e-9 of its value passes every finite-difference check (bar 1e-6)
    but not the comparison with the loop (bar 1e-12): exit 1."""
    debug = common.load_script("dnc-debug.py")
    real = debug.dnc.allocation_backward
    monkeypatch.setattr(debug.dnc, "allocation_backward", lambda da, cache: real(da, cache) * (1 + 1e-9))
    assert debug.main(["--checks", "2", "--seq", "2"]) == 1
    assert "DIFFERENT" in capfd.readouterr().out


def test_dnc_debug_fails_on_a_wrong_backward(monkeypatch, capfd):
    """A link backward that drops its dww term: dnc-debug.py says FAIL and returns 1."""
    debug = common.load_script("dnc-debug.py")
    real = debug.dnc.link_backward

    def wrong(dL, cache):
        dL_prev, dww, dp_prev = real(dL, cache)
        return dL_prev, 0 * dww, dp_prev

    monkeypatch.setattr(debug.dnc, "link_backward", wrong)
    assert debug.main([]) == 1
    assert "FAIL" in capfd.readouterr().out

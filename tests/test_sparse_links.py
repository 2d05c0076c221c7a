"""dnc-numpy.py's --sparse-links K (docs/dnc.md §4.4), the paper's sparse link matrix: each
op against a dense computation written out and its backward against central differences;
the whole model's gradients with it (K < N: the selections and the 1/K threshold at work,
skipping perturbations that change them); with K >= N the sparse model equals the dense one
(logits, final state, every gradient); the paper's invariants over a long random run; no
NaN from an empty memory and zero weightings; the memory estimate; and the command line
(a copy run that records K and resumes bit for bit; other K, or a dense checkpoint, refused
in one line).

Everything numerical runs in float64 at tiny sizes with fixed seeds."""
import numpy as np
import pytest

import common
from conftest import arrays, assert_same_arrays, random_dnc_params, resume_runs, run_script, stderr_lines, vjp_errors

dnc = common.load_script("dnc-numpy.py")
TOL = 1e-6
V = 7


def cfg_of(K, controller="lstm", layers=1, N=6, sharpen=False):
    return {"hidden": 6, "layers": layers, "controller": controller, "memory": N, "width": 4, "reads": 2,
            "stop_usage_grad": False, "sharpen": sharpen, "sparse_links": K, "dropout": 0.0}


def sharp_weighting(rng, B, N, total=0.9):
    """Rows of a few large entries and many small ones, all distinct, summing to total."""
    w = rng.random((B, N)) ** 4 + 0.01
    return total * w / w.sum(-1, keepdims=True)


def random_slots(rng, B, N, K, lo=0.05, hi=0.6):
    """idx (B, N, K) distinct columns off the diagonal in each row, val (B, N, K) in [lo, hi)."""
    order = np.argsort(rng.random((B, N, N)) + 2 * np.eye(N), -1)  # the diagonal last
    return order[:, :, :K], rng.uniform(lo, hi, (B, N, K))


def reference_link_update(L_prev, w_hat, p_hat, K):
    """The paper's sparse update on dense arrays, one batch row and one entry at a time:
    (1 - w_i - w_j) L[i, j] + w_i p_j, zero diagonal, entries below 1/K zeroed (K < N)."""
    B, N, _ = L_prev.shape
    L = np.zeros_like(L_prev)
    for b in range(B):
        for i in range(N):
            for j in range(N):
                if i != j:
                    L[b, i, j] = (1 - w_hat[b, i] - w_hat[b, j]) * L_prev[b, i, j] + w_hat[b, i] * p_hat[b, j]
    if K < N:
        L[L < 1 / K] = 0
    return L


# ----------------------------------------------------------------------------------
# 1. The ops


def test_sparsify_keeps_the_k_largest_and_the_mass():
    rng = np.random.default_rng(0)
    w = sharp_weighting(rng, 3, 10, 0.7)
    w_hat, cache = dnc.sparsify_forward(w, 4)
    for b in range(3):
        top = np.argsort(w[b])[-4:]
        expect = np.zeros(10)
        expect[top] = w[b, top] * w[b].sum() / w[b, top].sum()
        np.testing.assert_allclose(w_hat[b], expect, rtol=1e-14)
    np.testing.assert_allclose(w_hat.sum(-1), w.sum(-1), rtol=1e-14)  # a closed gate stays closed
    assert (np.count_nonzero(w_hat, -1) == 4).all()
    same, _ = dnc.sparsify_forward(w, 10)  # K >= N: nothing dropped, w itself
    assert same is w


def test_sparsify_of_a_zero_weighting_is_zero_and_finite():
    w_hat, cache = dnc.sparsify_forward(np.zeros((2, 8)), 3)
    assert (w_hat == 0).all()
    dw = dnc.sparsify_backward(np.ones((2, 8)), cache)
    assert np.isfinite(dw).all() and (dw == 0).all()


@pytest.mark.parametrize("K", [1, 3, 8])
def test_sparsify_vjp(K):
    rng = np.random.default_rng(K)
    errors = vjp_errors(lambda I: (lambda w, c: ((w,), c))(*dnc.sparsify_forward(I["w"], K)),
                        lambda G, c: {"w": dnc.sparsify_backward(G[0], c)},
                        {"w": sharp_weighting(rng, 2, 8)})
    assert max(errors.values()) < TOL, errors


def link_inputs(rng, B=2, N=7, K=3):
    idx_prev, val_prev = random_slots(rng, B, N, K, 0.02, 0.4)
    b = np.arange(B)[:, None]
    rows = np.argsort(rng.random((B, N)), -1)[:, :K]
    w_hat = np.zeros((B, N))
    w_hat[b, rows] = 0.9 * rng.dirichlet(np.full(K, 0.5), B)
    p_hat, cols = np.zeros((B, N)), np.argsort(rng.random((B, N)), -1)[:, :K]
    p_hat[b, cols] = 0.95 * rng.dirichlet(np.full(K, 0.5), B)
    return idx_prev, val_prev, w_hat, rows, p_hat, cols


def test_sparse_link_update_is_the_paper_s():
    """Against the dense update written out, thresholded at 1/K: every surviving entry in
    its slot, nothing else (the inputs' rows and columns sum to at most 1, as the model's do,
    so no row has more than K entries of 1/K or more)."""
    rng = np.random.default_rng(1)
    B, N, K = 3, 9, 3
    idx_prev, val_prev = random_slots(rng, B, N, K, 0.0, 0.3)
    val_prev /= np.maximum(1, dnc.dense_links(idx_prev, val_prev).sum(1).max(-1))[:, None, None]  # columns <= 1
    rows = np.argsort(-sharp_weighting(rng, B, N), -1)[:, :K]
    w_hat, p_hat = np.zeros((B, N)), np.zeros((B, N))
    b = np.arange(B)[:, None]
    w_hat[b, rows] = 0.9 * rng.dirichlet(np.full(K, 0.3), B)
    cols = np.argsort(rng.random((B, N)), -1)[:, :K]
    p_hat[b, cols] = rng.dirichlet(np.full(K, 0.3), B)
    idx, val, cache = dnc.sparse_link_forward(idx_prev, val_prev, w_hat, rows, p_hat, cols)
    expect = reference_link_update(dnc.dense_links(idx_prev, val_prev), w_hat, p_hat, K)
    assert np.count_nonzero(expect) >= B  # links made, not all dropped
    np.testing.assert_allclose(dnc.dense_links(idx, val), expect, rtol=1e-14, atol=1e-16)
    assert all(len(set(row)) == K for row in idx.reshape(-1, K))  # a row's columns stay distinct


def test_sparse_link_update_vjp():
    idx_prev, val_prev, w_hat, rows, p_hat, cols = link_inputs(np.random.default_rng(2))
    _, val, cache = dnc.sparse_link_forward(idx_prev, val_prev, w_hat, rows, p_hat, cols)
    assert 0 < cache.live.sum() < cache.live.size  # some entries kept, some dropped by the threshold
    errors = vjp_errors(
        lambda I: (lambda i, v, c: ((v,), c))(*dnc.sparse_link_forward(idx_prev, I["val_prev"], I["ww"], rows,
                                                                       I["p_prev"], cols)),
        lambda G, c: dict(zip(("val_prev", "ww", "p_prev"), dnc.sparse_link_backward(G[0], c))),
        {"val_prev": val_prev, "ww": w_hat, "p_prev": p_hat})
    assert max(errors.values()) < TOL, errors


def test_sparse_directional_is_the_dense_products_and_its_vjp():
    """On the live entries only: a slot that is not live is no link, whatever its value."""
    rng = np.random.default_rng(3)
    B, N, K, R = 2, 7, 3, 2
    idx, val = random_slots(rng, B, N, K)
    live = rng.random((B, N, K)) < 0.7
    wr = rng.random((B, R, N))
    f, b, _ = dnc.sparse_directional_forward(idx, val, live, wr)
    L = dnc.dense_links(idx, val * live)
    np.testing.assert_allclose(f, np.einsum("bij,brj->bri", L, wr), rtol=1e-13)
    np.testing.assert_allclose(b, np.einsum("bji,brj->bri", L, wr), rtol=1e-13)
    errors = vjp_errors(lambda I: (lambda f, b, c: ((f, b), c))(*dnc.sparse_directional_forward(idx, I["val"], live,
                                                                                                I["wr"])),
                        lambda G, c: dict(zip(("val", "wr"), dnc.sparse_directional_backward(G[0], G[1], c))),
                        {"val": val, "wr": wr})
    assert max(errors.values()) < TOL, errors
    dval, _ = dnc.sparse_directional_backward(rng.random((B, R, N)), rng.random((B, R, N)),
                                              dnc.sparse_directional_forward(idx, val, live, wr)[2])
    assert (dval[~live] == 0).all() and (dval[live] != 0).all()


# ----------------------------------------------------------------------------------
# 2. The whole model


@pytest.mark.parametrize("controller,layers,sharpen", [("lstm", 1, False), ("feedforward", 2, True)])
def test_model_gradients_with_sparse_links(controller, layers, sharpen):
    """K 3 < N 6, from a carried state on characters, the gates opened so that links live."""
    cfg = cfg_of(3, controller, layers, sharpen=sharpen)
    worst, _ = common.check_model_gradients(dnc, cfg, V=V, B=2, S=5, checks=12, prepare=dnc.open_gates(cfg))
    assert worst < TOL


def test_model_gradients_with_sparse_links_fail_on_a_wrong_link_backward(monkeypatch):
    """The check is not vacuous: a sparse link backward that drops its dw^ term fails it."""
    real = dnc.sparse_link_backward
    monkeypatch.setattr(dnc, "sparse_link_backward", lambda d, c: (lambda a, b, p: (a, 0 * b, p))(*real(d, c)))
    cfg = cfg_of(3)
    worst, _ = common.check_model_gradients(dnc, cfg, V=V, B=2, S=5, checks=12, prepare=dnc.open_gates(cfg))
    assert worst > 1e-3


def test_cli_gradcheck_with_sparse_links_checks_the_links(monkeypatch, capsys):
    """--gradcheck --sparse-links opens the write gates (dnc.open_gates), so that links pass
    1/K and a wrong link backward fails it (exit 1) where the right one passes (exit 0)."""
    import train
    argv = ["--gradcheck", "--sparse-links", "3", "--hidden", "6", "--memory", "6", "--width", "4", "--reads", "2"]
    assert train.run(dnc, train.make_parser(dnc, "test", {}).parse_args(argv), {}) == 0
    real = dnc.sparse_link_backward
    monkeypatch.setattr(dnc, "sparse_link_backward", lambda d, c: (lambda a, b, p: (a, 0 * b, p))(*real(d, c)))
    assert train.run(dnc, train.make_parser(dnc, "test", {}).parse_args(argv), {}) == 1
    assert capsys.readouterr().out.strip().endswith("FAIL")


def test_discrete_choices_hold_the_sparse_selections():
    cfg = cfg_of(3)
    params, rng = random_dnc_params(dnc, cfg, V)
    _, _, cache = dnc.forward(params, rng.integers(0, V, (4, 2)), dnc.init_state(cfg, params, 2), cfg)
    assert dnc.discrete_choices(cache).shape == (4, 2, 6 + 2 * 3 + 6 * 3)


@pytest.mark.parametrize("K,sharpen", [(6, False), (9, True)])
def test_k_at_least_n_is_the_dense_model(K, sharpen):
    """K >= N: nothing is dropped and the sparse model is the dense one, to round-off: the
    logits, the final state (the links made dense) and every gradient."""
    dense_cfg, sparse_cfg = cfg_of(0, sharpen=sharpen), cfg_of(K, sharpen=sharpen)
    params, rng = random_dnc_params(dnc, dense_cfg, V)
    dnc.open_gates(dense_cfg)(params)
    ids = rng.integers(0, V, (13, 3))
    out = {}
    for name, cfg in (("dense", dense_cfg), ("sparse", sparse_cfg)):
        state = dnc.init_state(cfg, params, 3)
        _, state, _ = dnc.forward(params, ids[:6], state, cfg)  # a carried state
        logits, last, cache = dnc.forward(params, ids[6:-1], state, cfg)
        grads = dnc.backward(common.cross_entropy(logits, ids[7:])[1], cache)
        L = dnc.dense_links(last["L_idx"], last["L_val"]) if "L_idx" in last else last["L"]
        out[name] = logits, L, grads, last
    (l0, L0, g0, s0), (l1, L1, g1, s1) = out["dense"], out["sparse"]
    assert s1["L_idx"].shape == (3, 6, 6) and L0.max() > 0.1
    np.testing.assert_allclose(l1, l0, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(L1, L0, rtol=1e-12, atol=1e-15)
    for k in ("M", "u", "ww", "p", "wr", "r"):
        np.testing.assert_allclose(s1[k], s0[k], rtol=1e-12, atol=1e-15, err_msg=k)
    for k in g0:
        np.testing.assert_allclose(g1[k], g0[k], rtol=1e-10, atol=1e-13 * np.abs(g0[k]).max(), err_msg=k)


@pytest.mark.parametrize("K", [3, 6])
def test_a_row_zeroed_by_reset_rows_runs_as_the_zero_state(K):
    """common.reset_rows zeroes L_idx too (every index 0, every value 0): the same forward
    and gradients as init_state's distinct indices 0 .. K-1."""
    cfg = cfg_of(K)
    params, rng = random_dnc_params(dnc, cfg, V)
    dnc.open_gates(cfg)(params)
    ids = rng.integers(0, V, (10, 2))
    fresh = dnc.init_state(cfg, params, 2)
    reset = common.copy_state(fresh)
    common.reset_rows(reset, np.array([True, True]))
    assert (reset["L_idx"] == 0).all()
    out = []
    for state in (fresh, reset):
        logits, _, cache = dnc.forward(params, ids[:-1], state, cfg)
        out.append((logits, dnc.backward(common.cross_entropy(logits, ids[1:])[1], cache)))
    np.testing.assert_array_equal(out[0][0], out[1][0])
    for k in out[0][1]:
        np.testing.assert_array_equal(out[0][1][k], out[1][1][k], err_msg=k)


# ----------------------------------------------------------------------------------
# 3. The paper's invariants, and no NaN


def test_invariants_over_a_long_random_run():
    """200 steps, N 32, K 4, random write weightings (sharp or diffuse, gated or not) and the
    precedence they make: at most K non-zeros in every row and column, entries >= 0, a zero
    diagonal, rows and columns summing to at most 1."""
    rng = np.random.default_rng(5)
    B, N, K = 3, 32, 4
    state = dnc.init_state({"hidden": 1, "layers": 0, "memory": N, "width": 1, "reads": 1, "sparse_links": K},
                           {"Wy": np.zeros(1)}, B)
    idx, val, p = state["L_idx"], state["L_val"], state["p"]
    made = busiest = 0
    for t in range(200):
        sharpness = rng.choice([1, 4, 30])
        ww = rng.random((B, N)) ** sharpness
        ww *= rng.choice([rng.uniform(0, 1), 1.0]) / ww.sum(-1, keepdims=True)  # the write gate
        w_hat, c_w = dnc.sparsify_forward(ww, K)
        p_hat, c_p = dnc.sparsify_forward(p, K)
        idx, val, _ = dnc.sparse_link_forward(idx, val, w_hat, c_w.keep, p_hat, c_p.keep)
        p, _ = dnc.precedence_forward(p, ww)
        L = dnc.dense_links(idx, val)
        nonzero = L > 0
        assert nonzero.sum(2).max() <= K and nonzero.sum(1).max() <= K, t
        assert L.min() >= 0 and (np.diagonal(L, axis1=1, axis2=2) == 0).all(), t
        assert L.sum(2).max() <= 1 + 1e-12 and L.sum(1).max() <= 1 + 1e-12, t
        made, busiest = max(made, nonzero.sum((1, 2)).max()), max(busiest, nonzero.sum(1).max(), nonzero.sum(2).max())
    assert made >= 5 and busiest >= 2, (made, busiest)  # links made and kept, not all dropped


def test_no_nan_from_an_empty_memory_and_zero_weightings():
    """An all-zero memory and write gates shut (w^w = 0, p = 0: every sparsification 0/0 if
    unguarded), through the loss and the backward."""
    cfg = cfg_of(3)
    params, rng = random_dnc_params(dnc, cfg, V)
    dnc.open_gates(cfg, shift=-60)(params)  # write gate sigmoid(-60): w^w of 1e-26
    params["bxi"][dnc.interface_layout(2, 4)["write_gate"]] = -800  # and exactly 0 in float64
    ids = rng.integers(0, V, (7, 2))
    loss, grads, state = common.loss_and_grads(dnc, params, ids[:-1], ids[1:], dnc.init_state(cfg, params, 2), cfg)
    assert np.isfinite(loss) and all(np.isfinite(g).all() for g in grads.values())
    assert (state["ww"] == 0).all() and (state["L_val"] == 0).all()


def test_memory_estimate_follows_the_sparse_layout():
    big = {"hidden": 128, "layers": 1, "controller": "lstm", "memory": 4096, "width": 16, "reads": 4}
    dense, sparse = dnc.memory_floats(big, 27, 32, 16), dnc.memory_floats(dict(big, sparse_links=8), 27, 32, 16)
    assert dense > 32 * 16 * 2 * 4096 ** 2  # the (B, N, N) links of every step
    assert sparse * 4 < 2 * 2 ** 30 < dense  # float32: under 2 GiB, sparse; the dense is far over
    state = dnc.init_state(dict(big, sparse_links=8), dnc.init_params(dict(big, sparse_links=8), 27,
                                                                      np.random.default_rng(0), np.float32), 2)
    assert "L" not in state and state["L_idx"].shape == state["L_val"].shape == (2, 4096, 8)


# ----------------------------------------------------------------------------------
# 4. The command line


COPY = ["--task", "copy", "--io", "tokens", "--bits", 3, "--length", "1-3", "--hidden", 16, "--batch", 8,
        "--memory", 6, "--width", 4, "--reads", 1, "--optim", "adam", "--lr", 0.01, "--report", 20,
        "--threads", 1, "--seed", 2]


@pytest.fixture(scope="module")
def copy_runs(tmp_path_factory):
    """40 iterations of --task copy --sparse-links 3 in one run, and 20 then 20 more from
    the checkpoint (the second not naming --sparse-links: the checkpoint's cfg carries it),
    and a dense run to refuse."""
    d = tmp_path_factory.mktemp("sparse")
    return d, resume_runs(d, COPY, ["--sparse-links", 3], 20, 20, plain=2)


def test_cli_copy_with_sparse_links_records_k_and_resumes_bit_for_bit(copy_runs):
    d, runs = copy_runs
    assert "'sparse_links': 3" in runs["one"].stdout
    ck = common.load_checkpoint(str(d / "one.npz"), "dnc")
    assert ck["info"]["cfg"]["sparse_links"] == 3
    assert ck["state"]["L_idx"].dtype.kind == "i" and "L" not in ck["state"]
    assert dnc.model_cfg(ck["param"], ck["state"])["sparse_links"] == 3
    assert "resumed" in runs["second"].stdout
    assert_same_arrays(arrays(d / "one.npz"), arrays(d / "two.npz"))  # params, optimiser, state, best


def test_cli_evaluates_a_sparse_checkpoint_at_a_larger_memory(copy_runs):
    d, _ = copy_runs
    p = run_script("dnc", "--load", d / "one.npz", "--eval-lengths", "3,20", "--memory", 512, "--episodes", 8)
    assert p.returncode == 0, p.stderr
    assert "memory N=512" in p.stdout


def one_error_line(p):
    assert p.returncode == 2 and "Traceback" not in p.stderr, (p.returncode, p.stderr)
    lines = stderr_lines(p)
    assert len(lines) == 1 and lines[0].startswith("dnc-numpy.py: error: "), p.stderr
    return lines[0]


def test_cli_another_k_or_a_dense_checkpoint_is_refused_in_one_line(copy_runs):
    d, _ = copy_runs
    line = one_error_line(run_script("dnc", "--load", d / "plain.npz", "--sparse-links", 4, "--iters", 1))
    assert "plain.npz was trained with dense links; drop --sparse-links 4 or start a new run" in line
    line = one_error_line(run_script("dnc", "--load", d / "one.npz", "--sparse-links", 5, "--eval-lengths", 3))
    assert "one.npz was trained with --sparse-links 3; drop --sparse-links 5" in line

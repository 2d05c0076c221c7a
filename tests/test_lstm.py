"""The LSTM cell on its own, at tiny sizes in float64: the step forward against a textbook
computation, the step backward against central differences, and the layer functions
against the step functions looped by hand."""
import io

import numpy as np
import pytest

import common

H, B, S = 5, 3, 4
G = 4 * H


@pytest.fixture
def cell():
    """zx (S, B, G), h0, c0 (B, H), Wh (H, G), dhs (S, B, H): fixed random values."""
    rng = np.random.default_rng(17)
    return {"zx": rng.standard_normal((S, B, G)), "h0": rng.standard_normal((B, H)),
            "c0": rng.standard_normal((B, H)), "Wh": 0.5 * rng.standard_normal((H, G)),
            "dhs": rng.standard_normal((S, B, H))}


def textbook_sigmoid(x):
    """1 / (1 + exp(-x)) written through tanh, so that it shares nothing with common.sigmoid."""
    return 0.5 * (1 + np.tanh(x / 2))


def test_step_forward_equals_a_textbook_cell(lstm, cell):
    zx, h_prev, c_prev, Wh = cell["zx"][0], cell["h0"], cell["c0"], cell["Wh"]
    h, c, cache = lstm.lstm_step_forward(zx, h_prev, c_prev, Wh)

    z = zx + h_prev @ Wh
    i = textbook_sigmoid(z[:, 0:H])
    f = textbook_sigmoid(z[:, H:2 * H])
    o = textbook_sigmoid(z[:, 2 * H:3 * H])
    g = np.tanh(z[:, 3 * H:4 * H])
    c_ref = f * c_prev + i * g
    h_ref = o * np.tanh(c_ref)

    np.testing.assert_allclose(c, c_ref, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(h, h_ref, rtol=1e-12, atol=1e-14)
    assert h.shape == c.shape == (B, H)
    np.testing.assert_array_equal(cache.c_prev, c_prev)  # the cache keeps what the backward reads
    np.testing.assert_allclose(cache.tc, np.tanh(c_ref), rtol=1e-12, atol=1e-14)


def test_step_backward_equals_central_differences(lstm, cell):
    """loss = sum(h * Gh) + sum(c * Gc), a random linear functional of both outputs, so
    that both adjoints dh and dc come in non-zero."""
    rng = np.random.default_rng(3)
    Gh, Gc = rng.standard_normal((B, H)), rng.standard_normal((B, H))
    inputs = {"zx": cell["zx"][0].copy(), "h_prev": cell["h0"].copy(), "c_prev": cell["c0"].copy(),
              "Wh": cell["Wh"].copy()}

    def loss(p):
        h, c, _ = lstm.lstm_step_forward(p["zx"], p["h_prev"], p["c_prev"], p["Wh"])
        return float(np.sum(h * Gh) + np.sum(c * Gc))

    _, _, cache = lstm.lstm_step_forward(inputs["zx"], inputs["h_prev"], inputs["c_prev"], inputs["Wh"])
    dz, dh_prev, dc_prev = lstm.lstm_step_backward(Gh, Gc, cache, inputs["Wh"])
    grads = {"zx": dz, "h_prev": dh_prev, "c_prev": dc_prev,
             "Wh": inputs["h_prev"].T @ dz}  # z = h_prev Wh + zx: the caller's weight gradient
    table = io.StringIO()
    worst = common.gradcheck(loss, inputs, grads, checks=G * H, rng=np.random.default_rng(0), out=table)
    assert worst < 1e-7, table.getvalue()


def test_layer_forward_equals_the_steps_by_hand(lstm, cell):
    zx, Wh = cell["zx"], cell["Wh"]
    hs, c_last, _ = lstm.lstm_layer_forward(zx, cell["h0"], cell["c0"], Wh)
    np.testing.assert_array_equal(hs[0], cell["h0"])
    h, c = cell["h0"], cell["c0"]
    for t in range(S):
        h, c, _ = lstm.lstm_step_forward(zx[t], h, c, Wh)
        np.testing.assert_allclose(hs[t + 1], h, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(c_last, c, rtol=1e-12, atol=1e-14)


def test_layer_backward_equals_the_steps_by_hand(lstm, cell):
    """The layer's backward is lstm_step_backward looped in reverse, the adjoint of each h
    summed from above and from step t+1; its weight gradient, one product over all S*B
    rows, is the sum of the steps' products."""
    zx, Wh, dhs = cell["zx"], cell["Wh"], cell["dhs"]
    hs, _, caches = lstm.lstm_layer_forward(zx, cell["h0"], cell["c0"], Wh)
    dzs = lstm.lstm_layer_backward(dhs, caches, Wh)
    assert dzs.shape == (S, B, G)

    dh_next, dc_next = np.zeros((B, H)), np.zeros((B, H))  # nothing from beyond the window
    dWh = np.zeros_like(Wh)
    for t in reversed(range(S)):
        dz, dh_next, dc_next = lstm.lstm_step_backward(dhs[t] + dh_next, dc_next, caches[t], Wh)
        np.testing.assert_allclose(dzs[t], dz, rtol=1e-12, atol=1e-12)
        dWh += hs[t].T @ dz
    np.testing.assert_allclose(hs[:-1].reshape(-1, H).T @ dzs.reshape(-1, G), dWh, rtol=1e-12, atol=1e-12)

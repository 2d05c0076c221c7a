"""The models' forward passes: step by step equals the window function, both equal a
plain independent implementation, and training drives the loss down."""
import numpy as np
import pytest

import common
from conftest import make_text

CFG = {"hidden": 6, "layers": 2}


def _setup(model, cfg=CFG, V=7, B=3, S=5, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    params = model.init_params(cfg, V, rng, dtype)
    for v in params.values():  # off the initial values, so every term matters
        v += (0.3 * rng.standard_normal(v.shape)).astype(dtype)
    state = model.init_state(cfg, params, B)
    for v in state.values():  # a carried, non-zero state
        v += (0.5 * rng.standard_normal(v.shape)).astype(dtype)
    inputs = rng.integers(0, V, size=(S, B))
    return params, state, inputs


@pytest.mark.parametrize("layers", [1, 2])
def test_step_equals_forward(model, layers):
    cfg = {"hidden": 6, "layers": layers}
    params, state, inputs = _setup(model, cfg)
    logits, last, _ = model.forward(params, inputs, common.copy_state(state))
    s = common.copy_state(state)
    for t in range(inputs.shape[0]):
        step_logits, s = model.step(params, inputs[t], s)
        np.testing.assert_allclose(step_logits, logits[t], rtol=1e-12, atol=1e-12)
    assert s.keys() == last.keys()
    for k in last:
        np.testing.assert_allclose(s[k], last[k], rtol=1e-12, atol=1e-12)


def test_forward_leaves_the_given_state_alone(model):
    params, state, inputs = _setup(model)
    before = common.copy_state(state)
    model.forward(params, inputs, state)
    for k in state:
        np.testing.assert_array_equal(state[k], before[k])


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def reference_forward(kind, params, inputs, state, L):
    """Textbook cells, one row and one step at a time, with a one-hot input product."""
    S, B = inputs.shape
    V = params["Wy"].shape[1]
    logits = np.zeros((S, B, V))
    state = {k: v.copy() for k, v in state.items()}
    for b in range(B):
        for t in range(S):
            x = np.zeros(V)
            x[inputs[t, b]] = 1.0
            for l in range(L):
                zx = x @ params[f"Wx{l}"] + params[f"b{l}"]
                h_prev = state[f"h{l}"][b]
                if kind == "rnn":
                    h = np.tanh(zx + h_prev @ params[f"Wh{l}"])
                else:
                    H = h_prev.size
                    z = zx + h_prev @ params[f"Wh{l}"]
                    i, f, o = _sigmoid(z[:H]), _sigmoid(z[H:2 * H]), _sigmoid(z[2 * H:3 * H])
                    g = np.tanh(z[3 * H:])
                    c = f * state[f"c{l}"][b] + i * g
                    h = o * np.tanh(c)
                    state[f"c{l}"][b] = c
                state[f"h{l}"][b] = h
                x = h
            logits[t, b] = x @ params["Wy"] + params["by"]
    return logits, state


def test_forward_equals_a_plain_implementation(model):
    params, state, inputs = _setup(model)
    logits, last, _ = model.forward(params, inputs, common.copy_state(state))
    ref_logits, ref_last = reference_forward(model.KIND, params, inputs, state, CFG["layers"])
    np.testing.assert_allclose(logits, ref_logits, rtol=1e-10, atol=1e-12)
    for k in ref_last:
        np.testing.assert_allclose(last[k], ref_last[k], rtol=1e-10, atol=1e-12)


def test_lstm_forget_bias_starts_at_one(lstm):
    params = lstm.init_params({"hidden": 4, "layers": 2}, 5, np.random.default_rng(0), np.float32)
    for l in range(2):
        np.testing.assert_array_equal(params[f"b{l}"], [0] * 4 + [1] * 4 + [0] * 8)
        assert params[f"b{l}"].dtype == np.float32


def test_float32_training_keeps_float32(model):
    params, state, inputs = _setup(model, dtype=np.float32)
    state = {k: v.astype(np.float32) for k, v in state.items()}
    logits, last, cache = model.forward(params, inputs, state)
    loss, dlogits = common.cross_entropy(logits, inputs)
    grads = model.backward(dlogits, cache)
    assert logits.dtype == np.float32
    assert all(v.dtype == np.float32 for v in last.values())
    assert all(grads[k].dtype == np.float32 and grads[k].shape == params[k].shape for k in params)


@pytest.mark.parametrize("layers", [1, 2])
def test_loss_falls_when_overfitting_a_tiny_text(model, layers):
    """The training loop's pieces, in process: a short text learnt nearly by heart."""
    text = make_text(60, seed=3)
    vocab = common.Vocab(text)
    ids = vocab.encode(text)
    rng = np.random.default_rng(0)
    cfg = {"hidden": 32, "layers": layers}
    params = model.init_params(cfg, len(vocab), rng, np.float64)
    opt = common.Adagrad(params, lr=0.1)
    batches = common.Batches(ids, 4, 16)
    state = model.init_state(cfg, params, 4)
    first = None
    losses = []
    for _ in range(300):
        inputs, targets, reset = batches.next()
        common.reset_rows(state, reset)
        loss, grads, state = common.loss_and_grads(model, params, inputs, targets, state)
        common.clip_global_norm(grads, 5.0)
        opt.step(params, grads)
        first = loss if first is None else first
        losses.append(loss)
    assert first > np.log(len(vocab)) * 0.9  # starts near chance
    assert np.mean(losses[-20:]) < 0.5 * first, (first, losses[-20:])

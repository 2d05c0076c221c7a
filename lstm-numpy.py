"""Char-level LSTM in NumPy: forward pass and backpropagation through time by hand.

    python lstm-numpy.py                      # train on data/alice29.txt
    python lstm-numpy.py my.txt --hidden 256 --layers 2 --save lstm.npz
    python lstm-numpy.py --load lstm.npz --sample 500 --temperature 0.8 --prime "Alice "
    python lstm-numpy.py --gradcheck
    python lstm-numpy.py --task copy --bits 6 --length 1-10 --save copy-lstm.npz

The cell is the paper-standard LSTM (Hochreiter & Schmidhuber; gates as in Graves 2013):
    z = x Wx + h_prev Wh + b               gates stacked as [i, f, o, g], G = 4H
    i, f, o = sigmoid(z_i, z_f, z_o);  g = tanh(z_g)
    c = f * c_prev + i * g
    h = o * tanh(c)
Layer 0 reads the character: x Wx is row x of Wx0 (a gather, not a one-hot product).
Layer l > 0 reads h of layer l-1. The output reads the top layer: logits = h Wy + by.
With --dropout p, the input of every layer above the first and the input of the output
layer are multiplied by a random mask (common.dropout; Zaremba et al. 2014): the
recurrent h_prev and c_prev never are. Shapes follow the legend in common.py.
"""
import numpy as np

import common
import train

KIND = "lstm"


# ----------------------------------------------------------------------------------
# The cell: one time step forward and backward
#
# Speed notes (the code is written for float32 training, where the cost of a step is
# a handful of small NumPy calls besides one matrix product):
#   - results go with out= into arrays the layer allocates once per window (a slice per
#     step, never reused), instead of a fresh temporary per operation;
#   - the backward's local derivatives need no recurrence, so the layer computes them
#     for all the window's steps in one pass (lstm_local_derivatives), and only the
#     recurrence itself (lstm_adjoint_step) runs step by step.


def lstm_step_forward(zx, h_prev, c_prev, Wh, out=None):
    """One step of the cell.

    zx (B, G): the input's share of the gate pre-activations, x Wx + b
    h_prev, c_prev (B, H), Wh (H, G)  ->  h, c (B, H), cache = (a, c_prev, tc)
        a (B, G): the gate activations [i, f, o, g];  tc (B, H): tanh(c)
    out: None, or the arrays (a (B, G), c, tc, h (B, H)) to write the results into
    """
    B, H = h_prev.shape
    if out is None:
        out = (np.empty((B, 4 * H), zx.dtype),) + tuple(np.empty((B, H), zx.dtype) for _ in range(3))
    a, c, tc, h = out
    np.matmul(h_prev, Wh, out=a)
    a += zx  # (B, G) pre-activations z; the activations are computed in place in a
    common.sigmoid(a[:, :3 * H], out=a[:, :3 * H])  # i, f, o
    g = np.tanh(a[:, 3 * H:], out=a[:, 3 * H:])  # g
    np.multiply(a[:, H:2 * H], c_prev, out=c)  # f * c_prev
    c += np.multiply(a[:, :H], g, out=h)  # + i * g  (h is scratch until its last line)
    np.tanh(c, out=tc)
    np.multiply(a[:, 2 * H:3 * H], tc, out=h)  # h = o * tanh(c)
    return h, c, (a, c_prev, tc)


def lstm_local_derivatives(a, c_prev, tc):
    """The derivatives of the cell's outputs with respect to its gates, which the backward
    multiplies by the adjoints. Elementwise: one step (B, .) or a window (S, B, .) at once.

    a (..., G) gate activations [i, f, o, g], c_prev, tc (..., H) from the forward cache
    -> k (..., G): dz = k * [dc, dc, dh, dc], gate by gate:
           [g i(1-i), c_prev f(1-f), tanh(c) o(1-o), i (1-g^2)]
       kc (..., H): o (1 - tanh(c)^2), the path dh -> dc through h = o tanh(c)
    """
    H = tc.shape[-1]
    i, o, g = a[..., :H], a[..., 2 * H:3 * H], a[..., 3 * H:]
    k = np.subtract(1, a)  # (..., G)
    k *= a  # s (1 - s), the sigmoids' derivative (meaningful on i, f, o)
    k[..., :H] *= g  # di = dc g i(1-i)
    k[..., H:2 * H] *= c_prev  # df = dc c_prev f(1-f)
    k[..., 2 * H:3 * H] *= tc  # do = dh tanh(c) o(1-o)
    kg = np.multiply(g, g, out=k[..., 3 * H:])
    np.subtract(1, kg, out=kg)
    kg *= i  # dg = dc i (1 - g^2), through tanh
    kc = np.multiply(tc, tc)
    np.subtract(1, kc, out=kc)
    kc *= o  # dc += dh o (1 - tanh(c)^2)
    return k, kc


def lstm_adjoint_step(dh, dc, k, kc, f, Wh, out=None):
    """The recurrence of the backward at one step, given lstm_local_derivatives.

    dh (B, H): adjoint of h from above and from step t+1;  dc (B, H): adjoint of c from t+1
    k (B, G), kc (B, H): local derivatives;  f (B, H): the forget gate;  Wh (H, G)
    -> dz (B, G), dh_prev, dc_prev (B, H)
    out: None, or the arrays (dz (B, G), dh_prev, dc_prev (B, H)) to write the results into
    """
    B, H = dh.shape
    if out is None:
        out = (np.empty((B, 4 * H), dh.dtype), np.empty((B, H), dh.dtype), np.empty((B, H), dh.dtype))
    dz, dh_prev, dc_prev = out
    dc_all = np.multiply(dh, kc, out=dc_prev)  # through h = o * tanh(c) ...
    dc_all += dc  # ... plus the adjoint from t+1 (dc_prev is scratch until its last line)
    np.multiply(k.reshape(B, 4, H), dc_all[:, None, :], out=dz.reshape(B, 4, H))  # di, df, dg
    np.multiply(k[:, 2 * H:3 * H], dh, out=dz[:, 2 * H:3 * H])  # do, from dh, not dc
    np.matmul(dz, Wh.T, out=dh_prev)
    np.multiply(dc_all, f, out=dc_prev)  # c = f * c_prev + ...
    return dz, dh_prev, dc_prev


def lstm_step_backward(dh, dc, cache, Wh):
    """Backward of lstm_step_forward.

    dh (B, H): adjoint of h from above and from step t+1;  dc (B, H): adjoint of c from t+1
    -> dz (B, G) adjoint of the pre-activations, dh_prev, dc_prev (B, H)
    The weight gradients are left to the caller, which sums them over all steps at once.
    """
    a, c_prev, tc = cache
    H = tc.shape[1]
    k, kc = lstm_local_derivatives(a, c_prev, tc)
    return lstm_adjoint_step(dh, dc, k, kc, a[:, H:2 * H], Wh)


# ----------------------------------------------------------------------------------
# One layer over a window: loops over the step functions


def lstm_layer_forward(zx, h0, c0, Wh):
    """zx (S, B, G), h0, c0 (B, H) -> hs (S+1, B, H) with hs[0] = h0, last c (B, H), cache

    The cache holds the window's arrays, written step by step by lstm_step_forward:
    a (S, B, G) gate activations, cs (S+1, B, H) with cs[0] = c0, tcs (S, B, H) tanh(c)."""
    S, B, H = zx.shape[0], h0.shape[0], h0.shape[1]
    a = np.empty(zx.shape, zx.dtype)
    hs, cs = np.empty((S + 1, B, H), zx.dtype), np.empty((S + 1, B, H), zx.dtype)
    tcs = np.empty((S, B, H), zx.dtype)
    hs[0], cs[0] = h0, c0
    for t in range(S):
        lstm_step_forward(zx[t], hs[t], cs[t], Wh, out=(a[t], cs[t + 1], tcs[t], hs[t + 1]))
    return hs, cs[-1].copy(), (a, cs, tcs)


def lstm_layer_backward(dhs, cache, Wh):
    """dhs (S, B, H): adjoints of the layer's outputs -> dzs (S, B, G)
    The window's backward starts with zero adjoints from beyond its last step."""
    a, cs, tcs = cache
    S, B, H = dhs.shape
    k, kc = lstm_local_derivatives(a, cs[:-1], tcs)  # (S, B, G), (S, B, H): all steps at once
    f = a[:, :, H:2 * H]  # (S, B, H) forget gates
    dzs = np.empty_like(a)
    dh_prevs, dc_prevs = np.empty_like(dhs), np.empty_like(dhs)  # [t]: from step t into t-1
    dh = np.empty((B, H), dhs.dtype)
    dh_next = dc_next = np.zeros((B, H), dhs.dtype)
    for t in reversed(range(S)):
        np.add(dhs[t], dh_next, out=dh)  # from above and from step t+1
        _, dh_next, dc_next = lstm_adjoint_step(dh, dc_next, k[t], kc[t], f[t], Wh,
                                                out=(dzs[t], dh_prevs[t], dc_prevs[t]))
    return dzs


# ----------------------------------------------------------------------------------
# The model: stacked layers and the output layer


def add_arguments(parser):
    pass


def config(args):
    return {"hidden": args.hidden, "layers": args.layers, "dropout": args.dropout}


def memory_floats(cfg, V, B, S):
    """About how many floats training holds: parameters (with gradients and Adagrad's
    memory) and the window's cache; for refusing sizes that cannot fit."""
    H, L = cfg["hidden"], cfg["layers"]
    n_params = V * 4 * H + (L - 1) * 4 * H * H + L * (4 * H * H + 4 * H) + H * V + V
    return 3 * n_params + S * B * (L * 14 * H + 3 * V)


def init_params(cfg, V, rng, dtype):
    """Uniform(-1/sqrt(H), 1/sqrt(H)) weights, zero biases but the forget gate's (1)."""
    H, L = cfg["hidden"], cfg["layers"]
    k = 1 / np.sqrt(H)
    p = {}
    for l in range(L):
        p[f"Wx{l}"] = rng.uniform(-k, k, (V if l == 0 else H, 4 * H))
        p[f"Wh{l}"] = rng.uniform(-k, k, (H, 4 * H))
        p[f"b{l}"] = np.zeros(4 * H)
        p[f"b{l}"][H:2 * H] = 1.0  # forget gate starts open
    p["Wy"] = rng.uniform(-k, k, (H, V))
    p["by"] = np.zeros(V)
    return {name: v.astype(dtype) for name, v in p.items()}


def init_state(cfg, params, B):
    H, dtype = cfg["hidden"], params["Wy"].dtype
    return {f"{s}{l}": np.zeros((B, H), dtype) for l in range(cfg["layers"]) for s in "hc"}


def forward(params, inputs, state, cfg=None, rng=None):
    """inputs (S, B) int -> logits (S, B, V), last state, cache

    cfg: the run's configuration (only its "dropout" is read here; the sizes come from
    the arrays); rng: draws the dropout masks. Dropout is on only when both are given,
    i.e. in training, never in validation or sampling."""
    p_drop = (cfg or {}).get("dropout", 0.0) if rng is not None else 0.0
    L = len(state) // 2
    x, new_state, layers = None, {}, []
    for l in range(L):
        # the input's share of the gates for every step at once: a gather for layer 0
        # (rows of Wx0 + b: the bias is added to the V rows once, not to all S*B gathered)
        mask = None
        if l == 0:
            zx = (params["Wx0"] + params["b0"])[inputs]  # (S, B, G)
        else:
            x, mask = common.dropout(x, p_drop, rng)  # between layers
            zx = x @ params[f"Wx{l}"]
            zx += params[f"b{l}"]
        hs, c, cache = lstm_layer_forward(zx, state[f"h{l}"], state[f"c{l}"], params[f"Wh{l}"])
        new_state[f"h{l}"], new_state[f"c{l}"] = hs[-1].copy(), c
        layers.append((x, mask, hs, cache))
        x = hs[1:]  # (S, B, H) input of the next layer
    x, mask_y = common.dropout(x, p_drop, rng)  # before the output layer
    S, B, H = x.shape
    logits = x.reshape(S * B, H) @ params["Wy"]
    logits += params["by"]
    return logits.reshape(S, B, -1), new_state, (inputs, params, layers, x, mask_y)


def backward(dlogits, cache):
    """dlogits (S, B, V) -> grads with the keys of params"""
    inputs, params, layers, x_top, mask_y = cache
    S, B, V = dlogits.shape
    grads = {}
    H = x_top.shape[-1]  # x_top (S, B, H): the output layer's input, after dropout
    dflat = dlogits.reshape(S * B, V)
    grads["Wy"] = x_top.reshape(S * B, H).T @ dflat
    grads["by"] = dflat.sum(0)
    dx = common.dropout_backward((dflat @ params["Wy"].T).reshape(S, B, H), mask_y)
    for l in reversed(range(len(layers))):
        x, mask, hs, cache_l = layers[l]
        dzs = lstm_layer_backward(dx, cache_l, params[f"Wh{l}"])  # (S, B, G)
        flat = dzs.reshape(S * B, 4 * H)
        # weight gradients summed over all steps in single matrix products
        grads[f"Wh{l}"] = hs[:-1].reshape(S * B, H).T @ flat
        grads[f"b{l}"] = flat.sum(0)
        if l == 0:
            grads["Wx0"] = common.gather_backward(inputs, dzs, params["Wx0"].shape[0])
        else:
            grads[f"Wx{l}"] = x.reshape(S * B, H).T @ flat
            dx = common.dropout_backward((flat @ params[f"Wx{l}"].T).reshape(S, B, H), mask)  # to layer l-1
    return grads


def step(params, x, state):
    """One character per row through the same cell: x (B,) int -> logits (B, V), state"""
    new_state, h = {}, None
    for l in range(len(state) // 2):
        zx = (params["Wx0"][x] if l == 0 else h @ params[f"Wx{l}"]) + params[f"b{l}"]
        h, c, _ = lstm_step_forward(zx, state[f"h{l}"], state[f"c{l}"], params[f"Wh{l}"])
        new_state[f"h{l}"], new_state[f"c{l}"] = h, c
    return h @ params["Wy"] + params["by"], new_state


if __name__ == "__main__":
    import sys

    train.main(sys.modules[__name__], "Train a char-level LSTM on a text file or a memory task, "
               "or sample from one.")

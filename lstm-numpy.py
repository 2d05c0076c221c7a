"""Char-level LSTM in NumPy: forward pass and backpropagation through time by hand.

    python lstm-numpy.py                      # train on data/alice29.txt
    python lstm-numpy.py my.txt --hidden 256 --layers 2 --save lstm.npz
    python lstm-numpy.py --load lstm.npz --sample 500 --temperature 0.8 --prime "Alice "
    python lstm-numpy.py --gradcheck

The cell is the paper-standard LSTM (Hochreiter & Schmidhuber; gates as in Graves 2013):
    z = x Wx + h_prev Wh + b               gates stacked as [i, f, o, g], G = 4H
    i, f, o = sigmoid(z_i, z_f, z_o);  g = tanh(z_g)
    c = f * c_prev + i * g
    h = o * tanh(c)
Layer 0 reads the character: x Wx is row x of Wx0 (a gather, not a one-hot product).
Layer l > 0 reads h of layer l-1. The output reads the top layer: logits = h Wy + by.
Shapes follow the legend in common.py.
"""
import numpy as np

import common

KIND = "lstm"


# ----------------------------------------------------------------------------------
# The cell: one time step forward and backward


def lstm_step_forward(zx, h_prev, c_prev, Wh):
    """One step of the cell.

    zx (B, G): the input's share of the gate pre-activations, x Wx + b
    h_prev, c_prev (B, H), Wh (H, G)  ->  h, c (B, H), cache
    """
    H = h_prev.shape[1]
    z = zx + h_prev @ Wh  # (B, G)
    ifo = common.sigmoid(z[:, :3 * H])  # (B, 3H) input, forget, output gates
    g = np.tanh(z[:, 3 * H:])  # (B, H) candidate
    c = ifo[:, H:2 * H] * c_prev + ifo[:, :H] * g
    tc = np.tanh(c)
    h = ifo[:, 2 * H:] * tc
    return h, c, (ifo, g, c_prev, tc)


def lstm_step_backward(dh, dc, cache, Wh):
    """Backward of lstm_step_forward.

    dh (B, H): adjoint of h from above and from step t+1;  dc (B, H): adjoint of c from t+1
    -> dz (B, G) adjoint of the pre-activations, dh_prev, dc_prev (B, H)
    The weight gradients are left to the caller, which sums them over all steps at once.
    """
    ifo, g, c_prev, tc = cache
    H = g.shape[1]
    i, f, o = ifo[:, :H], ifo[:, H:2 * H], ifo[:, 2 * H:]
    dc = dc + dh * o * (1 - tc * tc)  # through h = o * tanh(c)
    dz = np.empty((g.shape[0], 4 * H), g.dtype)
    dz[:, :H] = dc * g  # di
    dz[:, H:2 * H] = dc * c_prev  # df
    dz[:, 2 * H:3 * H] = dh * tc  # do
    dz[:, :3 * H] *= ifo * (1 - ifo)  # through the sigmoids
    dz[:, 3 * H:] = dc * i * (1 - g * g)  # dg through tanh
    return dz, dz @ Wh.T, dc * f


# ----------------------------------------------------------------------------------
# One layer over a window: loops over the step functions


def lstm_layer_forward(zx, h0, c0, Wh):
    """zx (S, B, G), h0, c0 (B, H) -> hs (S+1, B, H) with hs[0] = h0, last c (B, H), caches"""
    S, B, H = zx.shape[0], h0.shape[0], h0.shape[1]
    hs = np.empty((S + 1, B, H), zx.dtype)
    hs[0] = h0
    c, caches = c0, []
    for t in range(S):
        hs[t + 1], c, cache = lstm_step_forward(zx[t], hs[t], c, Wh)
        caches.append(cache)
    return hs, c, caches


def lstm_layer_backward(dhs, caches, Wh):
    """dhs (S, B, H): adjoints of the layer's outputs -> dzs (S, B, G)
    The window's backward starts with zero adjoints from beyond its last step."""
    S = dhs.shape[0]
    dzs = np.empty(dhs.shape[:2] + (Wh.shape[1],), dhs.dtype)
    dh_next = dc_next = np.zeros_like(dhs[0])
    for t in reversed(range(S)):
        dzs[t], dh_next, dc_next = lstm_step_backward(dhs[t] + dh_next, dc_next, caches[t], Wh)
    return dzs


# ----------------------------------------------------------------------------------
# The model: stacked layers and the output layer


def add_arguments(parser):
    pass


def config(args):
    return {"hidden": args.hidden, "layers": args.layers}


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


def forward(params, inputs, state):
    """inputs (S, B) int -> logits (S, B, V), last state, cache"""
    L = len(state) // 2
    x, new_state, layers = None, {}, []
    for l in range(L):
        # the input's share of the gates for every step at once: a gather for layer 0
        zx = params["Wx0"][inputs] if l == 0 else x @ params[f"Wx{l}"]  # (S, B, G)
        zx += params[f"b{l}"]
        hs, c, caches = lstm_layer_forward(zx, state[f"h{l}"], state[f"c{l}"], params[f"Wh{l}"])
        new_state[f"h{l}"], new_state[f"c{l}"] = hs[-1].copy(), c
        layers.append((x, hs, caches))
        x = hs[1:]  # (S, B, H) input of the next layer
    logits = x @ params["Wy"] + params["by"]  # (S, B, V)
    return logits, new_state, (inputs, params, layers)


def backward(dlogits, cache):
    """dlogits (S, B, V) -> grads with the keys of params"""
    inputs, params, layers = cache
    V = dlogits.shape[-1]
    grads = {}
    x_top = layers[-1][1][1:]  # (S, B, H)
    H = x_top.shape[-1]
    grads["Wy"] = x_top.reshape(-1, H).T @ dlogits.reshape(-1, V)
    grads["by"] = dlogits.sum((0, 1))
    dx = dlogits @ params["Wy"].T  # (S, B, H)
    for l in reversed(range(len(layers))):
        x, hs, caches = layers[l]
        dzs = lstm_layer_backward(dx, caches, params[f"Wh{l}"])  # (S, B, G)
        flat = dzs.reshape(-1, 4 * H)
        # weight gradients summed over all steps in single matrix products
        grads[f"Wh{l}"] = hs[:-1].reshape(-1, H).T @ flat
        grads[f"b{l}"] = flat.sum(0)
        if l == 0:
            grads["Wx0"] = common.gather_backward(inputs, dzs, params["Wx0"].shape[0])
        else:
            grads[f"Wx{l}"] = x.reshape(-1, H).T @ flat
            dx = dzs @ params[f"Wx{l}"].T  # into the layer below
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

    common.main(sys.modules[__name__], "Train a char-level LSTM on a text file, or sample from one.")

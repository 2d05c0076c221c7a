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
Layer 0 reads the input (common.embed): a character or token id x by a row gather, x Wx
= row x of Wx0 (not a one-hot product); a memory task's bit form, a float row of C
channels (the bits and the task's flags), by the product x Wx0.
Layer l > 0 reads h of layer l-1. The output reads the top layer: logits = h Wy + by.
With --dropout p, the input of every layer above the first and the input of the output
layer are multiplied by a random mask (common.dropout; Zaremba et al. 2014): the
recurrent h_prev and c_prev never are. Shapes follow the legend in common.py.

How it is trained (the loop is train() at the top of train.py): windows of --seq
characters from --batch streams over the text; forward, the mean cross-entropy, the
backward below through the window's steps, one global-norm clip of all the gradients
(common.clip_global_norm), then the optimiser's step (common.Adagrad, or --optim). The
last h and c of a window are the first h_prev and c_prev of the next (truncated BPTT:
the state is carried, the gradient stops at the window's start).
"""
from typing import NamedTuple

import numpy as np

import common
import train

KIND = "lstm"


# ----------------------------------------------------------------------------------
# The cell: one time step forward and backward


class LSTMCache(NamedTuple):
    """What lstm_step_backward needs from one step of the forward, every field (B, H)."""
    i: np.ndarray  # input gate
    f: np.ndarray  # forget gate
    o: np.ndarray  # output gate
    g: np.ndarray  # candidate
    c_prev: np.ndarray  # the cell state the step started from
    tc: np.ndarray  # tanh(c)


def lstm_step_forward(zx, h_prev, c_prev, Wh):
    """One step of the cell.

    zx (B, G): the input's share of the gate pre-activations, x Wx + b
    h_prev, c_prev (B, H), Wh (H, G)  ->  h, c (B, H), cache (LSTMCache)
    """
    H = h_prev.shape[1]
    z = h_prev @ Wh + zx  # (B, G) pre-activations, stacked [i, f, o, g]
    i, f, o = np.split(common.sigmoid(z[:, :3 * H]), 3, axis=1)  # (B, H) each
    g = np.tanh(z[:, 3 * H:])  # (B, H)
    c = f * c_prev + i * g
    tc = np.tanh(c)
    h = o * tc
    return h, c, LSTMCache(i, f, o, g, c_prev, tc)


def lstm_step_backward(dh, dc, cache, Wh):
    """Backward of lstm_step_forward.

    dh (B, H): adjoint of h from above and from step t+1;  dc (B, H): adjoint of c from t+1
    cache (LSTMCache), Wh (H, G)  ->  dz (B, G) adjoint of the pre-activations, dh_prev, dc_prev (B, H)
    The weight gradients are left to the caller, which sums them over all steps at once.
    """
    i, f, o, g, c_prev, tc = cache
    do = dh * tc  # h = o * tanh(c)
    dc = dc + dh * o * (1 - tc**2)  # ... and through tanh(c), added to the adjoint from t+1
    di = dc * g  # c = f * c_prev + i * g
    df = dc * c_prev
    dg = dc * i
    dz = np.concatenate([di * i * (1 - i),  # through the sigmoids: s' = s (1 - s)
                         df * f * (1 - f),
                         do * o * (1 - o),
                         dg * (1 - g**2)], axis=1)  # through tanh: 1 - g^2
    dh_prev = dz @ Wh.T  # z = h_prev Wh + ...
    dc_prev = dc * f  # c = f * c_prev + ...
    return dz, dh_prev, dc_prev


# ----------------------------------------------------------------------------------
# One layer over a window: loops over the step functions


def lstm_layer_forward(zx, h0, c0, Wh):
    """zx (S, B, G), h0, c0 (B, H) -> hs (S+1, B, H) with hs[0] = h0, last c (B, H),
    caches: the S steps' LSTMCache"""
    hs = np.empty((zx.shape[0] + 1,) + h0.shape, zx.dtype)
    hs[0], c, caches = h0, c0, []
    for t in range(zx.shape[0]):
        hs[t + 1], c, cache = lstm_step_forward(zx[t], hs[t], c, Wh)
        caches.append(cache)
    return hs, c, caches


def lstm_layer_backward(dhs, caches, Wh):
    """dhs (S, B, H): adjoints of the layer's outputs, caches: from lstm_layer_forward
    -> dzs (S, B, G). The window's backward starts with zero adjoints from beyond its last step."""
    S, B, H = dhs.shape
    dzs = np.empty((S, B, 4 * H), dhs.dtype)
    dh_next = dc_next = np.zeros((B, H), dhs.dtype)
    for t in reversed(range(S)):
        dzs[t], dh_next, dc_next = lstm_step_backward(dhs[t] + dh_next, dc_next, caches[t], Wh)
    return dzs


# ----------------------------------------------------------------------------------
# The model: stacked layers and the output layer


class LayerCache(NamedTuple):
    """What the model's backward needs from one layer's forward."""
    x: np.ndarray  # (S, B, H) the layer's input after dropout (None for layer 0: characters)
    mask: np.ndarray  # (S, B, H) the dropout mask of x (None: no dropout)
    hs: np.ndarray  # (S+1, B, H) the layer's outputs, hs[0] the carried-in h
    steps: list  # the S steps' LSTMCache


def add_arguments(parser):
    train.add_forget_bias_argument(parser)


def config(args):
    return {"hidden": args.hidden, "layers": args.layers, "dropout": args.dropout,
            "forget_bias": args.forget_bias}


def memory_floats(cfg, V, B, S):
    """About how many floats training holds: parameters (with their gradients and the
    optimiser's state, up to two copies for Adam) and the window's cache; for
    refusing sizes that cannot fit."""
    H, L = cfg["hidden"], cfg["layers"]
    n_params = V * 4 * H + (L - 1) * 4 * H * H + L * (4 * H * H + 4 * H) + H * V + V
    return 4 * n_params + S * B * (L * 14 * H + 3 * V)


def init_params(cfg, V, rng, dtype, V_out=None):
    """Uniform(-1/sqrt(H), 1/sqrt(H)) weights, zero biases but the forget gate's
    (cfg["forget_bias"], 1 unless given: a forget gate that starts open). V inputs (rows
    of Wx0: the vocabulary, or a task's C input channels), V_out outputs (columns of Wy;
    None: V)."""
    H, L, V_out = cfg["hidden"], cfg["layers"], V_out or V
    k = 1 / np.sqrt(H)
    p = {}
    for l in range(L):
        p[f"Wx{l}"] = rng.uniform(-k, k, (V if l == 0 else H, 4 * H))
        p[f"Wh{l}"] = rng.uniform(-k, k, (H, 4 * H))
        p[f"b{l}"] = np.zeros(4 * H)
        p[f"b{l}"][H:2 * H] = cfg.get("forget_bias", 1.0)
    p["Wy"] = rng.uniform(-k, k, (H, V_out))
    p["by"] = np.zeros(V_out)
    return {name: v.astype(dtype) for name, v in p.items()}


def init_state(cfg, params, B):
    H, dtype = cfg["hidden"], params["Wy"].dtype
    return {f"{s}{l}": np.zeros((B, H), dtype) for l in range(cfg["layers"]) for s in "hc"}


def forward(params, inputs, state, cfg=None, rng=None):
    """inputs (S, B) int ids, or (S, B, C) float channels -> logits (S, B, V_out), last state, cache

    cfg: the run's configuration (only its "dropout" is read here; the sizes come from
    the arrays); rng: draws the dropout masks. Dropout is on only when both are given,
    i.e. in training, never in validation or sampling.
    cache = (inputs, params, layers: one LayerCache per layer, x_top (S, B, H): the output
    layer's input after dropout, mask_y: its dropout mask or None)"""
    p_drop = (cfg or {}).get("dropout", 0.0) if rng is not None else 0.0
    L = len(state) // 2
    x, new_state, layers = None, {}, []
    for l in range(L):
        # the input's share of the gates for every step at once: for layer 0 a gather
        # of ids or a product of channels (common.embed)
        mask = None
        if l == 0:
            zx = common.embed(inputs, params["Wx0"], params["b0"])  # (S, B, G)
        else:
            x, mask = common.dropout(x, p_drop, rng)  # between layers
            zx = x @ params[f"Wx{l}"] + params[f"b{l}"]  # (S, B, G)
        hs, c, steps = lstm_layer_forward(zx, state[f"h{l}"], state[f"c{l}"], params[f"Wh{l}"])
        new_state[f"h{l}"], new_state[f"c{l}"] = hs[-1].copy(), c
        layers.append(LayerCache(x, mask, hs, steps))
        x = hs[1:]  # (S, B, H) input of the next layer
    x, mask_y = common.dropout(x, p_drop, rng)  # before the output layer
    logits = x @ params["Wy"] + params["by"]  # (S, B, V)
    return logits, new_state, (inputs, params, layers, x, mask_y)


def backward(dlogits, cache):
    """dlogits (S, B, V_out) -> grads with the keys of params"""
    inputs, params, layers, x_top, mask_y = cache
    V = dlogits.shape[-1]
    H = x_top.shape[-1]
    grads = {"Wy": x_top.reshape(-1, H).T @ dlogits.reshape(-1, V), "by": dlogits.sum((0, 1))}
    dx = common.dropout_backward(dlogits @ params["Wy"].T, mask_y)  # (S, B, H)
    for l in reversed(range(len(layers))):
        layer = layers[l]
        dzs = lstm_layer_backward(dx, layer.steps, params[f"Wh{l}"])  # (S, B, G)
        flat = dzs.reshape(-1, 4 * H)
        # weight gradients summed over all steps in single matrix products
        grads[f"Wh{l}"] = layer.hs[:-1].reshape(-1, H).T @ flat
        grads[f"b{l}"] = flat.sum(0)
        if l == 0:
            grads["Wx0"] = common.embed_backward(inputs, dzs, params["Wx0"].shape[0])
        else:
            grads[f"Wx{l}"] = layer.x.reshape(-1, H).T @ flat
            dx = common.dropout_backward(dzs @ params[f"Wx{l}"].T, layer.mask)  # into the layer below
    return grads


def step(params, x, state, cfg=None):
    """One character per row through the same cell: x (B,) int -> logits (B, V), state
    (cfg, the run's, is for the DNC's options; the cell needs none)"""
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

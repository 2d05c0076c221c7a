"""Char-level vanilla RNN in NumPy: forward pass and backpropagation through time by hand.

    python rnn-numpy.py                       # train on data/alice29.txt
    python rnn-numpy.py my.txt --hidden 256 --layers 2 --save rnn.npz
    python rnn-numpy.py --load rnn.npz --sample 500 --temperature 0.8 --prime "Alice "
    python rnn-numpy.py --gradcheck
    python rnn-numpy.py --task add            # 8-bit binary addition (hidden 16)

The cell (Elman; min-char-rnn's, with a batch axis and stacked layers):
    h = tanh(x Wx + h_prev Wh + b)
Layer 0 reads the input (common.embed): a character or token id x by a row gather, x Wx
= row x of Wx0 (not a one-hot product); a memory task's bit form, a float row of C
channels (the bits and the task's flags), by the product x Wx0.
Layer l > 0 reads h of layer l-1. The output reads the top layer: logits = h Wy + by.
With --dropout p, the input of every layer above the first and the input of the output
layer are multiplied by a random mask (common.dropout); the recurrent h_prev never is.
Shapes follow the legend in common.py.

How it is trained (the loop is train() at the top of train.py): windows of --seq
characters from --batch streams over the text; forward, the mean cross-entropy, the
backward below through the window's steps, one global-norm clip of all the gradients,
then the optimiser's step (common.py: Adagrad, or --optim). The last h of a window is
the first h_prev of the next (truncated BPTT: the state is carried, the gradient stops
at the window's start).
"""
import numpy as np

import common
import train

KIND = "rnn"


# ----------------------------------------------------------------------------------
# The cell: one time step forward and backward


def rnn_step_forward(zx, h_prev, Wh):
    """zx (B, H): the input's share x Wx + b;  h_prev (B, H), Wh (H, H) -> h (B, H)

    The cache of this step is h itself (tanh' = 1 - h^2), kept by the caller."""
    return np.tanh(h_prev @ Wh + zx)


def rnn_step_backward(dh, h, Wh):
    """dh (B, H): adjoint of h from above and from step t+1;  h (B, H) the step's output
    -> dz (B, H) adjoint of the pre-activation, dh_prev (B, H)"""
    dz = dh * (1 - h * h)  # backprop through tanh
    return dz, dz @ Wh.T


# ----------------------------------------------------------------------------------
# One layer over a window: loops over the step functions


def rnn_layer_forward(zx, h0, Wh):
    """zx (S, B, H), h0 (B, H) -> hs (S+1, B, H) with hs[0] = h0 (hs is the cache)"""
    hs = np.empty((zx.shape[0] + 1,) + h0.shape, zx.dtype)
    hs[0] = h0
    for t in range(zx.shape[0]):
        hs[t + 1] = rnn_step_forward(zx[t], hs[t], Wh)
    return hs


def rnn_layer_backward(dhs, hs, Wh):
    """dhs (S, B, H): adjoints of the layer's outputs -> dzs (S, B, H)
    The window's backward starts with a zero adjoint from beyond its last step."""
    dzs = np.empty_like(dhs)
    dh_next = np.zeros_like(dhs[0])
    for t in reversed(range(dhs.shape[0])):
        dzs[t], dh_next = rnn_step_backward(dhs[t] + dh_next, hs[t + 1], Wh)
    return dzs


# ----------------------------------------------------------------------------------
# The model: stacked layers and the output layer


def add_arguments(parser):
    pass


def config(args):
    return {"hidden": args.hidden, "layers": args.layers, "dropout": args.dropout}


def memory_floats(cfg, V, B, S):
    """About how many floats training holds: parameters (with their gradients and the
    optimiser's state, up to two copies for Adam) and the window's cache; for
    refusing sizes that cannot fit."""
    H, L = cfg["hidden"], cfg["layers"]
    n_params = V * H + (L - 1) * H * H + L * (H * H + H) + H * V + V
    return 4 * n_params + S * B * (L * 3 * H + 3 * V)


def init_params(cfg, V, rng, dtype, V_out=None):
    """Uniform(-1/sqrt(H), 1/sqrt(H)) weights, zero biases. V inputs (rows of Wx0: the
    vocabulary, or a task's C input channels), V_out outputs (columns of Wy; None: V)."""
    H, L, V_out = cfg["hidden"], cfg["layers"], V_out or V
    k = 1 / np.sqrt(H)
    p = {}
    for l in range(L):
        p[f"Wx{l}"] = rng.uniform(-k, k, (V if l == 0 else H, H))
        p[f"Wh{l}"] = rng.uniform(-k, k, (H, H))
        p[f"b{l}"] = np.zeros(H)
    p["Wy"] = rng.uniform(-k, k, (H, V_out))
    p["by"] = np.zeros(V_out)
    return {name: v.astype(dtype) for name, v in p.items()}


def init_state(cfg, params, B):
    return {f"h{l}": np.zeros((B, cfg["hidden"]), params["Wy"].dtype) for l in range(cfg["layers"])}


def forward(params, inputs, state, cfg=None, rng=None):
    """inputs (S, B) int ids, or (S, B, C) float channels -> logits (S, B, V_out), last state, cache

    cfg: the run's configuration (only its "dropout" is read here; the sizes come from
    the arrays); rng: draws the dropout masks. Dropout is on only when both are given,
    i.e. in training, never in validation or sampling."""
    p_drop = (cfg or {}).get("dropout", 0.0) if rng is not None else 0.0
    x, new_state, layers = None, {}, []
    for l in range(len(state)):
        # the input's share for every step at once: for layer 0 a gather of ids or a
        # product of channels (common.embed)
        mask = None
        if l == 0:
            zx = common.embed(inputs, params["Wx0"], params["b0"])  # (S, B, H)
        else:
            x, mask = common.dropout(x, p_drop, rng)  # between layers
            zx = x @ params[f"Wx{l}"]
            zx += params[f"b{l}"]
        hs = rnn_layer_forward(zx, state[f"h{l}"], params[f"Wh{l}"])
        new_state[f"h{l}"] = hs[-1].copy()
        layers.append((x, mask, hs))
        x = hs[1:]  # (S, B, H) input of the next layer
    x, mask_y = common.dropout(x, p_drop, rng)  # before the output layer
    logits = x @ params["Wy"] + params["by"]  # (S, B, V)
    return logits, new_state, (inputs, params, layers, x, mask_y)


def backward(dlogits, cache):
    """dlogits (S, B, V_out) -> grads with the keys of params"""
    inputs, params, layers, x_top, mask_y = cache
    V = dlogits.shape[-1]
    H = x_top.shape[-1]  # x_top (S, B, H): the output layer's input, after dropout
    grads = {"Wy": x_top.reshape(-1, H).T @ dlogits.reshape(-1, V), "by": dlogits.sum((0, 1))}
    dx = common.dropout_backward(dlogits @ params["Wy"].T, mask_y)  # (S, B, H)
    for l in reversed(range(len(layers))):
        x, mask, hs = layers[l]
        dzs = rnn_layer_backward(dx, hs, params[f"Wh{l}"])  # (S, B, H)
        flat = dzs.reshape(-1, H)
        # weight gradients summed over all steps in single matrix products
        grads[f"Wh{l}"] = hs[:-1].reshape(-1, H).T @ flat
        grads[f"b{l}"] = flat.sum(0)
        if l == 0:
            grads["Wx0"] = common.embed_backward(inputs, dzs, params["Wx0"].shape[0])
        else:
            grads[f"Wx{l}"] = x.reshape(-1, H).T @ flat
            dx = common.dropout_backward(dzs @ params[f"Wx{l}"].T, mask)  # into the layer below
    return grads


def step(params, x, state, cfg=None):
    """One character per row through the same cell: x (B,) int -> logits (B, V), state
    (cfg, the run's, is for the DNC's options; the cell needs none)"""
    new_state, h = {}, None
    for l in range(len(state)):
        zx = (params["Wx0"][x] if l == 0 else h @ params[f"Wx{l}"]) + params[f"b{l}"]
        h = new_state[f"h{l}"] = rnn_step_forward(zx, state[f"h{l}"], params[f"Wh{l}"])
    return h @ params["Wy"] + params["by"], new_state


if __name__ == "__main__":
    import sys

    train.main(sys.modules[__name__], "Train a char-level vanilla RNN on a text file or a memory task, "
               "or sample from one.")

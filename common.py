"""What every model shares: text and vocabulary, batching, softmax and cross-entropy
(with a mask of the scored steps), the bit-wise sigmoid cross-entropy of a memory task's
bit form, the input of ids or channels (embed), dropout, the optimisers (Adagrad, Adam,
RMSProp), the gradient check, BPC, sampling, checkpoints and the command line's number
types. The models live in rnn-numpy.py, lstm-numpy.py and dnc-numpy.py; each hands
itself, a small "model" module, to train.main(); train.py's train() is the one training
loop for texts and memory tasks.

Shape legend (used in every docstring and `# (B, H)` comment of the project):
    B  batch (parallel cursors over the text)     S  time steps per window (truncated BPTT)
    H  hidden units of a layer                    V  vocabulary size (a task's bit form:
                                                     C input channels, K output channels)
    L  stacked layers                             G  4H, the LSTM's stacked gates
    N  memory slots   W  memory word width   R  read heads   (the DNC paper's names)

A model object provides:
    KIND                      'rnn', 'lstm' or 'dnc' (stored in checkpoints)
    add_arguments(parser)     its own options (sizes)
    config(args) -> dict      the sizes and options that define it (stored in checkpoints)
    memory_floats(cfg, V, B, S) -> int   about how many floats training holds
    init_params(cfg, V, rng, dtype, V_out=None) -> dict of arrays: V inputs, V_out outputs
                              (None: V; a text's vocabulary is both, a task's bit form differs)
    init_state(cfg, params, B) -> dict of arrays, batch on axis 0, all zeros
    forward(params, inputs, state, cfg=None, rng=None) -> logits (S, B, V_out), last state,
                              cache; inputs (S, B) int ids or (S, B, V) float channels (embed
                              below); dropout only when cfg asks and rng is given
    backward(dlogits (S, B, V_out), cache) -> grads, a dict with the keys of params
    step(params, x (B,) int, state) -> logits (B, V), state   (one character, for sampling)
and optionally
    discrete_choices(cache) -> array   the piecewise choices a forward made (the DNC's
                              free-list order), which the gradient check must not cross
    memory_pictures(params, inputs, cfg) -> list of (label, (K, T) array)   what --show draws
The configuration is passed explicitly; no module holds a mutable global.
"""
import argparse
import importlib.util
import json
import math
import os
import sys
import zipfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
LN2 = math.log(2.0)


class UserError(Exception):
    """A problem with the user's input: reported as one line on stderr, exit 2."""


def load_script(filename):
    """Import a sibling script whose file name is not a module name (e.g. 'lstm-numpy.py')."""
    path = os.path.join(HERE, filename)
    name = os.path.splitext(filename)[0].replace("-", "_")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ----------------------------------------------------------------------------------
# Text and vocabulary


def read_text(path, encoding="utf-8"):
    """The whole file as a string; every way it can fail becomes one UserError line."""
    if os.path.isdir(path):
        raise UserError(f"{path} is a directory, not a text file")
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise UserError(f"no such file: {path}") from None
    except OSError as e:
        raise UserError(f"cannot read {path}: {e.strerror}") from None
    if not raw:
        raise UserError(f"{path} is empty")
    try:
        return raw.decode(encoding)
    except LookupError:
        raise UserError(f"unknown encoding {encoding!r}") from None
    except UnicodeDecodeError as e:
        raise UserError(f"{path} is not valid {encoding} (byte {e.start}); "
                        f"try --encoding latin-1 or the file's real encoding") from None


def corpus_files(name, script="lstm-numpy.py"):
    """A corpus that data/download.py knows (alice29, tinyshakespeare, ptb, text8, enwik8),
    fetched the first time it is needed. -> {"train": path, "valid": path or None,
    "test": path or None, "encoding": ...}: the official split where the corpus has one."""
    download = load_script(os.path.join("data", "download.py"))
    try:
        return download.splits(name, os.path.join(HERE, "data"))
    except download.DownloadError as e:
        raise UserError(f"{e}; or pass a text file: python {script} my.txt") from None


class Vocab:
    """Sorted characters <-> integer ids; sorted so that every run agrees on the ids."""

    def __init__(self, chars):
        self.chars = sorted(set(chars))
        self.index = {ch: i for i, ch in enumerate(self.chars)}

    def __len__(self):
        return len(self.chars)

    def encode(self, text, where="the text"):
        """text -> ids (n,), uint8 when V < 256 (a 100 MB corpus stays 100 MB), else int32.
        Vectorised: the text's code points through a lookup table, no Python loop."""
        try:
            codes = np.frombuffer(text.encode("latin-1"), np.uint8)  # one byte per character
        except UnicodeEncodeError:
            codes = np.frombuffer(text.encode("utf-32-le"), np.uint32)
        small = len(self.chars) < 256  # ids fit a byte, and 255 is free to mark "not in it"
        missing = 255 if small else -1
        size = max(int(codes.max(initial=0)), max(map(ord, self.chars), default=0)) + 1
        table = np.full(size, missing, np.uint8 if small else np.int32)  # code point -> id
        table[[ord(ch) for ch in self.chars]] = np.arange(len(self.chars))
        ids = table[codes]  # (n,) one gather: no copy of the text in a wider type
        if len(ids) and (ids == missing).any():
            ch = chr(int(codes[np.argmax(ids == missing)]))
            raise UserError(f"character {ch!r} of {where} is not in the model's vocabulary "
                            f"(the {len(self)} characters it was built from)")
        return ids

    def decode(self, ids):
        return "".join(self.chars[i] for i in ids)

    def codes(self):
        return np.array([ord(ch) for ch in self.chars], dtype=np.int64)

    @classmethod
    def from_codes(cls, codes):
        return cls("".join(chr(c) for c in codes))


def split_data(ids, val_frac, S, B=1):
    """Train on the first (1 - val_frac) of the ids, validate on the last val_frac
    (views of ids, not copies). Each of the B streams needs a window of S + 1."""
    n_val = int(len(ids) * val_frac)
    train, val = ids[:len(ids) - n_val], ids[len(ids) - n_val:]
    if len(train) < S + 1:
        raise UserError(f"the text has {len(train)} training characters; "
                        f"--seq {S} needs at least {S + 1} (lower --seq or --val-frac)")
    if val_frac > 0 and len(val) < 2:
        raise UserError(f"the text is too short to leave a validation split "
                        f"(--val-frac {val_frac} gives {len(val)} characters); use --val-frac 0")
    if len(train) // B < S + 1:
        raise UserError(f"--batch {B} streams of --seq {S} need at least {B * (S + 1)} training "
                        f"characters; the text has {len(train)} (lower --batch or --seq)")
    return train, val


# ----------------------------------------------------------------------------------
# Batching for truncated BPTT


class Batches:
    """B cursors spread evenly over the text; each call gives the next S-character window
    of every row. A row's recurrent state carries over to its next window and is reset
    only when that row's cursor wraps back to the start of the text."""

    def __init__(self, ids, B, S):
        self.ids, self.B, self.S = ids, B, S
        self.cursors = (np.arange(B) * (len(ids) // B)).astype(np.int64)  # (B,)
        self.offsets = np.arange(S + 1)[:, None]  # (S+1, 1)

    def next(self):
        """-> inputs (S, B), targets (S, B), reset (B,) bool: rows whose state must be zeroed."""
        reset = self.cursors + self.S + 1 > len(self.ids)
        self.cursors[reset] = 0
        window = self.ids[self.cursors[None, :] + self.offsets]  # (S+1, B)
        self.cursors += self.S
        return window[:-1], window[1:], reset


def reset_rows(state, rows):
    """Zero the recurrent state of the rows marked True (B,) bool; batch is axis 0."""
    if rows.any():
        for v in state.values():
            v[rows] = 0


def copy_state(state):
    return {k: v.copy() for k, v in state.items()}


# ----------------------------------------------------------------------------------
# Softmax, cross-entropy, bits per character


def softmax(x, axis=-1):
    """Stable softmax: the max is subtracted before exp, so no overflow and no 0/0."""
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def log_softmax(x, axis=-1):
    """Stable log-softmax: z - log(sum(exp(z))) with z = x - max(x).

    The logits of a diverged model can be so far apart that x - max(x) overflows; that
    is expected, so its warning is silenced here, and the training loop and validation
    stop on the non-finite loss it gives."""
    with np.errstate(over="ignore", invalid="ignore"):
        z = x - x.max(axis=axis, keepdims=True)
        return z - np.log(np.exp(z).sum(axis=axis, keepdims=True))


def cross_entropy(logits, targets, mask=None):
    """Mean negative log-likelihood in nats over the scored (S, B) positions, and its
    gradient: every position of a text, only the answer steps of a memory task.

    logits (S, B, V), targets (S, B) int, mask None (all scored) or (S, B) bool
    -> loss float, dlogits (S, B, V)
    """
    V = logits.shape[-1]
    logp = log_softmax(logits.reshape(-1, V))  # (N, V), N = S*B positions
    t = targets.reshape(-1)  # (N,)
    rows = np.arange(t.size)
    # each position's weight in the mean: 1/N for a text, 1/(answer steps) on a task's answers
    if mask is None:
        w = np.full(t.size, 1 / t.size, logits.dtype)
    else:
        w = (mask.reshape(-1) / max(int(mask.sum()), 1)).astype(logits.dtype)
    loss = -np.dot(logp[rows, t].astype(np.float64), w)  # the mean of -log p(target)
    dlogits = np.exp(logp)  # the softmax p
    dlogits[rows, t] -= 1  # backprop into the logits: p - onehot(target) ...
    dlogits *= w[:, None]  # ... times the position's weight in the mean
    return float(loss), dlogits.reshape(logits.shape)


def bit_nats(logits, targets):
    """-log p(target) of each bit when p(bit = 1) = sigmoid(logit), elementwise and stable.

    With s = sigmoid(x): -log s = log(1 + e^-x) and -log(1 - s) = log(1 + e^x), so
        -[y log s + (1 - y) log(1 - s)] = log(1 + e^x) - y x = logaddexp(0, x) - y x,
    finite for any x (log(sigmoid(x)) itself would give log(0) = -inf at x = -1000).
    logits (...), targets (...) 0/1 -> nats (...)"""
    return np.logaddexp(0, logits) - targets * logits


def sigmoid_cross_entropy(logits, targets, mask):
    """The papers' bit-wise loss (a memory task's bit form): one sigmoid per output channel,
    the cross-entropy of each against its 0/1 target, summed over the channels and the
    answer steps, divided by the episodes: nats per episode, as deepmind/dnc's
    masked_sigmoid_cross_entropy (not a mean per step: an episode's loss grows with it).

    logits (T, B, K), targets (T, B, K) 0/1, mask None (all scored) or (T, B) bool
    -> loss float, dlogits (T, B, K)
    """
    scored = np.ones(logits.shape[:2], bool) if mask is None else mask  # (T, B)
    w = (scored[..., None] / logits.shape[1]).astype(logits.dtype)  # (T, B, 1): 1/B where scored, else 0
    loss = np.sum(bit_nats(logits, targets) * w, dtype=np.float64)
    dlogits = (sigmoid(logits) - targets) * w  # backprop into the logits: sigmoid - target, masked
    return float(loss), dlogits.astype(logits.dtype, copy=False)


LOSSES = {"tokens": cross_entropy, "bits": sigmoid_cross_entropy}  # a memory task's loss by its form


def bpc(nats):
    """Bits per character from mean nats per character."""
    return nats / LN2


def sigmoid(x):
    """Logistic sigmoid 1 / (1 + exp(-x)), elementwise, as (1 + tanh(x / 2)) / 2: the same
    function, but exp never overflows for very negative x (so no warning to silence), and
    at the LSTM's sizes it takes less time than the exp form with its overflow handled."""
    return 0.5 * (1 + np.tanh(0.5 * x))


def gather_backward(ids, dout, V):
    """Gradient of a row gather out = table[ids]: the rows of dout summed per id.

    ids (...) int, dout (..., K) -> dtable (V, K). The input projection of ids (embed:
    a character, a task's token) is this gather, a row of W per id, never a one-hot
    matrix product; its backward is the sum dtable[v] = sum of dout[n] over the n with
    ids[n] = v, i.e. onehot(ids).T @ dout. That product, done by BLAS, is many times
    faster here than np.add.at (a scatter-add, slow for rows) or a sort + np.add.reduceat.
    """
    ids = ids.reshape(-1)  # (N,)
    onehot = np.zeros((V, ids.size), dout.dtype)  # (V, N), transposed: row v marks where ids == v
    onehot[ids, np.arange(ids.size)] = 1
    return onehot @ dout.reshape(ids.size, -1)  # (V, K)


def embed(inputs, W, b=None):
    """A layer's input share x W (+ b) at every step, from either kind of input.

    inputs (...) int: ids (a text's characters, a task's tokens): the row gather
        (W + b)[inputs], the one-hot product without the one-hot (b is added to the V rows
        once, not to all the rows gathered);
    inputs (..., C) float: channels (a task's bit form): the product inputs @ W + b.
    W (V, K) with V = C for channels, b (K,) or None (no bias) -> (..., K)"""
    if np.issubdtype(inputs.dtype, np.integer):
        return (W if b is None else W + b)[inputs]
    return inputs @ W if b is None else inputs @ W + b


def embed_backward(inputs, dout, V):
    """Gradient of embed's W: dout (..., K) -> dW (V, K): the rows of dout summed per id
    (gather_backward), or inputs^T dout over all rows for channels. db is dout summed,
    which the caller takes with its other biases."""
    if np.issubdtype(inputs.dtype, np.integer):
        return gather_backward(inputs, dout, V)
    return inputs.reshape(-1, V).T.astype(dout.dtype, copy=False) @ dout.reshape(-1, dout.shape[-1])


def dropout(x, p, rng):
    """Inverted dropout (Zaremba et al. 2014): each entry kept with probability 1 - p and
    scaled by 1 / (1 - p), so that nothing needs rescaling when dropout is off.
    x (...) -> x * mask, mask (...); x itself and mask None when p is 0 or rng is None."""
    if not p or rng is None:
        return x, None
    mask = (rng.random(x.shape, dtype=np.float64) >= p).astype(x.dtype)
    mask /= 1 - p
    return x * mask, mask


def dropout_backward(dy, mask):
    """dy (...) adjoint of dropout's output -> the adjoint of its input (dy where mask is None)."""
    return dy if mask is None else dy * mask


def loss_and_grads(model, params, inputs, targets, state, cfg=None, mask=None, rng=None, loss=cross_entropy):
    """One window or batch of episodes: forward, the loss over the scored steps (mask; the
    mean cross-entropy unless told, e.g. sigmoid_cross_entropy for a task's bit form),
    backward. rng draws dropout masks (training only). -> loss, grads, last state"""
    logits, state, cache = model.forward(params, inputs, state, cfg, rng)
    value, dlogits = loss(logits, targets, mask)
    return value, model.backward(dlogits, cache), state


# ----------------------------------------------------------------------------------
# Optimisers: each updates params in place from grads, its state in dicts keyed like params


class Optimiser:
    """What every optimiser below shares. `lr` is read at every step, so that train.py can
    set it before each one (--warmup, --lr-schedule, --lr-decay). The state a checkpoint
    keeps is SLOTS, dicts of arrays with the same keys as params, and COUNTS, plain
    numbers (Adam's step count); state() hands them out and load_state() takes them back,
    so that a resumed run goes on bit for bit."""
    NAME, LR, SLOTS, COUNTS = None, None, (), ()

    def state(self):
        """-> {slot: {param name: array}, count: number}"""
        return {name: getattr(self, name) for name in self.SLOTS + self.COUNTS}

    def load_state(self, state):
        for name in self.SLOTS + self.COUNTS:
            setattr(self, name, state[name])


class Adagrad(Optimiser):
    """Adagrad as in min-char-rnn and the ancestor: each parameter's step is the learning
    rate divided by the root of the sum of its squared gradients so far.
    `mem` is a dict with the same keys as params."""
    NAME, LR, SLOTS = "adagrad", 0.1, ("mem",)

    def __init__(self, params, lr=LR, eps=1e-8):
        self.lr, self.eps = lr, eps
        self.mem = {k: np.zeros_like(v) for k, v in params.items()}

    def step(self, params, grads):
        """Update params in place."""
        for k in params:
            self.mem[k] += grads[k] * grads[k]
            params[k] -= self.lr * grads[k] / np.sqrt(self.mem[k] + self.eps)


class Adam(Optimiser):
    """Adam, Algorithm 1 of Kingma & Ba 2015: moving averages of the gradient (m) and of
    its square (v), both started at zero and so divided by 1 - beta^t (the bias
    correction), and a step of about lr in each coordinate whatever the gradient's scale.
    m and v are dicts with the same keys as params; t counts the steps taken."""
    NAME, LR, SLOTS, COUNTS = "adam", 2e-3, ("m", "v"), ("t",)

    def __init__(self, params, lr=LR, beta1=0.9, beta2=0.999, eps=1e-8):
        self.lr, self.beta1, self.beta2, self.eps = lr, beta1, beta2, eps
        self.m = {k: np.zeros_like(v) for k, v in params.items()}
        self.v = {k: np.zeros_like(v) for k, v in params.items()}
        self.t = 0

    def step(self, params, grads):
        """Update params in place."""
        b1, b2 = self.beta1, self.beta2
        self.t += 1
        for k in params:
            g = grads[k]
            self.m[k] = b1 * self.m[k] + (1 - b1) * g  # biased first moment estimate
            self.v[k] = b2 * self.v[k] + (1 - b2) * g * g  # biased second raw moment estimate
            m_hat = self.m[k] / (1 - b1 ** self.t)  # bias-corrected first moment
            v_hat = self.v[k] / (1 - b2 ** self.t)  # bias-corrected second raw moment
            params[k] -= self.lr * m_hat / (np.sqrt(v_hat) + self.eps)


class RMSProp(Optimiser):
    """RMSProp (Hinton's lecture 6e) exactly as TensorFlow 1's tf.train.RMSPropOptimizer
    computes it (non-centred), the optimiser deepmind/dnc's train.py trains the DNC with:
        ms  <- decay ms + (1 - decay) g^2          a moving mean of the squared gradient
        mom <- momentum mom + lr g / sqrt(ms + eps)
        p   <- p - mom
    ms starts at ones, as TensorFlow's "rms" slot does, so the first steps are about
    lr g rather than lr sign(g). deepmind/dnc passes only the learning rate 1e-4 and
    epsilon 1e-10 (with a global-norm clip of 50), so it trains with TensorFlow's
    defaults decay 0.9 and momentum 0.0; those are the defaults here too. The default
    --lr here is 1e-3, for the text models. ms and mom are dicts keyed like params."""
    NAME, LR, SLOTS = "rmsprop", 1e-3, ("ms", "mom")

    def __init__(self, params, lr=LR, decay=0.9, momentum=0.0, eps=1e-10):
        self.lr, self.decay, self.momentum, self.eps = lr, decay, momentum, eps
        self.ms = {k: np.ones_like(v) for k, v in params.items()}
        self.mom = {k: np.zeros_like(v) for k, v in params.items()}

    def step(self, params, grads):
        """Update params in place."""
        for k in params:
            g = grads[k]
            self.ms[k] = self.decay * self.ms[k] + (1 - self.decay) * g * g
            self.mom[k] = self.momentum * self.mom[k] + self.lr * g / np.sqrt(self.ms[k] + self.eps)
            params[k] -= self.mom[k]


OPTIMIZERS = {opt.NAME: opt for opt in (Adagrad, Adam, RMSProp)}  # --optim NAME


def clip_global_norm(grads, max_norm):
    """Scale all gradients together so their joint L2 norm is at most max_norm.
    Called once, after the whole backward pass. -> the norm before clipping"""
    norm = math.sqrt(sum(float(np.vdot(g, g)) for g in grads.values()))
    if max_norm > 0 and norm > max_norm:
        scale = max_norm / norm
        for g in grads.values():
            g *= scale
    return norm


# ----------------------------------------------------------------------------------
# Gradient check


def gradcheck(loss_fn, params, grads, checks=10, rng=None, h=1e-5, tol=1e-6, out=None):
    """Central differences on random entries of every parameter, against `grads`.

    loss_fn(params) -> float must be deterministic and use float64 params with no
    clipping. The relative error of an entry is |num - ana| / max(|num|, |ana|, floor),
    where the floor is the largest analytic magnitude of that parameter, so entries
    near zero cannot inflate the ratio (the measure docs/dnc.md §10 describes). An all-zero
    analytic gradient is a failure, never a pass. Prints the ancestor's table and
    returns the worst relative error (inf when some gradient is all zero).

    loss_fn may return None for a perturbation that crosses a discontinuity (the DNC's
    sort of usages changing order): that entry is skipped and reported, not compared.
    out: where the table goes (None: sys.stdout at the time of the call).
    """
    out = sys.stdout if out is None else out
    rng = rng if rng is not None else np.random.default_rng(0)
    worst = 0.0
    for name, p in params.items():
        g = grads[name]
        floor = float(np.abs(g).max())
        k = min(checks, p.size)
        idx = rng.choice(p.size, size=k, replace=False)
        num, ana, kept = np.empty(k), np.empty(k), np.ones(k, bool)
        for j, i in enumerate(idx):
            at = np.unravel_index(i, p.shape)  # perturbs params[name] in place, views too
            old = p[at]
            p[at] = old + h
            lp = loss_fn(params)
            p[at] = old - h
            lm = loss_fn(params)
            p[at] = old
            kept[j] = lp is not None and lm is not None
            num[j] = (lp - lm) / (2 * h) if kept[j] else np.nan
            ana[j] = g[at]
        skipped = k - int(kept.sum())
        num, ana, k = num[kept], ana[kept], k - skipped
        if k == 0:
            print(f"{name}:\tevery checked entry crossed a discontinuity: not checked", file=out)
            continue
        if floor == 0.0:
            err = np.full(k, np.inf)
        else:
            err = np.abs(num - ana) / np.maximum(np.maximum(np.abs(num), np.abs(ana)), floor)
        ok = int((err < tol).sum())
        worst = max(worst, float(err.max()))
        note = "  ALL-ZERO GRADIENT" if floor == 0.0 else ""
        note += f"  ({skipped} skipped: the sort order changed)" if skipped else ""
        print(f"{name}:\tn = [{num.min():e}, {num.max():e}]\tmin {err.min():e}, max {err.max():e}{note}",
              file=out)
        print(f"\t\ta = [{ana.min():e}, {ana.max():e}]\tmean {err.mean():e} # {ok}/{k}", file=out)
    return worst


def gradcheck_verdict(worst, count, tol, out=None):
    """The closing line every gradient check prints (to out, None: sys.stdout). -> True on PASS"""
    out = sys.stdout if out is None else out
    ok = worst < tol
    print(f"gradcheck: max relative error {worst:.3e} over {count} parameters: "
          f"{'PASS' if ok else 'FAIL'}", file=out)
    return ok


def check_model_gradients(model, cfg, V=7, B=3, S=6, checks=10, seed=0, tol=1e-6, out=None,
                          episodes=None, V_out=None, loss=cross_entropy, prepare=None):
    """Float64 gradient check of every parameter of a model. -> worst relative error,
    number of parameters.

    On random text (episodes None) it starts from a carried (non-zero) state, so the
    state path is checked too. With episodes = (inputs, targets, mask) of a memory task
    it starts from zero, as every episode does, and the loss is the task's masked one:
    cross_entropy of the token form, or sigmoid_cross_entropy of the bit form, whose
    float channels (V of them) the model reads through a product and whose V_out output
    channels differ from V. With cfg["dropout"] > 0 every forward draws its masks from a
    generator made afresh from one seed: the same masks each time, so the loss is a
    smooth function to difference. prepare(params), if given, then moves the random params
    where a path must be exercised (the DNC's gates opened for its sparse links' threshold)."""
    rng = np.random.default_rng(seed)
    params = model.init_params(cfg, V, rng, np.float64, V_out)
    for v in params.values():  # move off the tidy initial values (zero biases etc.)
        v += 0.1 * rng.standard_normal(v.shape)
    if prepare is not None:
        prepare(params)
    if episodes is None:
        ids = rng.integers(0, V, size=(2 * S + 1, B))
        state = model.init_state(cfg, params, B)
        _, state, _ = model.forward(params, ids[:S], state, cfg)  # warm-up window: a carried state
        inputs, targets, mask = ids[S:2 * S], ids[S + 1:2 * S + 1], None
    else:
        inputs, targets, mask = episodes
        state = model.init_state(cfg, params, inputs.shape[1])

    def masks():  # the same dropout masks for every forward (None: no dropout)
        return np.random.default_rng(seed + 1) if cfg.get("dropout") else None

    # a model with discrete choices inside (the DNC's sort of usages) names them, so that
    # a perturbation which changes them is skipped rather than differenced across a jump
    choices = getattr(model, "discrete_choices", None)
    logits, _, cache = model.forward(params, inputs, copy_state(state), cfg, masks())
    base = choices(cache) if choices else None

    def loss_fn(p):
        logits, _, cache = model.forward(p, inputs, copy_state(state), cfg, masks())
        if choices and not np.array_equal(choices(cache), base):
            return None
        return loss(logits, targets, mask)[0]

    _, grads, _ = loss_and_grads(model, params, inputs, targets, copy_state(state), cfg, mask, masks(), loss)
    worst = gradcheck(loss_fn, params, grads, checks, rng, tol=tol, out=out)
    return worst, len(params)


# ----------------------------------------------------------------------------------
# Sampling


def sample(model, cfg, params, vocab, n, temperature=1.0, prime="", rng=None, state=None):
    """n characters drawn one at a time through model.step, after reading `prime`."""
    rng = rng if rng is not None else np.random.default_rng()
    state = state if state is not None else model.init_state(cfg, params, 1)
    ids = list(vocab.encode(prime)) if prime else [int(rng.integers(len(vocab)))]
    logits = None
    for i in ids:
        logits, state = model.step(params, np.array([i]), state, cfg)
    out = []
    for _ in range(n):
        p = softmax(logits[0].astype(np.float64) / temperature)
        i = int(rng.choice(len(p), p=p))
        out.append(i)
        logits, state = model.step(params, np.array([i]), state, cfg)
    return vocab.decode(out)


# ----------------------------------------------------------------------------------
# Checkpoints: one .npz, written atomically, read with allow_pickle=False


def save_checkpoint(path, kind, cfg, params, opt, vocab, info, state, cursors, rng, best=None):
    """Everything a run needs to go on bit for bit: the latest params (param/), the
    optimiser's state (opt/SLOT/, its name and counts in the info), the recurrent state,
    the text cursors and the RNG; and, when validation has picked them, the params of the
    best validation so far (best/), which sampling and evaluation use. vocab None for a
    memory task (its tokens are the task's)."""
    arrays = {f"param/{k}": v for k, v in params.items()}
    opt_state = opt.state()
    for slot in opt.SLOTS:  # e.g. opt/m/Wx0 and opt/v/Wx0 for Adam
        arrays.update({f"opt/{slot}/{k}": v for k, v in opt_state[slot].items()})
    arrays.update({f"state/{k}": v for k, v in state.items()})
    arrays.update({f"best/{k}": v for k, v in (best or {}).items()})
    arrays["vocab"] = vocab.codes() if vocab is not None else np.zeros(0, np.int64)
    arrays["cursors"] = cursors
    optim = {"name": opt.NAME, **{count: opt_state[count] for count in opt.COUNTS}}  # e.g. Adam's t
    info = dict(info, kind=kind, cfg=cfg, rng=rng.bit_generator.state, optim=optim)
    arrays["info"] = np.array(json.dumps(info))
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        remove_stale_temporaries(path)
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)  # atomic: the old checkpoint stays whole until this moment
    except OSError as e:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise UserError(f"cannot write checkpoint {path}: {e.strerror}") from None


def remove_stale_temporaries(path):
    """Remove the partial checkpoints path.tmpPID that runs killed while saving left
    behind (os.replace never ran), whose process is gone. Not on Windows, where
    os.kill cannot ask whether a process exists."""
    if os.name == "nt":
        return
    folder, prefix = os.path.dirname(path) or ".", os.path.basename(path) + ".tmp"
    for name in os.listdir(folder):
        pid = name[len(prefix):]
        if name.startswith(prefix) and pid.isdigit() and not process_exists(int(pid)):
            try:
                os.remove(os.path.join(folder, name))
            except OSError:  # not ours to remove after all: the save itself goes on
                pass


def process_exists(pid):
    try:
        os.kill(pid, 0)  # signal 0: nothing is sent, only whether pid exists is checked
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, run by another user
        return True
    return True


def under(arrays, prefix):
    """The arrays named prefix/NAME, keyed by NAME."""
    return {k[len(prefix) + 1:]: v for k, v in arrays.items() if k.startswith(prefix + "/")}


def load_checkpoint(path, kind):
    """-> dict with info, param, optim (the optimiser's name), opt (its state: the slots
    keyed like param, and the counts), state, best (the best params, or the latest when
    the run kept none), vocab (None for a task), cursors; UserError if it is not a whole
    checkpoint of this model kind. A checkpoint from before --optim (Adagrad's memory as
    adagrad/NAME, no optimiser named) loads as Adagrad's."""
    if not os.path.isfile(path):
        raise UserError(f"no such checkpoint: {path}")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        info = json.loads(str(arrays.pop("info")))
        codes = arrays.pop("vocab")
        ck = {"info": info, "vocab": Vocab.from_codes(codes) if codes.size else None,
              "cursors": arrays.pop("cursors")}
        for part in ("param", "state", "best"):
            ck[part] = under(arrays, part)
        if info["kind"] != kind:
            raise UserError(f"{path} is a {info['kind']} checkpoint, not {kind}")
        optim = info.get("optim", {"name": "adagrad"})  # before --optim every run used Adagrad
        opt = OPTIMIZERS[optim["name"]]
        old = under(arrays, "adagrad")  # the layout before --optim: adagrad/NAME
        slots = {"mem": old} if old else {slot: under(arrays, f"opt/{slot}") for slot in opt.SLOTS}
        if set(slots) != set(opt.SLOTS) or not ck["param"] or any(s.keys() != ck["param"].keys()
                                                                  for s in slots.values()):
            raise KeyError("param")
        ck["optim"], ck["opt"] = opt.NAME, dict(slots, **{count: optim[count] for count in opt.COUNTS})
        if ck["best"] and ck["best"].keys() != ck["param"].keys():
            raise KeyError("best")
        ck["best"] = ck["best"] or ck["param"]
        if not {"cfg", "iter", "rng"} <= info.keys() or not {"batch", "seq"} <= info["cfg"].keys():
            raise KeyError("info")
        if (ck["vocab"] is None) != bool(info.get("task")):
            raise KeyError("vocab")
    except UserError:
        raise
    except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile):
        raise UserError(f"{path} is damaged or not a checkpoint of this project") from None
    return ck


# ----------------------------------------------------------------------------------
# Command-line pieces every script (and dnc-debug.py, the benchmarks) uses


def bounded(convert, what, ok, need):
    """An argparse type: convert(s) must succeed (else "'s' is not <what>") and satisfy
    ok(value) (else "must be <need>"); both become one line on stderr and exit 2."""
    def parse(s):
        try:
            v = convert(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{s!r} is not {what}") from None
        if not ok(v):
            raise argparse.ArgumentTypeError(f"must be {need}, got {s}")
        return v
    return parse


positive_int = bounded(int, "a whole number", lambda v: v > 0, "positive")
nonneg_int = bounded(int, "a whole number", lambda v: v >= 0, "zero or more")
positive_float = bounded(float, "a number", lambda v: v > 0 and math.isfinite(v), "a positive number")
nonneg_float = bounded(float, "a number", lambda v: v >= 0 and math.isfinite(v), "zero or more")


def fraction(s):
    v = nonneg_float(s)
    if v >= 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {s}")
    return v


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows defaults, but not the empty ones (None, False, "")."""

    def _get_help_string(self, action):
        if action.default in (None, False, ""):
            return action.help
        return super()._get_help_string(action)


class Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2, as for every other bad input
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        sys.exit(2)

"""What every model script shares: text and vocabulary, batching, softmax and
cross-entropy, Adagrad, the gradient check, BPC, sampling, checkpoints, progress
lines and the command line. The models themselves live in rnn-numpy.py,
lstm-numpy.py and dnc-numpy.py; each hands a small "model" object to main().

Shape legend (used in every docstring and `# (B, H)` comment of the project):
    B  batch (parallel cursors over the text)     S  time steps per window (truncated BPTT)
    H  hidden units of a layer                    V  vocabulary size
    L  stacked layers                             G  4H, the LSTM's stacked gates
    N  memory slots   W  memory word width   R  read heads   (the DNC paper's names)

A model object provides:
    KIND                      'rnn', 'lstm' or 'dnc' (stored in checkpoints)
    add_arguments(parser)     its own options (sizes)
    config(args) -> dict      the sizes that define it (stored in checkpoints)
    init_params(cfg, V, rng, dtype) -> dict of arrays
    init_state(cfg, params, B) -> dict of arrays, batch on axis 0, all zeros
    forward(params, inputs (S, B) int, state) -> logits (S, B, V), last state, cache
    backward(dlogits (S, B, V), cache) -> grads, a dict with the keys of params
    step(params, x (B,) int, state) -> logits (B, V), state   (one character, for sampling)
and optionally
    discrete_choices(cache) -> array   the piecewise choices a forward made (the DNC's
                              free-list order), which the gradient check must not cross
"""
import argparse
import importlib.util
import json
import math
import os
import signal
import sys
import time
import zipfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_TEXT = os.path.join(HERE, "data", "alice29.txt")
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


def default_text(script="lstm-numpy.py"):
    """data/alice29.txt, downloaded by data/download.py the first time it is needed."""
    if not os.path.exists(DEFAULT_TEXT):
        download = load_script(os.path.join("data", "download.py"))
        try:
            download.fetch("alice29", os.path.dirname(DEFAULT_TEXT))
        except download.DownloadError as e:
            raise UserError(f"{e}; or pass a text file: python {script} my.txt") from None
    return DEFAULT_TEXT


class Vocab:
    """Sorted characters <-> integer ids; sorted so that every run agrees on the ids."""

    def __init__(self, chars):
        self.chars = sorted(set(chars))
        self.index = {ch: i for i, ch in enumerate(self.chars)}

    def __len__(self):
        return len(self.chars)

    def encode(self, text):
        try:
            return np.array([self.index[ch] for ch in text], dtype=np.int64)
        except KeyError as e:
            raise UserError(f"character {e.args[0]!r} is not in the model's vocabulary") from None

    def decode(self, ids):
        return "".join(self.chars[i] for i in ids)

    def codes(self):
        return np.array([ord(ch) for ch in self.chars], dtype=np.int64)

    @classmethod
    def from_codes(cls, codes):
        return cls("".join(chr(c) for c in codes))


def split_data(ids, val_frac, S):
    """Train on the first (1 - val_frac) of the ids, validate on the last val_frac."""
    n_val = int(len(ids) * val_frac)
    train, val = ids[:len(ids) - n_val], ids[len(ids) - n_val:]
    if len(train) < S + 1:
        raise UserError(f"the text has {len(train)} training characters; "
                        f"--seq {S} needs at least {S + 1} (lower --seq or --val-frac)")
    if val_frac > 0 and len(val) < 2:
        raise UserError(f"the text is too short to leave a validation split "
                        f"(--val-frac {val_frac} gives {len(val)} characters); use --val-frac 0")
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
    e = x - x.max(axis=axis, keepdims=True)  # a new array: exp and the division go in place
    np.exp(e, out=e)
    e /= e.sum(axis=axis, keepdims=True)
    return e


def log_softmax(x, axis=-1):
    """Stable log-softmax: z - log(sum(exp(z))) with z = x - max(x)."""
    z = x - x.max(axis=axis, keepdims=True)
    z -= np.log(np.exp(z).sum(axis=axis, keepdims=True))
    return z


def cross_entropy(logits, targets):
    """Mean negative log-likelihood in nats over every (S, B) position, and its gradient.

    logits (S, B, V), targets (S, B) int -> loss float, dlogits (S, B, V)
    """
    V = logits.shape[-1]
    flat = logits.reshape(-1, V)  # (N, V), N = S*B
    t = targets.reshape(-1)  # (N,)
    N = t.size
    rows = np.arange(N)
    # log-softmax as in log_softmax, but keeping exp(z) for the gradient: one array, in place
    e = flat - flat.max(axis=1, keepdims=True)  # (N, V) z, shifted so that its max is 0
    zt = e[rows, t]  # (N,) z of the targets
    np.exp(e, out=e)  # (N, V) exp(z)
    s = e.sum(axis=1)  # (N,) the softmax denominators, each >= 1
    loss = (np.log(s) - zt).mean(dtype=np.float64)  # -log p(target) = log(sum exp z) - z_target
    e *= (1 / (N * s))[:, None]  # the softmax p, already divided by N since the loss is a mean
    e[rows, t] -= 1 / N  # backprop into the logits: (p - onehot(target)) / N
    return float(loss), e.reshape(logits.shape)


def bpc(nats):
    """Bits per character from mean nats per character."""
    return nats / LN2


def sigmoid(x, out=None):
    """Logistic sigmoid 1 / (1 + exp(-x)), elementwise; out=x computes it in place.

    Stable for any x: for x very negative exp(-x) overflows to inf and the result is
    exactly 0 (that overflow is expected, so its warning is silenced). One exp, which
    NumPy computes about twice as fast as tanh in float32.
    """
    out = np.negative(x, out=out)
    with np.errstate(over="ignore"):
        np.exp(out, out=out)
    out += 1
    return np.divide(1, out, out=out)


def gather_backward(ids, dout, V):
    """Gradient of a row gather out = table[ids]: the rows of dout summed per id.

    ids (...) int, dout (..., K) -> dtable (V, K). The input projection of every model
    is this gather (a row of W per character), never a one-hot matrix product; its
    backward is the sum dtable[v] = sum of dout[n] over the n with ids[n] = v, i.e.
    onehot(ids).T @ dout. That product, done by BLAS, is many times faster here than
    np.add.at (a scatter-add, slow for rows) or a sort + np.add.reduceat.
    """
    ids = ids.reshape(-1)  # (N,)
    onehot = np.zeros((V, ids.size), dout.dtype)  # (V, N), transposed: row v marks where ids == v
    onehot[ids, np.arange(ids.size)] = 1
    return onehot @ dout.reshape(ids.size, -1)  # (V, K)


def loss_and_grads(model, params, inputs, targets, state):
    """One window: forward, mean cross-entropy, backward. -> loss, grads, last state"""
    logits, state, cache = model.forward(params, inputs, state)
    loss, dlogits = cross_entropy(logits, targets)
    return loss, model.backward(dlogits, cache), state


def evaluate(model, params, ids, B, S):
    """Mean nats per character over a whole held-out text, read as B contiguous streams
    with the recurrent state carried from window to window."""
    rows = max(1, min(B, (len(ids) - 1) // S))
    m = (len(ids) - 1) // rows  # characters each stream predicts
    stream = ids[:rows * m + 1]
    idx = np.arange(rows)[None, :] * m + np.arange(m + 1)[:, None]  # (m+1, rows)
    data = stream[idx]
    state = model.init_state(model.cfg, params, rows)
    total = 0.0
    for t0 in range(0, m, S):
        inputs, targets = data[t0:t0 + S], data[t0 + 1:t0 + S + 1]
        inputs = inputs[:len(targets)]
        logits, state, _ = model.forward(params, inputs, state)
        logp = log_softmax(logits)
        total -= np.take_along_axis(logp, targets[..., None], axis=-1).sum(dtype=np.float64)
    return float(total / (m * rows))


# ----------------------------------------------------------------------------------
# Optimiser


class Adagrad:
    """Adagrad as in min-char-rnn and the ancestor: mem += g^2; p -= lr g / sqrt(mem + eps).
    `mem` is a dict with the same keys as params."""

    def __init__(self, params, lr=0.1, eps=1e-8):
        self.lr, self.eps = lr, eps
        self.mem = {k: np.zeros_like(v) for k, v in params.items()}
        self.scratch = {k: np.empty_like(v) for k, v in params.items()}  # reused by every step

    def step(self, params, grads):
        """Update params in place; every operation writes into existing arrays."""
        for k, p in params.items():
            g, m, u = grads[k], self.mem[k], self.scratch[k]
            m += np.multiply(g, g, out=u)  # mem += g^2
            np.sqrt(np.add(m, self.eps, out=u), out=u)  # u = sqrt(mem + eps)
            np.divide(g, u, out=u)
            u *= self.lr
            p -= u  # p -= lr g / sqrt(mem + eps)


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


def gradcheck(loss_fn, params, grads, checks=10, rng=None, h=1e-5, tol=1e-6, out=sys.stdout):
    """Central differences on random entries of every parameter, against `grads`.

    loss_fn(params) -> float must be deterministic and use float64 params with no
    clipping. The relative error of an entry is |num - ana| / max(|num|, |ana|, floor),
    where the floor is the largest analytic magnitude of that parameter, so entries
    near zero cannot inflate the ratio (the measure the DNC spec uses). An all-zero
    analytic gradient is a failure, never a pass. Prints the ancestor's table and
    returns the worst relative error (inf when some gradient is all zero).

    loss_fn may return None for a perturbation that crosses a discontinuity (the DNC's
    sort of usages changing order): that entry is skipped and reported, not compared.
    """
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


def gradcheck_verdict(worst, count, tol, out=sys.stdout):
    """The closing line every gradient check prints. -> True on PASS"""
    ok = worst < tol
    print(f"gradcheck: max relative error {worst:.3e} over {count} parameters: "
          f"{'PASS' if ok else 'FAIL'}", file=out)
    return ok


def check_model_gradients(model, cfg, V=7, B=3, S=6, checks=10, seed=0, tol=1e-6, out=sys.stdout):
    """Float64 gradient check of every parameter of a model on random text, starting from
    a carried (non-zero) state so the state path is checked too. -> worst relative error, number of parameters"""
    rng = np.random.default_rng(seed)
    model.cfg = cfg
    params = model.init_params(cfg, V, rng, np.float64)
    for v in params.values():  # move off the tidy initial values (zero biases etc.)
        v += 0.1 * rng.standard_normal(v.shape)
    ids = rng.integers(0, V, size=(2 * S + 1, B))
    state = model.init_state(cfg, params, B)
    _, state, _ = model.forward(params, ids[:S], state)  # warm-up window: a carried state
    inputs, targets = ids[S:2 * S], ids[S + 1:2 * S + 1]

    # a model with discrete choices inside (the DNC's sort of usages) names them, so that
    # a perturbation which changes them is skipped rather than differenced across a jump
    choices = getattr(model, "discrete_choices", None)
    logits, _, cache = model.forward(params, inputs, copy_state(state))
    base = choices(cache) if choices else None

    def loss_fn(p):
        logits, _, cache = model.forward(p, inputs, copy_state(state))
        if choices and not np.array_equal(choices(cache), base):
            return None
        return cross_entropy(logits, targets)[0]

    _, grads, _ = loss_and_grads(model, params, inputs, targets, copy_state(state))
    worst = gradcheck(loss_fn, params, grads, checks, rng, tol=tol, out=out)
    return worst, len(params)


# ----------------------------------------------------------------------------------
# Sampling


def sample(model, params, vocab, n, temperature=1.0, prime="", rng=None, state=None):
    """n characters drawn one at a time through model.step, after reading `prime`."""
    rng = rng if rng is not None else np.random.default_rng()
    state = state if state is not None else model.init_state(model.cfg, params, 1)
    ids = list(vocab.encode(prime)) if prime else [int(rng.integers(len(vocab)))]
    logits = None
    for i in ids:
        logits, state = model.step(params, np.array([i]), state)
    out = []
    for _ in range(n):
        p = softmax(logits[0].astype(np.float64) / temperature)
        i = int(rng.choice(len(p), p=p))
        out.append(i)
        logits, state = model.step(params, np.array([i]), state)
    return vocab.decode(out)


# ----------------------------------------------------------------------------------
# Checkpoints: one .npz, written atomically, read with allow_pickle=False


def save_checkpoint(path, model, params, opt, vocab, meta, state, cursors, rng):
    arrays = {f"param/{k}": v for k, v in params.items()}
    arrays.update({f"adagrad/{k}": v for k, v in opt.mem.items()})
    arrays.update({f"state/{k}": v for k, v in state.items()})
    arrays["vocab"] = vocab.codes()
    arrays["cursors"] = cursors
    info = dict(kind=model.KIND, cfg=model.cfg, rng=rng.bit_generator.state, **meta)
    arrays["info"] = np.array(json.dumps(info))
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)  # atomic: the old checkpoint stays whole until this moment
    except OSError as e:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise UserError(f"cannot write checkpoint {path}: {e.strerror}") from None


def load_checkpoint(path, kind):
    """-> dict with info, params, adagrad, state, vocab, cursors; UserError if it is not
    a whole checkpoint of this model kind."""
    if not os.path.isfile(path):
        raise UserError(f"no such checkpoint: {path}")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        info = json.loads(str(arrays.pop("info")))
        ck = {"info": info, "vocab": Vocab.from_codes(arrays.pop("vocab")),
              "cursors": arrays.pop("cursors")}
        for part in ("param", "adagrad", "state"):
            ck[part] = {k.split("/", 1)[1]: v for k, v in arrays.items() if k.startswith(part + "/")}
        if info["kind"] != kind:
            raise UserError(f"{path} is a {info['kind']} checkpoint, not {kind}")
        if not ck["param"] or ck["param"].keys() != ck["adagrad"].keys():
            raise KeyError("param")
        if not {"cfg", "iter", "rng"} <= info.keys() or not {"batch", "seq"} <= info["cfg"].keys():
            raise KeyError("info")
    except UserError:
        raise
    except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile):
        raise UserError(f"{path} is damaged or not a checkpoint of this project") from None
    return ck


# ----------------------------------------------------------------------------------
# Progress


class Progress:
    """The ancestor's progress line, with BPC averaged over the report window."""

    def __init__(self):
        self.start = time.perf_counter()
        self.window_nats, self.window_iters = 0.0, 0
        self.chars, self.last_bpc = 0, float("nan")

    def add(self, loss, chars):
        self.window_nats += loss
        self.window_iters += 1
        self.chars += chars

    def elapsed(self):
        return time.perf_counter() - self.start

    def recent_bpc(self):
        """Mean BPC of the iterations since the last report (of the last report if none)."""
        if self.window_iters:
            self.last_bpc = bpc(self.window_nats / self.window_iters)
        return self.last_bpc

    def line(self, it, val=None):
        t = self.elapsed()
        train = self.recent_bpc()
        self.window_nats, self.window_iters = 0.0, 0
        s = f"{t:.3f} s, iter {it}, {train:.4f} BPC, {self.chars / t:.2f} char/s"
        return s + (f", val {bpc(val):.4f} BPC" if val is not None else "")


# ----------------------------------------------------------------------------------
# Command line and the training loop


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


def make_parser(model, description, defaults):
    p = Parser(prog=f"{model.KIND}-numpy.py", description=description,
               formatter_class=HelpFormatter)
    p.add_argument("text", nargs="?", help="training text (default: data/alice29.txt, downloaded on first use)")
    p.add_argument("--hidden", type=positive_int, default=defaults.get("hidden", 128), help="H, units per layer")
    p.add_argument("--layers", type=positive_int, default=defaults.get("layers", 1), help="L, stacked layers")
    p.add_argument("--batch", type=positive_int, default=defaults.get("batch", 32), help="B, parallel streams")
    p.add_argument("--seq", type=positive_int, default=defaults.get("seq", 32), help="S, BPTT window length")
    p.add_argument("--lr", type=positive_float, default=0.1, help="Adagrad learning rate")
    p.add_argument("--clip", type=nonneg_float, default=defaults.get("clip", 5.0),
                   help="global gradient-norm clip (0: off)")
    p.add_argument("--seed", type=nonneg_int, default=0, help="fixes initialisation, batching and sampling")
    p.add_argument("--time", type=nonneg_float, default=defaults.get("time", 120.0),
                   help="stop after this many seconds of training (0: no limit)")
    p.add_argument("--iters", type=nonneg_int, default=0, help="stop after this many iterations (0: no limit)")
    p.add_argument("--report", type=positive_int, default=defaults.get("report", 100),
                   help="iterations between progress lines")
    p.add_argument("--val-frac", type=fraction, default=0.1, help="held-out tail of the text for validation")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32", help="training precision")
    p.add_argument("--save", metavar="PATH", help="checkpoint written at every report, at the end and on Ctrl-C")
    p.add_argument("--load", metavar="PATH", help="resume training (or sample) from this checkpoint")
    p.add_argument("--sample", type=nonneg_int, default=0, metavar="N",
                   help="with --load: print N sampled characters and exit")
    p.add_argument("--temperature", type=positive_float, default=1.0, help="sampling temperature")
    p.add_argument("--prime", default="", help="text the model reads before sampling")
    p.add_argument("--gradcheck", action="store_true", help="float64 gradient check of every parameter; exit 1 on failure")
    p.add_argument("--checks", type=positive_int, default=10, help="gradient-check entries per parameter")
    p.add_argument("--encoding", default="utf-8", help="text file encoding")
    model.add_arguments(p)
    return p


def main(model, description, defaults=None, argv=None):
    """Parse the command line and run: gradient check, sampling or training."""
    args = make_parser(model, description, defaults or {}).parse_args(argv)
    try:
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # a NaN is caught by run
            code = run(model, args)
    except UserError as e:
        print(f"{model.KIND}-numpy.py: error: {e}", file=sys.stderr)
        code = 2
    except MemoryError:
        print(f"{model.KIND}-numpy.py: error: not enough memory for these sizes "
              f"(lower --hidden, --layers, --batch or --seq)", file=sys.stderr)
        code = 2
    except KeyboardInterrupt:  # Ctrl-C before training started (or while sampling)
        print(f"{model.KIND}-numpy.py: interrupted", file=sys.stderr)
        code = 130
    except BrokenPipeError:  # stdout piped into `head` and closed: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the exit's flush cannot fail
        code = 1
    sys.exit(code)


def run(model, args):
    if args.gradcheck:
        cfg = model.config(args)
        tol = 1e-6
        print(f"{model.KIND} gradient check, float64, sizes {cfg}")
        worst, count = check_model_gradients(model, cfg, checks=args.checks, seed=args.seed, tol=tol)
        return 0 if gradcheck_verdict(worst, count, tol) else 1

    if args.sample and not args.load:
        raise UserError("--sample needs a trained model: add --load PATH")
    dtype = np.dtype(args.dtype)
    ck = load_checkpoint(args.load, model.KIND) if args.load else None

    if args.sample:
        model.cfg = ck["info"]["cfg"]
        params = {k: v.astype(dtype) for k, v in ck["param"].items()}
        rng = np.random.default_rng(args.seed)
        print(args.prime + sample(model, params, ck["vocab"], args.sample, args.temperature, args.prime, rng))
        return 0

    text = read_text(args.text or default_text(f"{model.KIND}-numpy.py"), args.encoding)
    if ck is not None:
        vocab = ck["vocab"]
        if sorted(set(text)) != vocab.chars:
            raise UserError(f"{args.load} was trained on another vocabulary "
                            f"({len(vocab)} characters; this text has {len(set(text))})")
        model.cfg = ck["info"]["cfg"]
        B, S = model.cfg["batch"], model.cfg["seq"]
    else:
        vocab = Vocab(text)
        model.cfg = dict(model.config(args), batch=args.batch, seq=args.seq)
        B, S = args.batch, args.seq
    train_ids, val_ids = split_data(vocab.encode(text), args.val_frac, S)
    batches = Batches(train_ids, B, S)

    if ck is None:
        rng = np.random.default_rng(args.seed)
        params = model.init_params(model.cfg, len(vocab), rng, dtype)
        opt = Adagrad(params, args.lr)
        state = model.init_state(model.cfg, params, B)
        it = 0
    else:
        rng = np.random.default_rng()
        rng.bit_generator.state = ck["info"]["rng"]
        params = {k: v.astype(dtype) for k, v in ck["param"].items()}
        opt = Adagrad(params, args.lr)
        opt.mem = {k: v.astype(dtype) for k, v in ck["adagrad"].items()}
        state = {k: v.astype(dtype) for k, v in ck["state"].items()}
        it = ck["info"]["iter"]
        batches.cursors[:] = ck["cursors"]
        print(f"resumed {args.load} at iter {it}")

    def check_finite(what, at):
        """Stop, keeping the last good checkpoint, once the model has diverged."""
        if not math.isfinite(what) or not all(np.isfinite(v).all() for v in params.values()):
            kept = f"; the last good checkpoint is kept in {args.save}" if args.save and os.path.exists(args.save) else ""
            raise UserError(f"loss became non-finite at iter {at} (try a lower --lr or a --clip){kept}")

    def save():
        if args.save:
            check_finite(val if val is not None else 0.0, it)  # never overwrite a good checkpoint with NaN
            save_checkpoint(args.save, model, params, opt, vocab, {"iter": it}, state, batches.cursors, rng)

    print(f"{model.KIND}: {len(vocab)} symbols, {len(train_ids)} train / {len(val_ids)} val chars, "
          f"{sum(v.size for v in params.values())} parameters, cfg {model.cfg}")
    progress = Progress()
    start_it, val = it, None
    interrupted = []  # Ctrl-C only raises a flag: the iteration under way finishes whole
    old_handler = signal.signal(signal.SIGINT, lambda signum, frame: interrupted.append(signum))
    try:
        while not interrupted:
            if (args.iters and it - start_it >= args.iters) or (args.time and progress.elapsed() >= args.time):
                break
            inputs, targets, reset = batches.next()
            reset_rows(state, reset)
            loss, grads, new_state = loss_and_grads(model, params, inputs, targets, state)
            if not math.isfinite(loss):
                check_finite(loss, it + 1)
            clip_global_norm(grads, args.clip)
            opt.step(params, grads)
            state = new_state
            it += 1
            progress.add(loss, B * S)
            if it % args.report == 0:
                val = evaluate(model, params, val_ids, B, S) if len(val_ids) > 1 else None
                print(progress.line(it, val), flush=True)
                check_finite(val if val is not None else 0.0, it)
                if it % (10 * args.report) == 0:
                    print("----\n" + sample(model, params, vocab, 200, 1.0, "", rng) + "\n----", flush=True)
                save()
        if interrupted:
            save()
            print(f"interrupted at iter {it}" + (f"; saved {args.save}" if args.save else ""), file=sys.stderr)
            return 130
        if progress.window_iters or val is None:
            val = evaluate(model, params, val_ids, B, S) if len(val_ids) > 1 else None
        save()
    finally:
        signal.signal(signal.SIGINT, old_handler)
    val_text = f"{bpc(val):.4f}" if val is not None else "n/a"
    print(f"done: iter {it}, train {progress.recent_bpc():.4f} BPC, val {val_text} BPC, "
          f"{progress.chars / max(progress.elapsed(), 1e-9):.2f} char/s")
    return 0

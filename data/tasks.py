"""The memory tasks of the NTM and DNC papers, as token sequences for the models here.

    copy         x1..xL, a delimiter; answer x1..xL              (Graves et al. 2014, NTM)
    repeat-copy  x1..xL, "repeat k times"; answer x1..xL k times, then an end mark (deepmind/dnc)
    recall       items, then one of them; answer the item that followed it (NTM, associative recall)
    add          two binary numbers, least significant bit first; answer their sum  (iamtrask)

Why tokens: every model here reads one integer token per step (a row gather) and outputs
a softmax over the same V tokens. Encoding each step's input vector as ONE token keeps the
models and their loss unchanged; the only addition is a mask, so that the cross-entropy
counts the answer steps alone. A b-bit vector is token 0..2^b-1, the integer whose binary
digits are the bits: column j of the vector is bit j of the integer (column 0 = least
significant). The markers (delimiter, repeat counts, end, item, query) are the tokens after
those, and the last token is the blank, read when there is nothing to read. (add has its
own four tokens, 2*a_bit + b_bit.) A softmax over 2^b tokens predicts the b bits jointly
rather than one sigmoid each as in the papers; the price is V = 2^b + a few, hence
--bits <= 10.

    task = make_task("copy", bits=6, max_length=10)
    inputs, targets, mask = task.episodes(rng, B)     # (T, B) int64, (T, B) int64, (T, B) bool
    # loss: softmax cross-entropy of the logits against targets, where mask only

Shapes: T time steps of the longest episode in the batch, B episodes, C input channels.
"""
import re

import numpy as np

MAX_BITS = 10

# the option a user types for each setting, so that messages speak the user's language
OPTION = {"bits": "--bits", "min_length": "--length", "max_length": "--length",
          "min_repeats": "--repeats", "max_repeats": "--repeats", "item_length": "--item-length"}


class TaskError(ValueError):
    """bad task settings; str(e) is one line for the user"""


def span(lo, hi):
    """'3' or '1-10', the way a range is typed."""
    return f"{lo}" if lo == hi else f"{lo}-{hi}"


def parse_range(s, option=None):
    """'3' -> (3, 3), '1-10' -> (1, 10); both ends >= 1 and lo <= hi, else TaskError.
    option (e.g. '--length') only names the option in the message."""
    what = f"{option} {s}" if option else f"range {s!r}"
    m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", str(s))
    if not m:
        raise TaskError(f"{what}: expected a number like 3 or a range like 1-10")
    lo = int(m.group(1))
    hi = int(m.group(2)) if m.group(2) else lo
    if lo < 1:
        raise TaskError(f"{what}: the minimum must be at least 1")
    if lo > hi:
        raise TaskError(f"{what}: the minimum is above the maximum")
    return lo, hi


def check_range(option, lo, hi, least=1, most=None, why=""):
    """TaskError unless least <= lo <= hi (<= most)."""
    if lo < least:
        raise TaskError(f"{option} {span(lo, hi)}: the minimum must be at least {least}{why}")
    if lo > hi:
        raise TaskError(f"{option} {span(lo, hi)}: the minimum is above the maximum")
    if most is not None and hi > most:
        raise TaskError(f"{option} {span(lo, hi)}: the maximum must be at most {most}{why}")


def as_int(key, v):
    """A setting as a plain int (JSON-able); bools, floats and strings are refused."""
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
        raise TaskError(f"{OPTION.get(key, key)} must be a whole number, got {v!r}")
    return int(v)


class Task:
    """One memory task. Subclasses set name, DEFAULTS, model_defaults, and in _layout()
    self.bits and self.markers; then tokens are: data 0..2^bits-1, one per marker in
    order, blank last. They build their episodes in _build()."""
    name = ""
    DEFAULTS = {}  # setting -> default, the settings the task takes
    model_defaults = {}  # model sizes of the task's reference setting ({}: the script's own)
    LEAST, MOST = 1, None  # the shortest (longest, None: no limit) episode length it can make

    def __init__(self, **settings):
        unknown = sorted(set(settings) - set(self.DEFAULTS))
        if unknown:
            takes = sorted({OPTION.get(k, k) for k in self.DEFAULTS})
            raise TaskError(f"task {self.name} does not take "
                            f"{', '.join(OPTION.get(k, k) for k in unknown)} "
                            f"(its options: {', '.join(takes)})")
        self.settings = {k: as_int(k, settings.get(k, v)) for k, v in self.DEFAULTS.items()}
        for k, v in self.settings.items():
            setattr(self, k, v)
        self._check()
        self._layout()
        self.marker = {m: 2 ** self.bits + i for i, m in enumerate(self.markers)}  # name -> token
        self.blank = 2 ** self.bits + len(self.markers)
        self.V = self.blank + 1
        self.input_labels = [f"bit{j}" for j in range(self.bits)] + list(self.markers)

    def __eq__(self, other):
        return isinstance(other, Task) and (self.name, self.settings) == (other.name, other.settings)

    def __repr__(self):
        return f"make_task({self.name!r}, {', '.join(f'{k}={v}' for k, v in self.settings.items())})"

    def _check_bits(self):
        if not 1 <= self.bits <= MAX_BITS:
            raise TaskError(f"--bits must be 1 to {MAX_BITS} (2^bits tokens), got {self.bits}")

    def _lengths(self, rng, B, length):
        """(B,) int64: each episode's length, drawn from [min_length, max_length] or all `length`."""
        if length is None:
            return rng.integers(self.min_length, self.max_length + 1, size=B)
        length = as_int("length", length)
        if length < self.LEAST or (self.MOST and length > self.MOST):
            most = f", at most {self.MOST}" if self.MOST else ""
            raise TaskError(f"{self.name}: an episode length of {length} is out of range "
                            f"(at least {self.LEAST}{most})")
        return np.full(B, length, dtype=np.int64)

    def episodes(self, rng, B, length=None):
        """B independent episodes -> inputs (T, B) int64, targets (T, B) int64, mask (T, B) bool.

        length None: each episode draws its own length from [min_length, max_length]
        (and its repeats likewise, where the task has them); length an int: every
        episode has exactly that length. Rows are padded at the end to T = the longest
        episode; padded steps read self.blank, target 0, mask False. mask is True
        exactly on the answer steps.
        """
        inputs, targets, mask = self._build(rng, self._lengths(rng, B, length))
        return inputs.astype(np.int64), np.where(mask, targets, 0).astype(np.int64), mask

    def token_bits(self, tokens):
        """tokens (...) int -> (..., out_bits) int8: the answer vector each token stands for;
        -1 in every column for a token that is no answer (markers, blank), so that a
        prediction of such a token counts every bit wrong."""
        tokens = np.asarray(tokens)
        bits = (tokens[..., None] >> np.arange(self.bits)) & 1  # (..., bits) LSB first
        return np.where((tokens < 2 ** self.bits)[..., None], bits, -1).astype(np.int8)

    @property
    def out_bits(self):
        return self.bits

    def input_channels(self, tokens):
        """tokens (...) int -> (..., C) float32: the input as the papers draw it, the data
        bits then one 0/1 channel per marker (names in self.input_labels); blank is all 0."""
        tokens = np.asarray(tokens)
        data = (tokens < 2 ** self.bits)[..., None]
        bits = np.where(data, (tokens[..., None] >> np.arange(self.bits)) & 1, 0)  # (..., bits)
        marks = tokens[..., None] == np.array(list(self.marker.values()), dtype=np.int64)  # (..., M)
        return np.concatenate([bits, marks], axis=-1).astype(np.float32)


class Copy(Task):
    """x1..xL, DELIM, then L blanks while the answer is x1..xL.  T = 2L + 1."""
    name = "copy"
    DEFAULTS = {"bits": 6, "min_length": 1, "max_length": 10}

    def _check(self):
        self._check_bits()
        check_range("--length", self.min_length, self.max_length)

    def _layout(self):
        self.markers = ["delim"]

    def _build(self, rng, L):
        """L (B,) -> inputs, targets, mask (T, B)."""
        B, n = L.size, L.max()
        t = np.arange(2 * n + 1)[:, None]  # (T, 1)
        x = rng.integers(0, 2 ** self.bits, size=(n, B))  # (n, B) the vectors, L of them used
        src = np.clip(np.where(t < L, t, t - L - 1), 0, n - 1)  # (T, B) which x a step reads or answers
        xt = np.take_along_axis(x, src, axis=0)  # (T, B)
        inputs = np.where(t < L, xt, np.where(t == L, self.marker["delim"], self.blank))
        mask = (t > L) & (t <= 2 * L)
        return inputs, xt, mask

    def slots_needed(self, length):
        return length

    def describe(self):
        return f"copy: {self.bits}-bit vectors, length {span(self.min_length, self.max_length)}"


class RepeatCopy(Task):
    """x1..xL, REPEAT_k, then blanks while the answer is x1..xL k times, then END.
    T = (k + 1) L + 2. The answer vectors have one more column, deepmind's end channel."""
    name = "repeat-copy"
    DEFAULTS = {"bits": 4, "min_length": 1, "max_length": 2, "min_repeats": 1, "max_repeats": 2}
    model_defaults = {"hidden": 64, "memory": 16, "width": 16, "reads": 4, "batch": 16}

    def _check(self):
        self._check_bits()
        check_range("--length", self.min_length, self.max_length)
        check_range("--repeats", self.min_repeats, self.max_repeats)

    def _layout(self):
        self.markers = [f"repeat{k}" for k in range(1, self.max_repeats + 1)] + ["end"]

    def _build(self, rng, L):
        B, n = L.size, L.max()
        k = rng.integers(self.min_repeats, self.max_repeats + 1, size=B)  # (B,)
        stop = L + k * L + 1  # (B,) the END step
        t = np.arange(stop.max() + 1)[:, None]  # (T, 1)
        x = rng.integers(0, 2 ** self.bits, size=(n, B))
        src = np.where(t < L, t, (t - L - 1) % L)  # (T, B) which x a step reads or answers
        xt = np.take_along_axis(x, np.clip(src, 0, n - 1), axis=0)
        repeat = self.marker["repeat1"] - 1 + k  # (B,) the token "repeat k times"
        inputs = np.where(t < L, xt, np.where(t == L, repeat, self.blank))
        targets = np.where(t == stop, self.marker["end"], xt)
        mask = (t > L) & (t <= stop)
        return inputs, targets, mask

    @property
    def out_bits(self):
        return self.bits + 1

    def token_bits(self, tokens):
        """data -> its bits + [0], END -> zeros + [1], anything else -> -1."""
        tokens = np.asarray(tokens)
        out = np.concatenate([super().token_bits(tokens),
                              np.where(tokens < 2 ** self.bits, 0, -1)[..., None]], axis=-1)
        out[tokens == self.marker["end"]] = [0] * self.bits + [1]
        return out.astype(np.int8)

    def slots_needed(self, length):
        return length

    def describe(self):
        return (f"repeat-copy: {self.bits}-bit vectors, length {span(self.min_length, self.max_length)}, "
                f"repeats {span(self.min_repeats, self.max_repeats)}")


class Recall(Task):
    """For each of n items: ITEM, its item_length vectors; then QUERY, a copy of item q
    (q < n - 1), QUERY; then blanks while the answer is item q + 1.
    T = n (item_length + 1) + 2 item_length + 2. Here the length is the number of items.
    The queried item is drawn unique among the episode's items, so the answer is never
    ambiguous."""
    name = "recall"
    DEFAULTS = {"bits": 6, "min_length": 2, "max_length": 6, "item_length": 3}
    LEAST = 2

    def _check(self):
        self._check_bits()
        check_range("--length", self.min_length, self.max_length, least=2,
                    why=" items (the queried item is never the last)")
        if self.item_length < 1:
            raise TaskError(f"--item-length must be at least 1, got {self.item_length}")
        kinds = 2 ** (self.bits * self.item_length)  # different items there are
        if kinds < self.max_length:  # then a row is redrawn less than 1 - 1/e of the time
            raise TaskError(f"--bits {self.bits} with --item-length {self.item_length} makes only "
                            f"{kinds} different items, fewer than the {self.max_length} items")

    def _layout(self):
        self.markers = ["item", "query"]

    def _items(self, rng, n):
        """n (B,) -> x (B, max n, item_length), q (B,): the items and the queried one,
        redrawn until item q appears only once among the row's n items."""
        B, shape = n.size, (n.size, n.max(), self.item_length)
        x = rng.integers(0, 2 ** self.bits, size=shape)
        q = rng.integers(0, n - 1)  # (B,) never the last item
        used = np.arange(shape[1]) < n[:, None]  # (B, max n)
        while True:
            same = (x == x[np.arange(B), q][:, None]).all(axis=2) & used  # (B, max n)
            bad = same.sum(axis=1) > 1
            if not bad.any():
                return x, q
            x[bad] = rng.integers(0, 2 ** self.bits, size=(bad.sum(),) + shape[1:])

    def _build(self, rng, n):
        m = self.item_length
        x, q = self._items(rng, n)
        end = n * (m + 1)  # (B,) where the query starts
        t = np.arange(end.max() + 2 * m + 2)[:, None]  # (T, 1)
        u = t - end  # (T, B) step within the query and answer
        i = np.where(u < 0, t // (m + 1), np.where(u <= m + 1, q, q + 1))  # (T, B) item read or answered
        j = np.where(u < 0, t % (m + 1) - 1, np.where(u <= m + 1, u - 1, u - m - 2))  # vector in it
        xt = x[np.arange(x.shape[0]), np.clip(i, 0, x.shape[1] - 1), np.clip(j, 0, m - 1)]  # (T, B)
        marker = (u == 0) | (u == m + 1)
        inputs = np.where(u < 0, np.where(j < 0, self.marker["item"], xt),
                          np.where(marker, self.marker["query"], np.where(u <= m, xt, self.blank)))
        mask = (u >= m + 2) & (u < 2 * m + 2)
        return inputs, xt, mask

    def slots_needed(self, length):
        return length * self.item_length

    def describe(self):
        return (f"recall: {self.bits}-bit vectors, {span(self.min_length, self.max_length)} items "
                f"(--length) of {self.item_length} vectors each")


class Add(Task):
    """Two numbers a, b < 2^(L-1), fed least significant bit first, one pair a step as
    token 2*a_bit + b_bit; the target at every step is that bit of a + b.  T = L."""
    name = "add"
    DEFAULTS = {"min_length": 8, "max_length": 8}
    model_defaults = {"hidden": 16}
    LEAST, MOST = 2, 62

    def _check(self):
        check_range("--length", self.min_length, self.max_length, least=self.LEAST,
                    most=self.MOST, why=" bits per number")

    def _layout(self):
        self.bits, self.markers = 2, []  # the input is two bits, tokens 0..3

    def __init__(self, **settings):
        super().__init__(**settings)
        self.V, self.blank = 4, 0  # no blank token of its own: padding reads "both bits 0"
        self.input_labels = ["a", "b"]

    def _build(self, rng, L):
        t = np.arange(L.max())[:, None]  # (T, 1)
        a = rng.integers(0, 1 << (L - 1))  # (B,) each < 2^(L-1), so a + b < 2^L fits L bits
        b = rng.integers(0, 1 << (L - 1))
        mask = t < L
        inputs = np.where(mask, 2 * ((a >> t) & 1) + ((b >> t) & 1), self.blank)
        return inputs, ((a + b) >> t) & 1, mask

    @property
    def out_bits(self):
        return 1

    def token_bits(self, tokens):
        """0 -> [0], 1 -> [1]; the inputs 2 and 3 are no answer -> [-1]."""
        tokens = np.asarray(tokens)
        return np.where(tokens < 2, tokens, -1)[..., None].astype(np.int8)

    def input_channels(self, tokens):
        """tokens (...) -> (..., 2) float32: the bits of a and b."""
        tokens = np.asarray(tokens)
        return np.stack([(tokens >> 1) & 1, tokens & 1], axis=-1).astype(np.float32)

    def slots_needed(self, length):
        return 0

    def describe(self):
        return (f"add: two numbers of {span(self.min_length, self.max_length)} bits (--length), "
                f"least significant bit first")


TASKS = {"copy": Copy, "repeat-copy": RepeatCopy, "recall": Recall, "add": Add}


def make_task(name, **settings):
    """The task called name; settings not given (or None) take the task's defaults."""
    if name not in TASKS:
        raise TaskError(f"unknown task {name!r}; known: {', '.join(TASKS)}")
    return TASKS[name](**{k: v for k, v in settings.items() if v is not None})

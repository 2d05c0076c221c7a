"""The memory tasks of the NTM and DNC papers, in the papers' bit form or as tokens.

    copy         x1..xL, a delimiter; answer x1..xL              (Graves et al. 2014, NTM)
    repeat-copy  x1..xL, "repeat k times"; answer x1..xL k times, then an end mark (deepmind/dnc)
    recall       items, then one of them; answer the item that followed it (NTM, associative recall)
    add          two binary numbers, least significant bit first; answer their sum  (iamtrask)
    series-copy  K copy episodes back to back, each answered right after its delimiter (DNC, Extended Data Fig. 1)

Every generator builds an episode as one integer a step: a b-bit vector is the integer
0..2^b-1 whose binary digits are its bits (column j of the vector is bit j, column 0 the
least significant), the markers (delimiter, repeat counts, end, item, query) are the
integers after those, and the last is the blank, read when there is nothing to read.
(add has its own four, 2*a_bit + b_bit.) A mask marks the answer steps, the only ones a
loss scores. The episode then takes one of two forms (--io), the same draws in both:

    bits    (the default, the papers') each step's input is a float row of C channels:
            the b bits, then the task's flag channels (copy: delimiter; repeat-copy:
            delimiter and the repeat count k / max k; recall: item and query markers;
            add: the bits of a and b); blank is all 0. The output is one sigmoid per
            answer channel (the b bits; repeat-copy adds deepmind's end channel; add
            has one, the sum's bit), scored by the bit-wise sigmoid cross-entropy summed
            over channels and answer steps, per episode, as deepmind/dnc's loss. The
            models read the rows through a product x Wx. Any --bits up to 62.
    tokens  each step's input is ONE token, its integer, read by a row gather, and the
            output a softmax over the same V = 2^b + a few tokens, which predicts the b
            bits jointly; the loss is the softmax cross-entropy per answer step. V grows
            as 2^b, hence --bits <= 10 in this form.

    task = make_task("copy", bits=6, max_length=10)               # io="bits"
    inputs, targets, mask = task.episodes(rng, B)  # (T, B, C) float32, (T, B, K) float32, (T, B) bool
    task = make_task("copy", io="tokens", bits=6, max_length=10)
    inputs, targets, mask = task.episodes(rng, B)  # (T, B) int64, (T, B) int64, (T, B) bool

A model reads V_in = C channels (bits) or V tokens, and emits V_out = K channels (bits)
or V logits. Either way the measures are the papers': the wrong bits per episode of the
most likely answer (wrong_bits) and the share of episodes with none.

Shapes: T time steps of the longest episode in the batch, B episodes, C input channels,
K output channels (out_bits).
"""
import re

import numpy as np

IO_FORMS = ("bits", "tokens")  # --io: the papers' bit vectors (the default), or one token a step
# the most --bits: a vector is drawn as one int64 (2^62 and the markers fit), and the
# token form's softmax has V = 2^bits + a few outputs
MAX_BITS = {"bits": 62, "tokens": 10}

# the option a user types for each setting, so that messages speak the user's language
OPTION = {"bits": "--bits", "min_length": "--length", "max_length": "--length",
          "min_repeats": "--repeats", "max_repeats": "--repeats", "item_length": "--item-length",
          "min_item_length": "--item-length", "max_item_length": "--item-length"}


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
    """One memory task in one form (io: "bits" or "tokens"). Subclasses set name,
    DEFAULTS, model_defaults, and in _layout() self.bits and self.markers; then the
    integers of a step are: data 0..2^bits-1, one per marker in order, blank last. They
    build their episodes in _build(), as those integers."""
    name = ""
    DEFAULTS = {}  # setting -> default, the settings the task takes
    model_defaults = {}  # model sizes of the task's reference setting ({}: the script's own)
    LEAST, MOST = 1, None  # the shortest (longest, None: no limit) episode length it can make

    def __init__(self, io="bits", **settings):
        if io not in IO_FORMS:
            raise TaskError(f"--io must be bits or tokens, got {io!r}")
        self.io = io
        unknown = sorted(set(settings) - set(self.DEFAULTS))
        if unknown:
            takes = sorted({OPTION.get(k, k) for k in self.DEFAULTS})
            raise TaskError(f"task {self.name} does not take "
                            f"{', '.join(dict.fromkeys(OPTION.get(k, k) for k in unknown))} "
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
        return isinstance(other, Task) and ((self.name, self.io, self.settings)
                                            == (other.name, other.io, other.settings))

    def __repr__(self):
        return (f"make_task({self.name!r}, io={self.io!r}, "
                f"{', '.join(f'{k}={v}' for k, v in self.settings.items())})")

    def _check_bits(self):
        most = MAX_BITS[self.io]
        if not 1 <= self.bits <= most:
            why = (" with --io tokens (a softmax over 2^bits tokens; --io bits takes up to "
                   f"{MAX_BITS['bits']})" if self.io == "tokens" else "")
            raise TaskError(f"--bits must be 1 to {most}{why}, got {self.bits}")

    @property
    def V_in(self):
        """The width of a step's input: C channels (bits), or V tokens (tokens)."""
        return len(self.input_labels) if self.io == "bits" else self.V

    @property
    def V_out(self):
        """The width of a step's output: K = out_bits sigmoids (bits), or a softmax over V tokens."""
        return self.out_bits if self.io == "bits" else self.V

    @property
    def chance_bits(self):
        """Bits per answer step that a model knowing nothing pays: one per sigmoid at 1/2
        (bits), log2 V for a uniform softmax (tokens)."""
        return float(self.out_bits) if self.io == "bits" else float(np.log2(self.V))

    def _lengths(self, rng, B, length):
        """(B,) int64: each episode's length, drawn from [min_length, max_length]; or all
        `length`; or, given B of them (a curriculum's lesson), one each."""
        if length is None:
            return rng.integers(self.min_length, self.max_length + 1, size=B)
        if np.ndim(length) == 0:
            lengths = np.full(B, as_int("length", length), dtype=np.int64)
        else:
            lengths = np.asarray(length)
            if lengths.shape != (B,) or not np.issubdtype(lengths.dtype, np.integer):
                raise TaskError(f"{self.name}: expected {B} whole-number lengths, got {lengths!r}")
        for L in (lengths.min(), lengths.max()):
            if L < self.LEAST or (self.MOST and L > self.MOST):
                most = f", at most {self.MOST}" if self.MOST else ""
                raise TaskError(f"{self.name}: an episode length of {L} is out of range "
                                f"(at least {self.LEAST}{most})")
        return lengths.astype(np.int64)

    def episodes(self, rng, B, length=None):
        """B independent episodes -> inputs, targets, mask (T, B) bool, in the task's form:

            bits    inputs (T, B, C) float32 (input_channels), targets (T, B, K) float32 0/1
            tokens  inputs (T, B) int64, targets (T, B) int64

        length None: each episode draws its own length from [min_length, max_length]
        (and its repeats likewise, where the task has them); length an int: every
        episode has exactly that length; a (B,) array of ints: episode b has length[b]
        (its repeats still drawn). Rows are padded at the end to T = the longest
        episode; padded steps read the blank (all channels 0), target 0, mask False.
        mask is True exactly on the answer steps. Both forms draw the same numbers from
        rng, so the same seed gives the same episodes in either.
        """
        inputs, targets, mask = self._build(rng, self._lengths(rng, B, length))  # (T, B) integers
        targets = np.where(mask, targets, 0)
        if self.io == "tokens":
            return inputs.astype(np.int64), targets.astype(np.int64), mask
        return self.input_channels(inputs), self.token_bits(targets).astype(np.float32), mask

    def wrong_bits(self, logits, targets):
        """logits (T, B, V_out), targets as episodes() gives them -> (T, B) int: how many
        bits of each step's most likely answer differ from the target's; the caller keeps
        the answer steps (mask). bits: a bit is wrong when sigmoid(logit) >= 1/2, i.e.
        logit >= 0, disagrees with it; tokens: the argmax token's bits against the
        target's (token_bits: a token that is no answer has every bit wrong)."""
        if self.io == "bits":
            return ((logits >= 0) != (targets == 1)).sum(-1)
        return (self.token_bits(logits.argmax(-1)) != self.token_bits(targets)).sum(-1)

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
        """tokens (...) int -> (..., C) float32: the input in the bit form, as the papers
        draw it: the data bits then one 0/1 flag channel per marker (names in
        self.input_labels); blank is all 0."""
        tokens = np.asarray(tokens)
        marks = tokens[..., None] == np.array(list(self.marker.values()), dtype=np.int64)  # (..., M)
        return np.concatenate([self.data_bits(tokens), marks], axis=-1).astype(np.float32)

    def data_bits(self, tokens):
        """tokens (...) int -> (..., bits) int64: a data token's bits, LSB first; 0 for the rest."""
        tokens = np.asarray(tokens)
        data = (tokens < 2 ** self.bits)[..., None]
        return np.where(data, (tokens[..., None] >> np.arange(self.bits)) & 1, 0)


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

    def __init__(self, **settings):
        super().__init__(**settings)
        self.input_labels = [f"bit{j}" for j in range(self.bits)] + ["delim", "repeats"]

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

    def input_channels(self, tokens):
        """tokens (...) int -> (..., bits + 2) float32: the data bits, a delimiter flag and
        deepmind's repeat-count channel, k / max_repeats in (0, 1], both on the step
        REPEAT_k alone (END is never read: all 0, as blank)."""
        tokens = np.asarray(tokens)
        k = tokens - (self.marker["repeat1"] - 1)  # the repeat count, where a REPEAT_k is read
        repeat = (k >= 1) & (k <= self.max_repeats)
        flags = np.stack([repeat, np.where(repeat, k / self.max_repeats, 0)], axis=-1)  # (..., 2)
        return np.concatenate([self.data_bits(tokens), flags], axis=-1).astype(np.float32)

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


class SeriesCopy(Task):
    """K sequences back to back, each as a copy episode: x1..xl, DELIM, then l blanks while
    the answer is x1..xl; sequence k + 1 starts right after the answer of sequence k. Each
    sequence draws its own l from --item-length. T = sum_k (2 l_k + 1). Here the length is
    the number of sequences K. The DNC paper's setting (Extended Data Fig. 1) is 10 sequences
    of 1-5 vectors with 10 memory slots: fewer than the vectors of an episode, so that the
    model has to free what it has read and write there again."""
    name = "series-copy"
    DEFAULTS = {"bits": 6, "min_length": 10, "max_length": 10, "min_item_length": 1, "max_item_length": 5}
    model_defaults = {"memory": 10}

    def _check(self):
        self._check_bits()
        check_range("--length", self.min_length, self.max_length, why=" sequences")
        check_range("--item-length", self.min_item_length, self.max_item_length, why=" vectors per sequence")

    def _layout(self):
        self.markers = ["delim"]

    def _build(self, rng, K):
        """K (B,) sequences per episode -> inputs, targets, mask (T, B)."""
        B, n, most = K.size, K.max(), self.max_item_length
        lengths = rng.integers(self.min_item_length, most + 1, size=(B, n))  # (B, n) l of each sequence
        lengths = np.where(np.arange(n) < K[:, None], lengths, 0)  # sequences past K[b] have none
        x = rng.integers(0, 2 ** self.bits, size=(B, n, most))  # the vectors, l of each sequence's used
        ends = np.cumsum(2 * lengths + 1, axis=1)  # (B, n) where each sequence's block ends
        ends = np.where(lengths > 0, ends, ends[np.arange(B), K - 1][:, None])  # past K[b]: the episode's end
        starts = ends - np.where(lengths > 0, 2 * lengths + 1, 0)  # (B, n)
        T = ends[:, -1].max()
        t = np.arange(T)[:, None]  # (T, 1)
        k = np.minimum((t[:, :, None] >= ends[None]).sum(-1), n - 1)  # (T, B) the block a step is in
        rows = np.arange(B)[None, :]
        l, o = lengths[rows, k], t - starts[rows, k]  # (T, B) its sequence's length, the step within it
        inside = t < ends[:, -1]  # (T, B) not padding
        src = np.clip(np.where(o < l, o, o - l - 1), 0, most - 1)  # which vector a step reads or answers
        xt = x[rows, k, src]  # (T, B)
        inputs = np.where(inside & (o < l), xt, np.where(inside & (o == l), self.marker["delim"], self.blank))
        mask = inside & (o > l)
        return inputs, xt, mask

    def slots_needed(self, length):
        return self.max_item_length  # a sequence at a time, if the model frees what it has copied

    def describe(self):
        return (f"series-copy: {self.bits}-bit vectors, {span(self.min_length, self.max_length)} sequences "
                f"(--length) of {span(self.min_item_length, self.max_item_length)} vectors each (--item-length)")


TASKS = {"copy": Copy, "repeat-copy": RepeatCopy, "recall": Recall, "add": Add, "series-copy": SeriesCopy}


def make_task(name, io="bits", **settings):
    """The task called name, in the form io ("bits" or "tokens"); settings not given (or
    None) take the task's defaults."""
    if name not in TASKS:
        raise TaskError(f"unknown task {name!r}; known: {', '.join(TASKS)}")
    return TASKS[name](io=io, **{k: v for k, v in settings.items() if v is not None})

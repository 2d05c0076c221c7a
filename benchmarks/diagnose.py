"""Why does a DNC trained on short copies fail on long ones? The memory at every step of
fresh episodes, read off the forward's cache, as plain-text tables.

    python benchmarks/diagnose.py                       # checkpoints/dnc-copy.npz, twice its longest length
    python benchmarks/diagnose.py --load copy.npz --length 40 --memory 48 --episodes 100

It loads a checkpoint of dnc-numpy.py trained on copy or repeat-copy (either controller,
either --io), draws E fresh episodes of length L, runs the forward in float64 from a zero
state at N memory slots (--memory: the checkpoint's unless given, as --eval-lengths
takes it; N is no parameter size) and prints:

 1. errors by answer position: at each position i of the answer, the share of episodes
    whose output there has a wrong bit and the mean wrong bits; where the first wrong
    position falls, with its quartiles;
 2. the memory by step, averaged over the episodes, in the input, delimiter and answer
    phases: the write head (w^w's mass and peak, the write gate g^w, the allocation gate
    g^a, the usage u), then each read head that reads (w^r's mass and peak, its read
    modes pi, the forward weighting f = L w^r_{t-1}, and its alignment: does the read
    at answer position i peak on the slot input i was written to?), then the links the
    answer follows (from input i-1's slot to input i's: as made, and when followed);
 3. a verdict: for each measure, its value at the answer positions training saw, the
    first position from which it is past a threshold, its value at the wrong outputs
    against the right ones, and the earliest departure.

The candidates each measure speaks for (docs/dnc.md §4 has the equations):
    f's mass sum_n f_n falls         the read loses mass along the chain of links: each step
                                     carries a share of the previous read (the carry,
                                     f's mass / w^r_{t-1}'s), and below 1 it compounds
    f's peak max_n f_n falls         the forward weighting blurs over several slots
    the links followed are weak      made weak (the input's writes not sharp, table 2c) or
                                     eroded since: L_t[i, j] = (1 - w_i - w_j) L_{t-1}[i, j] + w_i p_{t-1}[j]
    w^w's mass in the answer rises   writes during the answer, which erode the links of their slots
    pi's content share rises, or     the head trades the links for content lookups, which
    w^r's peak falls                 blur as N grows
    pi's forward share falls at the  the controller counting steps rather than following
    same position at every N         the links
Every per-step value comes from the forward's cache: the squashed interface
(InterfaceCache: gates and modes), the state each step leaves (w^w, w^r, u, L: the next
step's StepCache.state, the forward's last state for the last step) and the read
weighting's candidates (MemoryCache.read_weighting: b, c, f), the blocks of batch rows
of memory_forward joined in row order as discrete_choices does. Bad input is one line
on stderr, exit 2.
"""
import argparse
import os
import sys
from typing import NamedTuple

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
import common  # noqa: E402  (the project's shared module, one folder up)
import train  # noqa: E402  (make_task and eval_cfg: the task and the cfg at another N, as --eval-lengths builds them)

dnc = common.load_script("dnc-numpy.py")

TASKS = ("copy", "repeat-copy")  # an answer that reproduces the inputs in order, so alignment is defined
INPUT, DELIM, ANSWER, PAD = 0, 1, 2, -1  # the phases of a step
CACHE_FLOATS = 2 ** 25  # about how many floats (256 MiB) one batch's forward cache may hold
READS_FLOOR = 0.25  # a read head whose w^r mass in the answer stays below this reads (almost) nothing
RUN = 3  # a measure departs where it is past its threshold at this many positions in a row

# the verdict's measures: (label, Trace field, head's (True) or write head's, bad when
# below ("<") or above (">") the threshold, what a departure suggests)
CHECKS = (
    ("forward mass sum f", "fwd_mass", True, "<", 0.9,
     "the read loses mass along the chain of links (the carry a step, compounding; table 2c: made weak or eroded)"),
    ("carry f / w^r_{t-1}", "carry", True, "<", 0.99, "the links carry less of the previous read a step"),
    ("forward peak max f", "fwd_peak", True, "<", 0.5, "the forward weighting blurs over several slots"),
    ("forward mode pi_f", "forward", True, "<", 0.5, "the head stops following the links"),
    ("content mode pi_c", "content", True, ">", 0.5, "the head reads by content lookup instead of the links"),
    ("read peak max w^r", "read_peak", True, "<", 0.5, "the read weighting spreads over several slots"),
    ("aligned", "aligned", True, "<", 0.5, "the read peaks on a slot input i was not written to"),
    ("write mass sum w^w", "write_mass", False, ">", 0.1,
     "the write head writes during the answer, eroding the links of the slots it writes"),
    ("input i's w^w peak", "input_write_peak", False, "<", 0.5,
     "the write of the input that the position reproduces spread over several slots"),
    ("link followed", "link_followed", False, "<", 0.9,
     "the link from input i-1's slot to input i's is weak when the read follows it (table 2c: made so, or eroded)"),
)


# ----------------------------------------------------------------------------------
# The model and the episodes


def load(path):
    """A DNC checkpoint of a copy or repeat-copy task -> the checkpoint, its task (with the
    settings it was trained on: task.max_length is the longest length it saw); UserError
    for anything else."""
    ck = common.load_checkpoint(path, dnc.KIND)
    saved = ck["info"].get("task")
    if not saved:
        raise common.UserError(f"{path} was trained on a text; diagnose.py reads a copy or repeat-copy model")
    if saved["name"] not in TASKS:
        raise common.UserError(f"{path} was trained on {saved['name']}; diagnose.py reads {' and '.join(TASKS)}")
    return ck, train.make_task(saved["name"], saved["settings"], saved.get("io", "tokens"))  # before --io: tokens


def model_at(ck, task, length, memory=None):
    """The checkpoint's model for episodes of `length` at N = memory slots (None: its own)
    -> cfg, float64 params (the best), as --eval-lengths builds them (train.eval_cfg: a
    UserError for a length the task or the memory cannot have)."""
    asked = argparse.Namespace(memory=memory, given={"memory"} if memory else set())  # as --memory N gives it
    cfg = train.eval_cfg(dnc, asked, ck, task, length)
    return cfg, {k: v.astype(np.float64) for k, v in ck["best"].items()}


def draw_episodes(task, rng, episodes, length, rows):
    """Fresh episodes of one length, drawn at once (so that a seed gives the same episodes
    whatever the rows), in batches of at most rows -> [(inputs, targets, mask), ...]"""
    drawn = task.episodes(rng, episodes, length=length)  # the batch is axis 1 of each array
    return [tuple(a[:, i:i + rows] for a in drawn) for i in range(0, episodes, rows)]


def rows_per_batch(task, cfg, episodes, length):
    """How many episodes one forward runs, so that its cache (dominated by each step's
    (B, N, N) link matrix, a few times over) holds about CACHE_FLOATS floats."""
    T = (task.max_repeats + 1) * length + 2 if task.name == "repeat-copy" else 2 * length + 1  # the longest episode
    return max(1, min(episodes, CACHE_FLOATS // (3 * T * cfg["memory"] ** 2)))


# ----------------------------------------------------------------------------------
# The forward, and what it did at every step


class Trace(NamedTuple):
    """What the DNC did at every step t of every episode e, in the paper's terms; float
    fields are NaN (ints -1) on the steps after an episode's end (repeat-copy's shorter
    episodes in a batch) and, for the answer's measures, on the other steps. R read heads."""
    length: int  # L, the input steps (t = 0 .. L-1); the delimiter at t = L, the answer from L+1
    phase: np.ndarray  # (T, E) INPUT, DELIM, ANSWER or PAD
    source: np.ndarray  # (T, E) answer steps: the input step whose vector the step reproduces (answer_source)
    wrong: np.ndarray  # (T, E) wrong bits of the output at an answer step (0 elsewhere)
    # the write head
    write_mass: np.ndarray  # (T, E) sum_n w^w_t[n], at most g^w_t: how much the step writes
    write_peak: np.ndarray  # (T, E) max_n w^w_t[n]: 1 for a write to one slot
    write_slot: np.ndarray  # (T, E) argmax_n w^w_t[n]
    write_gate: np.ndarray  # (T, E) g^w_t
    alloc_gate: np.ndarray  # (T, E) g^a_t: 1 writes where the allocation a_t says, 0 where the write key points
    usage: np.ndarray  # (T, E) sum_n u_t[n]: about how many slots are in use
    # each read head i
    read_mass: np.ndarray  # (T, E, R) sum_n w^{r,i}_t[n]
    read_peak: np.ndarray  # (T, E, R) max_n w^{r,i}_t[n]
    read_slot: np.ndarray  # (T, E, R) argmax_n w^{r,i}_t[n]
    backward: np.ndarray  # (T, E, R) pi^i_t[0], the share of the backward weighting b in the read
    content: np.ndarray  # (T, E, R) pi^i_t[1], the share of the content lookup c^{r,i}
    forward: np.ndarray  # (T, E, R) pi^i_t[2], the share of the forward weighting f
    fwd_mass: np.ndarray  # (T, E, R) sum_n f^i_t[n], f^i_t = L_t w^{r,i}_{t-1}: what the links carry of the last read
    fwd_peak: np.ndarray  # (T, E, R) max_n f^i_t[n]
    carry: np.ndarray  # (T, E, R) sum_n f^i_t[n] / sum_n w^{r,i}_{t-1}[n]: the share of the previous read the
    #                    links carry (NaN after a read of mass below 0.1, whose share says little)
    offset: np.ndarray  # (T, E, R) answer steps: (the input step whose write peaked on the read's peak slot) - source
    aligned: np.ndarray  # (T, E, R) answer steps: 1 where that offset is 0, else 0 (a slot no input wrote too)
    # the answer's input: with s_k the slot input step k wrote (its w^w's peak) and k = source
    input_write_peak: np.ndarray  # (T, E) max_n w^w at input step k
    link_made: np.ndarray  # (T, E) L[s_k, s_{k-1}] just after input step k made it (k >= 1)
    link_delim: np.ndarray  # (T, E) the same link after the delimiter step
    link_followed: np.ndarray  # (T, E) the same link in L_t, the one this step's f follows
    link_out: np.ndarray  # (T, E) sum_n L_t[n, s_{k-1}]: how much any forward step out of s_{k-1} carries


def trace(params, cfg, task, batches, length):
    """Run each batch of episodes (draw_episodes) through dnc-numpy's forward from a zero
    state and read every step's measures off its cache -> Trace, episodes in batch order."""
    parts = [trace_batch(params, cfg, task, batch, length) for batch in batches]
    T = max(p["phase"].shape[0] for p in parts)

    def joined(name):  # each batch padded to T steps (NaN, or -1 for the ints), episodes side by side
        blank = np.nan if parts[0][name].dtype.kind == "f" else -1
        return np.concatenate([np.pad(p[name], [(0, T - p[name].shape[0])] + [(0, 0)] * (p[name].ndim - 1),
                                      constant_values=blank) for p in parts], axis=1)

    a = {name: joined(name) for name in parts[0]}
    a["wrong"][a["phase"] == PAD] = 0
    return Trace(length=length, **a)


def trace_batch(params, cfg, task, batch, length):
    """One batch (inputs, targets, mask) -> dict of the Trace fields, (T, B, ...) arrays.

    Per step, from the forward's cache: the squashed interface (gates, modes); the state
    the step leaves (w^w_t, w^r_t, u_t, L_t), which is the next step's StepCache.state (the
    forward's last state for the last step); f^i_t from the read weighting's cache."""
    inputs, targets, mask = batch
    B = mask.shape[1]
    logits, last, cache = dnc.forward(params, inputs, dnc.init_state(cfg, params, B), cfg)
    leaves = [s.state for s in cache.steps[1:]] + [last]  # the state step t leaves
    seen = []
    for step, after in zip(cache.steps, leaves):
        interface = step.interface.parts  # the squashed interface vector
        ww, wr = after["ww"], after["wr"]  # w^w_t (B, N), w^{r,i}_t (B, R, N)
        # the forward weighting the read mixed: the read weighting's cache is (modes,
        # candidates (B, R, 3, N) = b, c, f), one per block of rows, in row order
        f = np.concatenate([block.cache.read_weighting[1][:, :, 2] for block in step.memory])  # (B, R, N)
        modes = interface["read_modes"]  # (B, R, 3) pi: backward, content, forward
        seen.append({"write_mass": ww.sum(-1), "write_peak": ww.max(-1), "write_slot": ww.argmax(-1),
                     "write_gate": interface["write_gate"][:, 0], "alloc_gate": interface["alloc_gate"][:, 0],
                     "usage": after["u"].sum(-1),
                     "read_mass": wr.sum(-1), "read_peak": wr.max(-1), "read_slot": wr.argmax(-1),
                     "backward": modes[..., 0], "content": modes[..., 1], "forward": modes[..., 2],
                     "fwd_mass": f.sum(-1), "fwd_peak": f.max(-1)})
    a = {name: np.stack([v[name] for v in seen]) for name in seen[0]}  # (T, B, ...)
    before = np.stack([s.state["wr"].sum(-1) for s in cache.steps])  # (T, B, R) sum_n w^{r,i}_{t-1}[n]
    a["carry"] = np.where(before >= 0.1, a["fwd_mass"] / np.maximum(before, 0.1), np.nan)  # not after (almost) no read
    t = np.arange(mask.shape[0])[:, None]
    a["phase"] = np.where(t < length, INPUT, np.where(t == length, DELIM, np.where(mask, ANSWER, PAD)))
    a["wrong"] = task.wrong_bits(logits, targets) * mask  # (T, B) as train.evaluate_task counts them
    a["source"] = answer_source(task, a["phase"], length)
    a["offset"], a["aligned"] = alignment(a["write_slot"], a["read_slot"], a["source"], length, cfg["memory"])
    a.update(followed_links(a["write_slot"], a["write_peak"], a["source"], [links_of(s) for s in leaves], length))
    for v in a.values():  # nothing of the steps after an episode's end
        if v.dtype.kind == "f":
            v[a["phase"] == PAD] = np.nan
    return a


def links_of(state):
    """L_t (B, N, N) of a state, the dense one or --sparse-links' slots made dense."""
    return dnc.dense_links(state["L_idx"], state["L_val"]) if "L_idx" in state else state["L"]


def answer_source(task, phase, length):
    """phase (T, E) -> (T, E): the input step (0 .. L-1) whose vector each answer step
    reproduces, answer position i answering input (i - 1) mod L (copy once, repeat-copy
    k times); -1 where none: input, delimiter, padding and repeat-copy's closing END."""
    T, E = phase.shape
    t = np.arange(T)[:, None]
    source = np.where(phase == ANSWER, (t - length - 1) % length, -1)
    if task.name == "repeat-copy":
        end = T - 1 - np.argmax(phase[::-1] == ANSWER, axis=0)  # (E,) each episode's last answer step
        source[end, np.arange(E)] = -1
    return source


def alignment(write_slot, read_slot, source, length, N):
    """Does the read at an answer step peak where its input was written?
    write_slot (T, E), read_slot (T, E, R), source (T, E) -> offset, aligned (T, E, R)

    Each of the N slots is labelled with the input step whose write peaked there last;
    the offset of a read is its peak slot's label minus the input step it should
    reproduce (0: aligned, +1: one step ahead), NaN where the slot has no label or the
    step reproduces nothing. aligned is 1 where the offset is 0, else 0 (NaN where
    nothing is to be reproduced)."""
    E = write_slot.shape[1]
    label = np.full((E, N), -1)  # slot -> the input step that wrote it
    for t in range(length):  # in order, so that a slot written twice keeps its last writer
        label[np.arange(E), write_slot[t]] = t
    writer = label[np.arange(E)[None, :, None], np.maximum(read_slot, 0)]  # (T, E, R)
    wanted = source[:, :, None]  # (T, E, 1)
    offset = np.where((wanted >= 0) & (writer >= 0), writer - wanted, np.nan)
    aligned = np.where(wanted >= 0, (writer == wanted).astype(float), np.nan)
    return offset, aligned


def followed_links(write_slot, write_peak, source, links, length):
    """The link from input k-1's slot to input k's, which the forward weighting should
    follow at the answer step that reproduces input k (k = source >= 1): as input step k
    made it, after the delimiter, and when followed; and the write of input k.
    write_slot, write_peak, source (T, E), links: each step's L_t (B, N, N) -> dict of (T, E)"""
    T, E = source.shape
    rows = np.arange(E)
    out = {name: np.full((T, E), np.nan) for name in ("input_write_peak", "link_made", "link_delim",
                                                      "link_followed", "link_out")}
    for t in np.nonzero((source >= 0).any(1))[0]:
        k = source[t].max()  # the same input step for every episode that reproduces one here
        on = source[t] >= 0
        out["input_write_peak"][t] = np.where(on, write_peak[k], np.nan)
        if k == 0:  # the first input: no link leads to it
            continue
        to, frm = write_slot[k], write_slot[k - 1]  # (E,) s_k, s_{k-1}
        out["link_made"][t] = np.where(on, links[k][rows, to, frm], np.nan)
        out["link_delim"][t] = np.where(on, links[length][rows, to, frm], np.nan)
        out["link_followed"][t] = np.where(on, links[t][rows, to, frm], np.nan)
        out["link_out"][t] = np.where(on, links[t][rows, :, frm].sum(-1), np.nan)
    return out


# ----------------------------------------------------------------------------------
# Averages over episodes


def average(a, axis):
    """The mean of the finite entries of a along axis; NaN where there are none (quietly)."""
    ok = np.isfinite(a)
    n = ok.sum(axis)
    return np.where(n > 0, np.where(ok, a, 0).sum(axis) / np.maximum(n, 1), np.nan)


def answer_steps(tr):
    """(P,) the steps t of answer positions 1 .. P, P the longest answer."""
    P = int((tr.phase == ANSWER).sum(0).max())
    return tr.length + 1 + np.arange(P)


def by_position(tr, values):
    """values (T, E) -> (P,) its mean over the episodes at each answer position 1 .. P."""
    return average(values[answer_steps(tr)], axis=1)


def step_groups(tr, rows):
    """The rows of a table by step: (phase, positions, steps) for the input, the delimiter
    and the answer, each phase's positions in at most `rows` groups of consecutive ones."""
    groups = []
    for name, steps in (("input", np.arange(tr.length)), ("delim", np.array([tr.length])),
                        ("answer", answer_steps(tr))):
        size = -(-len(steps) // rows)
        for i in range(0, len(steps), size):  # positions count from 1 in each phase
            part = steps[i:i + size]
            span = "" if name == "delim" else f"{i + 1}" if len(part) == 1 else f"{i + 1}-{i + len(part)}"
            groups.append((name, span, part))
    return groups


def fmt(v, width=7, signed=False, digits=2):
    return f"{'-':>{width}}" if not np.isfinite(v) else f"{v:>{'+' if signed else ''}{width}.{digits}f}"


# ----------------------------------------------------------------------------------
# 1. Errors by answer position


class Errors(NamedTuple):
    episodes: np.ndarray  # (P,) episodes that have answer position i
    with_wrong: np.ndarray  # (P,) of them, those whose output at i has a wrong bit
    wrong_bits: np.ndarray  # (P,) wrong bits at i, summed over the episodes
    first: np.ndarray  # (E,) each episode's first answer position with a wrong bit, 0 for none


def errors_by_position(tr):
    """The wrong bits of the most likely answer (train.evaluate_task's measure) by answer position."""
    steps = answer_steps(tr)
    on = tr.phase[steps] == ANSWER  # (P, E)
    wrong = tr.wrong[steps]  # (P, E)
    bad = (wrong > 0) & on
    first = np.where(bad.any(0), bad.argmax(0) + 1, 0)
    return Errors(on.sum(1), bad.sum(1), wrong.sum(1), first)


def quartiles(first):
    """The first wrong positions of the episodes that have one -> (q1, median, q3), or None."""
    hit = first[first > 0]
    return tuple(float(q) for q in np.percentile(hit, [25, 50, 75])) if hit.size else None


def errors_table(er, rows):
    """Table 1: at each answer position (grouped when there are more than `rows`), the share
    of episodes with a wrong bit there, the mean wrong bits, and the share of episodes
    whose first wrong bit is there."""
    E, P = er.first.size, er.episodes.size
    out = [f"1. errors by answer position ({E} episodes, {er.wrong_bits.sum() / E:.3f} wrong bits per episode, "
           f"{(er.first == 0).mean():.1%} solved)",
           f"{'position':>10} {'with a wrong bit':>17} {'wrong bits':>11} {'first wrong here':>17}"]
    size = -(-P // rows)
    for i in range(0, P, size):
        g = slice(i, min(i + size, P))
        span = f"{i + 1}" if g.stop - g.start == 1 else f"{g.start + 1}-{g.stop}"
        first_here = ((er.first > g.start) & (er.first <= g.stop)).mean()
        out.append(f"{span:>10} {er.with_wrong[g].sum() / er.episodes[g].sum():>17.1%} "
                   f"{er.wrong_bits[g].sum() / er.episodes[g].sum():>11.3f} {first_here:>17.1%}")
    q = quartiles(er.first)
    out.append("first wrong position: none in any episode" if q is None else
               f"first wrong position, in the {(er.first > 0).sum()} episodes with one: "
               f"median {q[1]:g}, quartiles {q[0]:g} and {q[2]:g}")
    return "\n".join(out)


# ----------------------------------------------------------------------------------
# 2. The memory by step


def step_table(title, tr, rows, cols, phases=("input", "delim", "answer")):
    """A table by step: a row per group of positions of each phase (step_groups), a column
    per (name, (T, E) array, decimals): its mean over the episodes and the group's steps."""
    widths = [max(8, len(name)) for name, _, _ in cols]
    out = [title, f"{'phase':>7} {'pos':>6}" + "".join(f" {name:>{w}}" for (name, _, _), w in zip(cols, widths))]
    for phase, span, steps in step_groups(tr, rows):
        if phase in phases:
            out.append(f"{phase:>7} {span:>6}" + "".join(
                f" {fmt(average(v[steps].ravel(), 0), w, name == 'offset', digits)}"
                for (name, v, digits), w in zip(cols, widths)))
    return "\n".join(out)


def write_table(tr, rows):
    """Table 2a, the write head by step: w^w's mass sum_n w^w[n] (how much is written; at
    most g^w) and peak max_n w^w[n] (1: one slot), the write gate g^w, the allocation gate
    g^a (1: where the allocation a_t points, the least used slot; 0: where the write key's
    content lookup points), and the usage sum_n u_t[n] (the slots in use)."""
    cols = (("w^w mass", tr.write_mass, 2), ("w^w peak", tr.write_peak, 2), ("g^w", tr.write_gate, 2),
            ("g^a", tr.alloc_gate, 2), ("sum u", tr.usage, 2))
    return step_table("2a. the write head by step (means over the episodes)", tr, rows, cols)


def reading_heads(tr):
    """The heads whose mean w^r mass over the answer reaches READS_FLOOR; the others read
    (almost) nothing and get no table."""
    mass = average(tr.read_mass[answer_steps(tr)].reshape(-1, tr.read_mass.shape[2]), 0)  # (R,)
    return [i for i in range(mass.size) if mass[i] >= READS_FLOOR], mass


def read_table(tr, head, rows):
    """Table 2b, read head `head` by step: w^r's mass and peak, the read modes pi (the
    shares of the backward weighting b, the content lookup c and the forward weighting f
    in w^r = pi_b b + pi_c c + pi_f f), f's mass sum_n f[n] and peak, the carry (f's mass
    over the previous read's: the share of w^r_{t-1} the links L_t carry forward; below 1
    it compounds, step after step, into f's mass), and at the answer the alignment: the
    share of episodes whose read at position i peaks on the slot input i was written to,
    and the mean offset, in input steps, of the slot it peaks on."""
    cols = [("w^r mass", tr.read_mass, 2), ("w^r peak", tr.read_peak, 2), ("pi_b", tr.backward, 2),
            ("pi_c", tr.content, 2), ("pi_f", tr.forward, 2), ("f mass", tr.fwd_mass, 2), ("f peak", tr.fwd_peak, 2),
            ("carry", tr.carry, 3), ("aligned", tr.aligned, 2), ("offset", tr.offset, 2)]
    cols = [(name, v[:, :, head], digits) for name, v, digits in cols]
    return step_table(f"2b. read head {head} by step (means over the episodes)", tr, rows, cols)


def link_table(tr, rows):
    """Table 2c, the links the answer follows, by answer position i: with s_k the slot
    input k wrote (its w^w's peak), the peak of that write, and the link L[s_i, s_{i-1}]
    that carries a read from input i-1's slot to input i's: as input step i made it
    (w^w_i[s_i] p_{i-1}[s_{i-1}]), after the delimiter, and in L_t when the answer's f
    follows it; then sum_n L_t[n, s_{i-1}], all that a forward step out of s_{i-1} carries
    (f's mass, were the read all on s_{i-1}). Made < 1: the writes of the input were not
    sharp; followed < made: later writes eroded the link, L_t = (1 - w_i - w_j) L_{t-1} + ...."""
    cols = (("w^w peak", tr.input_write_peak, 3), ("made", tr.link_made, 3), ("at delim", tr.link_delim, 3),
            ("followed", tr.link_followed, 3), ("out of s_{i-1}", tr.link_out, 3))
    return step_table("2c. the links the answer follows, input i-1's slot -> input i's (means over the episodes)",
                      tr, rows, cols, phases=("answer",))


# ----------------------------------------------------------------------------------
# 3. The verdict


def departure(values, bad, threshold):
    """values (P,) by answer position -> the first position (from 1) from which they are
    past the threshold at RUN positions in a row (or to the end), else None. A single
    position past it (answer position 1, whose read follows nothing) is no departure."""
    past = values < threshold if bad == "<" else values > threshold
    for i in range(values.size):
        if past[i:i + RUN].all():
            return i + 1
    return None


def copying_head(tr, heads, short):
    """The reading head whose reads are aligned most often at answer positions 1 .. short;
    None when no head reads."""
    if not heads:
        return None
    return max(heads, key=lambda h: np.nan_to_num(average(by_position(tr, tr.aligned[:, :, h])[:short], 0)))


def wrong_against_right(values, wrong, on):
    """values, wrong (bool), on (P, E) at the answer positions -> the mean of values at the
    wrong outputs, and at the right outputs of the same positions (each position weighted
    by its wrong outputs, so that the late positions, where both fall, do not confound the
    two); NaN, NaN without a position that has both."""
    right = on & ~wrong
    at_right = average(np.where(right, values, np.nan), 1)  # (P,)
    n_wrong = (wrong & on).sum(1)
    use = (n_wrong > 0) & np.isfinite(at_right)
    if not use.any():
        return np.nan, np.nan
    at_wrong = average(np.where(wrong & on & use[:, None], values, np.nan).ravel(), 0)
    return at_wrong, float((at_right[use] * n_wrong[use]).sum() / n_wrong[use].sum())


def verdict(tr, er, trained):
    """Section 3: for each measure of CHECKS (the copying head's, the write head's), its
    median over the answer positions training saw (1 .. the longest trained length), the
    first position from which it is past its threshold, its mean over the last tenth of
    the answer, and its mean at the wrong outputs against the right ones of the same
    positions; then where the errors begin and which departure comes first."""
    P = er.episodes.size
    short = min(P, trained)
    heads, mass = reading_heads(tr)
    head = copying_head(tr, heads, short)
    steps = answer_steps(tr)
    on = tr.phase[steps] == ANSWER  # (P, E)
    wrong = tr.wrong[steps] > 0
    tail = slice(P - max(1, P // 10), P)
    seen = "1" if short == 1 else f"1-{short}"  # the answer positions training saw
    out = ["3. verdict"]
    if head is None:
        out.append(f"no read head reads during the answer (mean w^r mass at most {mass.max():.2f})")
    else:
        aligned = average(by_position(tr, tr.aligned[:, :, head])[:short], 0)
        out.append(f"read head {head} copies (aligned at {aligned:.0%} of answer positions {seen}); a measure "
                   f"departs where it is past its threshold at {RUN} positions in a row")
    out.append(f"{'measure':<20} {'threshold':>9} {'pos ' + seen:>9} {'departs at':>10} {'there':>6} "
               f"{'last tenth':>10} {'wrong outputs':>13} {'right ones':>10}")
    found = []
    for label, field, per_head, bad, threshold, meaning in CHECKS:
        if per_head and head is None:
            continue
        every = getattr(tr, field)[steps]  # (P, E[, R])
        every = every[:, :, head] if per_head else every  # (P, E)
        values = average(every, 1)  # (P,) by position
        at = departure(values, bad, threshold)
        known = values[:short][np.isfinite(values[:short])]  # (a link follows from position 2 on)
        ref = float(np.median(known)) if known.size else np.nan  # the median: robust to odd first positions
        already = (ref < threshold) if bad == "<" else (ref > threshold)
        where = "already" if already else "-" if at is None else f"{at}"
        at_wrong, at_right = wrong_against_right(every, wrong, on)
        there = values[at - 1] if at else np.nan
        out.append(f"{label:<20} {bad + ' ' + format(threshold, 'g'):>9} {fmt(ref, 9, digits=3)} {where:>10} "
                   f"{fmt(there, 6, digits=3)} {fmt(average(values[tail], 0), 10, digits=3)} "
                   f"{fmt(at_wrong, 13, digits=3)} {fmt(at_right, 10, digits=3)}")
        if at and not already:
            found.append((at, label, meaning))
    wrong_share = er.with_wrong / np.maximum(er.episodes, 1)
    first_tenth = next((i + 1 for i in range(P) if wrong_share[i] >= 0.1), None)
    q = quartiles(er.first)
    out.append("errors: " + ("none" if q is None else
                             f"{(er.first > 0).sum()} of {er.first.size} episodes; the first wrong position's "
                             f"median is {q[1]:g} (quartiles {q[0]:g} and {q[2]:g})"
                             + (f"; 10% of the episodes are wrong at position {first_tenth} first"
                                if first_tenth else "")))
    if found:
        at, label, meaning = min(found)
        out.append(f"earliest departure: {label} at answer position {at}: {meaning}")
    else:
        out.append("no measure departs over the answer" + (" (at the thresholds above)" if q else ""))
    return "\n".join(out)


# ----------------------------------------------------------------------------------
# The command line


def diagnose(task, cfg, params, length, episodes, seed, rows):
    """The whole report on `episodes` fresh episodes of `length`, as text."""
    trained = task.max_length
    rng = np.random.default_rng(seed)
    batches = draw_episodes(task, rng, episodes, length, rows_per_batch(task, cfg, episodes, length))
    tr = trace(params, cfg, task, batches, length)
    er = errors_by_position(tr)
    heads, mass = reading_heads(tr)
    idle = [i for i in range(mass.size) if i not in heads]
    parts = [f"{task.describe()}, --io {task.io}, {cfg.get('controller', 'lstm')} controller; trained up to "
             f"length {trained}; here length {length}, memory N={cfg['memory']}, {episodes} episodes, seed {seed}",
             errors_table(er, rows), write_table(tr, rows)]
    parts += [read_table(tr, h, rows) for h in heads]
    parts.append(link_table(tr, rows))
    if idle:
        parts.append(f"read head{'s' if len(idle) > 1 else ''} {', '.join(map(str, idle))}: mean w^r mass over the "
                     f"answer below {READS_FLOOR} ({', '.join(f'{mass[i]:.2f}' for i in idle)}): "
                     f"{'they read' if len(idle) > 1 else 'it reads'} (almost) nothing, no table")
    parts.append(verdict(tr, er, trained))
    return "\n\n".join(parts)


def main(argv=None):
    p = common.Parser(prog="diagnose.py", formatter_class=common.HelpFormatter,
                      description="Why a DNC trained on short copies fails on long ones: errors by answer "
                                  "position, the memory by step, and a verdict.")
    p.add_argument("--load", default=os.path.join(train.CHECKPOINTS, "dnc-copy.npz"), metavar="PATH",
                   help="a dnc-numpy.py checkpoint of copy or repeat-copy")
    p.add_argument("--length", type=common.positive_int,
                   help="L, the episodes' length (default twice the longest trained length)")
    p.add_argument("--memory", type=common.positive_int, help="N, memory slots (default the checkpoint's)")
    p.add_argument("--episodes", type=common.positive_int, default=100, help="E, fresh episodes")
    p.add_argument("--seed", type=common.nonneg_int, default=0, help="draws the episodes")
    p.add_argument("--rows", type=common.positive_int, default=10,
                   help="at most this many rows per phase in the tables (positions grouped beyond)")
    args = p.parse_args(argv)
    try:
        ck, task = load(args.load)
        length = args.length or 2 * task.max_length
        cfg, params = model_at(ck, task, length, args.memory)
        print(diagnose(task, cfg, params, length, args.episodes, args.seed, args.rows))
    except common.UserError as e:
        print(f"diagnose.py: error: {e}", file=sys.stderr)
        return 2
    except MemoryError:
        print("diagnose.py: error: not enough memory for this --memory and --length", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

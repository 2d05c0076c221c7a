"""The one training loop of every script, and its command line.

train() below is the loop, as min-char-rnn's: the next batch, forward, the loss,
backward, one clip, the optimiser's step (Adagrad, Adam or RMSProp: --optim), the
recurrent state carried to the next window, and every --report iterations a report.
Two kinds of data flow through it:

    text   B streams over a text give windows of S characters; the recurrent state
           carries from window to window (truncated BPTT); every position is scored
    task   B fresh episodes of a memory task (data/tasks.py) per iteration; the state
           (the DNC's whole memory too) starts from zero at every episode; only the
           answer steps are scored, through a mask. Two levers for longer episodes than
           trained: --curriculum (their lengths grow lesson by lesson: Curriculum) and
           the DNC's --memory MIN-MAX (each batch a memory of another size)

Each source names its loss: a text, and a task's token form (--io tokens), the softmax
cross-entropy in mean nats per scored step (common.cross_entropy); a task's bit form
(--io bits, the default) the bit-wise sigmoid cross-entropy in nats per episode, as
deepmind/dnc trains (common.sigmoid_cross_entropy).

Below the loop, in this order: Run, which keeps the books of a run (validation, the
progress line, the CSV log, the best weights and --patience, the learning rate of each
step, divergence, checkpoints); the two sources of data and how held-out data is
scored; setting a run up, fresh or resumed; the modes that do not train (--gradcheck,
--sample, --eval-lengths, --show, --plot); the command line. The models live in
rnn-numpy.py, lstm-numpy.py and dnc-numpy.py, what they share in common.py, and the
platform (BLAS threads, the allocator, free memory) in machine.py.
"""
import argparse
import contextlib
import csv
import math
import os
import signal
import sys
import time

import numpy as np

import common
import machine
from common import UserError

tasks = common.load_script(os.path.join("data", "tasks.py"))

DEFAULTS = {"hidden": 128, "layers": 1, "batch": 32, "seq": 32, "time": 120.0, "val_frac": 0.1}
VAL_EPISODES = 256  # fresh episodes, drawn once, that validate a task run at every report
EVAL_ROWS = 128  # at most this many parallel streams validate a text
LESSON_THRESHOLD = 0.9  # --curriculum: the share of a lesson's validation episodes solved that passes it
LESSON_REVIEW = 0.2  # --curriculum: the share of a lesson's episodes drawn over all its lengths so far
TASK_FLAGS = ("io", "bits", "length", "repeats", "item_length")
CORPUS_NAMES = ("alice29", "tinyshakespeare", "ptb", "text8", "enwik8")


# ----------------------------------------------------------------------------------
# The training loop


def train(model, cfg, params, opt, state, source, rng, run):
    """Train until --time, --iters, --patience or Ctrl-C runs out. -> exit code

    model: rnn-, lstm- or dnc-numpy.py;  params: a dict of arrays;  opt: common.Adagrad,
    Adam or RMSProp, its state in dicts with the keys of params;  state: the recurrent
    state, batch on axis 0;  source: TextSource or TaskSource;  rng: draws dropout masks
    (and a task's episodes);  run: a Run, below."""
    args = run.args
    with ctrl_c_flag() as interrupted:
        while not interrupted and not run.should_stop():
            inputs, targets, mask, reset = source.next(rng)  # (S, B) ids or (S, B, C) bits; mask: scored steps
            common.reset_rows(state, reset)  # rows that start afresh (a wrapped text, a new episode)
            if "memory_range" in cfg:  # the DNC's --memory MIN-MAX: a zero memory of N slots drawn anew
                state = model.init_state(dict(cfg, memory=memory_size(cfg, rng)), params, len(reset))

            logits, new_state, cache = model.forward(params, inputs, state, cfg, rng)  # (S, B, V_out)
            loss, dlogits = source.loss(logits, targets, mask)  # the source's: softmax or bit-wise, below
            run.check_finite(loss)
            grads = model.backward(dlogits, cache)  # backpropagation through the window's S steps
            del cache  # the window's cache goes now, not after a report's validation: half the peak memory

            common.clip_global_norm(grads, args.clip)  # once, after the whole backward
            opt.lr = run.learning_rate()  # --lr through --warmup, --lr-schedule and --lr-decay
            opt.step(params, grads)  # the optimiser (--optim)
            state = new_state  # carried into the next window: truncated BPTT

            run.progress.add(loss, mask, inputs)
            run.it += 1
            if run.report_due():
                run.report(params)
                run.save(params, opt, state)
    if interrupted:
        run.save(params, opt, state)
        print(f"interrupted at iter {run.it}" + (f"; saved {args.save}" if args.save else ""), file=sys.stderr)
        return 130
    if run.reported != run.it:
        run.report(params)
    run.save(params, opt, state)
    if run.stopped:
        print(f"stopped: {run.stopped}")
    print(run.done_line(params))
    return 0


@contextlib.contextmanager
def ctrl_c_flag():
    """While inside: Ctrl-C only appends to the list yielded, so that the iteration under
    way finishes whole and the loop can save before it stops."""
    flag = []
    old = signal.signal(signal.SIGINT, lambda signum, frame: flag.append(signum))
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, old)


# ----------------------------------------------------------------------------------
# The books of a run: reports, the best weights, divergence, checkpoints


class Run:
    """What a run keeps besides the model: the iteration count, the progress window,
    the last and best validation (with the best params, --patience and --lr-decay), the
    learning rate of each step, the divergence watch, the CSV log and the checkpoint."""

    def __init__(self, args, model, cfg, source, task, vocab, opt, rng, info, threads):
        self.args, self.model, self.cfg, self.source, self.task = args, model, cfg, source, task
        self.curriculum = source.curriculum  # --curriculum's lessons, or None
        self.vocab, self.opt, self.rng, self.threads = vocab, opt, rng, threads
        self.it = self.start_it = info.get("iter", 0)
        self.task_seed = info.get("task_seed", args.seed)
        self.progress = Progress(task is not None, info.get("seen"), source.loss is common.sigmoid_cross_entropy)
        self.mark = (0, 0.0)  # steps and training seconds at the last report
        self.val, self.reported, self.stopped, self.saved = None, None, None, False
        self.best_val, self.best_iter = info.get("best_val"), info.get("best_iter")
        self.stale, self.best_params = info.get("stale", 0), None
        self.lr_scale = info.get("lr_scale", 1.0)  # --lr-decay's factors so far
        self.next_report = args.report_seconds  # seconds of training (--report-seconds)
        self.has_val = task is not None or len(source.val) > 1
        self.chance = 2 * (task.chance_bits if task else math.log2(len(vocab)))  # two reports above it: diverged
        self.exploded = []  # reports in a row above it (the first steps may overshoot once)

    def should_stop(self):
        a, trained = self.args, self.progress.training_seconds()
        if (a.iters and self.it - self.start_it >= a.iters) or (a.time and trained >= a.time):
            return True
        if a.patience and self.stale >= a.patience:
            self.stopped = f"no new best validation in {a.patience} reports (--patience {a.patience})"
            return True
        return False

    def report_due(self):
        """Every --report iterations, or with --report-seconds S at every S seconds of
        training (validating and sampling not counted)."""
        every = self.args.report_seconds
        if not every:
            return self.it % self.args.report == 0
        trained = self.progress.training_seconds()
        if trained < self.next_report:
            return False
        self.next_report = (trained // every + 1) * every  # the next multiple of S
        return True

    def learning_rate(self):
        """The learning rate of the next step: --lr times --lr-decay's factors so far,
        through --warmup and --lr-schedule, both counted from this run's start."""
        a, step = self.args, self.it - self.start_it
        done = step / a.iters if a.iters else self.progress.training_seconds() / a.time if a.time else 0.0
        return learning_rate(a.lr * self.lr_scale, step, done, a.warmup, a.lr_schedule, a.min_lr_frac)

    def report(self, params):
        """Validate, print the progress line, log it, keep the best params, and now and
        then print a sample."""
        self.reported = self.it
        rate, self.mark = self.progress.rate_since(self.mark)
        busy = self.threads.watch(rate, "step/s" if self.task else "char/s")
        if busy:
            print(busy, flush=True)
        self.val = self.aside(self.source.validate, self.model, self.cfg, params) if self.has_val else None
        bits, train_loss = self.progress.recent_bits_per_step(), self.progress.recent()
        lesson = f", {self.curriculum}" if self.curriculum else ""  # the lesson trained and validated
        print(self.progress.line(self.it, self.val) + lesson, flush=True)
        self.check_diverged(bits, self.val)
        if self.args.log:
            log_row(self.args.log, self.it, self.progress, train_loss, self.val,
                    self.curriculum.lesson if self.curriculum else None)
        if self.val is not None:
            self.keep_best(params, self.val["nats_seq"] if self.task else self.val["nats"])
        if self.curriculum and self.curriculum.passed(self.val["solved"]):
            self.next_lesson(params)
        if self.task is None and not self.args.report_seconds and self.it % (10 * self.args.report) == 0:
            text = self.aside(common.sample, self.model, self.cfg, params, self.vocab, 200, 1.0, "", self.rng)
            print("----\n" + text + "\n----", flush=True)

    def aside(self, f, *args):
        """f(*args), its time counted as time aside from training (validating, sampling)."""
        t0 = time.perf_counter()
        out = f(*args)
        self.progress.aside += time.perf_counter() - t0
        return out

    def keep_best(self, params, score):
        """A new best validation keeps a copy of the params; else one more stale report
        (--patience) and the learning rate times --lr-decay."""
        if self.best_val is None or score < self.best_val:
            self.best_val, self.best_iter, self.stale = score, self.it, 0
            self.best_params = {k: v.copy() for k, v in params.items()}
        else:
            self.stale += 1
            self.lr_scale *= self.args.lr_decay

    def next_lesson(self, params):
        """--curriculum: the lesson's validation reached --lesson-threshold solved, so the
        next lesson starts, with validation episodes of its own. The books start afresh,
        since a harder lesson's figures compare with no easier one's: the weights that
        passed, validated on the new lesson, are its first best, and --patience counts
        from 0. So the best weights at the end are the best on the last lesson reached."""
        c, solved = self.curriculum, self.val["solved"]
        passed = f"lesson {c.lesson}/{c.lessons} passed ({solved:.1%} solved, --lesson-threshold {c.threshold:g})"
        c.lesson += 1
        self.source.val = self.source.validation()
        self.val = self.aside(self.source.validate, self.model, self.cfg, params)
        self.best_val, self.stale = None, 0
        self.keep_best(params, self.val["nats_seq"])
        print(f"{passed}; {c}: val {self.val['nats_seq']:.4f} nats/seq, {self.val['solved']:.1%} solved", flush=True)

    def check_finite(self, loss):
        """Stop at once on a non-finite loss, keeping the last good checkpoint."""
        if not math.isfinite(loss):
            raise UserError(f"loss became non-finite at iter {self.it + 1} (try a lower --lr or a --clip)"
                            + self.kept())

    def check_diverged(self, bits, val):
        """Stop once two reports in a row are above twice chance (--lr 1e9 stays above)."""
        bits = max(bits, common.bpc(val["nats"]) if val is not None else 0.0)
        if not math.isfinite(bits):
            raise UserError(f"loss became non-finite at iter {self.it} (try a lower --lr or a --clip)" + self.kept())
        self.exploded = self.exploded + [self.it] if bits > self.chance else []
        if len(self.exploded) >= 2:
            raise UserError(f"training diverged at iter {self.it}: {bits:.4g} bits per scored step, above "
                            f"twice chance ({self.chance:.2f}) at two reports in a row; try a lower --lr "
                            f"or a --clip" + self.kept())

    def kept(self):
        save = self.args.save
        return f"; the last good checkpoint is kept in {save}" if save and os.path.exists(save) else ""

    def save(self, params, opt, state):
        """The checkpoint: latest params to resume, best params to sample and evaluate.
        Never overwrites a good checkpoint with an exploded model."""
        if not self.args.save or self.exploded:
            return
        a, task = self.args, self.task
        meta = {"iter": self.it, "lr_scale": self.lr_scale, "best_val": self.best_val, "best_iter": self.best_iter,
                "stale": self.stale, "seen": self.progress.seen(), "task_seed": self.task_seed,
                "task": {"name": task.name, "settings": task.settings, "io": task.io} if task else None,
                "curriculum": self.curriculum.record() if self.curriculum else None}
        cursors = self.source.batches.cursors if task is None else np.zeros(0, np.int64)
        common.save_checkpoint(a.save, self.model.KIND, self.cfg, params, opt, self.vocab, meta, state, cursors,
                               self.rng, self.best_params)
        self.saved = True

    def done_line(self, params):
        """The closing line: the last figures, the best validation, the test figure of the
        best params (texts with a test set), the training rate, the share of time
        validating and where the checkpoint is."""
        progress, val, source = self.progress, self.val, self.source
        best = self.best_params if self.best_params is not None else params
        aside = (f"{progress.rate():.2f} {'step' if self.task else 'char'}/s training, "
                 f"{progress.aside / max(progress.elapsed(), 1e-9):.1%} of the time validating")
        saved = f"; saved {self.args.save}" if self.saved else ""
        if self.task:
            s = f"done: iter {self.it}, train {progress.recent():.4f} nats/seq"
            if val:
                s += (f", val {val['nats_seq']:.4f} nats/seq, {val['wrong_bits']:.3f} wrong bits/seq, "
                      f"{val['solved']:.1%} solved, best val {self.best_val:.4f} nats/seq at iter {self.best_iter}")
            if self.curriculum:
                s += f", {self.curriculum}"
            return s + ", " + aside + saved
        s = f"done: iter {self.it}, train {progress.recent():.4f} BPC"
        if val:
            s += f", val {common.bpc(val['nats']):.4f} BPC, best val {common.bpc(self.best_val):.4f} BPC at iter {self.best_iter}"
            if len(source.val_report) < len(source.val):
                whole = source.score(self.model, self.cfg, best, source.val)
                s += f" (whole validation text {common.bpc(whole):.4f})"
        else:
            s += ", val n/a BPC"
        if source.test is not None:  # scored with the best params (the last ones if nothing validated)
            s += f", test {common.bpc(source.score(self.model, self.cfg, best, source.test)):.4f} BPC"
        return s + ", " + aside + saved


def learning_rate(base, step, done, warmup=0, schedule="constant", min_frac=0.1):
    """The learning rate of a step: base (--lr times --lr-decay's factors so far), times

        (step + 1) / warmup                          while step < warmup (--warmup: linear)
        min_frac + (1 - min_frac) (1 + cos(pi done)) / 2     with --lr-schedule cosine

    step counts from 0; done is the fraction of the run's budget spent (of --iters, else
    of --time in seconds of training), so the cosine falls from base to min_frac * base
    (--min-lr-frac) over the run (one cycle of Loshchilov & Hutter's SGDR, 2017)."""
    lr = base
    if step < warmup:
        lr *= (step + 1) / warmup
    if schedule == "cosine":
        lr *= min_frac + (1 - min_frac) * (1 + math.cos(math.pi * min(done, 1.0))) / 2
    return lr


# ----------------------------------------------------------------------------------
# Progress lines and the CSV log


class Progress:
    """The ancestor's progress line, with the loss averaged over the report window and
    the training rate counted without the time spent validating and sampling."""

    def __init__(self, is_task, seen=None, per_episode=False):
        self.is_task = is_task
        self.per_episode = per_episode  # the loss is nats per episode (bit-wise), not per scored step
        self.start = time.perf_counter()
        self.aside = 0.0  # seconds spent validating and sampling
        self.window = [0.0, 0.0, 0.0]  # nats, scored steps, episodes
        self.last = float("nan")
        self.steps = 0  # input steps (characters) trained on in this run
        seen = seen or {}
        self.before = (seen.get("seconds", 0.0), seen.get("chars", 0), seen.get("episodes", 0))
        self.episodes = 0

    def add(self, loss, mask, inputs):
        T, B = inputs.shape[:2]  # inputs (T, B) ids or (T, B, C) channels
        scored = float(mask.sum()) if mask is not None else float(T * B)
        self.window[0] += loss * (B if self.per_episode else scored)  # the batch's nats
        self.window[1] += scored
        self.window[2] += B
        self.steps += T * B
        self.episodes += B if self.is_task else 0

    def elapsed(self):
        return time.perf_counter() - self.start

    def training_seconds(self):
        """Seconds of this run so far, less those spent validating and sampling."""
        return self.elapsed() - self.aside

    def rate_since(self, mark):
        """-> the training rate since mark (steps, training seconds), and a mark for now"""
        now = (self.steps, self.training_seconds())
        return (now[0] - mark[0]) / max(now[1] - mark[1], 1e-9), now

    def rate(self):
        return self.rate_since((0, 0.0))[0]

    def recent(self):
        """Training loss since the last report: BPC for a text, nats per episode for a task
        (of the last report if none since)."""
        nats, scored, episodes = self.window
        if scored:
            self.last = nats / episodes if self.is_task else common.bpc(nats / scored)
        return self.last

    def recent_bits_per_step(self):
        return common.bpc(self.window[0] / self.window[1]) if self.window[1] else 0.0

    def line(self, it, val):
        train = self.recent()
        self.window = [0.0, 0.0, 0.0]
        s = f"{self.elapsed():.3f} s, iter {it}, "
        if self.is_task:
            s += f"{train:.4f} nats/seq, {self.rate():.2f} step/s"
            return s + (f", val {val['nats_seq']:.4f} nats/seq, {val['wrong_bits']:.3f} wrong bits/seq, "
                        f"{val['solved']:.1%} solved" if val else "")
        s += f"{train:.4f} BPC, {self.rate():.2f} char/s"
        return s + (f", val {common.bpc(val['nats']):.4f} BPC" if val else "")

    def seen(self):
        """What the run has seen, counting the runs it resumed: for the log and checkpoints."""
        s, c, e = self.before
        return {"seconds": s + self.elapsed(), "chars": c + self.steps, "episodes": e + self.episodes}


LOG_COLUMNS = ("seconds", "iter", "chars", "episodes", "train_bpc", "val_bpc", "train_nats_seq",
               "val_nats_seq", "wrong_bits_seq", "solved", "rate", "lesson")


def log_row(path, it, progress, train, val, lesson=None):
    """Append one report to the CSV file at path (its header first if the file is new);
    lesson: --curriculum's lesson trained and validated at this report, else None (empty)."""
    seen = progress.seen()
    row = {"seconds": f"{seen['seconds']:.3f}", "iter": it, "chars": seen["chars"],
           "rate": f"{progress.rate():.1f}", "lesson": lesson}
    if progress.is_task:
        row["episodes"] = seen["episodes"]
        row["train_nats_seq"] = f"{train:.6f}"
        if val:
            row.update(val_nats_seq=f"{val['nats_seq']:.6f}", wrong_bits_seq=f"{val['wrong_bits']:.6f}",
                       solved=f"{val['solved']:.6f}")
    else:
        row["train_bpc"] = f"{train:.6f}"
        if val:
            row["val_bpc"] = f"{common.bpc(val['nats']):.6f}"
    new = not os.path.exists(path) or os.path.getsize(path) == 0
    try:
        with open(path, "a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=LOG_COLUMNS)
            if new:
                w.writeheader()
            w.writerow(row)
    except OSError as e:
        raise UserError(f"cannot write log {path}: {e.strerror}") from None


# ----------------------------------------------------------------------------------
# The two sources of data, and scoring held-out data


class TextSource:
    """Windows of a text for training; BPC on its held-out parts."""

    loss = staticmethod(common.cross_entropy)  # mean nats per character
    curriculum = None  # a task's alone

    def __init__(self, vocab, train, val, test, B, S, val_chars):
        self.vocab, self.train, self.val, self.test = vocab, train, val, test
        self.batches = common.Batches(train, B, S)
        self.S = S
        self.val_report = val[:val_chars] if val_chars and len(val) > val_chars else val  # a view
        self.B = B

    def next(self, rng):
        """-> inputs (S, B), targets (S, B), mask None (all scored), reset (B,) bool"""
        inputs, targets, reset = self.batches.next()
        return inputs, targets, None, reset

    def validate(self, model, cfg, params):
        """-> {"nats": mean nats per character of the validation text at reports}"""
        return {"nats": self.score(model, cfg, params, self.val_report)}

    def score(self, model, cfg, params, ids):
        """Mean nats per character of ids. As many streams as the training batch, more on a
        long held-out text (so fewer steps in all), each long enough (2000 characters) that
        its start from a zero state costs the figure little. With more streams than the
        batch the windows are shorter, so that a window (about S B characters) holds no
        more in memory than a training window does."""
        rows = min(EVAL_ROWS, max(self.B, len(ids) // 2000))
        return evaluate_text(model, cfg, params, ids, max(1, self.S * self.B // rows), rows)


class TaskSource:
    """Fresh episodes of a memory task for training; a fixed set of other fresh episodes
    (from a generator of their own) for validation, the same at every report. With a
    curriculum both are the current lesson's (a fixed set for each lesson). The loss
    is the task form's: the bit-wise sigmoid cross-entropy (bits), nats per episode, or
    the softmax cross-entropy (tokens), mean nats per answer step."""

    def __init__(self, task, B, seed, curriculum=None):
        self.task, self.B, self.seed, self.curriculum = task, B, seed, curriculum
        self.loss = common.LOSSES[task.io]
        self.val = self.validation()

    def episodes(self, rng):
        """B episodes, their lengths drawn over the task's range or the lesson's."""
        lengths = self.curriculum.lengths(rng, self.B) if self.curriculum else None
        return self.task.episodes(rng, self.B, length=lengths)

    def next(self, rng):
        """-> inputs (T, B) or (T, B, C), targets (T, B) or (T, B, K), mask (T, B) bool,
        reset: every row"""
        inputs, targets, mask = self.episodes(rng)
        return inputs, targets, mask, np.ones(self.B, bool)

    def validation(self):
        """VAL_EPISODES episodes in batches of B, the same for the same seed (and lesson)."""
        rng = np.random.default_rng([self.seed, 1] + ([self.curriculum.lesson] if self.curriculum else []))
        return [self.episodes(rng) for _ in range(-(-VAL_EPISODES // self.B))]

    def validate(self, model, cfg, params):
        return evaluate_task(model, cfg, params, self.task, self.val)


class Curriculum:
    """--curriculum: a task's episode lengths grow lesson by lesson, as the DNC paper trains
    (Graves et al. 2016, Methods, "curriculum learning"). The lessons end at the task's
    shortest length, then at twice it, four times, ... and last at its longest: copy 1-10
    has five, ending at 1, 2, 4, 8 and 10. An episode of a lesson draws its length
    uniformly over the lesson's new lengths (those after the previous lesson's end: 5-8
    in copy's fourth) or, one time in five (LESSON_REVIEW), over all its lengths so far
    (1-8), so that the shorter ones stay learnt. The validation episodes are drawn the
    same way, a fixed set for each lesson; a report at which at least the threshold
    (--lesson-threshold) of them are solved passes the lesson (Run.next_lesson). The
    repeats of repeat-copy are drawn over their whole range in every lesson."""

    def __init__(self, task, threshold, lesson=1):
        lo, hi = task.min_length, task.max_length
        self.ends = []  # the longest length of each lesson
        while lo * 2 ** len(self.ends) < hi:
            self.ends.append(lo * 2 ** len(self.ends))
        self.ends.append(hi)
        self.shortest, self.threshold, self.lesson = lo, threshold, lesson  # lesson counts from 1
        self.lessons = len(self.ends)

    def new_lengths(self):
        """-> (first, last): the lengths the current lesson adds"""
        k = self.lesson - 1
        return (self.ends[k - 1] + 1 if k else self.shortest), self.ends[k]

    def lengths(self, rng, B):
        """(B,) int64: the lengths of B episodes of the current lesson."""
        first, last = self.new_lengths()
        new = rng.integers(first, last + 1, size=B)
        review = rng.integers(self.shortest, last + 1, size=B)
        return np.where(rng.random(B) < LESSON_REVIEW, review, new)

    def passed(self, solved):
        """Whether a validation with this share of episodes solved passes the lesson (the last never ends)."""
        return self.lesson < self.lessons and solved >= self.threshold

    def record(self):
        """What a checkpoint keeps, so that a resumed run goes on at the same lesson."""
        return {"lesson": self.lesson, "threshold": self.threshold}

    def plan(self):
        return (f"--curriculum of {self.lessons} lessons ending at lengths {', '.join(map(str, self.ends))}, "
                f"each passed at {self.threshold:g} of its validation episodes solved")

    def __str__(self):
        """E.g. 'lesson 3/5 lengths 3-4 (20% 1-4)': its new lengths, and its review's."""
        first, last = self.new_lengths()
        review = f" ({LESSON_REVIEW:.0%} {tasks.span(self.shortest, last)})" if first > self.shortest else ""
        return f"lesson {self.lesson}/{self.lessons} length{'s' * (last > first)} {tasks.span(first, last)}{review}"


def memory_size(cfg, rng):
    """The memory slots N of a training batch with the DNC's --memory MIN-MAX: uniform over
    the range, drawn anew for every batch (its episodes start from zero anyway), so that
    the model cannot come to depend on one N. Validation uses cfg["memory"], the MAX."""
    lo, hi = cfg["memory_range"]
    return int(rng.integers(lo, hi + 1))


def evaluate_text(model, cfg, params, ids, S, rows=EVAL_ROWS):
    """Mean nats per character over a whole held-out text, read as up to `rows`
    contiguous streams with the recurrent state carried from window to window."""
    rows = max(1, min(rows, (len(ids) - 1) // S))
    m = (len(ids) - 1) // rows  # characters each stream predicts
    data = ids[:rows * m + 1]
    idx = np.arange(rows)[None, :] * m  # (1, rows) where each stream starts
    state = model.init_state(cfg, params, rows)
    total = 0.0
    for t0 in range(0, m, S):
        n = min(S, m - t0)
        inputs, targets = data[idx + t0 + np.arange(n)[:, None]], data[idx + t0 + 1 + np.arange(n)[:, None]]
        logits, state = model.forward(params, inputs, state, cfg)[:2]  # the cache goes at once
        logp = common.log_softmax(logits)
        total -= np.take_along_axis(logp, targets[..., None].astype(np.intp), axis=-1).sum(dtype=np.float64)
    return float(total / (m * rows))


def evaluate_task(model, cfg, params, task, batches):
    """The papers' measures over batches of episodes [(inputs, targets, mask), ...]:
    -> nats (per answer step), nats_seq (per episode), wrong_bits (per episode: bits of
    the most likely answer that differ from the target), solved (fraction of episodes
    with no wrong bit), answer_bits (per episode: how many bits were asked for), and
    by_tenth (10,): the wrong bits per episode in each tenth of its answer steps, first
    to last, which say where in a sequence a model goes wrong (NaN in a tenth that no
    answer step fell in: an answer shorter than 10 steps leaves gaps).
    The nats are the loss's: summed over a step's bits (bits), of the target token (tokens)."""
    nats = steps = wrong = solved = seqs = 0.0
    by_tenth, tenths_asked = np.zeros(10), np.zeros(10)
    for inputs, targets, mask in batches:
        state = model.init_state(cfg, params, inputs.shape[1])
        logits = model.forward(params, inputs, state, cfg)[0]  # the cache goes at once
        if task.io == "bits":
            nll = common.bit_nats(logits, targets).sum(-1)  # (T, B)
        else:
            nll = -np.take_along_axis(common.log_softmax(logits), targets[..., None], axis=-1)[..., 0]  # (T, B)
        nats += float((nll * mask).sum(dtype=np.float64))
        steps += float(mask.sum())
        bad = task.wrong_bits(logits, targets) * mask  # (T, B)
        per_episode = bad.sum(0)  # (B,)
        answer_pos = np.cumsum(mask, axis=0) - 1  # (T, B) the index of each answer step in its episode
        tenth = (10 * answer_pos) // np.maximum(mask.sum(0), 1)  # (T, B) 0..9 on the answer steps
        by_tenth += np.bincount(tenth[mask], weights=bad[mask], minlength=10)
        tenths_asked += np.bincount(tenth[mask], minlength=10)
        wrong += float(per_episode.sum())
        solved += float((per_episode == 0).sum())
        seqs += inputs.shape[1]
    return {"nats": nats / steps, "nats_seq": nats / seqs, "wrong_bits": wrong / seqs, "solved": solved / seqs,
            "answer_bits": steps * task.out_bits / seqs, "by_tenth": np.where(tenths_asked > 0, by_tenth / seqs, np.nan)}


# ----------------------------------------------------------------------------------
# Setting a run up: fresh, or resumed from a checkpoint


RESUMED_SIZES = ("hidden", "layers", "batch", "seq", "memory", "width", "reads")


def refuse_new_sizes(args, ck):
    """A resumed run keeps the checkpoint's sizes: a size given on the command line that
    differs from them is refused in one line, rather than silently ignored."""
    cfg = ck["info"]["cfg"]
    for k in RESUMED_SIZES:
        if k not in args.given or k not in cfg:
            continue
        given, had = getattr(args, k), cfg[k]
        if k == "memory":  # --memory MIN-MAX trains with a range, recorded beside its MAX
            given = list(given) if isinstance(given, tuple) else given
            had = cfg.get("memory_range", had)
        if given != had:
            show = tasks.span(*had) if isinstance(had, list) else had
            raise UserError(f"{args.load} was trained with --{k} {show}; a resumed run keeps its sizes "
                            f"(drop --{k}, or start a new run)")


def start(model, args, ck, task, script):
    """Build the data, the model, the optimiser and the books, fresh or from the
    checkpoint ck, then train(). -> exit code"""
    choose_optimiser(args, ck)
    dtype = np.dtype(args.dtype)
    if ck is not None:  # the sizes and batching come from the checkpoint
        refuse_new_sizes(args, ck)
        args.batch, args.seq = ck["info"]["cfg"]["batch"], ck["info"]["cfg"]["seq"]
    if task is None:
        vocab, train_ids, val_ids, test_ids = load_text_source(args, ck, script)
        V_in = V_out = len(vocab)
        source = TextSource(vocab, train_ids, val_ids, test_ids, args.batch, args.seq, args.val_chars)
        S = args.seq
    else:
        vocab, V_in, V_out = None, task.V_in, task.V_out  # tokens: V both ways; bits: C channels in, K out
        # the validation episodes come from the seed of the run's start, kept on resuming
        seed = ck["info"].get("task_seed", args.seed) if ck else args.seed
        curriculum = make_curriculum(args, ck, task)
        source = TaskSource(task, args.batch, seed, curriculum)
        whole = source if curriculum is None else TaskSource(task, args.batch, seed)  # all lengths: the last lesson
        S = max(inputs.shape[0] for inputs, _, _ in whole.val)  # the longest episodes: for check_fits
    cfg = ck["info"]["cfg"] if ck is not None else dict(model.config(args), batch=args.batch, seq=args.seq)
    check_fits(model, cfg, max(V_in, V_out), args.batch, S, dtype)  # the wider of the two: an upper bound

    if ck is None:
        rng = np.random.default_rng(args.seed)
        params = model.init_params(cfg, V_in, rng, dtype, V_out)
        opt = common.OPTIMIZERS[args.optim](params, args.lr)
        state = model.init_state(cfg, params, args.batch)
        info = {}
    else:
        info = ck["info"]
        rng = np.random.default_rng()
        rng.bit_generator.state = info["rng"]
        params = {k: v.astype(dtype) for k, v in ck["param"].items()}
        opt = common.OPTIMIZERS[args.optim](params, args.lr)
        opt.load_state({k: {n: a.astype(dtype) for n, a in v.items()} if k in opt.SLOTS else v
                        for k, v in ck["opt"].items()})  # its slots keyed like params, and its counts
        state = {k: v.astype(dtype) if v.dtype.kind == "f" else v for k, v in ck["state"].items()}  # not L_idx
        if task is None:
            source.batches.cursors[:] = ck["cursors"]
        print(f"resumed {args.load} at iter {info['iter']}"
              + (f", {source.curriculum}" if source.curriculum else ""))

    threads = machine.BlasThreads(args.threads, params, cfg, args.batch)
    run = Run(args, model, cfg, source, task, vocab, opt, rng, info, threads)
    if ck is not None and info.get("best_val") is not None:
        run.best_params = {k: v.astype(dtype) for k, v in ck["best"].items()}
    what = (f"{task.describe()}, --io {task.io}" if task else
            f"{V_in} symbols, {len(source.train)} train / {len(source.val)} val"
            + (f" / {len(source.test)} test" if source.test is not None else "") + " chars"
            + (f" (the first {len(source.val_report)} validate each report)"
               if len(source.val_report) < len(source.val) else ""))
    if source.curriculum:
        what += f", {source.curriculum.plan()}"
    print(f"{model.KIND}: {what}, {sum(v.size for v in params.values())} parameters, cfg {cfg}, "
          f"{describe_optimiser(args, run.lr_scale)}, {threads.describe}"
          + (f", checkpoint {args.save}" if args.save else ", no checkpoint (--no-save)"))
    if args.log and ck is None and os.path.exists(args.log):
        open(args.log, "w").close()  # a new run starts a new log; a resumed one appends
    return train(model, cfg, params, opt, state, source, rng, run)


def make_curriculum(args, ck, task):
    """--curriculum: a new run's starts at its first lesson; a resumed run goes on with its
    checkpoint's, at the same lesson, with --lesson-threshold if given, else the same one.
    -> Curriculum, or None"""
    saved = ck["info"].get("curriculum") if ck is not None else None
    if saved is None and ck is not None and (args.curriculum or args.lesson_threshold is not None):
        raise UserError(f"{args.load} was trained without --curriculum; drop --curriculum and --lesson-threshold "
                        f"or start a new run")
    if saved is None and not args.curriculum:
        if args.lesson_threshold is not None:
            raise UserError("--lesson-threshold is an option of --curriculum: add --curriculum")
        return None
    threshold = args.lesson_threshold
    if threshold is None:
        threshold = saved["threshold"] if saved else LESSON_THRESHOLD
    return Curriculum(task, threshold, saved["lesson"] if saved else 1)


def choose_optimiser(args, ck):
    """--optim: a resumed run goes on with its checkpoint's optimiser (another is refused),
    a new one takes Adagrad unless told; --lr: that optimiser's default unless given.
    --lr-schedule cosine needs a budget to fall over."""
    if ck is not None and args.optim not in (None, ck["optim"]):
        raise UserError(f"{args.load} was trained with {ck['optim']}; drop --optim {args.optim} "
                        f"or start a new run")
    args.optim = args.optim or (ck["optim"] if ck is not None else "adagrad")
    if args.lr is None:
        args.lr = common.OPTIMIZERS[args.optim].LR
    if args.lr_schedule == "cosine" and not (args.iters or args.time):
        raise UserError("--lr-schedule cosine falls over the run's --iters or --time: give one of them")


# The LSTM's initial forget-gate bias that trained best with each optimiser (docs/results.md):
# Adagrad needs the gate open at the start, Adam and RMSProp do better with it at 0.
FORGET_BIAS = {"adagrad": 1.0, "adam": 0.0, "rmsprop": 0.0}


def add_forget_bias_argument(parser):
    """--forget-bias, for the models with LSTM cells."""
    parser.add_argument("--forget-bias", type=float, metavar="B",
                        help="initial forget-gate bias (default: " +
                             ", ".join(f"{b:g} with {name}" for name, b in FORGET_BIAS.items()) + ")")


def describe_optimiser(args, lr_scale):
    """E.g. 'adam lr 0.002, warm-up 100 steps, cosine to 0.1x over 900 s' for the start line."""
    s = f"{args.optim} lr {args.lr * lr_scale:g}"
    if lr_scale != 1:
        s += f" (--lr {args.lr:g} times {lr_scale:.3g} from --lr-decay)"
    if args.warmup:
        s += f", warm-up {args.warmup} steps"
    if args.lr_schedule == "cosine":
        budget = f"{args.iters} iterations" if args.iters else f"{args.time:g} s of training"
        s += f", cosine to {args.min_lr_frac:g}x over {budget}"
    return s


def load_text_source(args, ck, script):
    """The training text and its held-out parts -> vocab, train, val, test ids. The
    vocabulary is every character of every file the run is given (as nanoGPT builds it
    from the whole text before splitting), so that a character only the held-out text
    has simply costs what the model gives it."""
    files = {"train": args.text, "valid": args.val, "test": args.test, "encoding": None}
    if args.text is None or (not os.path.exists(args.text) and args.text in CORPUS_NAMES):
        named = common.corpus_files(args.text or "alice29", script)
        for k in ("valid", "test"):
            if files[k] is None:
                files[k] = named[k]
            elif named[k] is not None:
                raise UserError(f"{args.text} has an official {k} split; drop --{k[:4]}")
        files["train"], files["encoding"] = named["train"], named["encoding"]
        if files["valid"] is not None and "val_frac" in args.given:
            raise UserError(f"{args.text} has an official validation split; drop --val-frac")
    encoding = args.encoding or files["encoding"] or "utf-8"
    texts = {k: common.read_text(files[k], encoding) for k in ("train", "valid", "test") if files[k]}
    chars = set().union(*map(set, texts.values()))
    if ck is None:
        vocab = common.Vocab(chars)
    else:
        vocab = ck["vocab"]
        missing = chars - set(vocab.chars)
        if missing:
            raise UserError(f"{args.load} was trained on another vocabulary: its {len(vocab)} characters "
                            f"lack {''.join(sorted(missing))[:20]!r}")
    ids = vocab.encode(texts.pop("train"))
    if "valid" in texts:
        train_ids, _ = common.split_data(ids, 0.0, args.seq, args.batch)
        val_ids = vocab.encode(texts.pop("valid"))
        if len(val_ids) < 2:
            raise UserError(f"{files['valid']} is too short to validate on")
    else:
        train_ids, val_ids = common.split_data(ids, args.val_frac, args.seq, args.batch)
    test_ids = None
    if "test" in texts:
        test_ids = vocab.encode(texts.pop("test"))
        if len(test_ids) < 2:
            raise UserError(f"{files['test']} is too short to test on")
    return vocab, train_ids, val_ids, test_ids


def check_fits(model, cfg, V, B, S, dtype):
    """Refuse, before allocating anything, sizes whose arrays would not fit in memory."""
    need = model.memory_floats(cfg, V, B, S) * np.dtype(dtype).itemsize
    have = machine.available_memory()
    if have is not None and need > 0.8 * have:
        raise UserError(f"these sizes need about {need / 2**30:.3g} GiB of memory for parameters and one "
                        f"window's cache; {have / 2**30:.1f} GiB is free (lower --batch, --seq, --hidden or --layers)")


# ----------------------------------------------------------------------------------
# The modes that do not train


def gradcheck_mode(model, args, task):
    if getattr(args, "stop_usage_grad", False):  # the DNC's: its gradient is not the forward's on purpose
        raise UserError("--gradcheck compares the gradient with the forward's differences, and --stop-usage-grad "
                        "cuts part of it on purpose; dnc-debug.py checks the cut model (its memory steps "
                        "with --stop-usage-grad): drop one of the two")
    cfg = dict(model.config(args), batch=3, seq=6)
    tol = 1e-6
    loss_name = {"bits": "bit-wise sigmoid cross-entropy", "tokens": "softmax cross-entropy"}
    print(f"{model.KIND} gradient check, float64, sizes {model.config(args)}"
          + (f", {task.describe()}, --io {task.io}, its masked loss ({loss_name[task.io]})" if task else ""))
    # the DNC's sparse links pass their threshold only where writes are sharp: gates opened
    prepare = model.open_gates(cfg) if cfg.get("sparse_links") else None
    if task is None:  # a random text, from a carried state
        worst, count = common.check_model_gradients(model, cfg, V=7, checks=args.checks, seed=args.seed, tol=tol,
                                                    prepare=prepare)
    else:  # episodes of the task in its form, from a zero state, with the form's loss
        episodes = task.episodes(np.random.default_rng(args.seed), 3)
        worst, count = common.check_model_gradients(model, cfg, V=task.V_in, V_out=task.V_out, checks=args.checks,
                                                    seed=args.seed, tol=tol, episodes=episodes,
                                                    loss=common.LOSSES[task.io], prepare=prepare)
    return 0 if common.gradcheck_verdict(worst, count, tol) else 1


def sample_mode(model, args, ck):
    """--sample N: N characters from the best params of the checkpoint, after --prime."""
    params = {k: v.astype(args.dtype) for k, v in ck["best"].items()}
    rng = np.random.default_rng(args.seed)
    print(args.prime + common.sample(model, ck["info"]["cfg"], params, ck["vocab"], args.sample, args.temperature,
                                     args.prime, rng))
    return 0


def eval_cfg(model, args, ck, task, length):
    """The checkpoint's configuration, with a larger DNC memory if --memory asks for one
    (N is no parameter size); refuses a length the task or the memory cannot have."""
    try:
        task.episodes(np.random.default_rng(0), 1, length=length)
    except tasks.TaskError as e:
        raise UserError(str(e)) from None
    cfg = dict(ck["info"]["cfg"])
    if "memory" in cfg:  # the N trained (with --memory MIN-MAX, the MAX) unless --memory N is given
        if "memory" in args.given:
            if isinstance(args.memory, tuple):
                raise UserError(f"--memory {tasks.span(*args.memory)}: --eval-lengths, --show and --plot run "
                                f"at one memory size; give --memory N")
            cfg["memory"] = args.memory
        need = task.slots_needed(length)
        if need > cfg["memory"]:
            raise UserError(f"length {length} needs {need} memory slots; this DNC has {cfg['memory']} "
                            f"(add --memory {need} or more)")
    return cfg


def evaluate_mode(model, args, ck, task):
    params = {k: v.astype(args.dtype) for k, v in ck["best"].items()}
    if args.eval_lengths:
        cfgs = [eval_cfg(model, args, ck, task, L) for L in args.eval_lengths]  # refuse before any work
        rng = np.random.default_rng([args.seed, 2])
        memory = f", memory N={cfgs[0]['memory']}" if "memory" in cfgs[0] else ""
        print(f"{task.describe()}; {args.episodes} fresh episodes per length{memory}")
        print(f"{'length':>8} {'wrong bits/seq':>15} {'bits/seq':>9} {'solved':>8}   "
              f"wrong bits/seq in each tenth of the answer, first to last")
        for L, cfg in zip(args.eval_lengths, cfgs):
            B = min(args.episodes, 100)
            batches = [task.episodes(rng, min(B, args.episodes - i), length=L) for i in range(0, args.episodes, B)]
            m = evaluate_task(model, cfg, params, task, batches)
            where = " ".join("-" if np.isnan(v) else f"{v:.2f}" if v else "0" for v in m["by_tenth"])
            print(f"{L:>8} {m['wrong_bits']:>15.3f} {m['answer_bits']:>9.4g} {m['solved']:>8.1%}   {where}")
    if args.show or args.plot:
        pictures = common.load_script("pictures.py")
        L = args.eval_lengths[-1] if args.eval_lengths else task.settings["max_length"]  # the last length evaluated
        cfg = eval_cfg(model, args, ck, task, L)
        rows, title = pictures.episode_rows(model, cfg, params, task, np.random.default_rng(args.seed), L)
        if args.show:
            print(pictures.terminal(rows, title))
        if args.plot:
            try:
                pictures.png(rows, title, args.plot)
            except ImportError:
                raise UserError("--plot needs matplotlib: pip install matplotlib") from None
            print(f"wrote {args.plot}")
    return 0


# ----------------------------------------------------------------------------------
# The command line


CHECKPOINTS = "checkpoints"  # where a run saves when no --save names a file


def range_arg(s):
    """--length / --repeats: 'N' or 'MIN-MAX'."""
    try:
        return tasks.parse_range(s)
    except tasks.TaskError as e:
        raise common.argparse.ArgumentTypeError(str(e)) from None


def lengths_arg(s):
    """--eval-lengths: 'L1,L2,...' positive whole numbers."""
    try:
        out = [int(v) for v in s.split(",")]
    except ValueError:
        out = []
    if not out or min(out) < 1:
        raise common.argparse.ArgumentTypeError(f"{s!r} is not a list of positive lengths like 5,10,20")
    return out


def threshold_arg(s):
    """--lesson-threshold: a share from 0 to 1."""
    try:
        v = float(s)
    except ValueError:
        v = -1.0
    if not 0 <= v <= 1:
        raise argparse.ArgumentTypeError(f"must be a share from 0 to 1, like 0.9, got {s!r}")
    return v


def threads_arg(s):
    if s == "auto":
        return s
    try:
        return common.positive_int(s)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"must be a positive whole number or auto, got {s!r}") from None


def make_parser(model, description, defaults):
    d = {**DEFAULTS, **getattr(model, "SIZE_DEFAULTS", {}), **defaults}
    p = common.Parser(prog=f"{model.KIND}-numpy.py", description=description,
                      formatter_class=common.HelpFormatter)
    pos_int, nonneg_int, pos_float = common.positive_int, common.nonneg_int, common.positive_float
    p.add_argument("text", nargs="?",
                   help="training text file, or a corpus: alice29 (the default), tinyshakespeare, "
                        "ptb, text8, enwik8 (downloaded on first use, with their official splits)")
    # sizes: None means "the task's reference setting, else the default shown"
    p.add_argument("--hidden", type=pos_int, help=f"H, units per layer (default {d['hidden']})")
    p.add_argument("--layers", type=pos_int, help=f"L, stacked layers (default {d['layers']})")
    p.add_argument("--batch", type=pos_int, help=f"B, parallel streams or episodes (default {d['batch']})")
    p.add_argument("--seq", type=pos_int, help=f"S, BPTT window length of a text (default {d['seq']})")
    p.add_argument("--optim", choices=sorted(common.OPTIMIZERS),
                   help="the optimiser: adagrad (min-char-rnn's), adam (Kingma & Ba 2015) or rmsprop "
                        "(TensorFlow 1's, as deepmind/dnc trains); default adagrad, or the checkpoint's")
    p.add_argument("--lr", type=pos_float,
                   help="learning rate (default: " + ", ".join(f"{name} {opt.LR:g}" for name, opt in
                                                                sorted(common.OPTIMIZERS.items())) + ")")
    p.add_argument("--lr-decay", type=pos_float, default=1.0, metavar="F",
                   help="multiply the learning rate by F after every report without a new best validation")
    p.add_argument("--warmup", type=nonneg_int, default=0, metavar="N",
                   help="raise the learning rate linearly from lr/N to lr over the first N iterations")
    p.add_argument("--lr-schedule", choices=("constant", "cosine"), default="constant",
                   help="cosine: fall from lr to lr x --min-lr-frac over --iters, else over --time "
                        "(seconds of training); a resumed run starts its schedule afresh")
    p.add_argument("--min-lr-frac", type=common.fraction, default=0.1, metavar="F",
                   help="where --lr-schedule cosine ends, as a fraction of lr")
    p.add_argument("--clip", type=common.nonneg_float, default=5.0, help="global gradient-norm clip (0: off)")
    p.add_argument("--dropout", type=common.fraction, default=0.0, metavar="P",
                   help="dropout between layers and before the output (never on recurrent connections)")
    p.add_argument("--seed", type=nonneg_int, default=0, help="fixes initialisation, batching, episodes, dropout and sampling")
    p.add_argument("--time", type=common.nonneg_float,
                   help=f"stop after this many seconds of training (validating not counted), 0: no limit "
                        f"(default {d['time']:g})")
    p.add_argument("--iters", type=nonneg_int, default=0, help="stop after this many iterations (0: no limit)")
    p.add_argument("--report", type=pos_int, default=100, help="iterations between progress lines")
    p.add_argument("--report-seconds", type=common.nonneg_float, default=0.0, metavar="S",
                   help="a progress line every S seconds of training instead (validation not counted; "
                        "no samples), 0: off")
    p.add_argument("--patience", type=nonneg_int, default=5, metavar="K",
                   help="stop after K reports without a new best validation (0: never)")
    p.add_argument("--val-frac", type=common.fraction,
                   help=f"held-out tail of the text for validation, when there is no --val (default {d['val_frac']})")
    p.add_argument("--val", metavar="PATH", help="a separate validation text")
    p.add_argument("--test", metavar="PATH", help="a test text, scored with the best model at the end")
    p.add_argument("--val-chars", type=nonneg_int, default=250_000, metavar="N",
                   help="validate on the first N held-out characters at reports, 0: all (the end uses all)")
    p.add_argument("--threads", type=threads_arg, default="auto", metavar="N|auto",
                   help="threads of the matrix products; auto: two where they pay and a core is idle, "
                        "else one (OPENBLAS_NUM_THREADS, if set, stands)")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32", help="training precision")
    p.add_argument("--save", metavar="PATH",
                   help="checkpoint written at every report, at the end and on Ctrl-C "
                        f"(default {CHECKPOINTS}/{model.KIND}-NAME.npz, NAME the text's or the task's)")
    p.add_argument("--no-save", action="store_true", help="write no checkpoint")
    p.add_argument("--load", metavar="PATH", help="resume training, or sample / evaluate, from this checkpoint "
                   "(--sample, --eval-lengths, --show and --plot take the default checkpoint without it)")
    p.add_argument("--log", metavar="PATH", help="append one CSV row per report (a resumed run continues it)")
    p.add_argument("--sample", type=nonneg_int, default=0, metavar="N",
                   help="print N sampled characters (from the best model) and exit")
    p.add_argument("--temperature", type=pos_float, default=1.0, help="sampling temperature")
    p.add_argument("--prime", default="", help="text the model reads before sampling")
    p.add_argument("--gradcheck", action="store_true", help="float64 gradient check of every parameter; exit 1 on failure")
    p.add_argument("--checks", type=pos_int, default=10, help="gradient-check entries per parameter")
    p.add_argument("--encoding", help="text file encoding (default utf-8; latin-1 for enwik8)")
    t = p.add_argument_group("memory tasks (instead of a text)")
    t.add_argument("--task", choices=sorted(tasks.TASKS), help="train on episodes of a memory task")
    t.add_argument("--io", choices=tasks.IO_FORMS,
                   help="bits (the default): each step a row of bits and flag channels, one sigmoid per "
                        "output bit, the bit-wise cross-entropy, as in the papers; tokens: each step one "
                        "token, a softmax over 2^bits + a few (--bits at most 10)")
    t.add_argument("--bits", type=pos_int,
                   help=f"bits of each vector (copy 6, repeat-copy 4, recall 6; at most {tasks.MAX_BITS['bits']}, "
                        f"{tasks.MAX_BITS['tokens']} with --io tokens)")
    t.add_argument("--length", type=range_arg, metavar="MIN-MAX",
                   help="episode lengths: copy / repeat-copy sequence length, recall items, add bits, "
                        "series-copy the number of sequences in an episode (also what --eval-lengths and "
                        "--curriculum vary)")
    t.add_argument("--repeats", type=range_arg, metavar="MIN-MAX", help="repeat-copy's repeat counts")
    t.add_argument("--item-length", type=range_arg, metavar="N|MIN-MAX",
                   help="recall: vectors per item, one number (default 3); series-copy: vectors per "
                        "sequence, each sequence drawing its own from MIN-MAX (default 1-5)")
    t.add_argument("--curriculum", action="store_true",
                   help="grow the training lengths lesson by lesson, from the task's shortest to its longest "
                        "(--length), the lessons ending at doubling lengths: copy 1-10 has five, ending at 1, 2, "
                        f"4, 8, 10. A lesson draws {100 - 100 * LESSON_REVIEW:.0f}%% of its episodes over its new "
                        f"lengths, {100 * LESSON_REVIEW:.0f}%% over all its lengths so far; its validation episodes "
                        "are drawn the same way, and a report at which --lesson-threshold of them are solved "
                        "starts the next lesson, with the best validation and --patience afresh (a resumed run "
                        "goes on at its lesson)")
    t.add_argument("--lesson-threshold", type=threshold_arg, metavar="F",
                   help=f"the share of a lesson's validation episodes solved that passes it, 0 to 1 "
                        f"(default {LESSON_THRESHOLD:g}; 0: a lesson per report)")
    t.add_argument("--eval-lengths", type=lengths_arg, metavar="L1,L2,...",
                   help="wrong bits and episodes solved at these lengths, and in which tenth of the answer "
                        "the wrong bits are, then exit")
    t.add_argument("--episodes", type=pos_int, default=1000, help="fresh episodes per length for --eval-lengths")
    t.add_argument("--show", action="store_true",
                   help="draw one episode in the terminal (of the last --eval-lengths, else the longest trained)")
    t.add_argument("--plot", metavar="PNG", help="draw that episode into a PNG (needs matplotlib)")
    model.add_arguments(p)
    return p


def task_settings(args, name):
    """The task options the user gave, as data/tasks.py settings of the task called name.
    --item-length is one number for recall (its items all have that length) and a range
    for series-copy (each sequence draws its own)."""
    s = {}
    if args.bits is not None:
        s["bits"] = args.bits
    if args.length is not None:
        s["min_length"], s["max_length"] = args.length
    if args.repeats is not None:
        s["min_repeats"], s["max_repeats"] = args.repeats
    if args.item_length is not None:
        lo, hi = args.item_length
        if name == "recall":
            if lo != hi:
                raise UserError(f"--item-length {tasks.span(lo, hi)}: recall's items all have one length; "
                                f"give one number")
            s["item_length"] = lo
        else:
            s["min_item_length"], s["max_item_length"] = lo, hi
    return s


def check_options(args):
    """Contradictory or incomplete combinations: one line each."""
    given_task_flags = [f"--{f.replace('_', '-')}" for f in TASK_FLAGS if getattr(args, f) is not None]
    if args.save and args.no_save:
        raise UserError("give either --save PATH or --no-save, not both")
    if args.task and args.text:
        raise UserError(f"--task {args.task} trains on generated episodes: drop the text {args.text}")
    if given_task_flags and not args.task and not args.load:
        raise UserError(f"{given_task_flags[0]} is a task option: add --task copy (or another task)")
    if args.task and (args.val or args.test or args.val_frac is not None):
        raise UserError("--val, --test and --val-frac are for texts; a task validates on fresh episodes")
    if args.val and args.val_frac is not None:
        raise UserError("give either --val PATH or --val-frac, not both")
    if args.repeats is not None and args.task not in (None, "repeat-copy"):
        raise UserError(f"--repeats is an option of repeat-copy, not {args.task}")


def main(model, description, defaults=None, argv=None):
    """Parse the command line and run: gradient check, sampling, evaluation or training."""
    args = make_parser(model, description, defaults or {}).parse_args(argv)
    machine.keep_freed_memory()
    try:
        code = run(model, args, defaults or {})
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


def default_checkpoint(kind, args):
    """checkpoints/KIND-NAME.npz, NAME the task's, the corpus's or the text file's name."""
    name = args.task or os.path.splitext(os.path.basename(args.text or "alice29"))[0]
    return os.path.join(CHECKPOINTS, f"{kind}-{name}.npz")


def choose_checkpoints(model, args):
    """The modes that use a trained model take the default checkpoint when no --load
    names one (and say so); training saves to --save, else back into the checkpoint it
    resumed, else to the default checkpoint, unless --no-save."""
    uses_model = [name for name, on in (("--sample", args.sample), ("--eval-lengths", args.eval_lengths),
                                        ("--show", args.show), ("--plot", args.plot)) if on]
    if uses_model and not args.load:
        path = default_checkpoint(model.KIND, args)
        if not os.path.exists(path):
            raise UserError(f"{uses_model[0]} needs a trained model and there is none at {path}: "
                            f"train one first, or add --load PATH")
        print(f"using {path}", file=sys.stderr)
        args.load = path
    if not (uses_model or args.gradcheck or args.save or args.no_save):
        args.save = args.load or default_checkpoint(model.KIND, args)


def run(model, args, defaults):
    check_options(args)
    choose_checkpoints(model, args)
    script = f"{model.KIND}-numpy.py"
    ck = common.load_checkpoint(args.load, model.KIND) if args.load else None
    if ck is not None and getattr(args, "controller", None):  # the DNC's --controller
        had = ck["info"]["cfg"].get("controller", "lstm")  # checkpoints from before --controller were all lstm
        if args.controller != had:
            raise UserError(f"{args.load} was trained with --controller {had}; drop --controller {args.controller} "
                            f"or start a new run")
    for option in ("sharpen", "mask", "dealloc"):  # the DNC's refinements: a checkpoint's model keeps its own
        if ck is not None and getattr(args, option, False) and not ck["info"]["cfg"].get(option, False):
            raise UserError(f"{args.load} was trained without --{option}; drop it or start a new run")
    if ck is not None and getattr(args, "sparse_links", None) is not None:  # the DNC's --sparse-links K
        had = ck["info"]["cfg"].get("sparse_links", 0)  # checkpoints from before --sparse-links were all dense
        if args.sparse_links != had:
            raise UserError(f"{args.load} was trained with {f'--sparse-links {had}' if had else 'dense links'}; "
                            f"drop --sparse-links {args.sparse_links} or start a new run")
    task = None
    if ck is not None and ck["info"].get("task"):
        saved = ck["info"]["task"]
        if args.task and args.task != saved["name"]:
            raise UserError(f"{args.load} was trained on the task {saved['name']}, not {args.task}")
        io = saved.get("io", "tokens")  # checkpoints from before --io were all tokens
        if args.io not in (None, io):
            raise UserError(f"{args.load} was trained with --io {io}; drop --io {args.io} or start a new run")
        clash = {k: v for k, v in task_settings(args, saved["name"]).items() if saved["settings"].get(k) != v}
        if clash and not args.eval_lengths:
            raise UserError(f"{args.load} was trained with {saved['name']} settings {saved['settings']}; "
                            f"drop the task options that differ ({', '.join(sorted({tasks.OPTION[k] for k in clash}))})")
        task = make_task(saved["name"], saved["settings"], io)
        if args.text:
            raise UserError(f"{args.load} is a {saved['name']} model: it takes no text")
    elif ck is not None:
        if args.task or args.eval_lengths or args.show or args.plot:
            what = f"--task {args.task}" if args.task else "--eval-lengths, --show and --plot"
            raise UserError(f"{args.load} was trained on a text; {what} need a model trained on a task")
    elif args.task:
        task = make_task(args.task, task_settings(args, args.task), args.io or "bits")
    if task is None and (args.curriculum or args.lesson_threshold is not None):
        raise UserError("--curriculum grows the episode lengths of a memory task (add --task copy); a text has none")
    if task is None and isinstance(getattr(args, "memory", None), tuple):  # the DNC's --memory MIN-MAX
        raise UserError(f"--memory {tasks.span(*args.memory)} gives each batch of a task's episodes a fresh memory; "
                        f"a text carries its memory from window to window: give one number")
    args.given = {k for k, v in vars(args).items() if v is not None}  # before the defaults fill in
    fill_sizes(args, model, task, defaults)
    if args.gradcheck:
        return gradcheck_mode(model, args, task)
    if args.sample:
        if task is not None:
            raise UserError(f"{args.load} is a {task.name} model; --sample draws text from a text model")
        return sample_mode(model, args, ck)
    if args.eval_lengths or args.show or args.plot:
        return evaluate_mode(model, args, ck, task)
    return start(model, args, ck, task, script)


def fill_sizes(args, model, task, defaults):
    """Options not given on the command line (None): the task's reference setting, else the
    defaults. run() notes which were given (args.given) before this fills in the others."""
    d = {**DEFAULTS, **getattr(model, "SIZE_DEFAULTS", {}), **defaults, **(task.model_defaults if task else {})}
    for k in ("hidden", "layers", "batch", "seq", "time", "val_frac", *getattr(model, "SIZE_DEFAULTS", {})):
        if getattr(args, k) is None:
            setattr(args, k, d[k])
    if getattr(args, "forget_bias", 0.0) is None:  # the LSTM cells': what trained best with the optimiser
        args.forget_bias = FORGET_BIAS[args.optim or "adagrad"]


def make_task(name, settings, io):
    try:
        return tasks.make_task(name, io, **settings)
    except tasks.TaskError as e:
        raise UserError(str(e)) from None

"""Time to quality: our lstm-numpy.py and a PyTorch nn.LSTM of the same sizes, side by side.

    python benchmarks/quality.py data/tinyshakespeare.txt --minutes 15 --optim adam
    python benchmarks/quality.py TEXT --sweep 1e-3,2e-3,4e-3 --sweep-minutes 3   # the peer's lr first
    python benchmarks/quality.py TEXT --no-peer --minutes 0.5                    # ours alone

Both sides train at the same time, each on a core of its own (os.sched_setaffinity) with
one BLAS / torch thread, for the same --minutes of training, on the same text and split
(common.Vocab of the whole text, common.split_data: the last 10% held out), in the same
windows (common.Batches through train.TextSource: B streams of S characters, the state
carried and reset when a stream wraps), at the same sizes (--layers x --hidden, --dropout
between layers and before the output, --seq, --batch, global-norm clip 5, float32).

    ours   lstm-numpy.py as a user runs it, in a subprocess of this Python, with --optim,
           --lr and any option this script does not know passed on to it; --time is
           seconds of training, --report-seconds sets its validations, --log gives them
    peer   nn.LSTM(V, H, L) over one-hot characters (the same model as our gather of Wx
           rows), dropout, nn.Linear(H, V); torch.optim.Adam at --peer-lr,
           clip_grad_norm_(5); the state detached between windows

Both are validated the same way: the whole held-out part, read by train.TextSource.score
and train.evaluate_text (up to 128 streams, the state carried; the peer through Peer's
init_state and forward, which make it look like one of our model modules), every --every
seconds of training and at the end; time spent validating is not training time. The
table gives the best validation BPC so far at each --at minute and at the end, the
training rates, the commands, the date and the machine; on stdout, and in --out FILE.
torch is an optional extra (benchmarks/requirements.txt): without it the peer's cells
say "not available". Bad input is one line on stderr, exit 2.
"""
import argparse
import csv
import datetime
import math
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time

for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):  # one thread each,
    os.environ[var] = "1"  # set before numpy and torch start their pools (ours inherits it)

import numpy as np  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
import common  # noqa: E402  (the project's shared module, one folder up)
import machine  # noqa: E402  (describe(): the machine in one line)
import train  # noqa: E402  (TextSource and evaluate_text: how held-out text is scored)

try:
    import torch
    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
except ImportError:
    torch = None

CLIP, VAL_FRAC = 5.0, 0.1


# ----------------------------------------------------------------------------------
# The peer


class Peer:
    """nn.LSTM over one-hot characters, dropout, nn.Linear; Adam and the global-norm clip.
    Also one of our model modules as train.evaluate_text calls them (init_state, forward),
    so that it scores held-out text exactly as ours is scored."""

    def __init__(self, V, H, L, p, lr, seed):
        torch.manual_seed(seed)
        self.V, self.H, self.L = V, H, L
        self.lstm = torch.nn.LSTM(V, H, L, dropout=p if L > 1 else 0.0)  # dropout between layers
        self.drop = torch.nn.Dropout(p)  # and before the output, as ours
        self.out = torch.nn.Linear(H, V)
        self.params = list(self.lstm.parameters()) + list(self.out.parameters())
        self.opt = torch.optim.Adam(self.params, lr=lr)
        self.eye = torch.eye(V)  # one-hot rows

    def init_state(self, cfg, params, B):
        """-> (h, c), each (L, B, H) zeros"""
        return torch.zeros(self.L, B, self.H), torch.zeros(self.L, B, self.H)

    def logits(self, inputs, state):
        """inputs (S, B) ids -> logits (S, B, V) tensor, last state"""
        x = self.eye[torch.from_numpy(inputs.astype(np.int64))]  # (S, B, V)
        y, state = self.lstm(x, state)
        return self.out(self.drop(y)), state

    def forward(self, params, inputs, state, cfg=None, rng=None):
        """As our models' forward, for evaluation (no dropout, no graph): -> logits
        (S, B, V) array, last state, no cache"""
        for m in (self.lstm, self.drop):
            m.eval()
        with torch.no_grad():
            logits, state = self.logits(inputs, state)
        for m in (self.lstm, self.drop):
            m.train()
        return logits.numpy(), state, None

    def train_step(self, inputs, targets, state):
        """One window: forward, cross-entropy, backward, clip, Adam. -> loss (nats), last state"""
        logits, state = self.logits(inputs, state)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, self.V),
                                                 torch.from_numpy(targets.astype(np.int64)).reshape(-1))
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, CLIP)
        self.opt.step()
        return loss.item(), tuple(s.detach() for s in state)  # truncated BPTT: the values, not the graph


def train_peer(args, lr, minutes, data, log_path=None, label="peer"):
    """Train a Peer for `minutes` of training, validating every --every seconds of it and
    at the end. -> [(training seconds, val BPC), ...], training rate (char/s)"""
    vocab, train_ids, val_ids = data
    B, S = args.batch, args.seq
    peer = Peer(len(vocab), args.hidden, args.layers, args.dropout, lr, args.seed)
    source = train.TextSource(vocab, train_ids, val_ids, None, B, S, 0)
    state = peer.init_state(None, None, B)
    start, trained, it, nats, windows, next_val, vals = time.perf_counter(), 0.0, 0, 0.0, 0, args.every, []
    while trained < 60 * minutes:
        t0 = time.perf_counter()
        inputs, targets, _, reset = source.next(None)
        for s in state:
            s[:, torch.from_numpy(reset)] = 0  # rows that start the text afresh
        loss, state = peer.train_step(inputs, targets, state)
        trained += time.perf_counter() - t0
        it, nats, windows = it + 1, nats + loss, windows + 1
        if trained >= next_val or trained >= 60 * minutes:
            val = common.bpc(source.score(peer, None, None, val_ids))
            vals.append((trained, val))
            rate = it * B * S / trained
            print(f"{label}: {trained:.1f} s of training, iter {it}, train {common.bpc(nats / windows):.4f} BPC, "
                  f"val {val:.4f} BPC, {rate:.0f} char/s", file=sys.stderr, flush=True)
            if log_path:  # as ours: seconds of the wall clock (validation included), rate of training
                write_row(log_path, {"seconds": f"{time.perf_counter() - start:.3f}", "iter": it,
                                     "chars": it * B * S, "train_bpc": f"{common.bpc(nats / windows):.6f}",
                                     "val_bpc": f"{val:.6f}", "rate": f"{rate:.1f}"})
            nats, windows, next_val = 0.0, 0, (trained // args.every + 1) * args.every
    return vals, it * B * S / trained


def write_row(path, row):
    """Append a row to a CSV with the columns of our --log (benchmarks/curves.py reads both)."""
    new = not os.path.exists(path)
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=train.LOG_COLUMNS)
        if new:
            w.writeheader()
        w.writerow(row)


def sweep(args, data, core):
    """The peer alone, --sweep-minutes at each --sweep lr, one after the other on its core.
    -> the best lr, and a line that says where it came from"""
    os.sched_setaffinity(0, {core})
    results = []
    for lr in args.sweep:
        vals, _ = train_peer(args, lr, args.sweep_minutes, data, label=f"sweep lr {lr:g}")
        results.append((min(v for _, v in vals), lr))
    best = min(results)[1]
    how = (f"the best of a sweep, {args.sweep_minutes:g} min of training at each lr, best val BPC "
           + ", ".join(f"{v:.3f} at {lr:g}" for v, lr in results))
    print(f"sweep: {how}; the peer trains at lr {best:g}", file=sys.stderr, flush=True)
    return best, how


# ----------------------------------------------------------------------------------
# Ours


def our_command(args, text, log):
    """lstm-numpy.py as a user would type it, at this comparison's sizes and clock."""
    cmd = [os.path.join(ROOT, "lstm-numpy.py"), text, "--hidden", args.hidden, "--layers", args.layers,
           "--dropout", args.dropout, "--seq", args.seq, "--batch", args.batch, "--clip", CLIP,
           "--optim", args.optim, *(["--lr", args.lr] if args.lr else []),
           "--time", 60 * args.minutes, "--report-seconds", args.every, "--val-frac", VAL_FRAC,
           "--val-chars", 0, "--patience", 0, "--seed", args.seed, "--threads", 1, "--no-save",
           "--log", log, *args.ours_extra]
    return [str(c) for c in cmd]


def read_our_log(path):
    """Our --log CSV -> [(training seconds, val BPC), ...], the last training rate (char/s).
    Its rate column is characters per second of training, so chars / rate is the training
    time of a row (seconds is the wall clock, validation included)."""
    with open(path, newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["val_bpc"]]
    vals = [(int(r["chars"]) / float(r["rate"]), float(r["val_bpc"])) for r in rows]
    return vals, float(rows[-1]["rate"]) if rows else float("nan")


# ----------------------------------------------------------------------------------
# The table


def best_at(vals, seconds, every):
    """The best validation BPC by `seconds` of training (inf: by the end). A validation due
    at a time comes at the end of the iteration that passes it: up to half an interval
    later still counts."""
    seen = [v for s, v in vals if s <= seconds + every / 2]
    return min(seen) if seen else None


def table(args, text, data, ours, peer, commands, peer_lr_note, cores):
    """The markdown report. ours, peer: (vals, rate) or a note (str) saying why there is none;
    cores: which side ran on which core."""
    vocab, train_ids, val_ids = data
    times = [60 * m for m in args.at if m < args.minutes] + [math.inf]
    head = [f"{t / 60:g} min" if t < math.inf else f"{args.minutes:g} min (end)" for t in times]
    versions = f"python {platform.python_version()} ({sys.executable}), numpy {np.__version__}, " + (
        f"torch {torch.__version__}" if torch else "torch not installed")
    out = [
        "# Time to quality: lstm-numpy.py and a PyTorch nn.LSTM, side by side", "",
        f"- date: {datetime.datetime.now().astimezone().strftime('%Y-%m-%d %H:%M %Z')}",
        f"- machine: {machine.describe()}; {versions}",
        f"- text: {os.path.basename(text)}, {len(vocab)} symbols, {len(train_ids)} train / {len(val_ids)} val "
        f"characters (the last {VAL_FRAC:.0%} held out), validated whole every {args.every:g} s of training and "
        "at the end (train.evaluate_text for both)",
        f"- sizes: {args.layers} x {args.hidden} LSTM, dropout {args.dropout:g}, seq {args.seq}, batch "
        f"{args.batch}, clip {CLIP:g}, float32; {args.minutes:g} min of training each (validation not counted)",
        f"- cores: {cores}; one BLAS / torch thread each",
        "", "Best validation BPC so far:", "",
        "| | " + " | ".join(head) + " | char/s training | validations |",
        "|---|" + "---:|" * (len(times) + 2),
    ]
    extra = " " + shlex.join(args.ours_extra) if args.ours_extra else ""
    rows = ((f"ours: lstm-numpy.py, {args.optim} lr {args.lr or common.OPTIMIZERS[args.optim].LR:g}{extra}", ours),
            (f"peer: torch nn.LSTM, Adam lr {args.peer_lr:g}", peer))
    for name, result in rows:
        if isinstance(result, str):
            out.append(f"| {name} | " + " | ".join([result] * len(times)) + " | n/a | n/a |")
            continue
        vals, rate = result
        cells = [best_at(vals, t, args.every) for t in times]
        out.append(f"| {name} | " + " | ".join("n/a" if c is None else f"{c:.3f}" for c in cells)
                   + f" | {rate:,.0f} | {len(vals)} |")
    out += ["", "Commands:", ""] + [f"    {c}" for c in commands]
    if peer_lr_note:
        out += ["", f"The peer's lr: {peer_lr_note}."]
    return "\n".join(out) + "\n"


# ----------------------------------------------------------------------------------
# Command line


def number_list(what, example):
    """An argparse type: 'A,B,...' positive numbers."""
    def parse(s):
        try:
            values = [float(v) for v in s.split(",")]
        except ValueError:
            values = []
        if not values or min(values) <= 0 or not all(map(math.isfinite, values)):
            raise argparse.ArgumentTypeError(f"{s!r} is not a list of positive {what}, like {example}")
        return values
    return parse


def make_parser():
    p = common.Parser(prog="quality.py", description=__doc__.split("\n\n")[0],
                      formatter_class=common.HelpFormatter, allow_abbrev=False)
    pos_int, pos_float = common.positive_int, common.positive_float
    p.add_argument("text", help="a text file, or a corpus name data/download.py knows (its training file); "
                                "options of lstm-numpy.py this script does not have go after it, to ours")
    p.add_argument("--minutes", type=pos_float, default=15.0, help="minutes of training of each side")
    p.add_argument("--at", type=number_list("minutes", "3,10,15"), default=[3.0, 10.0, 15.0],
                   help="minutes of training at which the table gives the best validation so far")
    p.add_argument("--every", type=pos_float, default=30.0, help="seconds of training between validations")
    p.add_argument("--hidden", type=pos_int, default=256)
    p.add_argument("--layers", type=pos_int, default=2)
    p.add_argument("--dropout", type=common.fraction, default=0.2)
    p.add_argument("--seq", type=pos_int, default=64)
    p.add_argument("--batch", type=pos_int, default=32)
    p.add_argument("--seed", type=common.nonneg_int, default=0)
    p.add_argument("--optim", choices=sorted(common.OPTIMIZERS), default="adagrad", help="our optimiser")
    p.add_argument("--lr", type=pos_float, help="our learning rate (default: the optimiser's, as lstm-numpy.py)")
    p.add_argument("--peer-lr", type=pos_float, default=2e-3, help="the peer's Adam learning rate")
    p.add_argument("--sweep", type=number_list("learning rates", "1e-3,2e-3,4e-3"), metavar="LR1,LR2,...",
                   help="first train the peer alone at each lr for --sweep-minutes; it then trains at the best")
    p.add_argument("--sweep-minutes", type=pos_float, default=3.0, help="minutes of training per --sweep lr")
    p.add_argument("--no-peer", action="store_true", help="ours alone, even where torch is installed")
    p.add_argument("--logs", metavar="DIR", help="keep ours.csv (our --log), ours.out and peer.csv here")
    p.add_argument("--out", metavar="FILE", help="also write the table to FILE")
    return p


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args, args.ours_extra = make_parser().parse_known_args(argv)
    try:
        return compare(args, argv)
    except common.UserError as e:
        print(f"quality.py: error: {e}", file=sys.stderr)
        return 2


def compare(args, argv):
    text = args.text
    if not os.path.isfile(text) and text in train.CORPUS_NAMES:
        text = common.corpus_files(text)["train"]
    raw = common.read_text(text)
    vocab = common.Vocab(raw)
    data = (vocab, *common.split_data(vocab.encode(raw), VAL_FRAC, args.seq, args.batch))
    if args.sweep and args.no_peer:
        raise common.UserError("--sweep tunes the peer: drop --no-peer")
    if not hasattr(os, "sched_setaffinity"):
        raise common.UserError("pinning each side to a core needs os.sched_setaffinity (Linux)")
    cores = sorted(os.sched_getaffinity(0))
    if not args.no_peer and torch is not None and len(cores) < 2:
        raise common.UserError(f"ours and the peer need a core each; this process may use {len(cores)} "
                               "(add --no-peer to run ours alone)")
    peer_lr_note = ""
    if args.sweep and torch is not None:
        args.peer_lr, peer_lr_note = sweep(args, data, cores[1])

    with tempfile.TemporaryDirectory(prefix="quality-") as scratch:
        return side_by_side(args, argv, text, data, cores, peer_lr_note, args.logs or scratch)


def side_by_side(args, argv, text, data, cores, peer_lr_note, logs):
    """Ours in a subprocess on the first core, the peer here on the second, at the same
    time; then the table. -> exit code"""
    os.makedirs(logs, exist_ok=True)
    our_log, our_out, peer_log = (os.path.join(logs, n) for n in ("ours.csv", "ours.out", "peer.csv"))
    for path in (our_log, peer_log):
        if os.path.exists(path):
            os.remove(path)
    cmd = our_command(args, os.path.abspath(text), "ours.csv")  # run in logs/
    with open(our_out, "w") as out:
        ours_proc = subprocess.Popen([sys.executable, *cmd], stdout=out, stderr=subprocess.PIPE, text=True,
                                     cwd=logs)
    try:
        os.sched_setaffinity(ours_proc.pid, {cores[0]})  # before it starts numpy's threads
        where = f"ours on core {cores[0]}"
        print(f"quality.py: ours (pid {ours_proc.pid}) trains on core {cores[0]} for {args.minutes:g} min"
              + (f"; logs in {logs}" if args.logs else ""), file=sys.stderr, flush=True)
        if args.no_peer:
            peer = "not run (--no-peer)"
        elif torch is None:
            peer = "not available (no torch)"
        else:
            os.sched_setaffinity(0, {cores[1]})
            where += f", the peer on core {cores[1]}"
            peer = train_peer(args, args.peer_lr, args.minutes, data, peer_log)
        err = ours_proc.communicate()[1]
    finally:
        if ours_proc.poll() is None:
            ours_proc.kill()
    if ours_proc.returncode != 0:
        lines = [l for l in err.splitlines() if l.strip()] or [f"exit code {ours_proc.returncode}"]
        print(f"quality.py: ours failed: {lines[-1]}", file=sys.stderr)
        return 1
    ours = read_our_log(our_log)
    commands = [f"ours: python {shlex.join(os.path.relpath(c, ROOT) if c.startswith(ROOT) else c for c in cmd)}"
                + (f"  (in {logs})" if args.logs else ""),
                *([f"peer: Peer in benchmarks/quality.py (torch.optim.Adam lr {args.peer_lr:g})"]
                  if not isinstance(peer, str) else []),
                f"this table: python benchmarks/quality.py {shlex.join(argv)}"]
    report = table(args, text, data, ours, peer, commands, peer_lr_note, where)
    print(report, end="")
    if args.out:
        with open(args.out, "w") as f:
            f.write(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())

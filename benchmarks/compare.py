"""Our NumPy scripts against PyTorch peers of the same models, side by side.

    python benchmarks/compare.py                 # full run, writes benchmarks/results.md
    python benchmarks/compare.py --quick         # a short run (fewer, shorter rounds), printed only
    python benchmarks/compare.py --profile       # also split our iterations into phases, and their floor
    python benchmarks/compare.py --no-peers      # our scripts only, even if torch is there

For every configuration, our model and its peer train in turn, A B A B, for --rounds
rounds of --seconds each. Both keep training from round to round, so when the last
round ends each has had the same wall time; the table gives:
    char/s      batch * seq * iterations / seconds, the median over the rounds
    ratio       the median of the per-round ratios ours / peer (pairs of neighbouring
                rounds see the same machine load, which is what makes it trustworthy
                on a shared, noisy machine)
    BPC         training bits per character, the mean over each side's last round,
                i.e. what it reached after the same total wall time

Both sides run the training loop of train.train: common.Batches over the same text,
state rows reset when their cursor wraps, Adagrad with lr 0.1, global-norm clip 5,
float32, hidden state carried from window to window (detached on the PyTorch side).
The peers are nn.RNN(tanh) + nn.Linear, nn.LSTM + nn.Linear (one-hot input: the same
model as our gather of Wx rows) and the DNC of the PyPI package `dnc` (pytorch-dnc) with
an LSTM controller. numpy and the standard library are the only hard requirements:
torch and dnc are optional (benchmarks/requirements.txt), and missing peers only leave
their cells "not available".

Also reported: the numpy GEMM ceiling (np.matmul GFLOP/s at the shapes each model
multiplies, float32) and the fraction of it each of our scripts reaches, and with
--profile the forward / backward / update split of our iterations and their floor (how
fast this code could be in NumPy: the products at the GEMM ceiling, the rest at batch 1).
"""
import argparse
import datetime
import importlib.metadata
import os
import platform
import statistics
import sys
import time
import warnings


def threads_from_argv(argv, default="1"):
    """The --threads value, read before numpy and torch are imported: their thread pools
    take the count from the environment when they start."""
    for i, a in enumerate(argv):
        if a == "--threads" and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith("--threads="):
            return a.split("=", 1)[1]
    return default


THREADS = threads_from_argv(sys.argv[1:]) if __name__ == "__main__" else "auto"
if THREADS.isdigit():
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = THREADS

import numpy as np  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
import common  # noqa: E402  (the project's shared module, one folder up)
import machine  # noqa: E402  (BLAS threads and the allocator, as the scripts set them)
import train  # noqa: E402  (the training loop and command line)

try:
    import torch
    if THREADS.isdigit():
        torch.set_num_threads(int(THREADS))
    import torch.nn as nn
    import torch.nn.functional as F
    TORCH_MISSING = None
except ImportError:
    torch = None
    TORCH_MISSING = "not available (no torch)"

try:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from dnc import DNC as TorchDNC  # pytorch-dnc
    DNC_MISSING = None
except Exception:  # ImportError, or torch missing underneath it
    TorchDNC = None
    DNC_MISSING = "not available (no torch)" if torch is None else "not available (no dnc package)"

LR, CLIP, VAL_FRAC, SEED = 0.1, 5.0, 0.1, 0  # as the scripts' defaults


class Config:
    """One row of the table: a model kind, its sizes and the target ratio."""

    def __init__(self, name, kind, cfg, B, S, target):
        self.name, self.kind, self.cfg, self.B, self.S, self.target = name, kind, cfg, B, S, target
        self.script = f"{kind}-numpy.py"


CONFIGS = [
    Config("RNN 32/16/25", "rnn", {"hidden": 32, "layers": 1}, 16, 25, 1.5),
    Config("LSTM 32/16/25", "lstm", {"hidden": 32, "layers": 1}, 16, 25, 1.0),
    Config("LSTM 128/32/32", "lstm", {"hidden": 128, "layers": 1}, 32, 32, 1.0),
] + [Config(f"DNC 128, N{N} W16 R4, 32/32", "dnc",
             {"hidden": 128, "layers": 1, "memory": N, "width": 16, "reads": 4}, 32, 32, target)
     for N, target in ((16, 5.0), (64, 3.0), (256, 3.0))]
PEER_NAMES = {"rnn": "nn.RNN", "lstm": "nn.LSTM", "dnc": "pytorch-dnc"}


# ----------------------------------------------------------------------------------
# The text


def load_text():
    """-> text, where it came from: data/alice29.txt (python data/download.py alice29),
    else a generated text."""
    path = os.path.join(ROOT, "data", "alice29.txt")
    if os.path.isfile(path):
        return common.read_text(path), os.path.relpath(path, ROOT)
    rng = np.random.default_rng(SEED)
    words = ("alice was beginning to get very tired of sitting by her sister on the bank "
             "and having nothing to do once or twice she had peeped into the book").split()
    lines = [" ".join(rng.choice(words, 12)).capitalize() + ".\n" for _ in range(3000)]
    return "".join(lines), "generated text (no alice29.txt found)"


# ----------------------------------------------------------------------------------
# Our side: exactly the training loop of train.train


class Ours:
    def __init__(self, config, train_ids, V):
        self.model = model = common.load_script(config.script)
        # the sizes go through the script's own command line, as in train.main, so that
        # any option of the script we do not set keeps its default
        argv = [f"--{k}={v}" for k, v in config.cfg.items()]
        args = train.make_parser(model, "", {}).parse_args(argv)
        train.fill_sizes(args, model, None, {})
        self.cfg = dict(model.config(args), batch=config.B, seq=config.S)
        self.params = model.init_params(self.cfg, V, np.random.default_rng(SEED), np.float32)
        self.opt = common.Adagrad(self.params, LR)
        self.state = model.init_state(self.cfg, self.params, config.B)
        self.batches = common.Batches(train_ids, config.B, config.S)
        # of --threads cores, the BLAS threads the scripts' --threads auto takes on an idle machine
        self.threads = machine.threads_that_pay(self.params, self.cfg, config.B, int(THREADS)) \
            if THREADS.isdigit() else None

    def start_round(self):
        if self.threads:
            machine.set_blas_threads(self.threads)

    def iteration(self):
        """One training iteration -> loss in nats."""
        inputs, targets, reset = self.batches.next()
        common.reset_rows(self.state, reset)
        loss, grads, new_state = common.loss_and_grads(self.model, self.params, inputs, targets, self.state,
                                                       self.cfg)
        common.clip_global_norm(grads, CLIP)
        self.opt.step(self.params, grads)
        self.state = new_state
        return loss

    def profiled_iteration(self):
        """The same iteration, timed in phases -> seconds of forward, backward, update."""
        m = self.model
        inputs, targets, reset = self.batches.next()
        common.reset_rows(self.state, reset)
        t0 = time.perf_counter()
        logits, new_state, cache = m.forward(self.params, inputs, self.state, self.cfg)
        _, dlogits = common.cross_entropy(logits, targets)
        t1 = time.perf_counter()
        grads = m.backward(dlogits, cache)
        t2 = time.perf_counter()
        common.clip_global_norm(grads, CLIP)
        self.opt.step(self.params, grads)
        t3 = time.perf_counter()
        self.state = new_state
        return t1 - t0, t2 - t1, t3 - t2


# ----------------------------------------------------------------------------------
# The PyTorch peers: same sizes, same batches, same optimiser and clip


class TorchPeer:
    """Trains net(x_onehot (S, B, V), state) -> logits (S, B, V), state."""

    def __init__(self, config, train_ids, V, net, state):
        self.net, self.state, self.V = net, state, V
        self.eye = torch.eye(V)  # one-hot rows
        self.opt = torch.optim.Adagrad(net.parameters(), lr=LR)
        self.batches = common.Batches(train_ids, config.B, config.S)

    def iteration(self):
        inputs, targets, reset = self.batches.next()
        if reset.any():
            self.reset_rows(torch.from_numpy(reset))
        # the ids come as small unsigned ints, which torch would read as a boolean mask
        x = self.eye[torch.from_numpy(inputs).long()]  # (S, B, V)
        logits, state = self.net(x, self.state)
        loss = F.cross_entropy(logits.reshape(-1, self.V), torch.from_numpy(targets).long().reshape(-1))
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.net.parameters(), CLIP)
        self.opt.step()
        self.state = detach(state)  # truncated BPTT: carry the values, not the graph
        return loss.item()


def detach(state):
    if isinstance(state, torch.Tensor):
        return state.detach()
    if isinstance(state, dict):
        return {k: detach(v) for k, v in state.items()}
    return type(state)(detach(v) for v in state)


def zero_rows(state, rows, axis):
    """Zero the rows (B,) bool of every tensor in a nested state, batch on `axis`."""
    if isinstance(state, torch.Tensor):
        with torch.no_grad():
            state[(slice(None),) * axis + (rows,)] = 0
    elif isinstance(state, dict):
        for v in state.values():
            zero_rows(v, rows, axis)
    else:
        for v in state:
            zero_rows(v, rows, axis)


class CharRNN(nn.Module if torch else object):
    """nn.RNN or nn.LSTM over one-hot characters, then a Linear to the vocabulary."""

    def __init__(self, kind, V, H, L):
        super().__init__()
        self.rnn = nn.RNN(V, H, L, nonlinearity="tanh") if kind == "rnn" else nn.LSTM(V, H, L)
        self.out = nn.Linear(H, V)

    def forward(self, x, state):
        y, state = self.rnn(x, state)
        return self.out(y), state


class TorchRNNPeer(TorchPeer):
    def __init__(self, config, train_ids, V):
        torch.manual_seed(SEED)
        H, L, B = config.cfg["hidden"], config.cfg["layers"], config.B
        net = CharRNN(config.kind, V, H, L)
        h0 = torch.zeros(L, B, H)
        super().__init__(config, train_ids, V, net, h0 if config.kind == "rnn" else (h0, h0.clone()))

    def reset_rows(self, rows):
        zero_rows(self.state, rows, axis=1)  # (L, B, H)


class TorchDNCPeer(TorchPeer):
    """pytorch-dnc's DNC: one DNC layer whose controller is an LSTM of `layers` layers;
    its own output Linear maps [controller output, read vectors] to the input size, V.
    The state (controller (h, c) per layer, memory dict, last read vectors) starts at
    zero (the package would start h, c at random) and is carried across windows."""

    def __init__(self, config, train_ids, V):
        torch.manual_seed(SEED)
        c, B = config.cfg, config.B
        net = TorchDNC(V, c["hidden"], rnn_type="lstm", num_layers=1, num_hidden_layers=c["layers"],
                       nr_cells=c["memory"], cell_size=c["width"], read_heads=c["reads"],
                       batch_first=False, gpu_id=-1)
        h0 = torch.zeros(c["layers"], B, c["hidden"])
        state = ([(h0, h0.clone())], net.memories[0].reset(B), torch.zeros(B, c["reads"] * c["width"]))
        super().__init__(config, train_ids, V, net, state)

    def iteration(self):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return super().iteration()

    def reset_rows(self, rows):
        controller, memory, reads = self.state
        zero_rows(controller, rows, axis=1)  # (layers, B, H)
        zero_rows(memory, rows, axis=0)  # every memory tensor is (B, ...)
        zero_rows(reads, rows, axis=0)  # (B, R*W)


# ----------------------------------------------------------------------------------
# FLOPs and the numpy GEMM ceiling


def flops_per_char(kind, cfg, V):
    """Multiply-add FLOPs (2 per multiply-add) of one training character, matrix products
    only (elementwise work, the layer-0 gather and its scatter-add gradient are not counted).
    Every product X @ W of the forward pass costs twice again in the backward pass
    (dX = dY @ W.T and dW = X.T @ dY), hence the factor 3. With H hidden, L layers:
        rnn:   3 * (2H*H*L + 2H*H*(L-1) + 2H*V)       = 6H^2 (2L-1) + 6HV
        lstm:  3 * (2H*4H*L + 2H*4H*(L-1) + 2H*V)     = 24H^2 (2L-1) + 6HV
        dnc:   3 * (controller + interface + output + memory), with N slots of width W,
               R read heads and the interface size I = RW + 3W + 5R + 3:
               controller  2*RW*4H + 2H*4H*L + 2H*4H*(L-1)   (reads in, recurrent, layers)
               interface   2H*I
               output      2*(H + RW)*V
               memory      2*(R+1)*N*W  content lookups (R read keys, 1 write key)
                         + 2*R*N*W      reading the R read vectors
                         + 2*2*R*N*N    forward and backward temporal-link weightings
    """
    return sum(2 * b * m * k * n * count for _, b, m, k, n, count in gemms(kind, cfg, V, 1, 1))


def gemms(kind, cfg, V, B, S):
    """The matrix products of one training iteration as (what, batch, m, k, n, count):
    count products of a (batch, m, k) by a (batch, k, n). Our scripts multiply per time
    step inside the recurrence (count S, m = B) and batch everything else over the
    window (m = S*B); a weight's gradient is one product over the whole window."""
    H, L = cfg["hidden"], cfg["layers"]
    G = 4 * H if kind in ("lstm", "dnc") else H
    fwd = []  # (what, batch, m, k, n, count, operand 2 is a weight)
    if kind == "dnc":
        N, W, R = cfg["memory"], cfg["width"], cfg["reads"]
        I = R * W + 3 * W + 5 * R + 3
        fwd += [("reads -> gates", 1, B, R * W, G, S, True),
                ("interface", 1, B, H, I, S, True),
                ("content lookup", B, R + 1, W, N, S, False),
                ("read vectors", B, R, N, W, S, False),
                ("temporal links", B, R, N, N, 2 * S, False)]
    fwd += [("recurrent", 1, B, H, G, S, True)] * L
    fwd += [("layer input", 1, S * B, H, G, 1, True)] * (L - 1)
    out_in = H + (cfg["reads"] * cfg["width"] if kind == "dnc" else 0)
    fwd += [("output", 1, S * B, out_in, V, 1, True)]
    products = []
    for what, b, m, k, n, count, weight in fwd:
        products.append((what, b, m, k, n, count))  # Y = X @ W
        products.append((what + " dX", b, m, n, k, count))  # dX = dY @ W.T
        if weight:  # dW = X.T @ dY summed over the window in one product
            products.append((what + " dW", b, k, m * count, n, 1))
        else:  # both operands are activations: a second product per step
            products.append((what + " dW", b, k, m, n, count))
    return products


def time_matmul(b, m, k, n, budget):
    """Seconds of one float32 np.matmul of (b, m, k) @ (b, k, n) into a ready output."""
    rng = np.random.default_rng(0)
    shape = (b,) if b > 1 else ()
    x = rng.standard_normal(shape + (m, k)).astype(np.float32)
    w = rng.standard_normal(shape + (k, n)).astype(np.float32)
    out = np.empty(shape + (m, n), np.float32)
    reps = 1
    while True:  # grow the repetitions until one measurement takes budget / 5
        t0 = time.perf_counter()
        for _ in range(reps):
            np.matmul(x, w, out=out)
        t = time.perf_counter() - t0
        if t >= budget / 5:
            break
        reps *= 4
    samples = [t / reps]
    for _ in range(4):
        t0 = time.perf_counter()
        for _ in range(reps):
            np.matmul(x, w, out=out)
        samples.append((time.perf_counter() - t0) / reps)
    return statistics.median(samples)


def gemm_seconds(config, V, B, budget):
    """-> (FLOPs, seconds) of this model's matrix products in one iteration at batch B,
    each timed alone with np.matmul on the BLAS threads set now (time_matmul)."""
    total_flops = total_time = 0.0
    cache = {}
    for _, b, m, k, n, count in gemms(config.kind, config.cfg, V, B, config.S):
        key = (b, m, k, n)
        if key not in cache:
            cache[key] = time_matmul(b, m, k, n, budget)
        total_flops += 2 * b * m * k * n * count
        total_time += cache[key] * count
    return total_flops, total_time


def gemm_ceiling(config, V, budget):
    """-> GFLOP/s of np.matmul over this model's products at their shapes and counts
    (total FLOPs / total time), i.e. the speed of an iteration made only of its GEMMs,
    on --threads BLAS threads (set here again: our side's rounds may have taken fewer)."""
    if THREADS.isdigit():
        machine.set_blas_threads(int(THREADS))
    flops, seconds = gemm_seconds(config, V, config.B, budget)
    return flops / seconds / 1e9


# ----------------------------------------------------------------------------------
# Running: rounds in turn, and the profile


def train_for(runner, seconds):
    """Iterate until `seconds` have passed -> iterations, elapsed seconds, mean loss (nats)."""
    getattr(runner, "start_round", lambda: None)()
    n, total, t0 = 0, 0.0, time.perf_counter()
    while True:
        total += runner.iteration()
        n += 1
        elapsed = time.perf_counter() - t0
        if elapsed >= seconds:
            return n, elapsed, total / n


def warm_up(make, iterations=3):
    """A few iterations of a throwaway copy: first-call costs stay out of the rounds."""
    runner = make()
    for _ in range(iterations):
        runner.iteration()


def compare(config, ours, peer, rounds, seconds, log):
    """Rounds of A then B; either side may be None. -> dict of results"""
    chars = config.B * config.S
    rates = {"ours": [], "peer": []}
    last_bpc = {}
    sides = [(name, r) for name, r in (("ours", ours), ("peer", peer)) if r is not None]
    for k in range(rounds):
        for name, runner in sides:
            n, elapsed, loss = train_for(runner, seconds)
            rates[name].append(n * chars / elapsed)
            last_bpc[name] = common.bpc(loss)
            log(f"  round {k + 1}/{rounds} {name}: {n} iterations, {n * chars / elapsed:,.0f} char/s, "
                f"{last_bpc[name]:.3f} BPC")
    res = {name: statistics.median(r) for name, r in rates.items() if r}
    if ours is not None and peer is not None:
        res["ratio"] = statistics.median(a / b for a, b in zip(rates["ours"], rates["peer"]))
        res["ratio_range"] = (min(a / b for a, b in zip(rates["ours"], rates["peer"])),
                              max(a / b for a, b in zip(rates["ours"], rates["peer"])))
    res["bpc"] = last_bpc
    return res


def profile(runner, iterations):
    """-> median seconds of forward, backward, update over `iterations` iterations."""
    runner.start_round()
    for _ in range(3):
        runner.profiled_iteration()
    times = [runner.profiled_iteration() for _ in range(iterations)]
    return [statistics.median(t[i] for t in times) for i in range(3)]


def floor(config, runner, train_ids, V, rounds, seconds, budget):
    """How fast an iteration of our code could be at best, NumPy being what it is.

    The matrix products cannot run faster than np.matmul does them alone (the GEMM
    ceiling), and no other NumPy call of a step costs less than it does on the smallest
    arrays, i.e. at batch 1. So the floor is the products at batch B at the ceiling plus
    the rest of an iteration at batch 1: our iteration at batch 1, same code and window,
    less its products at the ceiling. (An estimate, not a strict bound: at batch 1 the
    products may take longer than alone, which would lower the floor by up to the gemm_1
    figure returned.) Our runner at batch B and a copy at batch 1 train in turn for
    `rounds` rounds of `seconds`, so that their ratio sees one machine load.
    -> dict of seconds: ours (an iteration at B), ours_1, gemm (at B), gemm_1, floor;
       and the rounds and seconds it ran"""
    small = Ours(Config(config.name, config.kind, config.cfg, 1, config.S, config.target), train_ids, V)
    for _ in range(3):  # first-call costs stay out of the rounds
        small.iteration()
    times = {"ours": [], "ours_1": []}
    for _ in range(rounds):
        for name, r in (("ours", runner), ("ours_1", small)):
            n, elapsed, _ = train_for(r, seconds)
            times[name].append(elapsed / n)
    res = {name: statistics.median(t) for name, t in times.items()}
    res["rounds"], res["seconds"] = rounds, seconds
    runner.start_round()  # each side's products on the threads that side trained on
    res["gemm"] = gemm_seconds(config, V, config.B, budget)[1]
    small.start_round()
    res["gemm_1"] = gemm_seconds(config, V, 1, budget)[1]
    res["floor"] = res["gemm"] + res["ours_1"] - res["gemm_1"]
    return res


# ----------------------------------------------------------------------------------
# The report


def versions():
    v = {"python": platform.python_version(), "numpy": np.__version__}
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        v["numpy"] += f" ({blas['name']} {blas.get('version', '')})".replace(" )", ")")
    except Exception:
        pass
    v["torch"] = "not installed"
    if torch:
        v["torch"] = f"{torch.__version__} (torch.get_num_threads() = {torch.get_num_threads()})"
    try:
        v["dnc"] = importlib.metadata.version("dnc") if TorchDNC else "not installed"
    except importlib.metadata.PackageNotFoundError:
        v["dnc"] = "installed, version unknown"
    return v


def rate(x):
    return f"{x / 1000:,.1f}k" if x >= 1000 else f"{x:,.0f}"


def report(args, text_note, rows, profiles):
    total = args.rounds * args.seconds
    v = versions()
    out = [
        "# Benchmarks: our NumPy scripts against PyTorch peers",
        "",
        f"`python benchmarks/compare.py {' '.join(args.argv)}`".replace(" `", "`"),
        "",
        f"- date: {datetime.datetime.now().astimezone().strftime('%Y-%m-%d %H:%M %Z')}",
        f"- machine: {machine.describe()}",
        f"- python {v['python']}, numpy {v['numpy']}, torch {v['torch']}, dnc {v['dnc']}",
        f"- text: {text_note}",
        f"- threads: {args.threads} (--threads) for torch; for ours, as many of them as the scripts' "
        "`--threads auto` takes on an idle machine (machine.threads_that_pay; the table's ours threads)",
        "- allocator: " + ("freed memory kept for reuse (machine.keep_freed_memory, as the scripts do), for both "
                           "sides" if args.kept else "the C library's defaults, for both sides"),
        f"- method: float32, Adagrad lr {LR}, clip {CLIP:g}, same common.Batches windows on both sides; "
        f"{args.rounds} rounds of {args.seconds:g} s per side in turn (A B A B); char/s and the ratio "
        f"ours/peer are medians over the rounds (ratio range in brackets); BPC is the training "
        f"BPC of each side's last round, after {total:g} s of training each",
        "",
        f"| config | ours threads | ours char/s | peer | peer char/s | ratio ours/peer | BPC ours / peer at {total:g} s "
        "| target | met? |",
        "|---|---:|---:|---|---:|---:|---|---:|---|",
    ]
    for config, res in rows:
        ours = rate(res["ours"]) if "ours" in res else res.get("ours_note", "not available")
        peer = rate(res["peer"]) if "peer" in res else res.get("peer_note", "not available")
        if "ratio" in res:
            lo, hi = res["ratio_range"]
            ratio = f"{res['ratio']:.2f}x ({lo:.2f}-{hi:.2f})"
            met = "yes" if res["ratio"] >= config.target else "no"
        else:
            ratio, met = "n/a", "n/a"
        bpc = res.get("bpc", {})
        bpc_cell = " / ".join(f"{bpc[s]:.3f}" if s in bpc else "n/a" for s in ("ours", "peer"))
        out.append(f"| {config.name} | {res.get('ours_threads') or args.threads} | {ours} | {PEER_NAMES[config.kind]} | "
                   f"{peer} | {ratio} | "
                   f"{bpc_cell} | >= {config.target:g}x | {met} |")

    out += ["", "## The numpy GEMM ceiling", "",
            "GFLOP/s of float32 `np.matmul` at the shapes and counts of each model's matrix products "
            "(forward and backward; `gemms()` in compare.py), against the rate our script reaches "
            "with the FLOPs per character of `flops_per_char()` (matrix products only).", "",
            "| config | FLOP/char | ceiling GFLOP/s | ours GFLOP/s | fraction of ceiling | peer GFLOP/s (same count) |",
            "|---|---:|---:|---:|---:|---:|"]
    for config, res in rows:
        fpc = res["flops_per_char"]
        ours = f"{res['ours'] * fpc / 1e9:.2f}" if "ours" in res else "n/a"
        frac = f"{res['ours'] * fpc / 1e9 / res['ceiling']:.0%}" if "ours" in res else "n/a"
        peer = f"{res['peer'] * fpc / 1e9:.2f}" if "peer" in res else "n/a"
        out.append(f"| {config.name} | {fpc:,} | {res['ceiling']:.2f} | {ours} | {frac} | {peer} |")

    if profiles:
        out += ["", "## Where our iterations go", "",
                "Median milliseconds per iteration: forward = model.forward + common.cross_entropy, "
                "backward = model.backward, update = common.clip_global_norm + common.Adagrad.step.", "",
                "| config | iterations | forward ms | backward ms | update ms | total ms | split fwd / bwd / upd |",
                "|---|---:|---:|---:|---:|---:|---|"]
        for config, (n, prof) in profiles:
            if isinstance(prof, str):
                out.append(f"| {config.name} | {prof} | | | | | |")
                continue
            t = sum(prof)
            out.append(f"| {config.name} | {n} | " + " | ".join(f"{x * 1e3:.3f}" for x in prof)
                       + f" | {t * 1e3:.3f} | " + " / ".join(f"{x / t:.0%}" for x in prof) + " |")

    floors = [(config, res) for config, res in rows if "floor" in res]
    if floors:
        out += ["", "## The floor: how fast NumPy lets this code be", "",
                "Milliseconds per iteration (`floor()` in compare.py). The matrix products cannot run "
                "faster than at the GEMM ceiling, and no other NumPy call costs less than on the "
                "smallest arrays, at batch 1: the floor is the products at the ceiling plus the rest of "
                "an iteration at batch 1 (our iteration at batch 1, less its products at the ceiling). "
                f"Our iterations at the batch and at 1 ran in turn, {floors[0][1]['floor']['rounds']} rounds "
                f"of {floors[0][1]['floor']['seconds']:g} s each; the times are medians over the rounds. "
                "\"At most\" is the ratio ours/peer our code would reach at its floor: the ratio above "
                "times ours / floor. A target above it needs fewer NumPy calls a step, or cheaper ones, "
                "than this code makes.", "",
                "| config | ours | GEMMs at the ceiling | ours at batch 1 | its GEMMs | floor | ours / floor "
                "| at most, ours/peer | target |",
                "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for config, res in floors:
            f = res["floor"]
            most = f"{res['ratio'] * f['ours'] / f['floor']:.2f}x" if "ratio" in res else "n/a"
            out.append(f"| {config.name} | " + " | ".join(f"{f[k] * 1e3:.3f}" for k in
                                                         ("ours", "gemm", "ours_1", "gemm_1", "floor"))
                       + f" | {f['ours'] / f['floor']:.2f}x | {most} | >= {config.target:g}x |")
    return "\n".join(out) + "\n"


# ----------------------------------------------------------------------------------
# Command line


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="short run: 3 rounds of 1 s, shorter GEMM timings and profile")
    p.add_argument("--rounds", type=common.positive_int, help="rounds per side (default 8, quick 3)")
    p.add_argument("--seconds", type=common.positive_float, help="seconds per round (default 2.5, quick 1)")
    p.add_argument("--profile", action="store_true",
                   help="split our iterations into forward, backward, update, and measure their floor")
    p.add_argument("--no-peers", action="store_true", help="run our scripts only, even if torch is installed")
    p.add_argument("--threads", default="1", metavar="N|auto",
                   help="threads of torch, and of numpy's BLAS for our side as many of them as the scripts' "
                        "--threads auto takes; 'auto' keeps the libraries' defaults (on a busy shared machine "
                        "those collapse: see benchmarks/README.md)")
    p.add_argument("--default-malloc", action="store_true",
                   help="leave the C allocator at its defaults instead of keeping freed memory for reuse "
                        "as the scripts do (machine.keep_freed_memory); either way both sides share it")
    p.add_argument("--only", metavar="KINDS", help="comma-separated model kinds to run (rnn,lstm,dnc)")
    p.add_argument("--out", help="markdown file to write (default: benchmarks/results.md for a full run; "
                                 "a --quick, --only or --no-peers run is only printed unless --out names a file)")
    args = p.parse_args(argv)
    if args.threads != "auto" and not (args.threads.isdigit() and int(args.threads) > 0):
        p.error(f"--threads must be a positive whole number or auto, got {args.threads!r}")
    args.argv = argv
    partial = args.quick or args.only or args.no_peers
    if args.out is None and not partial:
        args.out = os.path.join(HERE, "results.md")  # only a full run replaces the committed figures
    args.kept = False if args.default_malloc else machine.keep_freed_memory()  # one process: both sides
    args.rounds = args.rounds or (3 if args.quick else 8)
    args.seconds = args.seconds or (1.0 if args.quick else 2.5)
    configs = [c for c in CONFIGS if not args.only or c.kind in args.only.split(",")]

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    text, where = load_text()
    vocab = common.Vocab(text)
    train_ids, _ = common.split_data(vocab.encode(text), VAL_FRAC, max(c.S for c in configs))
    V = len(vocab)
    text_note = f"{where}, {len(text):,} characters, V = {V}; training on the first {1 - VAL_FRAC:.0%}"
    log(f"text: {text_note}")

    rows, profiles, failed = [], [], False
    for config in configs:
        log(f"{config.name}:")
        res = {"flops_per_char": flops_per_char(config.kind, config.cfg, V),
               "ceiling": gemm_ceiling(config, V, 0.02 if args.quick else 0.2)}
        ours = peer = None
        if not os.path.exists(os.path.join(ROOT, config.script)):
            res["ours_note"] = f"not available (no {config.script} yet)"
        else:
            try:
                warm_up(lambda: Ours(config, train_ids, V))
                ours = Ours(config, train_ids, V)
            except Exception as e:
                res["ours_note"], failed = f"error: {type(e).__name__}: {e}", True
        missing = ("not available (--no-peers)" if args.no_peers
                   else DNC_MISSING if config.kind == "dnc" else TORCH_MISSING)
        if missing:
            res["peer_note"] = missing
        else:
            make = (lambda: TorchDNCPeer(config, train_ids, V)) if config.kind == "dnc" else \
                (lambda: TorchRNNPeer(config, train_ids, V))
            try:
                warm_up(make)
                peer = make()
            except Exception as e:
                res["peer_note"], failed = f"error: {type(e).__name__}: {e}", True
        if ours or peer:
            try:
                res.update(compare(config, ours, peer, args.rounds, args.seconds, log))
                res["ours_threads"] = ours.threads if ours else None
            except Exception as e:
                res["ours_note"] = res["peer_note"] = f"error: {type(e).__name__}: {e}"
                failed = True
        rows.append((config, res))
        if args.profile:
            if "ours" in res:
                n = 25 if args.quick else 200
                profiles.append((config, (n, profile(Ours(config, train_ids, V), n))))
                res["floor"] = floor(config, ours, train_ids, V, *((2, 0.2, 0.02) if args.quick else (4, 1.0, 0.2)))
            else:
                profiles.append((config, (0, res.get("ours_note", "not available"))))

    table = report(args, text_note, rows, profiles)
    print(table, end="")
    if args.out:
        with open(args.out, "w") as f:
            f.write(table)
        log(f"written to {args.out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

"""Two checkouts of this project side by side: the training rate of each of compare.py's
configurations in the code of BEFORE and of AFTER (default: this checkout), in turn.

    git worktree add /tmp/before 02aa3b6       # the code before a change
    python benchmarks/before_after.py /tmp/before
    python benchmarks/before_after.py /tmp/before --threads 2 --only lstm,dnc
    python benchmarks/before_after.py --allocator          # this checkout: the allocator setting off / on

Each round trains every configuration for --seconds in a fresh process of each side,
in the order A B, then B A in the next round, so that the two sides of a pair see the
same machine load. A process runs the scripts' loop (forward, cross-entropy, backward,
clip 5, Adagrad 0.1, the state carried) on random characters of a 65-symbol vocabulary,
float32, with the allocator setting the scripts make. The table gives the median rate
of each side and the median of the per-round ratios after / before, with their range.
With --threads 2, each side's process gets two BLAS threads where the scripts' --threads
auto would take them (compare.py's rule), else one.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
V = 65

CONFIGS = [  # name, script, cfg, B, S: compare.py's rows
    ("RNN 32/16/25", "rnn", {"hidden": 32, "layers": 1, "dropout": 0.0}, 16, 25),
    ("LSTM 32/16/25", "lstm", {"hidden": 32, "layers": 1, "dropout": 0.0}, 16, 25),
    ("LSTM 128/32/32", "lstm", {"hidden": 128, "layers": 1, "dropout": 0.0}, 32, 32),
] + [(f"DNC 128, N{n}", "dnc", {"hidden": 128, "layers": 1, "memory": n, "width": 16, "reads": 4,
                               "stop_usage_grad": False, "dropout": 0.0}, 32, 32) for n in (16, 64, 256)]


def worker(root, kind, cfg, B, S, threads, seconds, keep_freed=True):
    """In a process of its own: train for `seconds` -> characters per second."""
    os.environ["OPENBLAS_NUM_THREADS"] = os.environ["OMP_NUM_THREADS"] = str(threads)
    sys.path.insert(0, root)
    import time

    import numpy as np

    import common
    if keep_freed:
        try:
            import machine
            machine.keep_freed_memory()
        except ImportError:  # before machine.py existed, train.py held the setting
            import train
            train.keep_freed_memory()
    model = common.load_script(f"{kind}-numpy.py")
    rng = np.random.default_rng(0)
    params = model.init_params(cfg, V, rng, np.float32)
    opt = common.Adagrad(params, 0.1)
    state = model.init_state(cfg, params, B)
    windows = [rng.integers(0, V, (S + 1, B)) for _ in range(8)]
    model_cfg = dict(cfg, batch=B, seq=S)

    def iteration(i):
        nonlocal state
        ids = windows[i % len(windows)]
        loss, grads, state = common.loss_and_grads(model, params, ids[:-1], ids[1:], state, model_cfg)
        common.clip_global_norm(grads, 5.0)
        opt.step(params, grads)

    for i in range(3):  # first-call costs stay out of the timing
        iteration(i)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        iteration(n)
        n += 1
    return n * B * S / (time.perf_counter() - t0)


def threads_for(kind, cfg, B, threads):
    """compare.py's rule for our side: a second thread only where it pays."""
    if threads == 1:
        return 1
    product = B * cfg["hidden"] * cfg["hidden"] * (4 if kind in ("lstm", "dnc") else 1)
    links = 16 * B * cfg.get("memory", 0) ** 2
    return min(threads, 2) if product >= 2 ** 19 and links < product else 1


def rate(root, kind, cfg, B, S, threads, seconds, keep_freed=True):
    job = json.dumps([root, kind, cfg, B, S, threads, seconds, keep_freed])
    p = subprocess.run([sys.executable, __file__, "--worker", job], capture_output=True, text=True, check=True)
    return float(p.stdout)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--worker"]:  # one side of one round, in a process of its own
        print(worker(*json.loads(argv[1])))
        return 0
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("before", nargs="?", default=ROOT, help="the checkout before the change")
    p.add_argument("after", nargs="?", default=ROOT, help="the checkout after it (default: this one)")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--seconds", type=float, default=2.0)
    p.add_argument("--threads", type=int, default=1, choices=(1, 2))
    p.add_argument("--only", help="comma-separated kinds (rnn,lstm,dnc)")
    p.add_argument("--allocator", action="store_true",
                   help="compare the allocator setting instead: before = AFTER without "
                        "machine.keep_freed_memory(), after = AFTER with it")
    args = p.parse_args(argv)
    if args.allocator:
        print(f"{args.after}: before = without the allocator setting, after = with it")
    print(f"before: {args.before}\nafter: {args.after}\n{args.rounds} rounds of {args.seconds:g} s a side, "
          f"--threads {args.threads}\n")
    print("| configuration | threads | before char/s | after char/s | after / before (range) |")
    print("|---|---|---|---|---|")
    for name, kind, cfg, B, S in CONFIGS:
        if args.only and kind not in args.only.split(","):
            continue
        n = threads_for(kind, cfg, B, args.threads)
        before, after = [], []
        for r in range(args.rounds):
            sides = ((args.before, before, True), (args.after, after, True))
            if args.allocator:
                sides = ((args.after, before, False), (args.after, after, True))
            for root, rates, keep in sides[::1 if r % 2 == 0 else -1]:
                rates.append(rate(root, kind, cfg, B, S, n, args.seconds, keep))
        ratios = [a / b for a, b in zip(after, before)]
        print(f"| {name} | {n} | {statistics.median(before):,.0f} | {statistics.median(after):,.0f} | "
              f"{statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f}) |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

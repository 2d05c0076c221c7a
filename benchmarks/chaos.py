"""Two trainings of the DNC on copy (6 bits, lengths 1-10) from parameters 1e-7 apart
(relative), on the same episodes, side by side: each one's loss every --every iterations.
Training is chaotic here: the two runs part within a few hundred iterations, so where a run
ends, and which longer lengths it copies, is a draw of its seed and of the round-off of the
code (docs/results.md, "Sparse links: the length-generalisation table, run by run").

    python benchmarks/chaos.py                        # 500 iterations, the DNC's defaults
    python benchmarks/chaos.py --sparse-links 8 --iters 300

The loop is train.py's for a task (fresh episodes every batch, a zero state, the bit-wise
loss, clip 5, Adagrad 0.1), at float32, with the sizes through dnc-numpy.py's own options.
"""
import argparse
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import common  # noqa: E402
import train  # noqa: E402

dnc, tasks = common.load_script("dnc-numpy.py"), train.tasks


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--iters", type=common.positive_int, default=500)
    p.add_argument("--every", type=common.positive_int, default=25, help="iterations between lines (default 25)")
    p.add_argument("--eps", type=common.positive_float, default=1e-7, help="the relative change of the second "
                   "run's parameters (default 1e-7)")
    p.add_argument("--seed", type=common.nonneg_int, default=0)
    p.add_argument("--hidden", type=common.positive_int, default=128)
    p.add_argument("--batch", type=common.positive_int, default=32)
    p.add_argument("--sparse-links", type=common.nonneg_int, default=0, metavar="K")
    args = p.parse_args(argv)

    task = tasks.make_task("copy", "bits", bits=6, min_length=1, max_length=10)
    sizes = train.make_parser(dnc, "", {}).parse_args([f"--hidden={args.hidden}",
                                                        f"--sparse-links={args.sparse_links}"])
    train.fill_sizes(sizes, dnc, task, {})
    cfg = dnc.config(sizes)
    params = dnc.init_params(cfg, task.V_in, np.random.default_rng(args.seed), np.float32, V_out=task.V_out)
    runs = [params, {k: (v * (1 + args.eps)).astype(v.dtype) for k, v in params.items()}]
    optimisers = [common.Adagrad(run, 0.1) for run in runs]
    rng = np.random.default_rng(args.seed + 1)  # the episodes, the same for both runs

    print(f"copy, DNC {cfg}, batch {args.batch}; loss in nats per episode")
    print(f"{'iter':>6} {'as drawn':>10} {f'x (1 + {args.eps:g})':>14}")
    for it in range(1, args.iters + 1):
        inputs, targets, mask = task.episodes(rng, args.batch)
        losses = []
        for run, opt in zip(runs, optimisers):
            logits, _, cache = dnc.forward(run, inputs, dnc.init_state(cfg, run, args.batch), cfg)
            loss, dlogits = common.LOSSES["bits"](logits, targets, mask)
            grads = dnc.backward(dlogits, cache)
            common.clip_global_norm(grads, 5)
            opt.step(run, grads)
            losses.append(loss)
        if it % args.every == 0:
            print(f"{it:6d} {losses[0]:10.4f} {losses[1]:14.4f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

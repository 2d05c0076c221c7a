"""A long training run that looks for NaN and inf everywhere, not just in the loss.

    python benchmarks/stability.py                       # the DNC, 10,000 iterations, alice29
    python benchmarks/stability.py --model lstm --iters 2000

Runs the training loop of train.train (Batches, reset_rows, loss_and_grads,
clip_global_norm, Adagrad) at the script's default sizes, and after every iteration
checks the loss and every gradient; every --every iterations it also checks every
parameter, every Adagrad accumulator and every array of the carried state, and prints
the mean training BPC since the last line. Exits 1 at the first non-finite value.
"""
import argparse
import math
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
import common  # noqa: E402
import train as train_loop  # noqa: E402

DEFAULT_SIZES = {"rnn": {"hidden": 128, "layers": 1},
                 "lstm": {"hidden": 128, "layers": 1},
                 "dnc": {"hidden": 128, "layers": 1, "memory": 16, "width": 16, "reads": 4,
                         "stop_usage_grad": False}}


def all_finite(*dicts):
    return all(np.isfinite(v).all() for d in dicts for v in d.values())


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", choices=sorted(DEFAULT_SIZES), default="dnc")
    p.add_argument("--text", default=os.path.join(HERE, "..", "data", "alice29.txt"))
    p.add_argument("--iters", type=common.positive_int, default=10000)
    p.add_argument("--every", type=common.positive_int, default=500)
    p.add_argument("--batch", type=common.positive_int, default=32)
    p.add_argument("--seq", type=common.positive_int, default=32)
    p.add_argument("--seed", type=common.nonneg_int, default=0)
    args = p.parse_args()

    model = common.load_script(f"{args.model}-numpy.py")
    cfg = dict(DEFAULT_SIZES[args.model], batch=args.batch, seq=args.seq)
    text = common.read_text(args.text)
    vocab = common.Vocab(text)
    train, val = common.split_data(vocab.encode(text), 0.1, args.seq)
    rng = np.random.default_rng(args.seed)
    params = model.init_params(cfg, len(vocab), rng, np.float32)
    opt = common.Adagrad(params, 0.1)
    state = model.init_state(cfg, params, args.batch)
    batches = common.Batches(train, args.batch, args.seq)
    print(f"{args.model} {cfg} on {os.path.basename(args.text)}, {args.iters} iterations")
    start, nats = time.perf_counter(), 0.0
    for it in range(1, args.iters + 1):
        inputs, targets, reset = batches.next()
        common.reset_rows(state, reset)
        loss, grads, state = common.loss_and_grads(model, params, inputs, targets, state, cfg)
        if not (math.isfinite(loss) and all_finite(grads)):
            print(f"NON-FINITE loss or gradient at iteration {it}")
            return 1
        common.clip_global_norm(grads, 5.0)
        opt.step(params, grads)
        nats += loss
        if it % args.every == 0:
            finite = all_finite(params, opt.mem, state)
            print(f"{time.perf_counter() - start:.0f} s, iter {it}, train {common.bpc(nats / args.every):.4f} BPC, "
                  f"params, Adagrad memory and state {'all finite' if finite else 'NON-FINITE'}", flush=True)
            if not finite:
                return 1
            nats = 0.0
    val_bpc = common.bpc(train_loop.evaluate_text(model, cfg, params, val, args.seq))
    print(f"done: {args.iters} iterations, every value finite; val {val_bpc:.4f} BPC")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""How a DNC training step grows with the memory N: dense links, --sparse-links K, and
pytorch-dnc's dense DNC, side by side (docs/dnc.md §4.4, §11).

    python benchmarks/scaling.py                  # N 16, 64, 256, 1024, 4096; K 8
    python benchmarks/scaling.py --quick          # N 16, 64, 256, one timed step a cell
    python benchmarks/scaling.py --sizes 16,1024 --repeats 3 --no-peers

Every cell (a model at one N) runs in a fresh subprocess, on one thread (numpy's BLAS and
torch's), and reports:
    ms/step   the median over --repeats timed training iterations, after one untimed:
              forward and backward of one window (--batch rows of --seq characters), the
              global-norm clip and the Adagrad update, i.e. compare.py's iteration
    peak MiB  the subprocess's peak resident memory (resource.getrusage ru_maxrss), the
              interpreter, numpy and, where installed, torch (compare.py imports it: about
              240 MiB in all on every side then, 45 without torch) included
    links     the live links a batch row holds after the timed steps (--sparse-links only)
With --floor, two more cells (N 16 and N 1024, K 8): the sparse step with its link ops made
free (free_links: each returns its input, or zeros), not a model but the floor under any
implementation of the links: what the rest of the step (the controller, the content
lookups, the usage sort, the memory's write and read) costs, and how it grows with N.
The model is compare.py's DNC (LSTM controller of 128, W 16, R 4, float32) on its text. Its
random writes are diffuse, so the sparse model keeps only a few dozen links (a link must
reach 1/K); the "filled" cell is the sparse model as a memory that has written every slot
in order holds it: a link from each slot to the one before, about N live links a batch row,
and the write and allocation gates opened (dnc.open_gates) so that its writes stay sharp.
A cell whose estimated memory exceeds --budget-gib is not run but marked as not fitting:
ours by dnc-numpy.py's memory_floats (what check_fits refuses sizes by; the dense links of
batch 32 at N 4096 are 2 GiB a step), pytorch-dnc's by twice our dense estimate (it keeps
more of each step for autograd). Then the ratios the issue's targets name: sparse N 1024 /
sparse N 16 (at most 5), dense N 1024 / sparse N 1024 and pytorch-dnc N 1024 / sparse N 1024
(each at least 20). The optional peer is found as compare.py finds it (torch and the `dnc`
package importable: run this script with the Python that has them, e.g. the bench-venv of benchmarks/README.md).
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):  # before numpy and torch load
    os.environ[var] = "1"

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import compare  # noqa: E402  (the text, our training iteration and the pytorch-dnc peer)
import numpy as np  # noqa: E402

common, machine = compare.common, compare.machine
dnc = common.load_script("dnc-numpy.py")
SIZES, QUICK_SIZES = (16, 64, 256, 1024, 4096), (16, 64, 256)
KINDS = ("dense", "sparse", "pytorch-dnc", "filled")
SPARSE_KINDS = ("sparse", "filled")
FLOOR_SIZES = (16, 1024)


def model_cfg(N, K):
    """compare.py's DNC sizes at memory N, with --sparse-links K (0: dense)."""
    cfg = {"hidden": 128, "layers": 1, "memory": N, "width": 16, "reads": 4}
    return cfg if not K else dict(cfg, **{"sparse-links": K})


def estimate_gib(kind, N, K, B, S, V):
    """The memory a cell would need, by dnc-numpy.py's memory_floats (float32)."""
    cfg = {"hidden": 128, "layers": 1, "controller": "lstm", "memory": N, "width": 16, "reads": 4,
           "sparse_links": 0 if kind in ("dense", "pytorch-dnc") else K}
    gib = dnc.memory_floats(cfg, V, B, S) * 4 / 2 ** 30
    return 2 * gib if kind == "pytorch-dnc" else gib


def fill_links(runner):
    """The "filled" cell's model and state: the gates opened, and in every row of the links a
    link of 0.9 to the slot before (slot k of row i holds column i - 1 - k, so that a row's
    columns stay distinct; slots 1 .. K-1 hold 0)."""
    dnc.open_gates(runner.cfg)(runner.params)
    idx, val = runner.state["L_idx"], runner.state["L_val"]
    B, N, K = idx.shape
    idx[:] = (np.arange(N)[:, None] - 1 - np.arange(K)) % N
    val[:, :, 0] = 0.9


def free_links(model):
    """The "floor" cell: the sparse ops of `model` (a loaded dnc-numpy.py) replaced by ops
    that cost nothing: each returns its input, or zeros of the right shape."""
    def link_forward(idx, val, ww, rows, p, cols):
        return idx, val, model.SparseLinkCache(*[None] * (len(model.SparseLinkCache._fields) - 1), live=None)
    model.sparsify_forward = lambda w, K: (w, model.SparsifyCache(None, None, None, None))
    model.sparsify_backward = lambda dw, cache: dw
    model.sparse_link_forward = link_forward
    model.sparse_link_backward = lambda dval, cache: (dval, 0, 0)
    model.sparse_directional_forward = lambda idx, val, live, wr: (wr, wr, val)
    model.sparse_directional_backward = lambda dfwd, dbwd, val: (np.zeros_like(val), 0)


def run_cell(kind, N, K, B, S, repeats):
    """In the subprocess: build the model, one untimed iteration, `repeats` timed ones.
    -> dict ms (median), peak_mib, and with sparse links, links (live a batch row)"""
    text, _ = compare.load_text()
    vocab = common.Vocab(text)
    train_ids, _ = common.split_data(vocab.encode(text), compare.VAL_FRAC, S)
    V = len(vocab)
    config = compare.Config(f"DNC N{N}", "dnc", model_cfg(N, 0 if kind == "dense" else K), B, S, None)
    if kind == "pytorch-dnc":
        compare.torch.set_num_threads(1)
        runner = compare.TorchDNCPeer(config, train_ids, V)
    else:
        machine.keep_freed_memory()  # as the scripts do
        runner = compare.Ours(config, train_ids, V)
        if kind == "filled":
            fill_links(runner)
        if kind == "floor":
            free_links(runner.model)
    runner.iteration()  # first-call costs stay out of the timing
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        runner.iteration()
        times.append(time.perf_counter() - t0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux -> MiB
    result = {"ms": 1000 * statistics.median(times), "peak_mib": peak}
    if kind in SPARSE_KINDS:
        result["links"] = float((runner.state["L_val"] > 0).sum() / B)
    return result


def cell(kind, N, args, V):
    """One cell, in a fresh subprocess unless it cannot fit or its peer is missing -> dict"""
    if kind == "pytorch-dnc" and (args.no_peers or compare.DNC_MISSING):
        return {"note": "not available (--no-peers)" if args.no_peers else compare.DNC_MISSING}
    need = estimate_gib(kind, N, args.K, args.batch, args.seq, V)
    if need > args.budget_gib:
        return {"note": f"does not fit (about {need:.1f} GiB > {args.budget_gib:g})"}
    cmd = [sys.executable, os.path.abspath(__file__), "--cell", kind, str(N), "--K", str(args.K),
           "--batch", str(args.batch), "--seq", str(args.seq), "--repeats", str(args.repeats)]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        return {"note": "error: " + (p.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(p.stdout.strip().splitlines()[-1])


def table(args, results):
    names = {"dense": "dense", "sparse": f"sparse K {args.K}", "pytorch-dnc": "pytorch-dnc (dense)",
             "filled": f"sparse K {args.K} filled"}
    lines = [f"DNC training step (LSTM 128, W 16, R 4, float32), batch {args.batch}, seq {args.seq}, one thread; "
             f"median of {args.repeats} timed step(s) after one untimed; peak = the subprocess's max RSS", "",
             "| N | " + " | ".join(f"{names[k]} ms/step | {names[k]} peak MiB" for k in KINDS)
             + " | live links a batch row, sparse / filled |",
             "|---:|" + "---:|---:|" * len(KINDS) + "---:|"]
    for N in args.sizes:
        cells = []
        for kind in KINDS:
            r = results[kind, N]
            if "ms" in r:
                cells += [f"{r['ms']:,.{0 if r['ms'] >= 100 else 1}f}", f"{r['peak_mib']:,.0f}"]
            else:
                cells += [r["note"], ""]
        cells.append(" / ".join(f"{results[k, N]['links']:,.0f}" if "links" in results[k, N] else "-"
                                for k in SPARSE_KINDS))
        lines.append(f"| {N} | " + " | ".join(cells) + " |")

    def ratio(a, b, target, more):
        ra, rb = results.get(a, {}), results.get(b, {})
        if "ms" not in ra or "ms" not in rb:
            return "not measured"
        x = ra["ms"] / rb["ms"]
        ok = x >= target if more else x <= target
        return f"{x:.1f}x (target {'at least' if more else 'at most'} {target:g}x: {'met' if ok else 'NOT met'})"

    lines.append("")
    for kind in SPARSE_KINDS:
        lines += [f"- {names[kind]} N 1024 / N 16: {ratio((kind, 1024), (kind, 16), 5, False)}",
                  f"- dense N 1024 / {names[kind]} N 1024: {ratio(('dense', 1024), (kind, 1024), 20, True)}",
                  f"- pytorch-dnc N 1024 / {names[kind]} N 1024: "
                  f"{ratio(('pytorch-dnc', 1024), (kind, 1024), 20, True)}"]
    floor = [results.get(("floor", N), {}) for N in FLOOR_SIZES]
    if all("ms" in r for r in floor):
        lines.append(f"- the floor, the sparse step with its link ops free (not a model): {floor[0]['ms']:,.1f} ms "
                     f"at N 16, {floor[1]['ms']:,.0f} at N 1024, {floor[1]['ms'] / floor[0]['ms']:.1f}x; dense "
                     f"N 1024 / floor N 1024: {ratio(('dense', 1024), ('floor', 1024), 20, True)}")
    return "\n".join(lines) + "\n"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=lambda s: [int(n) for n in s.split(",")], help="memory sizes N (default "
                   f"{','.join(map(str, SIZES))}; --quick {','.join(map(str, QUICK_SIZES))})")
    p.add_argument("--K", type=common.positive_int, default=8, help="K of --sparse-links (default 8)")
    p.add_argument("--batch", type=common.positive_int, default=32)
    p.add_argument("--seq", type=common.positive_int, default=16)
    p.add_argument("--repeats", type=common.positive_int, help="timed steps a cell (default 3, --quick 1)")
    p.add_argument("--quick", action="store_true", help="N up to 256, one timed step a cell")
    p.add_argument("--no-peers", action="store_true", help="leave pytorch-dnc out even if it is installed")
    p.add_argument("--budget-gib", type=common.positive_float, help="cells estimated above this are not run "
                   "(default: half of the memory available now)")
    p.add_argument("--floor", action="store_true", help="also the step with its link ops free, at N 16 and 1024")
    p.add_argument("--out", help="also write the table to this markdown file")
    p.add_argument("--cell", nargs=2, metavar=("KIND", "N"), help=argparse.SUPPRESS)  # the subprocess's part
    args = p.parse_args(argv)
    if args.cell:
        print(json.dumps(run_cell(args.cell[0], int(args.cell[1]), args.K, args.batch, args.seq, args.repeats)))
        return 0
    args.sizes = args.sizes or list(QUICK_SIZES if args.quick else SIZES)
    args.repeats = args.repeats or (1 if args.quick else 3)
    have = machine.available_memory()
    args.budget_gib = args.budget_gib or (have / 2 ** 31 if have else 4.0)
    text, _ = compare.load_text()
    V = len(common.Vocab(text))
    results = {}
    for N in args.sizes:
        for kind in KINDS:
            results[kind, N] = r = cell(kind, N, args, V)
            print(f"N {N} {kind}: {r}", file=sys.stderr, flush=True)
    for N in FLOOR_SIZES if args.floor else ():
        results["floor", N] = r = cell("floor", N, args, V)
        print(f"N {N} floor: {r}", file=sys.stderr, flush=True)
    out = table(args, results)
    print(out, end="")
    if args.out:
        with open(args.out, "w") as f:
            f.write(out)
    return 1 if any(r.get("note", "").startswith("error") for r in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())

"""Training curves from the CSV logs that train.py writes with --log, drawn into one PNG.

    python benchmarks/curves.py a.csv b.csv ... -o curves.png
    python benchmarks/curves.py lstm.csv rnn.csv -o curves.png --title "alice29, 2 threads" \\
        --ref 2.12:"nanoGPT GPU" --ref 2.71:"nanoGPT CPU"

Text logs (train_bpc filled): bits per character against wall time and against the
characters seen, validation solid, training dashed, one colour per run. Task logs
(wrong_bits_seq filled): validation wrong bits per sequence against the episodes seen and
against wall time, with training nats per sequence dashed on a second axis. --ref
VALUE:LABEL adds a dotted grey horizontal line. Text and task logs do not mix in one call.
A resumed run appends to its log; its iterations must keep going up. matplotlib is an
optional extra (pip install matplotlib); every bad input is one line on stderr, exit 2.
"""
import csv
import math
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import common  # noqa: E402  (the project's shared module, one folder up: its one-line Parser)

# the columns of train.py's LOG_COLUMNS that the curves read; empty cells become NaN
NUMBERS = ("seconds", "iter", "chars", "episodes", "train_bpc", "val_bpc", "train_nats_seq", "wrong_bits_seq")
KINDS = {"text": ("train_bpc", "val_bpc", "chars"), "task": ("train_nats_seq", "wrong_bits_seq", "episodes")}


class BadInput(Exception):
    """One line for stderr, then exit 2."""


def read_log(path):
    """One --log file -> (kind "text" or "task", {column: float array})."""
    try:
        with open(path, newline="") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if not header:
                raise BadInput(f"{path} is empty")
            missing = [c for c in NUMBERS if c not in header]
            if len(missing) == len(NUMBERS):
                raise BadInput(f"{path} has no header line (a --log file starts with seconds,iter,chars,...)")
            if missing:
                raise BadInput(f"{path} lacks the column{'s' * (len(missing) > 1)} {', '.join(missing)}")
            rows, lines = [], []
            for fields in reader:
                if not fields:
                    continue
                if len(fields) != len(header):
                    raise BadInput(f"{path} line {reader.line_num}: {len(fields)} fields, the header has {len(header)}")
                row = dict(zip(header, fields))
                rows.append([number(row[c], path, reader.line_num, c) for c in NUMBERS])
                lines.append(reader.line_num)
    except OSError as e:
        raise BadInput(f"cannot read {path}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise BadInput(f"{path} is not a text file") from None
    except csv.Error as e:
        raise BadInput(f"{path} line {reader.line_num}: {e}") from None
    if not rows:
        raise BadInput(f"{path} has a header but no rows")
    cols = dict(zip(NUMBERS, np.array(rows, dtype=float).T))
    found = [k for k, (train, val, _) in KINDS.items() if np.isfinite([cols[train], cols[val]]).any()]
    if len(found) != 1:
        raise BadInput(f"{path} has " + ("both BPC and task columns filled" if found else
                                         "neither BPC nor wrong bits / nats per sequence in any row"))
    kind = found[0]
    for c in ("seconds", "iter", KINDS[kind][2]):
        empty = np.flatnonzero(~np.isfinite(cols[c]))
        if empty.size:
            raise BadInput(f"{path} line {lines[empty[0]]}: the {c} cell is empty")
    back = np.flatnonzero(np.diff(cols["iter"]) <= 0)
    if back.size:
        i = back[0] + 1
        raise BadInput(f"{path} line {lines[i]}: iter {cols['iter'][i]:g} after iter {cols['iter'][i - 1]:g} "
                       "(two runs in one log? a resumed run continues the iterations)")
    return kind, cols


def number(cell, path, line, column):
    """A cell -> float, NaN if empty."""
    if not cell.strip():
        return math.nan
    try:
        return float(cell)
    except ValueError:
        raise BadInput(f"{path} line {line}: {column} {cell!r} is not a number") from None


def ref_arg(s):
    """--ref VALUE:LABEL -> (value, label)."""
    value, _, label = s.partition(":")
    try:
        v = float(value)
    except ValueError:
        v = math.nan
    if not math.isfinite(v) or not label.strip():
        raise common.argparse.ArgumentTypeError(f"{s!r} is not VALUE:LABEL, e.g. 2.12:'nanoGPT GPU'")
    return v, label.strip()


def plot(runs, kind, refs, title, out):
    """Two panels side by side into out. Raises ImportError without matplotlib."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    train, val, count = KINDS[kind]
    text = kind == "text"
    panels = [("seconds", "wall time (s)"), (count, "characters seen")] if text else \
        [(count, "episodes seen"), ("seconds", "wall time (s)")]
    ylabel = "bits per character" if text else "validation wrong bits per sequence"
    style = ("validation BPC", "training BPC") if text else \
        ("validation wrong bits/seq", "training nats/seq (right axis)")
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for ax, (x, xlabel) in zip(axes, panels):
        twin = ax if text else ax.twinx()
        for i, (_, cols) in enumerate(runs):
            for on, y, ls in ((ax, val, "-"), (twin, train, "--")):
                keep = np.isfinite(cols[y])
                on.plot(cols[x][keep], cols[y][keep], color=f"C{i % 10}", ls=ls, lw=1.4 if ls == "-" else 1)
        for value, label in refs:
            ax.axhline(value, color="grey", ls=":", lw=1)
            ax.text(0.01, value, label, transform=ax.get_yaxis_transform(), ha="left", va="bottom",
                    color="grey", fontsize=8)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        if not text:
            twin.set_ylabel("training nats per sequence")
        ax.grid(alpha=0.3)
    handles = [Line2D([], [], color=f"C{i % 10}", label=name) for i, (name, _) in enumerate(runs)]
    handles += [Line2D([], [], color="black", ls=ls, lw=1, label=s) for ls, s in zip(("-", "--"), style)]
    axes[0].legend(handles=handles, fontsize=8, loc="best")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    try:
        fig.savefig(out, dpi=110)
    except (OSError, ValueError) as e:
        raise BadInput(f"cannot write {out}: {getattr(e, 'strerror', None) or e}") from None
    finally:
        plt.close(fig)


def main(argv=None):
    p = common.Parser(prog="curves.py", description=__doc__.split("\n\n")[0],
                      formatter_class=common.argparse.RawDescriptionHelpFormatter)
    p.add_argument("logs", nargs="+", metavar="LOG.csv", help="CSV logs written by --log (text or task, not both)")
    p.add_argument("-o", "--out", required=True, metavar="PNG", help="the picture to write")
    p.add_argument("--ref", type=ref_arg, action="append", default=[], metavar="VALUE:LABEL",
                   help="a dotted horizontal reference line, e.g. 2.12:'nanoGPT GPU' (repeatable)")
    p.add_argument("--title", help="a title above both panels")
    args = p.parse_args(argv)
    try:
        logs = [(path, *read_log(path)) for path in args.logs]
        kinds = {kind: path for path, kind, _ in logs}
        if len(kinds) > 1:
            raise BadInput(f"{kinds['text']} is a text log and {kinds['task']} a task log: "
                           "draw them in separate calls")
        runs = [(os.path.basename(path).removesuffix(".csv"), cols) for path, _, cols in logs]
        try:
            plot(runs, logs[0][1], args.ref, args.title, args.out)
        except ImportError:
            raise BadInput("drawing needs matplotlib, an optional extra: pip install matplotlib") from None
    except BadInput as e:
        print(f"curves.py: {e}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Pictures of one episode of a memory task: in the terminal with numpy alone (shade
blocks), or as a PNG with matplotlib, an optional extra. Both draw the same rows, in
the conventions of the NTM and DNC papers' figures: time across, one line per channel
or memory location, 0 dark and 1 bright.

A picture is a list of rows (label, (K, T) array of values in [0, 1]): the inputs, the
targets and the outputs of every model, then, for the DNC, what its
memory_pictures(params, inputs, cfg) returns (write and read weightings, gates, usage).
"""
import numpy as np

import common

SHADES = " ░▒▓█"  # 0, 1/4, 1/2, 3/4, 1
LABEL = 16  # columns for the labels


def episode_rows(model, cfg, params, task, rng, length):
    """One fresh episode of `length` through the model -> rows, title."""
    inputs, targets, mask = task.episodes(rng, 1, length=length)  # (T, 1) or (T, 1, C); (T, 1) or (T, 1, K)
    logits, _, _ = model.forward(params, inputs, model.init_state(cfg, params, 1), cfg)
    on = mask[:, 0, None]  # (T, 1) the answer steps
    if task.io == "bits":  # the model's inputs and targets are already the rows drawn
        channels, want = inputs[:, 0], targets[:, 0]  # (T, C), (T, K)
        out = common.sigmoid(logits[:, 0].astype(np.float64)) * on  # (T, K) each bit's probability of 1
    else:  # tokens: drawn as the channels of the bit form
        channels = task.input_channels(inputs[:, 0])  # (T, C)
        want = np.where(on, task.token_bits(targets[:, 0]), 0).clip(0)  # (T, out_bits)
        p = common.softmax(logits[:, 0].astype(np.float64))  # (T, V)
        bits = task.token_bits(np.arange(task.V))  # (V, out_bits), -1 for no answer
        # the probability of each output bit being 1: the sum of p over the tokens with that bit set
        out = (p @ (bits == 1)) * on  # (T, out_bits)
    wrong = int((task.wrong_bits(logits, targets) * mask).sum())
    rows = [("input", channels.T), ("target", want.T), ("output", out.T)]
    if hasattr(model, "memory_pictures"):
        rows += model.memory_pictures(params, inputs, cfg)
    title = f"{task.describe()}\none episode of length {length}, {wrong} wrong bits"
    return rows, title


def terminal(rows, title, width=100):
    """The rows as shade blocks, one character per time step, wrapped to `width` columns."""
    T = rows[0][1].shape[1]
    per = max(10, width - LABEL)
    out = title.split("\n") + [f"(time across, {SHADES[0]!r} = 0 ... {SHADES[-1]!r} = 1)"]
    for t0 in range(0, T, per):
        t1 = min(T, t0 + per)
        if T > per:
            out.append(f"steps {t0}-{t1 - 1}:")
        ruler = "".join(str(t % 10) if t % 5 == 0 else "·" for t in range(t0, t1))
        out.append(f"{'step':<{LABEL}}{ruler}")
        for label, a in rows:
            levels = np.clip(np.rint(np.asarray(a, float)[:, t0:t1] * 4), 0, 4).astype(int)
            for k, line in enumerate(levels):
                name = (label if k == 0 else "") if len(levels) == 1 else f"{label if k == 0 else '':<12}{k:>3}"
                out.append(f"{name:<{LABEL}}" + "".join(SHADES[v] for v in line))
    return "\n".join(out)


def png(rows, title, path):
    """The same rows with matplotlib: one panel per row, time on x, 0 dark to 1 bright.
    Raises ImportError without matplotlib (the caller says how to install it)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    heights = [max(1.5, a.shape[0]) for _, a in rows]
    tall = 1.2 + 0.08 * sum(heights)  # inches
    fig, axes = plt.subplots(len(rows), 1, figsize=(7, tall), sharex=True,
                             gridspec_kw={"height_ratios": heights}, squeeze=False)
    for ax, (label, a) in zip(axes[:, 0], rows):
        ax.imshow(a, aspect="auto", vmin=0, vmax=1, cmap="gray", interpolation="nearest")
        ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
        ax.set_yticks([0, a.shape[0] - 1] if a.shape[0] > 1 else [])
        ax.tick_params(labelsize=7)
    axes[-1, 0].set_xlabel("time step")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.45 / tall), h_pad=0.3)  # room for the two-line title
    fig.savefig(path, dpi=110)
    plt.close(fig)

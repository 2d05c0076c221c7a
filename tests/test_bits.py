"""The memory tasks' bit form (--io bits, the default): the episodes as channels, the
bit-wise sigmoid cross-entropy and its gradient, the models' input product under the
gradient check, and the command line (--bits 32, --io, checkpoints of either form)."""
import io
import json
import os
import re

import numpy as np
import pytest

import common
import train
from conftest import run_script, stderr_lines

tasks = common.load_script(os.path.join("data", "tasks.py"))
MODELS = {kind: common.load_script(f"{kind}-numpy.py") for kind in ("rnn", "lstm", "dnc")}
DNC = {"memory": 4, "width": 3, "reads": 2, "stop_usage_grad": False}
CFGS = {"rnn": {}, "lstm": {}, "dnc": dict(DNC, controller="lstm"), "dnc-feedforward": dict(DNC, controller="feedforward")}
TOL = {"rnn": 1e-7, "lstm": 1e-7, "dnc": 1e-6, "dnc-feedforward": 1e-6}
PARAMS = {"rnn": (5, 8), "lstm": (5, 8), "dnc": (9, 14), "dnc-feedforward": (8, 12)}  # at 1 and 2 layers
SMALL = {"copy": {"bits": 3, "min_length": 1, "max_length": 3},
         "repeat-copy": {"bits": 2, "min_length": 1, "max_length": 2, "min_repeats": 1, "max_repeats": 3},
         "recall": {"bits": 2, "min_length": 2, "max_length": 3, "item_length": 1},
         "add": {"min_length": 3, "max_length": 5},
         "series-copy": {"bits": 2, "min_length": 1, "max_length": 2, "min_item_length": 1, "max_item_length": 2}}
WIDTHS = {"copy": (6 + 1, 6), "repeat-copy": (4 + 2, 4 + 1), "recall": (6 + 2, 6), "add": (2, 1),
          "series-copy": (6 + 1, 6)}  # (C, K)


def both_forms(name, seed=0, B=50, **settings):
    """The same seed's episodes in the bit form and in the token form."""
    bits = tasks.make_task(name, **settings).episodes(np.random.default_rng(seed), B)
    tokens = tasks.make_task(name, io="tokens", **settings).episodes(np.random.default_rng(seed), B)
    return bits, tokens


def from_bits(bits):
    """(..., b) 0/1, least significant first -> (...) int"""
    return (bits.astype(np.int64) << np.arange(bits.shape[-1])).sum(-1)


# ----------------------------------------------------------------------------------
# The episodes as channels


@pytest.mark.parametrize("name", list(tasks.TASKS))
def test_shapes_widths_and_masks(name):
    task = tasks.make_task(name)
    assert task.io == "bits" and (task.V_in, task.V_out) == WIDTHS[name]
    (x, y, mask), (_, _, token_mask) = both_forms(name)
    T, B = mask.shape
    assert x.shape == (T, B, task.V_in) and y.shape == (T, B, task.V_out)
    assert x.dtype == y.dtype == np.float32 and mask.dtype == bool
    assert (mask == token_mask).all()  # the same answer steps in both forms
    assert set(np.unique(y)) <= {0.0, 1.0} and (y[~mask] == 0).all()  # 0/1, nothing off the answers
    assert ((x >= 0) & (x <= 1)).all()
    assert len(task.input_labels) == task.V_in


@pytest.mark.parametrize("name", list(tasks.TASKS))
def test_the_bits_are_the_token_forms_bits(name):
    """The same seed draws the same vectors: the bit form is the token form's integers
    written out in binary, the flags their markers."""
    task = tasks.make_task(name)
    (x, y, mask), (tok_in, tok_out, _) = both_forms(name)
    np.testing.assert_array_equal(x, task.input_channels(tok_in))
    np.testing.assert_array_equal(y, np.where(mask[..., None], task.token_bits(tok_out), 0))
    if name != "add":
        data = tok_in < 2 ** task.bits  # steps that read a vector
        assert (from_bits(x[..., :task.bits])[data] == tok_in[data]).all()


def test_copy_channels():
    """x1..xL with the delimiter channel off, the delimiter alone at step L, then blank rows
    while the targets are x1..xL."""
    x, y, mask = tasks.make_task("copy", bits=5, max_length=6).episodes(np.random.default_rng(1), 40)
    L = mask.sum(0)
    assert L.min() == 1 and L.max() == 6
    for b, n in enumerate(L):
        assert (x[:n, b, 5] == 0).all() and (x[n, b] == [0] * 5 + [1]).all() and (x[n + 1:, b] == 0).all()
        np.testing.assert_array_equal(y[n + 1:2 * n + 1, b], x[:n, b, :5])
        assert (np.flatnonzero(mask[:, b]) == np.arange(n + 1, 2 * n + 1)).all()
    assert x[..., :5].sum() > 0.3 * 5 * L.sum()  # random bits, not all zero


def test_repeat_copy_channels():
    """The delimiter and the repeat count k / max k at step L alone; the targets are the
    sequence k times and then the end channel, alone, at the last answer step."""
    x, y, mask = tasks.make_task("repeat-copy", bits=3, max_length=3, max_repeats=4).episodes(
        np.random.default_rng(2), 80)
    seen = set()
    for b in range(x.shape[1]):
        n = int(np.flatnonzero(x[:, b, 3])[0])  # the delimiter
        k = round(float(x[n, b, 4]) * 4)
        seen.add(k)
        assert (x[n, b, :3] == 0).all() and x[n, b, 3] == 1 and x[n, b, 4] == k / 4
        assert (x[:n, b, 3:] == 0).all() and (x[n + 1:, b] == 0).all()
        answer = y[mask[:, b], b]  # (k n + 1, 4)
        assert len(answer) == k * n + 1
        np.testing.assert_array_equal(answer[:-1, :3], np.tile(x[:n, b, :3], (k, 1)))
        assert (answer[:-1, 3] == 0).all() and (answer[-1] == [0, 0, 0, 1]).all()
    assert seen == {1, 2, 3, 4}


def test_recall_channels():
    x, y, mask = tasks.make_task("recall", bits=4, item_length=2, max_length=5).episodes(
        np.random.default_rng(3), 60)
    for b in range(x.shape[1]):
        item, query = x[:, b, 4], x[:, b, 5]
        q = np.flatnonzero(query)
        n = q[0] // 3
        assert len(q) == 2 and q[1] == q[0] + 3 and (np.flatnonzero(item) == np.arange(0, 3 * n, 3)).all()
        items = x[:3 * n, b, :4].reshape(n, 3, 4)[:, 1:]  # (n, 2, 4): each item's two vectors
        asked = x[q[0] + 1:q[1], b, :4]
        match = np.flatnonzero((items == asked).all(axis=(1, 2)))
        assert len(match) == 1
        np.testing.assert_array_equal(y[mask[:, b], b], items[match[0] + 1].reshape(2, 4))


def test_add_channels():
    x, y, mask = tasks.make_task("add", min_length=4, max_length=20).episodes(np.random.default_rng(4), 100)
    a, b, c = (from_bits((v[..., 0] * mask).T) for v in (x[..., :1], x[..., 1:], y))
    assert (c == a + b).all() and len(np.unique(a)) > 50


@pytest.mark.parametrize("bits", [32, 62])
def test_wide_vectors(bits):
    """--bits beyond the token form's 10: every column is a fair coin, the top one too."""
    task = tasks.make_task("copy", bits=bits, min_length=8, max_length=8)
    x, y, mask = task.episodes(np.random.default_rng(5), 64)
    assert x.shape == (17, 64, bits + 1) and y.shape == (17, 64, bits)
    share = x[:8, :, :bits].mean(axis=(0, 1))  # (bits,) ones per column
    assert share.min() > 0.35 and share.max() < 0.65
    np.testing.assert_array_equal(y[9:], x[:8, :, :bits])


def test_same_seed_same_episodes_other_seed_others():
    task = tasks.make_task("repeat-copy")
    a, b, c = (task.episodes(np.random.default_rng(s), 16) for s in (7, 7, 8))
    assert all(np.array_equal(u, v) for u, v in zip(a, b))
    assert a[0].shape != c[0].shape or not np.array_equal(a[0], c[0])


def test_wrong_bits():
    """A bit is wrong when sigmoid(logit) >= 1/2 disagrees with it: logit 0 says 1."""
    task = tasks.make_task("copy", bits=3)
    targets = np.array([[[1, 0, 1], [0, 0, 0]]], np.float32)  # (1, 2, 3)
    logits = np.array([[[2.0, -1.0, 0.0], [0.0, -3.0, 5.0]]])
    assert task.wrong_bits(logits, targets).tolist() == [[0, 2]]


# ----------------------------------------------------------------------------------
# The bit-wise loss


def naive_loss(logits, targets, mask):
    """-sum over answer steps and bits of [y log s + (1 - y) log(1 - s)] / B, written plainly."""
    total = 0.0
    T, B, K = logits.shape
    for t in range(T):
        for b in range(B):
            for k in range(K):
                if mask[t, b]:
                    s = 1 / (1 + np.exp(-logits[t, b, k]))
                    y = targets[t, b, k]
                    total -= y * np.log(s) + (1 - y) * np.log(1 - s)
    return total / B


def random_problem(seed=0, T=5, B=4, K=3, scale=3.0):
    rng = np.random.default_rng(seed)
    logits = scale * rng.standard_normal((T, B, K))
    targets = (rng.random((T, B, K)) < 0.5).astype(np.float64)
    mask = rng.random((T, B)) < 0.6
    return logits, targets, mask


def test_loss_against_the_naive_formula():
    logits, targets, mask = random_problem()
    loss, _ = common.sigmoid_cross_entropy(logits, targets, mask)
    assert 0 < mask.sum() < mask.size
    assert loss == pytest.approx(naive_loss(logits, targets, mask), rel=1e-12)
    assert common.sigmoid_cross_entropy(logits, targets, None)[0] == pytest.approx(
        naive_loss(logits, targets, np.ones_like(mask)), rel=1e-12)


def test_loss_is_nats_per_episode():
    """Chance (every logit 0) costs log 2 per answer bit; an episode's loss is its sum,
    and the batch's the mean over episodes (so a batch twice the same has the same loss)."""
    mask = np.zeros((6, 2), bool)
    mask[2:5, 0], mask[1:3, 1] = True, True  # 3 and 2 answer steps
    loss, _ = common.sigmoid_cross_entropy(np.zeros((6, 2, 4)), np.ones((6, 2, 4)), mask)
    assert loss == pytest.approx((3 + 2) * 4 * np.log(2) / 2)
    logits, targets, mask = random_problem(1)
    twice = [np.concatenate([a, a], axis=1) for a in (logits, targets, mask)]
    assert common.sigmoid_cross_entropy(*twice)[0] == pytest.approx(
        common.sigmoid_cross_entropy(logits, targets, mask)[0], rel=1e-12)


def test_loss_is_stable_at_huge_logits():
    """+-1000: log(sigmoid) would be log(0); the loss is finite and exact, its gradient too."""
    logits = np.array([[[1000.0, 1000.0, -1000.0, -1000.0]]])
    targets = np.array([[[1.0, 0.0, 1.0, 0.0]]])
    with np.errstate(over="raise", divide="raise", invalid="raise"):  # log(0), inf - inf: an error
        loss, d = common.sigmoid_cross_entropy(logits, targets, np.ones((1, 1), bool))
        nats = common.bit_nats(logits, targets)
    assert nats.tolist() == [[[0.0, 1000.0, 1000.0, 0.0]]]
    assert loss == 2000.0
    assert d.tolist() == [[[0.0, 1.0, -1.0, 0.0]]]
    for dtype in (np.float32, np.float64):
        loss, d = common.sigmoid_cross_entropy(logits.astype(dtype), targets.astype(dtype), np.ones((1, 1), bool))
        assert loss == 2000.0 and d.dtype == dtype and np.isfinite(d).all()


def test_loss_gradient_by_central_differences():
    logits, targets, mask = random_problem(2, scale=2.0)
    _, d = common.sigmoid_cross_entropy(logits, targets, mask)
    h, num = 1e-6, np.zeros_like(logits)
    for i in np.ndindex(logits.shape):
        up, down = logits.copy(), logits.copy()
        up[i] += h
        down[i] -= h
        num[i] = (common.sigmoid_cross_entropy(up, targets, mask)[0]
                  - common.sigmoid_cross_entropy(down, targets, mask)[0]) / (2 * h)
    np.testing.assert_allclose(d, num, rtol=1e-6, atol=1e-9)
    assert (d[~mask] == 0).all() and (d[mask] != 0).all()


def test_steps_off_the_mask_cost_nothing():
    logits, targets, mask = random_problem(3)
    other_logits, other_targets = logits.copy(), targets.copy()
    other_logits[~mask] = 50.0
    other_targets[~mask] = 1 - targets[~mask]
    assert common.sigmoid_cross_entropy(other_logits, other_targets, mask)[0] == \
        common.sigmoid_cross_entropy(logits, targets, mask)[0]


# ----------------------------------------------------------------------------------
# The input product and the models


def test_embed_of_one_hot_rows_is_the_gather():
    """A float one-hot row through the product gives the row the id gathers, and both
    backwards give the same dW: the channel path is the gather path generalised."""
    rng = np.random.default_rng(0)
    V, K = 6, 4
    W, b = rng.standard_normal((V, K)), rng.standard_normal(K)
    ids = rng.integers(0, V, size=(5, 3))
    onehot = np.eye(V)[ids]  # (5, 3, V)
    np.testing.assert_allclose(common.embed(onehot, W, b), common.embed(ids, W, b), rtol=1e-14)
    dout = rng.standard_normal((5, 3, K))
    np.testing.assert_allclose(common.embed_backward(onehot, dout, V), common.embed_backward(ids, dout, V),
                               rtol=1e-12, atol=1e-14)
    x = rng.random((5, 3, V))  # general channels: x W + b
    np.testing.assert_allclose(common.embed(x, W, b), np.einsum("tbv,vk->tbk", x, W) + b, rtol=1e-12)
    np.testing.assert_allclose(common.embed_backward(x, dout, V), np.einsum("tbv,tbk->vk", x, dout), rtol=1e-12)


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("name", list(tasks.TASKS))
@pytest.mark.parametrize("kind", list(CFGS))
def test_model_gradients_on_the_bit_form(kind, name, layers):
    task = tasks.make_task(name, **SMALL[name])
    episodes = task.episodes(np.random.default_rng(0), 3)
    out = io.StringIO()
    cfg = dict(CFGS[kind], hidden=5, layers=layers, dropout=0.0)
    worst, count = common.check_model_gradients(MODELS[kind.split("-")[0]], cfg, V=task.V_in, V_out=task.V_out,
                                                episodes=episodes, loss=common.sigmoid_cross_entropy, out=out)
    assert count == PARAMS[kind][layers - 1]
    assert "ALL-ZERO" not in out.getvalue()
    assert worst < TOL[kind], out.getvalue()


@pytest.mark.parametrize("kind", list(MODELS))
def test_the_check_catches_the_wrong_loss(kind):
    """Gradients of the bit-wise loss differenced against another loss (the bits' mean
    per answer step) fail by far: the check really uses the loss it is given."""
    model, task = MODELS[kind], tasks.make_task("copy", **SMALL["copy"])
    inputs, targets, mask = task.episodes(np.random.default_rng(0), 3)
    cfg = dict(CFGS[kind], hidden=5, layers=1, dropout=0.0)
    params = model.init_params(cfg, task.V_in, np.random.default_rng(0), np.float64, task.V_out)
    assert params["Wx0"].shape[0] == 4 and params["Wy"].shape == (5, 3)  # 3 bits + delimiter in, 3 bits out
    state = model.init_state(cfg, params, 3)
    _, grads, _ = common.loss_and_grads(model, params, inputs, targets, common.copy_state(state), cfg, mask,
                                        loss=common.sigmoid_cross_entropy)

    def per_step(p):  # (the DNC's sort order does not change under these tiny steps)
        logits = model.forward(p, inputs, common.copy_state(state), cfg)[0]
        return common.sigmoid_cross_entropy(logits, targets, mask)[0] * 3 / mask.sum()

    assert common.gradcheck(per_step, params, grads, rng=np.random.default_rng(1), out=io.StringIO()) > 1e-2


def test_dnc_debug_fails_on_a_wrong_input_product(monkeypatch, capfd):
    """An input product whose weight gradient forgets the last channel (the flags): the
    op check and the whole model on bit-form episodes say FAIL; the text checks do not."""
    debug = common.load_script("dnc-debug.py")
    real = common.embed_backward

    def wrong(inputs, dout, V):
        dW = real(inputs, dout, V)
        if not np.issubdtype(inputs.dtype, np.integer):
            dW[-1] = 0
        return dW

    monkeypatch.setattr(common, "embed_backward", wrong)
    assert debug.main(["--checks", "4", "--seq", "3", "--controller", "lstm", "--layers", "1"]) == 1
    out = capfd.readouterr().out
    errors, check = {}, None  # the check's title -> its max relative error
    for line in out.splitlines():
        if line.startswith("-- ") and line.endswith(" --"):
            check = line[3:-3]
        elif line.startswith("   max relative error "):
            errors[check] = line.split()[-1]
    assert float(errors["input product of bit channels, x W_x"]) > 1e-2
    text_model = next(k for k in errors if k.startswith("{"))
    bit_model = next(k for k in errors if k.startswith("the same on repeat-copy"))
    assert float(errors[text_model]) < 1e-6 and float(errors[bit_model]) > 1e-2
    assert "FAIL" in out


def test_progress_counts_the_bitwise_loss_per_episode():
    """Two batches of 4 episodes, 3 answer steps each, at 6 and 12 nats per episode:
    9 nats per episode, and 9 * 4 * 2 / 24 steps = 3 nats per answer step."""
    p = train.Progress(is_task=True, per_episode=True)
    inputs, mask = np.zeros((7, 4, 5), np.float32), np.zeros((7, 4), bool)
    mask[4:] = True
    p.add(6.0, mask, inputs)
    p.add(12.0, mask, inputs)
    assert p.steps == 2 * 7 * 4  # steps, not floats of the channels
    assert p.recent_bits_per_step() == pytest.approx(3 / np.log(2))
    assert p.recent() == pytest.approx(9.0)


# ----------------------------------------------------------------------------------
# The command line


def one_error_line(p, *pieces):
    assert p.returncode == 2, (p.returncode, p.stdout, p.stderr)
    lines = stderr_lines(p)
    assert len(lines) == 1 and "Traceback" not in p.stderr, p.stderr
    for piece in pieces:
        assert piece in lines[0], lines[0]
    return lines[0]


TINY_TASK = ["--hidden", 8, "--batch", 4, "--report", 2]


def test_bits_32_trains_and_evaluates(tmp_path):
    ck = tmp_path / "c32.npz"
    p = run_script("lstm", "--task", "copy", "--bits", 32, "--length", "1-3", *TINY_TASK, "--iters", 4,
                   "--save", ck)
    assert p.returncode == 0, p.stderr
    assert "copy: 32-bit vectors, length 1-3, --io bits" in p.stdout
    m = re.search(r"val ([\d.]+) nats/seq, ([\d.]+) wrong bits/seq", p.stdout.splitlines()[-1])
    nats, wrong = float(m.group(1)), float(m.group(2))
    answer_bits = 32 * 2  # lengths 1-3: 2 vectors per episode on average
    assert 0.3 * answer_bits < wrong < 0.7 * answer_bits  # an untrained model guesses about half
    assert 0.5 * answer_bits * np.log(2) < nats < 2 * answer_bits * np.log(2)
    params = common.load_checkpoint(str(ck), "lstm")["param"]
    assert params["Wx0"].shape == (33, 32) and params["Wy"].shape == (8, 32)  # 32 bits + delimiter in, 32 out
    p = run_script("lstm", "--load", ck, "--eval-lengths", "2,3", "--episodes", 20)
    assert p.returncode == 0, p.stderr
    assert re.search(r"^\s+2\s+[\d.]+\s+64\s", p.stdout, re.M) and re.search(r"^\s+3\s+[\d.]+\s+96\s", p.stdout, re.M)


@pytest.mark.parametrize("args, pieces", [
    (["--bits", 0], ["--bits", "positive"]),
    (["--bits", 63], ["--bits must be 1 to 62, got 63"]),
    (["--io", "tokens", "--bits", 11], ["--bits must be 1 to 10 with --io tokens", "got 11"]),
    (["--io", "words"], ["--io", "invalid choice"]),
])
def test_bad_bits_is_one_line(args, pieces):
    p = run_script("lstm", "--task", "copy", *args)
    one_error_line(p, *pieces)
    assert p.stdout == ""


def test_io_without_a_task_is_one_line(tmp_path):
    (tmp_path / "t.txt").write_text("abc " * 100)
    one_error_line(run_script("lstm", tmp_path / "t.txt", "--io", "bits"), "--io is a task option")


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """An LSTM copy checkpoint in each form, trained 4 iterations."""
    d = tmp_path_factory.mktemp("bits")
    for form in tasks.IO_FORMS:
        p = run_script("lstm", "--task", "copy", "--io", form, "--bits", 3, "--length", "1-2", *TINY_TASK,
                       "--iters", 4, "--save", d / f"{form}.npz")
        assert p.returncode == 0, p.stderr
    return d


def test_checkpoints_record_the_form(checkpoints):
    for form in tasks.IO_FORMS:
        ck = common.load_checkpoint(str(checkpoints / f"{form}.npz"), "lstm")
        assert ck["info"]["task"]["io"] == form
        V_in, V_out = (4, 3) if form == "bits" else (10, 10)
        assert ck["param"]["Wx0"].shape[0] == V_in and ck["param"]["Wy"].shape[1] == V_out


@pytest.mark.parametrize("form, other", [("bits", "tokens"), ("tokens", "bits")])
def test_a_checkpoint_of_the_other_form_is_refused(checkpoints, form, other):
    for mode in (["--iters", 2], ["--show"], ["--eval-lengths", 2]):
        p = run_script("lstm", "--load", checkpoints / f"{form}.npz", "--io", other, *mode)
        one_error_line(p, f"was trained with --io {form}", f"drop --io {other}")
        assert p.stdout == ""
    p = run_script("lstm", "--load", checkpoints / f"{form}.npz", "--io", form, "--iters", 2, "--no-save")
    assert p.returncode == 0 and f"--io {form}" in p.stdout, p.stderr


def test_a_checkpoint_from_before_io_is_the_token_form(checkpoints, tmp_path):
    """The checkpoints written before --io hold no form: they were all tokens."""
    old = tmp_path / "old.npz"
    with np.load(checkpoints / "tokens.npz", allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    info = json.loads(str(arrays["info"]))
    del info["task"]["io"]
    arrays["info"] = np.array(json.dumps(info))
    np.savez(old, **arrays)
    p = run_script("lstm", "--load", old, "--eval-lengths", 2, "--episodes", 10)
    assert p.returncode == 0, p.stderr
    one_error_line(run_script("lstm", "--load", old, "--io", "bits", "--show"), "was trained with --io tokens")


@pytest.mark.parametrize("form", tasks.IO_FORMS)
def test_show_in_either_form(checkpoints, form):
    """The same rows in both forms: 3 bits + the delimiter in, 3 bits out."""
    p = run_script("lstm", "--load", checkpoints / f"{form}.npz", "--show", "--seed", 1)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0] == "copy: 3-bit vectors, length 1-2"
    wrong = int(re.fullmatch(r"one episode of length 2, (\d+) wrong bits", lines[1]).group(1))
    assert 0 <= wrong <= 6
    labels = [" ".join(l[:16].split()) for l in lines[4:]]
    assert labels == ["input 0", "1", "2", "3", "target 0", "1", "2", "output 0", "1", "2"]
    assert all(len(l) == 16 + 5 for l in lines[4:])  # 2 L + 1 steps


@pytest.mark.parametrize("task_name", ["repeat-copy", "add"])
def test_gradcheck_command_line_in_the_bit_form(task_name):
    p = run_script("rnn", "--task", task_name, "--gradcheck", "--hidden", 5)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "--io bits, its masked loss (bit-wise sigmoid cross-entropy)" in p.stdout.splitlines()[0]
    assert re.fullmatch(r"gradcheck: max relative error \S+ over 5 parameters: PASS", p.stdout.strip().splitlines()[-1])

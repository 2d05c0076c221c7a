"""The optimisers (common.Adagrad, Adam, RMSProp) against plain references, their state
through checkpoints (exact resume, the old layout, another --optim refused), the
learning-rate schedule (--warmup, --lr-schedule cosine, --lr-decay) as the loop applies
it, --time and --report-seconds in seconds of training, and benchmarks/quality.py without
torch."""
import csv
import math
import os
import re
import subprocess
import sys

import numpy as np
import pytest

import common
import train
from conftest import ROOT, TINY, arrays, assert_same_arrays, make_text, run_script, stderr_lines

RESUMED = ("param/", "opt/", "state/")  # what a resumed run must carry on bit for bit

TIMING = re.compile(r"[\d.]+ s, |[\d.]+ char/s|[\d.]+% of the time|(checkpoint|saved) \S+")
REPORT = re.compile(r"[\d.]+ s, iter (\d+), ([\d.]+) BPC, [\d.]+ char/s, val ([\d.]+) BPC")
DONE = re.compile(r"done: iter (\d+), .*, ([\d.]+) char/s training, ([\d.]+)% of the time validating.*")


def quadratic(rng):
    """A tiny quadratic loss 1/2 sum a p^2 + b p, float64: its params and its gradient."""
    a = {"W": rng.uniform(0.5, 2.0, (3, 2)), "b": rng.uniform(0.5, 2.0, 4)}
    b = {k: rng.standard_normal(v.shape) for k, v in a.items()}
    params = {k: rng.standard_normal(v.shape) for k, v in a.items()}
    return params, lambda p: {k: a[k] * p[k] + b[k] for k in p}


def plain_adagrad(p, grad, steps, lr, eps=1e-8):
    p, mem = dict(p), {k: 0.0 * v for k, v in p.items()}
    for _ in range(steps):
        g = grad(p)
        for k in p:
            mem[k] = mem[k] + g[k] ** 2
            p[k] = p[k] - lr * g[k] / np.sqrt(mem[k] + eps)
    return p


def plain_adam(p, grad, steps, lr, b1=0.9, b2=0.999, eps=1e-8):
    """Kingma & Ba 2015, Algorithm 1, line by line."""
    p, m, v = dict(p), {k: 0.0 * x for k, x in p.items()}, {k: 0.0 * x for k, x in p.items()}
    for t in range(1, steps + 1):
        g = grad(p)
        for k in p:
            m[k] = b1 * m[k] + (1 - b1) * g[k]
            v[k] = b2 * v[k] + (1 - b2) * g[k] ** 2
            m_hat, v_hat = m[k] / (1 - b1 ** t), v[k] / (1 - b2 ** t)
            p[k] = p[k] - lr * m_hat / (np.sqrt(v_hat) + eps)
    return p


def plain_rmsprop(p, grad, steps, lr, decay=0.9, momentum=0.0, eps=1e-10):
    """TensorFlow 1's ApplyRMSProp, its mean square starting at ones."""
    p, ms, mom = dict(p), {k: 0.0 * x + 1 for k, x in p.items()}, {k: 0.0 * x for k, x in p.items()}
    for _ in range(steps):
        g = grad(p)
        for k in p:
            ms[k] = decay * ms[k] + (1 - decay) * g[k] ** 2
            mom[k] = momentum * mom[k] + lr * g[k] / np.sqrt(ms[k] + eps)
            p[k] = p[k] - mom[k]
    return p


def run_optimiser(opt_class, params, grad, steps, **kw):
    params = {k: v.copy() for k, v in params.items()}
    opt = opt_class(params, **kw)
    for _ in range(steps):
        opt.step(params, grad(params))
    return params, opt


# ---------------------------------------------------------------- the updates

@pytest.mark.parametrize("name, plain, kw", [
    ("adagrad", plain_adagrad, {"lr": 0.3}),
    ("adam", plain_adam, {"lr": 0.05}),
    ("rmsprop", plain_rmsprop, {"lr": 0.01}),
    ("rmsprop", plain_rmsprop, {"lr": 0.01, "momentum": 0.9}),
])
def test_each_optimiser_against_its_plain_reference(name, plain, kw):
    params, grad = quadratic(np.random.default_rng(0))
    ours, _ = run_optimiser(common.OPTIMIZERS[name], params, grad, 7, **kw)
    ref = plain(params, grad, 7, **kw)
    for k in params:
        np.testing.assert_allclose(ours[k], ref[k], rtol=1e-12, atol=1e-12, err_msg=k)
        assert np.abs(ours[k] - params[k]).max() > 1e-3  # it did move


def test_adam_first_step_is_lr_times_the_sign():
    """At t = 1 the bias correction gives m_hat = g and v_hat = g^2: every parameter
    moves by lr g / (|g| + eps), i.e. lr sign(g) up to eps, whatever the gradient's size."""
    rng = np.random.default_rng(1)
    params = {"W": rng.standard_normal((4, 3))}
    g = {"W": rng.standard_normal((4, 3)) * np.array([1e-3, 1.0, 1e3])}  # three scales
    before = params["W"].copy()
    common.Adam(params, lr=0.01).step(params, g)
    moved = before - params["W"]
    np.testing.assert_allclose(moved, 0.01 * g["W"] / (np.abs(g["W"]) + 1e-8), rtol=1e-12)
    assert np.all(np.abs(moved - 0.01 * np.sign(g["W"])) <= 0.01 * 1e-8 / np.abs(g["W"]) + 1e-15)


def test_rmsprop_first_step_by_hand():
    """ms = 0.9 * 1 + 0.1 g^2 (TensorFlow starts it at ones), p -= lr g / sqrt(ms + 1e-10)."""
    p, g = np.array([0.5, -1.0, 2.0]), np.array([0.2, -3.0, 0.0])
    params = {"p": p.copy()}
    opt = common.RMSProp(params, lr=0.1)
    opt.step(params, {"p": g})
    np.testing.assert_allclose(params["p"], p - 0.1 * g / np.sqrt(0.9 + 0.1 * g ** 2 + 1e-10), rtol=1e-15)
    np.testing.assert_allclose(opt.ms["p"], 0.9 + 0.1 * g ** 2, rtol=1e-15)


@pytest.mark.parametrize("name", sorted(common.OPTIMIZERS))
def test_state_round_trip_goes_on_bit_for_bit(name):
    """A fresh optimiser given another's state() takes the same next steps, to the bit."""
    params, grad = quadratic(np.random.default_rng(2))
    a, opt = run_optimiser(common.OPTIMIZERS[name], params, grad, 3, lr=0.01)
    b = {k: v.copy() for k, v in a.items()}
    again = common.OPTIMIZERS[name](b, lr=0.01)
    again.load_state({k: ({n: x.copy() for n, x in v.items()} if k in opt.SLOTS else v)
                      for k, v in opt.state().items()})
    for _ in range(4):
        opt.step(a, grad(a))
        again.step(b, grad(b))
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    assert set(opt.state()) == set(opt.SLOTS + opt.COUNTS)
    assert all(opt.state()[s].keys() == params.keys() for s in opt.SLOTS)


# ---------------------------------------------------------------- checkpoints and resume

@pytest.fixture(scope="module")
def text(tmp_path_factory):
    path = tmp_path_factory.mktemp("optim") / "text.txt"
    path.write_text(make_text())
    return path


@pytest.mark.parametrize("optim", ["adam", "rmsprop"])
def test_exact_resume(text, tmp_path, optim):
    """N + M iterations in one run equal N, save, --load, M more: bit for bit, the
    optimiser's slots (opt/SLOT/NAME) and Adam's step count included."""
    args = [*TINY, "--report", "3", "--batch", "5", "--optim", optim]
    one = run_script("lstm", text, *args, "--iters", 50, "--save", tmp_path / "one.npz")
    first = run_script("lstm", text, *args, "--iters", 30, "--save", tmp_path / "two.npz")
    second = run_script("lstm", text, *TINY, "--report", "3", "--batch", "5", "--iters", 20, "--load", tmp_path / "two.npz",
                        "--save", tmp_path / "two.npz")  # no --optim: the checkpoint's
    for p in (one, first, second):
        assert p.returncode == 0, p.stderr
    assert f"{optim} lr {common.OPTIMIZERS[optim].LR:g}" in second.stdout.splitlines()[1]
    whole, split = arrays(tmp_path / "one.npz", RESUMED), arrays(tmp_path / "two.npz", RESUMED)
    assert {k.split("/")[1] for k in whole if k.startswith("opt/")} == set(common.OPTIMIZERS[optim].SLOTS)
    assert_same_arrays(whole, split)
    ck = common.load_checkpoint(str(tmp_path / "two.npz"), "lstm")
    assert ck["optim"] == ck["info"]["optim"]["name"] == optim
    if optim == "adam":
        assert ck["opt"]["t"] == 50
    tail = [TIMING.sub("", l) for l in one.stdout.splitlines() if re.search(r"iter (3[3-9]|4\d|50)\b", l)]
    resumed = [TIMING.sub("", l) for l in second.stdout.splitlines() if re.search(r"iter (3[3-9]|4\d|50)\b", l)]
    assert tail and tail == resumed


def test_resuming_with_another_optimiser_is_refused(text, tmp_path):
    ck = tmp_path / "adam.npz"
    p = run_script("lstm", text, *TINY, "--iters", 5, "--optim", "adam", "--save", ck)
    assert p.returncode == 0, p.stderr
    q = run_script("lstm", text, "--load", ck, "--iters", 5, "--optim", "rmsprop")
    assert q.returncode == 2 and q.stdout == ""
    assert stderr_lines(q) == [f"lstm-numpy.py: error: {ck} was trained with adam; drop --optim rmsprop "
                               f"or start a new run"]
    same = run_script("lstm", text, "--load", ck, "--iters", 5, "--report", 5, "--optim", "adam")
    assert same.returncode == 0, same.stderr


def old_layout(new, old):
    """Rewrite an Adagrad checkpoint as runs saved them before --optim: the memory as
    adagrad/NAME, and no optimiser in the info."""
    import json

    with np.load(new, allow_pickle=False) as z:
        a = {k: z[k] for k in z.files}
    for k in [k for k in a if k.startswith("opt/mem/")]:
        a["adagrad/" + k[len("opt/mem/"):]] = a.pop(k)
    info = json.loads(str(a["info"]))
    del info["optim"]
    a["info"] = np.array(json.dumps(info))
    np.savez(old, **a)


def test_an_old_checkpoint_loads_and_resumes_as_adagrad(text, tmp_path):
    new, old = tmp_path / "new.npz", tmp_path / "old.npz"
    p = run_script("lstm", text, *TINY, "--iters", 10, "--save", new)
    assert p.returncode == 0, p.stderr
    old_layout(new, old)
    assert arrays(old, ("adagrad/",)) and not arrays(old, ("opt/",))
    ck, ck_new = common.load_checkpoint(str(old), "lstm"), common.load_checkpoint(str(new), "lstm")
    assert ck["optim"] == "adagrad" and set(ck["opt"]) == {"mem"}
    assert_same_arrays(ck["opt"]["mem"], ck_new["opt"]["mem"])
    # both resume to the same params, and the old one now saves in the new layout
    for path in (new, old):
        r = run_script("lstm", text, "--load", path, "--iters", 10, "--report", 5)
        assert r.returncode == 0, r.stderr
        assert "adagrad lr 0.1" in r.stdout
    assert_same_arrays(arrays(new, RESUMED), arrays(old, RESUMED))
    # and a damaged optimiser part is still one line
    with np.load(new, allow_pickle=False) as z:
        a = {k: z[k] for k in z.files if not k.startswith("opt/mem/Wy")}
    np.savez(tmp_path / "bad.npz", **a)
    with pytest.raises(common.UserError, match="damaged"):
        common.load_checkpoint(str(tmp_path / "bad.npz"), "lstm")


# ---------------------------------------------------------------- the schedule

def test_learning_rate_warmup_and_cosine():
    lr = train.learning_rate
    assert [lr(0.1, s, 0.0, warmup=4) for s in range(6)] == pytest.approx([0.025, 0.05, 0.075, 0.1, 0.1, 0.1],
                                                                          rel=1e-15)
    assert lr(0.1, 7, 0.3) == 0.1  # constant, no warm-up: the base itself
    cos = [lr(0.1, 100, done, schedule="cosine", min_frac=0.1) for done in (0.0, 0.5, 1.0, 1.5)]
    assert cos == pytest.approx([0.1, 0.055, 0.01, 0.01], rel=1e-15)
    assert lr(0.1, 100, 0.25, schedule="cosine", min_frac=0.0) == pytest.approx(0.1 * (1 + math.sqrt(0.5)) / 2)
    # together: the warm-up multiplies the cosine; --lr-decay's factors multiply the base
    assert lr(0.1 * 0.5, 1, 0.5, warmup=4, schedule="cosine") == pytest.approx(0.05 * 0.5 * 0.55, rel=1e-15)


class Recording(common.Adam):
    """Adam that notes the learning rate of every step."""
    seen = []

    def step(self, params, grads):
        Recording.seen.append(self.lr)
        super().step(params, grads)


def test_the_loop_steps_at_the_scheduled_rates(text, tmp_path, monkeypatch, lstm):
    """--warmup 5 --lr-schedule cosine over --iters 20, and --lr-decay 0.5 after every
    report without a new best (validation scripted): each step's lr as the formula says."""
    monkeypatch.setitem(common.OPTIMIZERS, "adam", Recording)
    monkeypatch.setattr(Recording, "seen", [])
    monkeypatch.setattr(train.machine, "keep_freed_memory", lambda: False)  # this process's settings stay
    monkeypatch.setattr(train.machine, "set_blas_threads", lambda n: False)
    scripted = iter([3.0, 2.0, 2.5, 2.6, 1.0] + [0.5] * 20)  # nats: reports 3 and 4 are no new best
    monkeypatch.setattr(train.TextSource, "validate", lambda self, *a: {"nats": next(scripted)})
    argv = [str(text), *TINY, "--report", 4, "--iters", 20, "--optim", "adam", "--lr", 0.01, "--warmup", 5,
            "--lr-schedule", "cosine", "--lr-decay", 0.5, "--no-save"]
    with pytest.raises(SystemExit) as e:
        train.main(lstm, "", argv=[str(a) for a in argv])
    assert e.value.code == 0
    scale = [1.0] * 12 + [0.5] * 4 + [0.25] * 4  # halved after the reports at iters 12 and 16
    want = [0.01 * scale[s] * min(1.0, (s + 1) / 5) * (0.1 + 0.9 * (1 + math.cos(math.pi * s / 20)) / 2)
            for s in range(20)]
    assert Recording.seen == pytest.approx(want, rel=1e-15)


@pytest.mark.parametrize("kind", ["lstm", "dnc"])
@pytest.mark.parametrize("given, bias", [([], 1.0), (["--optim", "adam"], 0.0), (["--optim", "rmsprop"], 0.0),
                                         (["--optim", "adam", "--forget-bias", "0.5"], 0.5)])
def test_forget_bias_follows_the_optimiser_unless_given(kind, given, bias):
    """The LSTM cells' forget-gate biases start at what trained best with the optimiser
    (train.FORGET_BIAS), or at --forget-bias; the cfg (and so the checkpoint) records it."""
    model = common.load_script(f"{kind}-numpy.py")
    args = train.make_parser(model, "", {}).parse_args(["--hidden", "6", "--layers", "2", *given])
    train.fill_sizes(args, model, None, {})
    cfg = model.config(args)
    assert cfg["forget_bias"] == bias
    if kind == "dnc":
        cfg = dict(cfg, memory=4, width=3, reads=2)
    params = model.init_params(cfg, 5, np.random.default_rng(0), np.float64)
    for l in range(2):
        b = params[f"b{l}"].reshape(4, 6)  # the gates' biases, stacked [i, f, o, g]
        assert (b[1] == bias).all() and not b[[0, 2, 3]].any()


def test_cosine_needs_a_budget_and_bad_schedule_options_are_one_line(text):
    cases = [(["--lr-schedule", "cosine", "--time", 0], "--lr-schedule cosine"),  # no --iters, no --time
             (["--iters", 2, "--warmup", -1], "--warmup"),
             (["--iters", 2, "--min-lr-frac", 1.5], "--min-lr-frac"),
             (["--iters", 2, "--optim", "sgd"], "--optim"),
             (["--iters", 2, "--lr-schedule", "linear"], "--lr-schedule"),
             (["--iters", 2, "--report-seconds", -1], "--report-seconds")]
    for extra, piece in cases:
        p = run_script("lstm", text, *TINY, "--no-save", *extra)
        assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr
        lines = stderr_lines(p)
        assert len(lines) == 1 and lines[0].startswith("lstm-numpy.py: error: ") and piece in lines[0], lines


# ---------------------------------------------------------------- seconds of training

def test_time_and_report_seconds_count_training_only(text, tmp_path):
    """--time 1 --report-seconds 0.25 with a validation text 50 times the training text:
    the reports come at every 0.25 s of training, the run stops after 1 s of training,
    and validating (most of the wall time) counts for neither."""
    (tmp_path / "val.txt").write_text(make_text() * 50)
    log = tmp_path / "log.csv"
    p = run_script("lstm", text, "--val", tmp_path / "val.txt", "--val-chars", 0, *TINY,
                   "--time", 1, "--report-seconds", 0.25, "--log", log, "--no-save")
    assert p.returncode == 0, p.stderr
    m = DONE.fullmatch(p.stdout.strip().splitlines()[-1])
    assert m and float(m.group(3)) > 30, p.stdout  # much of the time went into validating
    with open(log) as f:
        trained = [int(r["chars"]) / float(r["rate"]) for r in csv.DictReader(f)]  # chars / training rate
    assert len(trained) == 4, trained
    for k, t in enumerate(trained, 1):
        assert 0.25 * k <= t < 0.25 * k + 0.1, trained
    assert "----" not in p.stdout  # no samples with --report-seconds


def test_adam_lowers_the_loss(text):
    p = run_script("lstm", text, *TINY, "--iters", 60, "--optim", "adam", "--no-save")
    assert p.returncode == 0, p.stderr
    assert "adam lr 0.002" in p.stdout.splitlines()[0]
    reports = [(int(m.group(1)), float(m.group(2)), float(m.group(3)))
               for m in map(REPORT.fullmatch, p.stdout.splitlines()) if m]
    assert reports[0][0] == 5 and reports[-1][0] == 60
    assert reports[-1][1] < reports[0][1] - 0.1  # training BPC
    assert reports[-1][2] < reports[0][2]  # validation BPC


# ---------------------------------------------------------------- benchmarks/quality.py

def test_quality_without_the_peer(tmp_path):
    (tmp_path / "text.txt").write_text(make_text(2000))
    out = tmp_path / "quality.md"
    cmd = [sys.executable, os.path.join(ROOT, "benchmarks", "quality.py"), str(tmp_path / "text.txt"),
           "--no-peer", "--minutes", "0.05", "--every", "1", "--hidden", 16, "--layers", 1, "--batch", 4,
           "--seq", 16, "--optim", "adam", "--warmup", 10, "--out", out]
    p = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert out.read_text() == p.stdout
    row = next(line for line in p.stdout.splitlines() if line.startswith("| ours: lstm-numpy.py"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[0] == "ours: lstm-numpy.py, adam lr 0.002 --warmup 10"
    bpc, rate, validations = float(cells[1]), float(cells[2].replace(",", "")), int(cells[3])
    assert math.isfinite(bpc) and 0 < bpc < math.log2(len(set(make_text(2000))))
    assert rate > 0 and validations >= 3  # every second of 3 s of training
    peer = next(line for line in p.stdout.splitlines() if line.startswith("| peer:"))
    assert "not run (--no-peer)" in peer
    assert "lstm-numpy.py" in p.stdout and "--optim adam" in p.stdout and "--warmup 10" in p.stdout

"""train.py, the one training loop, as a user meets it: the memory tasks (gradients of the
masked loss, a DNC that learns copy, --eval-lengths, --show, --plot, checkpoints and exact
resume, bad input), held-out quality (the best checkpoint, --patience, --dropout, --val and
--test, the crash cases), the training rate without the validation time, and no reference
to ../shared outside the tests."""
import io
import os
import re
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

import common
import train
from conftest import ROOT, TINY, arrays, assert_same_arrays, make_text, run_script, stderr_lines

tasks = common.load_script(os.path.join("data", "tasks.py"))
MODELS = {kind: common.load_script(f"{kind}-numpy.py") for kind in ("rnn", "lstm", "dnc")}
CFGS = {"rnn": {"hidden": 5, "layers": 1, "dropout": 0.0},
        "lstm": {"hidden": 5, "layers": 1, "dropout": 0.0},
        "dnc": {"hidden": 5, "layers": 1, "memory": 4, "width": 3, "reads": 2, "stop_usage_grad": False,
                "dropout": 0.0}}
TOL = {"rnn": 1e-7, "lstm": 1e-7, "dnc": 1e-6}
TASKS = {"copy": {"bits": 3, "min_length": 1, "max_length": 3},
         "repeat-copy": {"bits": 2, "min_length": 1, "max_length": 2, "min_repeats": 1, "max_repeats": 2},
         "recall": {"bits": 2, "min_length": 2, "max_length": 3, "item_length": 1},
         "add": {"min_length": 3, "max_length": 5}}

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
TASK_DONE = re.compile(r"done: iter (\d+), train ([\d.]+) nats/seq, val ([\d.]+) nats/seq, ([\d.]+) wrong bits/seq, "
                       r"([\d.]+)% solved, best val ([\d.]+) nats/seq at iter (\d+), ([\d.]+) step/s training, "
                       r"([\d.]+)% of the time validating(?:; saved \S+)?")
TEXT_REPORT = re.compile(r"([\d.]+) s, iter (\d+), ([\d.]+) BPC, ([\d.]+) char/s, val ([\d.]+) BPC")
TEXT_DONE = re.compile(r"done: iter (\d+), train ([\d.]+) BPC, val ([\d.]+) BPC, best val ([\d.]+) BPC at iter (\d+)"
                       r"(?: \(whole validation text [\d.]+\))?(?:, test ([\d.]+) BPC)?, ([\d.]+) char/s training, "
                       r"([\d.]+)% of the time validating(?:; saved \S+)?")
TABLE_ROW = re.compile(r"\s*(\d+)\s+([\d.]+)\s+(\d+)\s+([\d.]+)%((?:\s+(?:-|[\d.]+)){10})")
# in the bit form (the default), with the default --clip 5, seed 0 still has a few wrong bits at
# iteration 400; with --clip 1 the DNC solves copy by then at seeds 0, 1 and 2 (as measured)
DNC_COPY = ["--task", "copy", "--bits", 3, "--length", "1-2", "--hidden", 16, "--memory", 4, "--width", 4,
            "--reads", 1, "--iters", 400, "--report", 100, "--clip", 1]
MEMORY_ROWS = ("write w^w", "read 0 w^r", "free gates f", "alloc gate", "write gate", "usage u")


def last_line(p):
    return p.stdout.strip().splitlines()[-1]


def assert_one_error_line(p, kind, *pieces):
    assert p.returncode == 2, (p.returncode, p.stdout, p.stderr)
    assert "Traceback" not in p.stderr
    lines = stderr_lines(p)
    assert len(lines) == 1, p.stderr
    assert lines[0].startswith(f"{kind}-numpy.py: error: "), lines[0]
    for piece in pieces:
        assert piece in lines[0], lines[0]
    return lines[0]


def table(stdout):
    """--eval-lengths output -> {length: (wrong bits/seq, bits/seq, solved %)}"""
    lines = stdout.splitlines()
    head = next(i for i, l in enumerate(lines) if l.split()[:5] == ["length", "wrong", "bits/seq", "bits/seq", "solved"])
    rows = {}
    for line in lines[head + 1:]:
        m = TABLE_ROW.fullmatch(line)
        assert m, line
        tenths = [float(v) for v in m.group(5).split() if v != "-"]  # the wrong bits by tenth of the answer
        assert sum(tenths) == pytest.approx(float(m.group(2)), abs=0.05), line  # ten figures rounded to 0.01
        rows[int(m.group(1))] = (float(m.group(2)), int(m.group(3)), float(m.group(4)))
    return rows


def show_blocks(stdout):
    """--show output -> {label: [the shade strings of its lines]}; a row of several lines
    has its label on the first and an index on each."""
    blocks, label = {}, None
    for line in stdout.splitlines()[4:]:  # the title's two lines, the legend, the ruler
        name, shades = line[:16], line[16:]
        if name.strip() and not name.strip().isdigit():
            label = re.sub(r"\s+\d+$", "", name.strip())
            blocks[label] = []
        blocks[label].append(shades)
    return blocks


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """A text, its LSTM checkpoint, an LSTM copy checkpoint and the DNC that learns copy."""
    d = tmp_path_factory.mktemp("train")
    (d / "text.txt").write_text(make_text())
    runs = {
        "lstm_text": ("lstm", [d / "text.txt", *TINY, "--iters", 10, "--save", d / "lstm-text.npz"]),
        "lstm_copy": ("lstm", ["--task", "copy", "--bits", 3, "--length", "1-2", "--hidden", 8, "--batch", 4,
                               "--iters", 10, "--report", 5, "--save", d / "lstm-copy.npz"]),
    }
    for name, (kind, args) in runs.items():
        p = run_script(kind, *args)
        assert p.returncode == 0, p.stderr
    t0 = time.perf_counter()
    p = run_script("dnc", *DNC_COPY, "--save", d / "dnc-copy.npz")
    seconds = time.perf_counter() - t0
    return {"dir": d, "dnc_run": p, "dnc_seconds": seconds}


# ==================================================================================
# Memory tasks


# ---------------------------------------------------------------- 1. gradients of the masked loss

@pytest.mark.parametrize("io_form", tasks.IO_FORMS)
@pytest.mark.parametrize("task_name", list(TASKS))
@pytest.mark.parametrize("kind", ["rnn", "lstm", "dnc"])
def test_task_gradients(kind, task_name, io_form):
    task = tasks.make_task(task_name, io=io_form, **TASKS[task_name])
    model, out = MODELS[kind], io.StringIO()
    episodes = task.episodes(np.random.default_rng(0), 3)
    assert not episodes[2].all() or task_name == "add"  # copy, repeat-copy, recall: some steps unscored
    worst, count = common.check_model_gradients(model, CFGS[kind], V=task.V_in, V_out=task.V_out, episodes=episodes,
                                                checks=10, out=out, loss=common.LOSSES[io_form])
    assert count == {"rnn": 5, "lstm": 5, "dnc": 9}[kind]
    assert "ALL-ZERO" not in out.getvalue()
    assert worst < TOL[kind], out.getvalue()


def _mask_setup(kind, io_form):
    model, cfg = MODELS[kind], CFGS[kind]
    task = tasks.make_task("copy", io=io_form, **TASKS["copy"])
    task_loss = common.LOSSES[io_form]
    inputs, targets, mask = task.episodes(np.random.default_rng(0), 3)
    rng = np.random.default_rng(0)
    params = model.init_params(cfg, task.V_in, rng, np.float64, task.V_out)
    for v in params.values():
        v += 0.1 * rng.standard_normal(v.shape)
    state = model.init_state(cfg, params, 3)
    choices = getattr(model, "discrete_choices", None)
    base = choices(model.forward(params, inputs, common.copy_state(state), cfg)[2]) if choices else None

    def loss(p, m):
        logits, _, cache = model.forward(p, inputs, common.copy_state(state), cfg)
        if choices and not np.array_equal(choices(cache), base):
            return None
        return task_loss(logits, targets, m)[0]

    return model, cfg, params, inputs, targets, mask, state, loss, task_loss


@pytest.mark.parametrize("io_form", tasks.IO_FORMS)
@pytest.mark.parametrize("kind", ["rnn", "lstm", "dnc"])
def test_the_mask_matters_to_the_gradient_check(kind, io_form):
    """Gradients of the masked loss against finite differences of the same loss pass;
    against those of the unmasked loss they fail by far: a mask that were ignored on one
    side would be caught."""
    model, cfg, params, inputs, targets, mask, state, loss, task_loss = _mask_setup(kind, io_form)
    assert 0 < mask.sum() < mask.size
    _, grads, _ = common.loss_and_grads(model, params, inputs, targets, common.copy_state(state), cfg, mask,
                                        loss=task_loss)
    masked = common.gradcheck(lambda p: loss(p, mask), params, grads, checks=10,
                              rng=np.random.default_rng(1), tol=TOL[kind], out=io.StringIO())
    unmasked = common.gradcheck(lambda p: loss(p, None), params, grads, checks=10,
                                rng=np.random.default_rng(1), tol=TOL[kind], out=io.StringIO())
    assert masked < TOL[kind]
    assert unmasked > 1e-2
    assert abs(loss(params, mask) - loss(params, None)) > 1e-3


def test_gradcheck_command_line_on_a_task():
    p = run_script("lstm", "--task", "copy", "--gradcheck", "--hidden", 5)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "its masked loss" in p.stdout.splitlines()[0]
    assert re.fullmatch(r"gradcheck: max relative error \S+ over 5 parameters: PASS", last_line(p))


# ---------------------------------------------------------------- 2. a DNC learns copy

def test_dnc_learns_copy(work):
    p = work["dnc_run"]
    assert p.returncode == 0, p.stderr
    assert p.stderr == ""
    m = TASK_DONE.fullmatch(last_line(p))
    assert m, last_line(p)
    assert int(m.group(1)) == 400
    assert m.group(4) == "0.000" and m.group(5) == "100.0"
    assert float(m.group(3)) < 0.1  # nats per episode on the validation episodes
    reports = re.findall(r"iter (\d+), [\d.]+ nats/seq, [\d.]+ step/s, val ([\d.]+) nats/seq", p.stdout)
    assert [int(it) for it, _ in reports] == [100, 200, 300, 400]
    assert float(reports[-1][1]) < float(reports[0][1])
    assert work["dnc_seconds"] < 30


# ---------------------------------------------------------------- 3. --eval-lengths

def test_eval_lengths_table(work):
    ck = work["dir"] / "dnc-copy.npz"
    p = run_script("dnc", "--load", ck, "--eval-lengths", "1,2,3", "--episodes", 200)
    assert p.returncode == 0, p.stderr
    assert "memory N=4" in p.stdout and "200 fresh episodes per length" in p.stdout
    rows = table(p.stdout)
    assert list(rows) == [1, 2, 3]
    assert rows[1] == (0.0, 3, 100.0) and rows[2] == (0.0, 6, 100.0)  # trained on lengths 1-2
    assert rows[3][1] == 9 and rows[3][0] <= 9
    # a larger memory for longer episodes
    p = run_script("dnc", "--load", ck, "--eval-lengths", "1,8", "--memory", 8, "--episodes", 50)
    assert p.returncode == 0, p.stderr
    assert "memory N=8" in p.stdout
    rows = table(p.stdout)
    assert list(rows) == [1, 8] and rows[8][1] == 24
    assert 0 <= rows[8][0] <= 24 and 0 <= rows[8][2] <= 100


def test_eval_lengths_beyond_the_memory_is_refused(work):
    p = run_script("dnc", "--load", work["dir"] / "dnc-copy.npz", "--eval-lengths", "1,8")
    assert_one_error_line(p, "dnc", "--memory")
    assert p.stdout == ""  # refused before any work


@pytest.mark.parametrize("name, lengths", [("recall", "1"), ("add", "4,100")])
def test_eval_lengths_outside_the_task_range_is_one_line(work, name, lengths):
    ck = _task_checkpoint(work, name)
    p = run_script("lstm", "--load", ck, "--eval-lengths", lengths, "--episodes", 10)
    assert_one_error_line(p, "lstm", "length")
    assert p.stdout == ""


def _task_checkpoint(work, name, *task_args):
    """An LSTM checkpoint of a task, trained 2 iterations (made once per module)."""
    ck = work["dir"] / f"lstm-{name}{'-'.join(map(str, task_args))}.npz"
    if not ck.exists():
        p = run_script("lstm", "--task", name, *task_args, "--hidden", 8, "--batch", 4, "--iters", 2,
                       "--report", 1, "--save", ck)
        assert p.returncode == 0, p.stderr
    return ck


# ---------------------------------------------------------------- 4. --show

def test_show_dnc(work):
    p = run_script("dnc", "--load", work["dir"] / "dnc-copy.npz", "--show")
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert all(len(l) <= 100 for l in lines), max(lines, key=len)
    assert lines[:2] == ["copy: 3-bit vectors, length 1-2", "one episode of length 2, 0 wrong bits"]
    blocks = show_blocks(p.stdout)
    assert list(blocks) == ["input", "target", "output", *MEMORY_ROWS]
    T = 2 * 2 + 1
    assert all(len(s) == T for rows in blocks.values() for s in rows)
    assert len(blocks["input"]) == 3 + 1  # 3 bits and the delimiter channel
    assert len(blocks["write w^w"]) == len(blocks["read 0 w^r"]) == len(blocks["usage u"]) == 4  # N = 4
    assert len(blocks["free gates f"]) == len(blocks["alloc gate"]) == len(blocks["write gate"]) == 1
    assert blocks["output"] == blocks["target"]  # 0 wrong bits, and confident
    assert all(set(s[:3]) == {" "} for s in blocks["target"])  # nothing to answer while reading


def test_show_lstm_has_no_memory_rows(work):
    p = run_script("lstm", "--load", work["dir"] / "lstm-copy.npz", "--show")
    assert p.returncode == 0, p.stderr
    assert all(len(l) <= 100 for l in p.stdout.splitlines())
    blocks = show_blocks(p.stdout)
    assert list(blocks) == ["input", "target", "output"]
    for label in MEMORY_ROWS:
        assert label not in p.stdout


def test_show_long_episode_wraps_within_100_columns(work):
    ck = _task_checkpoint(work, "copy", "--bits", 3, "--length", 50)
    p = run_script("lstm", "--load", ck, "--show")
    assert p.returncode == 0, p.stderr
    assert "steps 0-83:" in p.stdout.splitlines()  # wrapped
    too_long = [l for l in p.stdout.splitlines() if len(l) > 100]
    assert not too_long, too_long


def test_show_title_of_add_fits_100_columns(work):
    ck = _task_checkpoint(work, "add")
    p = run_script("lstm", "--load", ck, "--show")
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0].startswith("add: ")
    assert all(len(l) <= 100 for l in lines), max(lines, key=len)


# ---------------------------------------------------------------- 5. --plot

def test_plot_writes_a_png(work, tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "out.png"
    p = run_script("dnc", "--load", work["dir"] / "dnc-copy.npz", "--plot", out)
    assert p.returncode == 0, p.stderr
    assert f"wrote {out}" in p.stdout
    data = out.read_bytes()
    assert data[:8] == PNG_SIGNATURE and len(data) > 1000


def test_plot_without_matplotlib_says_how_to_install_it(work, tmp_path, no_matplotlib_env):
    env = no_matplotlib_env
    out = tmp_path / "out.png"
    cmd = [sys.executable, os.path.join(ROOT, "dnc-numpy.py"), "--load", str(work["dir"] / "dnc-copy.npz"),
           "--plot", str(out)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    assert_one_error_line(p, "dnc", "pip install matplotlib")
    assert not out.exists()
    # the same environment really hides matplotlib
    q = subprocess.run([sys.executable, "-c", "import matplotlib"], capture_output=True, text=True, env=env)
    assert q.returncode != 0 and "ImportError" in q.stderr


# ---------------------------------------------------------------- 6. checkpoints and resume

def test_checkpoint_records_the_task(work):
    for kind, name in (("dnc", "dnc-copy.npz"), ("lstm", "lstm-copy.npz")):
        ck = common.load_checkpoint(str(work["dir"] / name), kind)
        assert ck["info"]["task"] == {"name": "copy", "settings": {"bits": 3, "min_length": 1, "max_length": 2},
                                      "io": "bits"}
        assert ck["vocab"] is None
    ck = common.load_checkpoint(str(work["dir"] / "dnc-copy.npz"), "dnc")
    assert ck["info"]["iter"] == 400
    assert ck["info"]["cfg"]["memory"] == 4 and ck["info"]["cfg"]["reads"] == 1
    assert ck["info"]["seen"]["episodes"] == 400 * ck["info"]["cfg"]["batch"]
    assert common.load_checkpoint(str(work["dir"] / "lstm-text.npz"), "lstm")["info"]["task"] is None


@pytest.mark.parametrize("kind", ["lstm", "dnc"])
def test_task_resume_is_exact(tmp_path, kind):
    """N + M iterations in one run equal N, then M more from the checkpoint, bit for bit;
    the episodes come from the checkpoint's RNG (another --seed changes nothing)."""
    args = ["--task", "copy", "--bits", 3, "--length", "1-3", "--hidden", 8, "--batch", 4, "--report", 10]
    if kind == "dnc":
        args += ["--memory", 4, "--width", 3, "--reads", 2]
    one = run_script(kind, *args, "--iters", 50, "--save", tmp_path / "one.npz")
    first = run_script(kind, *args, "--iters", 30, "--save", tmp_path / "two.npz")
    shutil.copy(tmp_path / "two.npz", tmp_path / "three.npz")
    second = run_script(kind, *args, "--iters", 20, "--load", tmp_path / "two.npz", "--save", tmp_path / "two.npz")
    other_seed = run_script(kind, "--iters", 20, "--load", tmp_path / "three.npz", "--save", tmp_path / "three.npz",
                            "--seed", 9)
    for p in (one, first, second, other_seed):
        assert p.returncode == 0, p.stderr
    assert "resumed" in second.stdout and "at iter 30" in second.stdout
    assert TASK_DONE.fullmatch(last_line(second)).group(1) == "50"
    assert re.findall(r"^[\d.]+ s, iter (\d+),", second.stdout, re.M) == ["40", "50"]
    whole, split = arrays(tmp_path / "one.npz"), arrays(tmp_path / "two.npz")
    assert_same_arrays(whole, split)
    theirs = arrays(tmp_path / "three.npz", ("param/", "opt/", "state/"))
    assert_same_arrays(arrays(tmp_path / "one.npz", ("param/", "opt/", "state/")), theirs)
    ck = common.load_checkpoint(str(tmp_path / "two.npz"), kind)
    assert ck["info"]["iter"] == 50 and ck["info"]["task"]["name"] == "copy"
    # the progress lines after the resume are those of the one run
    strip = re.compile(r"[\d.]+ s, |[\d.]+ step/s")
    tail = [strip.sub("", l) for l in one.stdout.splitlines() if re.match(r"[\d.]+ s, iter [45]0,", l)]
    resumed = [strip.sub("", l) for l in second.stdout.splitlines() if re.match(r"[\d.]+ s, iter [45]0,", l)]
    assert len(tail) == 2 and tail == resumed


# ---------------------------------------------------------------- 7. bad input

BAD = {  # name -> (kind, arguments (d: the work dir), a piece of the message)
    "unknown task": ("lstm", lambda d: ["--task", "nope"], "nope"),
    "--length 5-2": ("lstm", lambda d: ["--task", "copy", "--length", "5-2"], "--length"),
    "--bits 0": ("lstm", lambda d: ["--task", "copy", "--bits", 0], "--bits"),
    "--eval-lengths without --load": ("dnc", lambda d: ["--task", "copy", "--eval-lengths", 5], "--load"),
    "a task and a text": ("lstm", lambda d: ["--task", "copy", d / "text.txt"], "text.txt"),
    "a task flag without --task": ("lstm", lambda d: [d / "text.txt", "--bits", 3], "--task"),
    "--eval-lengths on a text checkpoint": ("lstm", lambda d: ["--load", d / "lstm-text.npz", "--eval-lengths", "1,2"],
                                            "task"),
    "copy checkpoint as recall": ("lstm", lambda d: ["--load", d / "lstm-copy.npz", "--task", "recall"], "recall"),
    "--sample on a task checkpoint": ("lstm", lambda d: ["--load", d / "lstm-copy.npz", "--sample", 10], "--sample"),
    "--show on a text checkpoint": ("lstm", lambda d: ["--load", d / "lstm-text.npz", "--show"], "task"),
    "other task settings on resume": ("lstm", lambda d: ["--load", d / "lstm-copy.npz", "--bits", 4], "bits"),
    "--repeats on copy": ("lstm", lambda d: ["--task", "copy", "--repeats", 2], "--repeats"),
    "--val on a task": ("lstm", lambda d: ["--task", "copy", "--val", d / "text.txt"], "--val"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_task_input_is_one_line(work, case):
    kind, args, piece = BAD[case]
    p = run_script(kind, *args(work["dir"]))
    assert_one_error_line(p, kind, piece)
    assert p.stdout == ""


# ==================================================================================
# Held-out quality


@pytest.fixture(scope="module")
def overfit(tmp_path_factory):
    """An LSTM that overfits the tiny text: its validation bottoms out well before the end."""
    d = tmp_path_factory.mktemp("overfit")
    (d / "text.txt").write_text(make_text())
    args = [d / "text.txt", "--hidden", 32, "--batch", 4, "--seq", 8, "--report", 5]
    p = run_script("lstm", *args, "--iters", 600, "--patience", 0, "--save", d / "ck.npz")
    assert p.returncode == 0, p.stderr
    return d, args, p


def val_reports(stdout):
    return [(int(m.group(2)), float(m.group(5))) for m in map(TEXT_REPORT.fullmatch, stdout.splitlines()) if m]


# ---------------------------------------------------------------- 8. the best checkpoint

def test_best_validation_is_reported_and_kept(overfit):
    d, _, p = overfit
    reports = val_reports(p.stdout)
    assert [it for it, _ in reports] == list(range(5, 601, 5))
    m = TEXT_DONE.fullmatch(last_line(p))
    assert m, last_line(p)
    best_val, best_iter = float(m.group(4)), int(m.group(5))
    assert best_val == min(v for _, v in reports)
    assert dict(reports)[best_iter] == best_val
    assert best_iter < 600 and float(m.group(3)) > best_val  # it did overfit: the last report is not the best
    ck = common.load_checkpoint(str(d / "ck.npz"), "lstm")
    assert ck["info"]["best_iter"] == best_iter
    assert abs(common.bpc(ck["info"]["best_val"]) - best_val) < 5e-5
    z = arrays(d / "ck.npz", ("param/", "best/"))
    assert {k[5:] for k in z if k.startswith("best/")} == {k[6:] for k in z if k.startswith("param/")}
    assert any(not np.array_equal(z[f"best/{k}"], z[f"param/{k}"]) for k in ck["param"])
    # the best params score the printed best validation figure
    vocab = ck["vocab"]
    ids = vocab.encode((d / "text.txt").read_text())
    _, val_ids = common.split_data(ids, 0.1, 8, 4)
    model = MODELS["lstm"]
    for part, want in (("best", best_val), ("param", float(m.group(3)))):
        got = common.bpc(train.evaluate_text(model, ck["info"]["cfg"], ck[part], val_ids, 8, rows=4))  # B streams
        assert abs(got - want) < 5e-4, (part, got, want)


def test_sample_uses_the_best_params(overfit):
    d, _, _ = overfit
    ck = common.load_checkpoint(str(d / "ck.npz"), "lstm")
    p = run_script("lstm", "--load", d / "ck.npz", "--sample", 200, "--seed", 5)
    assert p.returncode == 0, p.stderr
    model, cfg = MODELS["lstm"], ck["info"]["cfg"]

    def sample(part):
        params = {k: v.astype("float32") for k, v in ck[part].items()}
        return common.sample(model, cfg, params, ck["vocab"], 200, 1.0, "", np.random.default_rng(5)) + "\n"

    assert p.stdout == sample("best")
    assert p.stdout != sample("param")


# ---------------------------------------------------------------- 9. --patience

def test_patience_stops_after_k_reports_without_a_new_best(overfit):
    d, args, full = overfit
    K = 3
    p = run_script("lstm", *args, "--iters", 600, "--patience", K)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.strip().splitlines()
    assert lines[-2] == f"stopped: no new best validation in {K} reports (--patience {K})"
    m = TEXT_DONE.fullmatch(lines[-1])
    stop_iter, best_iter = int(m.group(1)), int(m.group(5))
    reports = val_reports(p.stdout)
    assert reports[-1][0] == stop_iter < 600
    assert sum(it > best_iter for it, _ in reports) == K
    assert reports == val_reports(full.stdout)[:len(reports)]  # the same run, cut short
    # --patience 0 (the overfit run) went on past that point, to the last iteration
    assert "stopped:" not in full.stdout
    assert TEXT_DONE.fullmatch(last_line(full)).group(1) == "600"


# ---------------------------------------------------------------- 10. --dropout

@pytest.mark.parametrize("kind", ["rnn", "lstm", "dnc"])
def test_dropout_gradients_with_a_fixed_mask(kind):
    cfg = dict(CFGS[kind], layers=2, dropout=0.3)
    out = io.StringIO()
    worst, count = common.check_model_gradients(MODELS[kind], cfg, checks=10, out=out)
    assert count == {"rnn": 8, "lstm": 8, "dnc": 14}[kind]
    assert worst < TOL[kind], out.getvalue()


@pytest.mark.parametrize("kind", ["rnn", "lstm"])
def test_dropout_gradient_check_sees_a_backward_without_the_mask(kind, monkeypatch):
    monkeypatch.setattr(common, "dropout_backward", lambda dy, mask: dy)
    cfg = dict(CFGS[kind], layers=2, dropout=0.3)
    worst, _ = common.check_model_gradients(MODELS[kind], cfg, checks=10, out=io.StringIO())
    assert worst > 1e-3


@pytest.mark.parametrize("kind", ["rnn", "lstm", "dnc"])
def test_dropout_only_in_training(kind):
    model = MODELS[kind]
    cfg = dict(CFGS[kind], layers=2, dropout=0.3)
    rng = np.random.default_rng(0)
    params = model.init_params(cfg, 7, rng, np.float64)
    x = rng.integers(0, 7, size=(6, 3))

    def run(c, r):
        return model.forward(params, x, model.init_state(c, params, 3), c, r)[0]

    plain = run(dict(cfg, dropout=0.0), None)
    assert np.abs(run(cfg, np.random.default_rng(1)) - plain).max() > 1e-3  # training: masks
    np.testing.assert_array_equal(run(cfg, None), plain)  # validation and sampling: none
    np.testing.assert_array_equal(run(dict(cfg, dropout=0.0), np.random.default_rng(1)), plain)


def test_inverted_dropout_keeps_the_mean():
    y, mask = common.dropout(np.ones(100000), 0.25, np.random.default_rng(0))
    assert abs(y.mean() - 1) < 0.01
    assert set(np.unique(y)) == {0.0, 1 / 0.75}
    assert abs((y == 0).mean() - 0.25) < 0.01
    x = np.ones(5)
    assert common.dropout(x, 0.25, None)[0] is x and common.dropout(x, 0.0, np.random.default_rng(0))[1] is None


def test_dropout_from_the_command_line_is_in_the_checkpoint(work, tmp_path):
    text = work["dir"] / "text.txt"
    runs = {p: run_script("lstm", text, *TINY, "--layers", 2, "--iters", 10, "--dropout", p,
                          "--save", tmp_path / f"{p}.npz") for p in ("0", "0.3")}
    for p in runs.values():
        assert p.returncode == 0, p.stderr
    assert common.load_checkpoint(str(tmp_path / "0.3.npz"), "lstm")["info"]["cfg"]["dropout"] == 0.3
    a, b = arrays(tmp_path / "0.npz", ("param/",)), arrays(tmp_path / "0.3.npz", ("param/",))
    assert any(not np.array_equal(a[k], b[k]) for k in a)


# ---------------------------------------------------------------- 11. --val and --test

@pytest.fixture
def splits(tmp_path):
    text = make_text()
    (tmp_path / "text.txt").write_text(text)
    (tmp_path / "v.txt").write_text(text[:600])
    (tmp_path / "t.txt").write_text(text[-500:])
    return tmp_path


def test_val_and_test_files(splits):
    d = splits
    p = run_script("lstm", d / "text.txt", *TINY, "--iters", 20, "--val", d / "v.txt", "--test", d / "t.txt",
                   "--save", d / "ck.npz")
    assert p.returncode == 0, p.stderr
    assert f"{len(make_text())} train / 600 val / 500 test chars" in p.stdout.splitlines()[0]
    m = TEXT_DONE.fullmatch(last_line(p))
    assert m and m.group(6), last_line(p)
    # the test figure is that of the best params on the whole test text
    ck = common.load_checkpoint(str(d / "ck.npz"), "lstm")
    ids = ck["vocab"].encode((d / "t.txt").read_text())
    want = common.bpc(train.evaluate_text(MODELS["lstm"], ck["info"]["cfg"], ck["best"], ids, 8, rows=4))  # B streams
    assert abs(float(m.group(6)) - want) < 5e-4


@pytest.mark.parametrize("option", ["--test", "--val"])
def test_a_character_only_in_a_held_out_file(splits, option, tmp_path):
    """The vocabulary is built from every file the run is given: a character that only a
    held-out file has is in it, and costs what the model gives it."""
    d = splits
    (d / "odd.txt").write_text("she was @ home\n")
    extra = ["--val", d / "v.txt"] if option == "--test" else []
    ck = tmp_path / "odd.npz"
    p = run_script("lstm", d / "text.txt", *TINY, "--iters", 2, *extra, option, d / "odd.txt", "--save", ck)
    assert p.returncode == 0, p.stderr
    chars = set((d / "text.txt").read_text()) | set((d / "v.txt").read_text() if extra else "")
    assert "@" not in chars
    vocab = common.load_checkpoint(str(ck), "lstm")["vocab"]
    assert vocab.chars == sorted(chars | set("she was @ home\n"))
    m = TEXT_DONE.fullmatch(last_line(p))
    figure = float(m.group(6) if option == "--test" else m.group(3))
    assert 0 < figure < 20  # finite: the '@' costs what the untrained model gives it


def test_val_with_val_frac_is_refused(splits):
    d = splits
    p = run_script("lstm", d / "text.txt", *TINY, "--iters", 2, "--val", d / "v.txt", "--val-frac", 0.2)
    assert_one_error_line(p, "lstm", "--val", "--val-frac")


def test_test_file_without_validation(splits):
    d = splits
    p = run_script("lstm", d / "text.txt", *TINY, "--iters", 10, "--val-frac", 0, "--test", d / "t.txt")
    assert "Traceback" not in p.stderr
    assert p.returncode == 0, p.stderr
    assert re.search(r", test [\d.]+ BPC", last_line(p))


def test_no_validation_reports_each_iteration_once(splits):
    d = splits
    p = run_script("lstm", d / "text.txt", *TINY, "--iters", 10, "--val-frac", 0, "--log", d / "log.csv")
    assert p.returncode == 0, p.stderr
    assert re.findall(r"^[\d.]+ s, iter (\d+),", p.stdout, re.M) == ["5", "10"]
    rows = (d / "log.csv").read_text().splitlines()[1:]
    assert [r.split(",")[1] for r in rows] == ["5", "10"]


# ---------------------------------------------------------------- 12. the crash cases

def test_huge_batch_is_refused_at_once(work):
    t0 = time.perf_counter()
    p = run_script("lstm", work["dir"] / "text.txt", "--batch", 100000, "--iters", 1)
    assert time.perf_counter() - t0 < 10
    assert_one_error_line(p, "lstm", "--batch")


def test_huge_hidden_is_refused_before_allocating(work):
    t0 = time.perf_counter()
    p = run_script("lstm", work["dir"] / "text.txt", "--hidden", 200000, "--iters", 1)
    assert time.perf_counter() - t0 < 10
    line = assert_one_error_line(p, "lstm", "memory")
    assert "GiB" in line and "MemoryError" not in p.stderr  # the estimate, not a failed allocation


def test_divergence_stops_and_keeps_the_last_good_checkpoint(work, tmp_path):
    text = work["dir"] / "text.txt"
    p = run_script("lstm", text, *TINY, "--iters", 20, "--lr", "1e9", "--clip", 0)
    line = assert_one_error_line(p, "lstm")
    assert "diverged" in line or "non-finite" in line
    ck = tmp_path / "ck.npz"
    good = run_script("lstm", text, *TINY, "--iters", 10, "--save", ck)
    assert good.returncode == 0, good.stderr
    before = ck.read_bytes()
    p = run_script("lstm", text, *TINY, "--iters", 20, "--lr", "1e9", "--clip", 0, "--load", ck, "--save", ck)
    line = assert_one_error_line(p, "lstm", f"kept in {ck}")
    assert "diverged" in line or "non-finite" in line
    assert ck.read_bytes() == before
    assert not any(name.startswith("ck.npz.tmp") for name in os.listdir(tmp_path))


# ---------------------------------------------------------------- 13. no ../shared outside the tests

def test_no_shared_reference_outside_tests():
    git = shutil.which("git")
    if git is None or not os.path.isdir(os.path.join(ROOT, ".git")):
        pytest.skip("git or the repository is not available")
    p = subprocess.run([git, "grep", "-n", r"\.\./shared", "--", ".", ":!tests"], cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    assert p.returncode in (0, 1), p.stderr  # 1: no match
    assert p.stdout == "", p.stdout


# ==================================================================================
# Speed


def _long_validation(work, tmp_path, report):
    """A tiny model and a validation text 50 times the training text, validated whole."""
    (tmp_path / "val.txt").write_text(make_text() * 50)
    return [work["dir"] / "text.txt", "--val", tmp_path / "val.txt", "--val-chars", 0, "--hidden", 8, "--batch", 4,
            "--seq", 8, "--report", report]


def test_training_rate_excludes_validation(work, tmp_path):
    args = _long_validation(work, tmp_path, report=1)
    iters, B, S = 40, 4, 8
    t0 = time.perf_counter()
    p = run_script("lstm", *args, "--iters", iters)
    wall = time.perf_counter() - t0
    assert p.returncode == 0, p.stderr
    m = TEXT_DONE.fullmatch(last_line(p))
    assert m, last_line(p)
    rate, share = float(m.group(7)), float(m.group(8))
    assert rate >= 2 * iters * B * S / wall, (rate, wall)
    assert share > 50
    # and the test can fail: the run's own clock saw most of the wall time, so a rate that
    # counted the validation would be below twice the wall-clock figure
    elapsed = float([m for m in map(TEXT_REPORT.fullmatch, p.stdout.splitlines()) if m][-1].group(1))
    assert elapsed > 0.5 * wall, (elapsed, wall)


def test_progress_line_rate_excludes_validation(work, tmp_path):
    args = _long_validation(work, tmp_path, report=4)
    p = run_script("lstm", *args, "--iters", 12)
    assert p.returncode == 0, p.stderr
    done = float(TEXT_DONE.fullmatch(last_line(p)).group(7))
    line_rates = [float(m.group(4)) for m in map(TEXT_REPORT.fullmatch, p.stdout.splitlines()) if m]
    assert line_rates[-1] > 0.5 * done, (line_rates, done)


def test_validation_holds_one_window_at_a_time():
    """A validation pass over many windows of a DNC (whose cache of every step's links is
    most of a window's memory) peaks at about one window's forward, not two: the cache
    for a backward that never comes is dropped before the next window runs."""
    import tracemalloc

    model = MODELS["dnc"]
    cfg = {"hidden": 8, "layers": 1, "memory": 48, "width": 4, "reads": 2, "stop_usage_grad": False,
           "dropout": 0.0}
    rng = np.random.default_rng(0)
    params = model.init_params(cfg, 7, rng, np.float32)
    S, rows = 8, 4
    ids = rng.integers(0, 7, 6 * S * rows + 1)

    def peak(fn):
        tracemalloc.start()
        try:
            fn()
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    inputs = ids[:S * rows].reshape(rows, S).T
    one = peak(lambda: model.forward(params, inputs, model.init_state(cfg, params, rows), cfg))
    whole = peak(lambda: train.evaluate_text(model, cfg, params, ids, S, rows))  # 6 windows
    assert one > 2 ** 19  # 8 steps of (4, 48, 48) float32 links are 295 KB of it
    assert whole < 1.3 * one, (whole, one)


def test_many_validation_streams_take_shorter_windows(monkeypatch):
    """A held-out text long enough for more streams than the batch is read in windows of
    S B / rows steps, so a window holds no more than a training one, and the figure is
    the one of the full-length windows."""
    model = MODELS["lstm"]
    cfg = {"hidden": 5, "layers": 1, "dropout": 0.0}
    rng = np.random.default_rng(0)
    V, B, S = 7, 4, 8
    params = model.init_params(cfg, V, rng, np.float64)
    ids = rng.integers(0, V, 32_000).astype(np.uint8)  # 16 streams of 2000 characters
    source = train.TextSource(None, ids, ids, None, B, S, 0)
    seen = []
    real = train.evaluate_text
    monkeypatch.setattr(train, "evaluate_text", lambda *a: seen.append(a[4:]) or real(*a))
    nats = source.score(model, cfg, params, ids)
    assert seen == [(S * B // 16, 16)]  # windows of 2 steps over 16 streams
    assert nats == pytest.approx(real(model, cfg, params, ids, S, 16), rel=1e-12)


@pytest.mark.parametrize("value", ["0", "-1", "two", "1.5"])
def test_bad_threads_option_is_one_line(tmp_path, value):
    (tmp_path / "text.txt").write_text(make_text())
    p = run_script("lstm", tmp_path / "text.txt", *TINY, "--threads", value)
    assert p.returncode == 2 and stderr_lines(p) == [
        f"lstm-numpy.py: error: argument --threads: must be a positive whole number or auto, got {value!r}"]

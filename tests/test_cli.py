"""The scripts as a user runs them: reproducible runs, checkpoints and exact resume,
sampling, Ctrl-C, divergence, and one clear line for every kind of bad input."""
import os
import re
from pathlib import Path
import signal
import subprocess
import sys

import numpy as np
import pytest

import common
from conftest import ROOT, SHARED_ALICE, TINY, make_text, run_script, stderr_lines

TIMING = re.compile(r"[\d.]+ s, |[\d.]+ char/s|[\d.]+% of the time|(checkpoint|saved) \S+")  # what varies


def params_of(path):
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files if k.startswith(("param/", "opt/", "state/"))}


def assert_same_arrays(a, b):
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """One text and a trained checkpoint of each model, shared by the tests below."""
    d = tmp_path_factory.mktemp("cli")
    (d / "text.txt").write_text(make_text())
    for kind in ("rnn", "lstm"):
        p = run_script(kind, d / "text.txt", *TINY, "--iters", "20", "--save", d / f"{kind}.npz")
        assert p.returncode == 0, p.stderr
    return d


@pytest.mark.parametrize("kind", ["rnn", "lstm"])
def test_training_output(workdir, kind):
    p = run_script(kind, workdir / "text.txt", *TINY, "--iters", "10", "--layers", "2")
    assert p.returncode == 0, p.stderr
    assert p.stderr == ""
    lines = p.stdout.splitlines()
    assert lines[0].startswith(f"{kind}: ") and "parameters" in lines[0]
    assert re.fullmatch(r"\d+\.\d{3} s, iter 5, \d+\.\d{4} BPC, \d+\.\d{2} char/s, val \d+\.\d{4} BPC", lines[1])
    assert re.fullmatch(r"done: iter 10, train \d+\.\d{4} BPC, val \d+\.\d{4} BPC, best val \d+\.\d{4} BPC "
                        r"at iter \d+, \d+\.\d{2} char/s training, \d+\.\d% of the time validating; "
                        rf"saved checkpoints/{kind}-text.npz", lines[-1])
    assert (Path.cwd() / "checkpoints" / f"{kind}-text.npz").is_file()  # saved by default


@pytest.mark.parametrize("kind", ["rnn", "lstm"])
def test_same_seed_same_run_and_sample(workdir, tmp_path, kind):
    """Two runs with one seed print the same numbers, save the same checkpoint, and
    sample the same text; another seed gives another run."""
    outs = []
    for name, seed in (("a", 7), ("b", 7), ("c", 8)):
        # --report 1 puts a sample (every 10 reports) inside the run: the RNG is shared
        p = run_script(kind, workdir / "text.txt", *TINY, "--report", "1", "--iters", "12",
                       "--seed", seed, "--save", tmp_path / f"{name}.npz")
        assert p.returncode == 0, p.stderr
        outs.append(TIMING.sub("", p.stdout))
    assert outs[0] == outs[1]
    assert outs[0] != outs[2]
    assert_same_arrays(params_of(tmp_path / "a.npz"), params_of(tmp_path / "b.npz"))
    samples = [run_script(kind, "--load", tmp_path / f"{n}.npz", "--sample", 200, "--seed", s).stdout
               for n, s in (("a", 3), ("b", 3), ("a", 4))]
    assert samples[0] == samples[1] and len(samples[0]) == 201  # 200 characters and a newline
    assert samples[0] != samples[2]


@pytest.mark.parametrize("kind", ["rnn", "lstm"])
def test_exact_resume(workdir, tmp_path, kind):
    """N + M iterations in one run equal N, save, --load, M more: bit for bit."""
    text = workdir / "text.txt"
    args = [*TINY, "--report", "3", "--batch", "5"]  # 5 rows: cursors wrap at different times
    one = run_script(kind, text, *args, "--iters", 70, "--save", tmp_path / "one.npz")
    first = run_script(kind, text, *args, "--iters", 40, "--save", tmp_path / "two.npz")
    second = run_script(kind, text, *args, "--iters", 30, "--load", tmp_path / "two.npz",
                        "--save", tmp_path / "two.npz")
    for p in (one, first, second):
        assert p.returncode == 0, p.stderr
    assert "resumed" in second.stdout and "at iter 40" in second.stdout
    assert "done: iter 70," in second.stdout
    assert_same_arrays(params_of(tmp_path / "one.npz"), params_of(tmp_path / "two.npz"))
    # the progress lines after the resume are the one-run lines
    tail = [TIMING.sub("", l) for l in one.stdout.splitlines() if re.search(r"iter (4[3-9]|[56]\d)\b", l)]
    resumed = [TIMING.sub("", l) for l in second.stdout.splitlines() if re.search(r"iter (4[3-9]|[56]\d)\b", l)]
    assert tail and tail == resumed


def test_checkpoint_holds_vocabulary_and_sizes(workdir):
    ck = common.load_checkpoint(str(workdir / "lstm.npz"), "lstm")
    assert ck["vocab"].chars == sorted(set(make_text()))
    assert ck["info"]["cfg"] == {"hidden": 8, "layers": 1, "dropout": 0.0, "forget_bias": 1.0, "batch": 4, "seq": 8}
    assert ck["info"]["iter"] == 20


def test_sampling_with_prime_and_temperature(workdir):
    ck = workdir / "lstm.npz"
    p = run_script("lstm", "--load", ck, "--sample", 80, "--prime", "she was ", "--temperature", "0.5")
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("she was ") and len(p.stdout) == len("she was ") + 80 + 1
    assert set(p.stdout[:-1]) <= set(make_text())
    # near zero temperature the sample is the greedy one, whatever the seed
    cold = [run_script("lstm", "--load", ck, "--sample", 40, "--temperature", "1e-9", "--seed", s).stdout
            for s in (1, 2)]
    cold_primed = [run_script("lstm", "--load", ck, "--sample", 40, "--prime", "the ",
                              "--temperature", "1e-9", "--seed", s).stdout for s in (1, 2)]
    assert cold_primed[0] == cold_primed[1]
    assert len(cold[0]) == 41


def test_ctrl_c_saves_and_exits_130(workdir, tmp_path):
    ck = tmp_path / "ck.npz"
    cmd = [sys.executable, "-u", os.path.join(ROOT, "lstm-numpy.py"), str(workdir / "text.txt"),
           *TINY, "--report", "2", "--time", "0", "--save", str(ck)]  # no limit: runs until stopped
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for line in proc.stdout:
            if " BPC" in line:
                break
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    lines = [l for l in err.splitlines() if l.strip()]
    assert len(lines) == 1 and re.fullmatch(rf"interrupted at iter \d+; saved {re.escape(str(ck))}", lines[0])
    it = int(re.search(r"iter (\d+)", lines[0]).group(1))
    assert common.load_checkpoint(str(ck), "lstm")["info"]["iter"] == it


def test_output_piped_into_head_stops_quietly(workdir):
    """`python lstm-numpy.py ... | head -2`: the closed pipe ends the run without a traceback."""
    cmd = [sys.executable, os.path.join(ROOT, "lstm-numpy.py"), str(workdir / "text.txt"),
           *TINY, "--report", "1", "--time", "0"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        proc.stdout.readline()
        proc.stdout.close()  # what head does after its lines
        err = proc.stderr.read().decode()
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1
    assert err == ""


def test_non_finite_loss_stops_and_keeps_the_checkpoint(workdir, tmp_path):
    ck = tmp_path / "ck.npz"
    ck.write_bytes((workdir / "lstm.npz").read_bytes())
    before = ck.read_bytes()
    # a learning rate that blows the weights up to float32's limit on the first step
    p = run_script("lstm", workdir / "text.txt", *TINY, "--load", ck, "--save", ck,
                   "--lr", "1e38", "--clip", "0", "--report", "1", "--iters", "10")
    assert p.returncode != 0
    assert "Traceback" not in p.stderr
    lines = stderr_lines(p)
    assert len(lines) == 1 and ("non-finite" in lines[0] or "diverged" in lines[0]) and "--lr" in lines[0], p.stderr
    assert f"kept in {ck}" in lines[0]
    assert ck.read_bytes() == before
    assert common.load_checkpoint(str(ck), "lstm")["info"]["iter"] == 20
    # and the kept checkpoint still trains
    p = run_script("lstm", workdir / "text.txt", "--load", ck, "--iters", "3", "--report", "1")
    assert p.returncode == 0, p.stderr


# ---------------------------------------------------------------- the default checkpoint

def test_a_run_saves_by_default_and_sample_finds_it(tmp_path):
    """Without --save a run saves to checkpoints/KIND-NAME.npz in the current folder and
    says so; --sample without --load samples from it and says which file it used;
    --no-save writes nothing."""
    (tmp_path / "story.txt").write_text(make_text())
    p = run_script("lstm", "story.txt", *TINY, "--iters", 10, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    ck = tmp_path / "checkpoints" / "lstm-story.npz"
    assert p.stdout.splitlines()[-1].endswith("; saved checkpoints/lstm-story.npz") and ck.is_file()
    assert common.load_checkpoint(str(ck), "lstm")["info"]["iter"] == 10
    s = run_script("lstm", "story.txt", "--sample", 50, "--seed", 3, cwd=tmp_path)
    assert s.returncode == 0 and s.stderr == "using checkpoints/lstm-story.npz\n", s.stderr
    same = run_script("lstm", "--load", ck, "--sample", 50, "--seed", 3, cwd=tmp_path)
    assert s.stdout == same.stdout and len(s.stdout) == 51
    # a resumed run saves back into the checkpoint it resumed
    r = run_script("lstm", "story.txt", "--load", ck, "--iters", 5, "--report", 5, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert common.load_checkpoint(str(ck), "lstm")["info"]["iter"] == 15
    # --no-save: nothing written; and no checkpoint to sample from is one clear line
    (tmp_path / "other.txt").write_text(make_text(seed=1))
    n = run_script("lstm", "other.txt", *TINY, "--iters", 5, "--no-save", cwd=tmp_path)
    assert n.returncode == 0 and "saved" not in n.stdout.splitlines()[-1]
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["lstm-story.npz"]
    e = run_script("lstm", "other.txt", "--sample", 50, cwd=tmp_path)
    assert e.returncode == 2 and stderr_lines(e) == [
        "lstm-numpy.py: error: --sample needs a trained model and there is none at "
        "checkpoints/lstm-other.npz: train one first, or add --load PATH"]


def test_a_save_removes_partial_checkpoints_of_killed_runs(tmp_path):
    """A run killed while it wrote its checkpoint leaves NAME.npz.tmpPID; the next save of
    that checkpoint removes it once its process is gone, and leaves a live one's alone."""
    (tmp_path / "text.txt").write_text(make_text())
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()  # the pid of a process that has ended
    ck = tmp_path / "ck.npz"
    stale, live = tmp_path / f"ck.npz.tmp{dead}", tmp_path / f"ck.npz.tmp{os.getpid()}"
    other = tmp_path / f"other.npz.tmp{dead}"  # another checkpoint's: not this save's business
    for f in (stale, live, other):
        f.write_bytes(b"partial")
    p = run_script("lstm", tmp_path / "text.txt", *TINY, "--iters", 5, "--save", ck)
    assert p.returncode == 0, p.stderr
    assert ck.is_file() and not stale.exists() and live.exists() and other.exists()


# ---------------------------------------------------------------- bad input

def _bad_inputs(d):
    """name -> (script, arguments, a piece of the expected message)"""
    text = d / "text.txt"
    (d / "empty.txt").write_bytes(b"")
    (d / "short.txt").write_text("abcdefgh")
    (d / "noval.txt").write_text("abcdefghijklmno")  # 15 chars: --val-frac 0.1 leaves 1
    (d / "latin1.txt").write_bytes("caf\u00e9 au lait, ".encode("latin-1") * 20)
    (d / "other.txt").write_text("XYZ xyz 0123456789 " * 20)
    (d / "not-npz.npz").write_text("this is not a checkpoint\n")
    whole = (d / "lstm.npz").read_bytes()
    (d / "truncated.npz").write_bytes(whole[:len(whole) // 2])
    damaged = bytearray(whole)
    for i in range(len(damaged) // 3, len(damaged) // 3 + 64):
        damaged[i] ^= 0x5A
    (d / "damaged.npz").write_bytes(bytes(damaged))
    (d / "adir").mkdir(exist_ok=True)
    with np.load(d / "lstm.npz", allow_pickle=False) as z:  # whole arrays, incomplete info
        arrays = {k: z[k] for k in z.files}
    arrays["info"] = np.array('{"kind": "lstm"}')
    np.savez(d / "no-info.npz", **arrays)
    tiny = ["--hidden", "4", "--batch", "2", "--seq", "8", "--iters", "2"]
    return {
        "missing path": ("lstm", [d / "nope.txt", *tiny], "no such file"),
        "a directory": ("lstm", [d / "adir", *tiny], "directory"),
        "empty file": ("rnn", [d / "empty.txt", *tiny], "empty"),
        "shorter than seq+1": ("lstm", [d / "short.txt", *tiny], "--seq"),
        "no validation split": ("lstm", [d / "noval.txt", *tiny], "validation"),
        "undecodable bytes": ("lstm", [d / "latin1.txt", *tiny], "--encoding"),
        "unknown encoding": ("lstm", [text, *tiny, "--encoding", "klingon"], "encoding"),
        "rnn checkpoint into lstm": ("lstm", [text, "--load", d / "rnn.npz", "--iters", "2"], "rnn checkpoint"),
        "rnn checkpoint sampled by lstm": ("lstm", ["--load", d / "rnn.npz", "--sample", "5"], "rnn checkpoint"),
        "another size on resume": ("lstm", [text, "--load", d / "lstm.npz", "--hidden", "9", "--iters", "2"],
                                   "keeps its sizes"),
        "another vocabulary": ("lstm", [d / "other.txt", "--load", d / "lstm.npz", "--iters", "2"], "vocabulary"),
        "truncated checkpoint": ("lstm", [text, "--load", d / "truncated.npz"], "damaged"),
        "damaged checkpoint": ("lstm", ["--load", d / "damaged.npz", "--sample", "5"], "damaged"),
        "checkpoint without sizes": ("lstm", [text, "--load", d / "no-info.npz"], "damaged"),
        "not an npz": ("lstm", ["--load", d / "not-npz.npz", "--sample", "5"], "damaged"),
        "missing checkpoint": ("rnn", ["--load", d / "nope.npz", "--sample", "5"], "no such checkpoint"),
        "prime outside the vocabulary": ("lstm", ["--load", d / "lstm.npz", "--sample", "5", "--prime", "@#"],
                                         "vocabulary"),
        "--sample without --load": ("lstm", [text, "--sample", "100"], "--load"),
        "--hidden 0": ("lstm", [text, "--hidden", "0"], "--hidden"),
        "--batch -1": ("rnn", [text, "--batch", "-1"], "--batch"),
        "--seq 0": ("rnn", [text, "--seq", "0"], "--seq"),
        "--layers -2": ("lstm", [text, "--layers", "-2"], "--layers"),
        "--hidden abc": ("lstm", [text, "--hidden", "abc"], "--hidden"),
        "--hidden 2.5": ("lstm", [text, "--hidden", "2.5"], "--hidden"),
        "--lr -1": ("lstm", [text, "--lr", "-1"], "--lr"),
        "--lr nan": ("lstm", [text, "--lr", "nan"], "--lr"),
        "--clip -5": ("lstm", [text, "--clip", "-5"], "--clip"),
        "--temperature 0": ("lstm", ["--load", d / "lstm.npz", "--sample", "5", "--temperature", "0"],
                            "--temperature"),
        "--val-frac 1.5": ("lstm", [text, "--val-frac", "1.5"], "--val-frac"),
        "--dtype float16": ("lstm", [text, "--dtype", "float16"], "--dtype"),
        "--seed -1": ("rnn", [text, "--seed", "-1"], "--seed"),
        "--iters -3": ("rnn", [text, "--iters", "-3"], "--iters"),
        "--time inf": ("rnn", [text, "--time", "inf"], "--time"),
        "--sample -5": ("lstm", ["--load", d / "lstm.npz", "--sample", "-5"], "--sample"),
        "unknown option": ("lstm", [text, "--hiden", "8"], "unrecognized"),
        "two texts": ("lstm", [text, text], "unrecognized"),
        "huge sizes": ("lstm", [text, "--hidden", "1000000000", "--iters", "1"], "memory"),
    }


BAD = [  # the keys of _bad_inputs, listed here so that each case is a test of its own
    "missing path", "a directory", "empty file", "shorter than seq+1", "no validation split",
    "undecodable bytes", "unknown encoding", "rnn checkpoint into lstm", "rnn checkpoint sampled by lstm",
    "another size on resume", "another vocabulary", "truncated checkpoint", "damaged checkpoint", "checkpoint without sizes", "not an npz", "missing checkpoint",
    "prime outside the vocabulary", "--sample without --load", "--hidden 0", "--batch -1", "--seq 0",
    "--layers -2", "--hidden abc", "--hidden 2.5", "--lr -1", "--lr nan", "--clip -5", "--temperature 0",
    "--val-frac 1.5", "--dtype float16", "--seed -1", "--iters -3", "--time inf", "--sample -5",
    "unknown option", "two texts", "huge sizes"]


@pytest.mark.parametrize("case", BAD)
def test_bad_input_is_one_line_on_stderr(workdir, case):
    cases = _bad_inputs(workdir)
    assert set(cases) == set(BAD)
    kind, args, expected = cases[case]
    p = run_script(kind, *args)
    assert p.returncode != 0, p.stdout
    assert "Traceback" not in p.stderr
    lines = stderr_lines(p)
    assert len(lines) == 1, p.stderr
    assert lines[0].startswith(f"{kind}-numpy.py: error: "), lines[0]
    assert expected in lines[0], lines[0]


def test_missing_default_text_offline_says_what_to_do(tmp_path, monkeypatch):
    """No data/alice29.txt and no network: one UserError that names the way out."""
    download = common.load_script(os.path.join("data", "download.py"))
    monkeypatch.setattr(common, "HERE", str(tmp_path))  # data/ is tmp_path/data: no alice29.txt there
    monkeypatch.setattr(common, "load_script", lambda name: download)
    monkeypatch.setitem(download.CORPORA["alice29"], "url", (tmp_path / "nowhere.tar.gz").as_uri())
    with pytest.raises(common.UserError) as e:
        common.corpus_files("alice29")
    msg = str(e.value)
    assert "\n" not in msg
    assert "by hand" in msg and "pass a text file" in msg


# ---------------------------------------------------------------- the real corpus

@pytest.mark.skipif(not os.path.isfile(SHARED_ALICE), reason="../shared/data/alice29.txt is not here")
@pytest.mark.parametrize("kind", ["rnn", "lstm"])
def test_short_run_on_alice29(kind, tmp_path):
    p = run_script(kind, SHARED_ALICE, "--hidden", "32", "--batch", "16", "--seq", "25",
                   "--iters", "150", "--report", "50", "--save", tmp_path / "ck.npz")
    assert p.returncode == 0, p.stderr
    head = p.stdout.splitlines()[0]
    assert "87 symbols" in head or "symbols" in head
    done = p.stdout.strip().splitlines()[-1]
    train, val = map(float, re.search(r"train ([\d.]+) BPC, val ([\d.]+) BPC", done).groups())
    assert train < 4.0 and val < 4.0  # from log2(V) = 6.4 at the start
    ck = common.load_checkpoint(str(tmp_path / "ck.npz"), kind)
    assert "\r" in ck["vocab"].chars  # CRLF line ends are characters like any other

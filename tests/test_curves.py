"""benchmarks/curves.py: the pictures of --log files, its one-line errors, and the log that
train.py writes for it (a fresh run, then a resumed one appending to the same file)."""
import csv
import os
import subprocess
import sys

import pytest

import common
from conftest import ROOT, TINY, make_text, run_script, stderr_lines

CURVES = os.path.join(ROOT, "benchmarks", "curves.py")
HEADER = "seconds,iter,chars,episodes,train_bpc,val_bpc,train_nats_seq,val_nats_seq,wrong_bits_seq,solved,rate,lesson"
PNG = b"\x89PNG\r\n\x1a\n"


def write_log(path, rows, header=HEADER):
    """rows: dicts of some of the columns; the others stay empty, as train.py leaves them."""
    columns = header.split(",")
    lines = [header] + [",".join(str(r.get(c, "")) for c in columns) for r in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def text_rows(iters, seconds=0.0, bpc=4.0):
    return [{"seconds": f"{seconds + 0.01 * i:.3f}", "iter": i, "chars": 32 * i, "episodes": 0,
             "train_bpc": bpc - 0.01 * i, "val_bpc": bpc + 0.1 - 0.01 * i, "rate": 3000.0} for i in iters]


def task_rows(iters):
    return [{"seconds": 0.02 * i, "iter": i, "chars": 28 * i, "episodes": 4 * i, "train_nats_seq": 6 - 0.05 * i,
             "val_nats_seq": 6 - 0.04 * i, "wrong_bits_seq": 4 - 0.03 * i, "solved": 0.01 * i, "rate": 900.0}
            for i in iters]


@pytest.fixture
def logs(tmp_path):
    return {"text": write_log(tmp_path / "lstm.csv", text_rows(range(5, 25, 5))),
            # a resumed run: the same file, the iterations, seconds and characters go on
            "resumed": write_log(tmp_path / "rnn.csv", text_rows(range(5, 25, 5)) + text_rows(range(25, 35, 5), 0.05)),
            "task": write_log(tmp_path / "copy.csv", task_rows(range(10, 60, 10)))}


def curves(*args, env=None):
    return subprocess.run([sys.executable, CURVES, *map(str, args)], capture_output=True, text=True,
                          timeout=60, env=env)


@pytest.fixture(scope="module")
def curves_module():
    return common.load_script(os.path.join("benchmarks", "curves.py"))


def assert_png(rc, out, err, path):
    assert rc == 0, err
    assert out.strip() == f"wrote {path}"
    data = path.read_bytes()
    assert data[:8] == PNG and len(data) > 1000


def test_text_logs_with_refs(logs, tmp_path, curves_module, capsys):
    """In-process, for speed; the end-to-end test below runs the command line."""
    pytest.importorskip("matplotlib")
    out = tmp_path / "curves.png"
    rc = curves_module.main([str(logs["text"]), str(logs["resumed"]), "-o", str(out), "--ref", "2.12:nanoGPT GPU",
                             "--ref", "2.71:nanoGPT CPU", "--title", "two runs"])
    assert_png(rc, *capsys.readouterr(), out)


def test_task_log(logs, tmp_path, curves_module, capsys):
    pytest.importorskip("matplotlib")
    out = tmp_path / "task.png"
    assert_png(curves_module.main([str(logs["task"]), "-o", str(out)]), *capsys.readouterr(), out)


BAD = ("missing file", "a directory", "empty file", "no header", "columns missing", "header only",
       "number does not parse", "too few fields", "iterations go back", "text and task", "ref without label",
       "ref not a number", "ref empty label", "no output", "output not writable")


def bad_input(what, tmp_path, logs):
    """-> the arguments of one bad call, a piece of its one stderr line"""
    good, out = logs["text"], tmp_path / "out.png"
    (tmp_path / "empty.csv").write_text("")
    (tmp_path / "noheader.csv").write_text("0.010,5,160,0,4.1,4.2,,,,,3000.0\n")
    write_log(tmp_path / "nocols.csv", [{"seconds": 1, "iter": 5}], header="seconds,iter,train_bpc")
    write_log(tmp_path / "onlyheader.csv", [])
    bad = text_rows(range(5, 25, 5))
    bad[2]["val_bpc"] = "4.1x"
    write_log(tmp_path / "badnum.csv", bad)
    (tmp_path / "short.csv").write_text(HEADER + "\n0.010,5,160\n")
    write_log(tmp_path / "back.csv", text_rows(range(5, 25, 5)) + text_rows(range(5, 15, 5)))
    return {
        "missing file": ([tmp_path / "nope.csv", "-o", out], "cannot read"),
        "a directory": ([tmp_path, "-o", out], "cannot read"),
        "empty file": ([tmp_path / "empty.csv", "-o", out], "empty.csv is empty"),
        "no header": ([tmp_path / "noheader.csv", "-o", out], "no header"),
        "columns missing": ([tmp_path / "nocols.csv", "-o", out], "lacks the columns chars, episodes"),
        "header only": ([tmp_path / "onlyheader.csv", "-o", out], "no rows"),
        "number does not parse": ([good, tmp_path / "badnum.csv", "-o", out], "badnum.csv line 4: val_bpc '4.1x'"),
        "too few fields": ([tmp_path / "short.csv", "-o", out], "short.csv line 2: 3 fields"),
        "iterations go back": ([tmp_path / "back.csv", "-o", out], "back.csv line 6: iter 5 after iter 20"),
        "text and task": ([good, logs["task"], "-o", out], "separate calls"),
        "ref without label": ([good, "-o", out, "--ref", "2.12"], "VALUE:LABEL"),
        "ref not a number": ([good, "-o", out, "--ref", "GPU:2.12"], "VALUE:LABEL"),
        "ref empty label": ([good, "-o", out, "--ref", "2.12:"], "VALUE:LABEL"),
        "no output": ([good], "-o"),
        "output not writable": ([good, "-o", tmp_path / "no" / "such" / "dir.png"], "cannot write"),
    }[what]


@pytest.mark.parametrize("what", BAD)
def test_bad_input(what, tmp_path, logs, curves_module, capsys):
    """Each: exit 2 and one line on stderr that says what is wrong (in-process, for speed: an
    exception would fail the test; test_bad_input_cli checks the real command line)."""
    if what == "output not writable":
        pytest.importorskip("matplotlib")  # found when the picture is saved
    args, says = bad_input(what, tmp_path, logs)
    try:
        rc = curves_module.main([str(a) for a in args])
    except SystemExit as e:  # argparse's errors
        rc = e.code
    err = capsys.readouterr()
    lines = [line for line in err.err.splitlines() if line.strip()]
    assert rc == 2
    assert len(lines) == 1 and says in lines[0], err.err
    assert not err.out


@pytest.mark.parametrize("what", ["number does not parse", "ref without label"])
def test_bad_input_cli(what, tmp_path, logs):
    args, says = bad_input(what, tmp_path, logs)
    p = curves(*args)
    lines = stderr_lines(p)
    assert p.returncode == 2
    assert len(lines) == 1 and says in lines[0] and "Traceback" not in p.stderr, p.stderr
    assert not p.stdout


def test_without_matplotlib(tmp_path, logs, no_matplotlib_env):
    env = no_matplotlib_env
    out = tmp_path / "out.png"
    p = curves(logs["text"], "-o", out, env=env)
    assert p.returncode == 2
    lines = stderr_lines(p)
    assert len(lines) == 1 and "pip install matplotlib" in lines[0] and "Traceback" not in p.stderr
    assert not out.exists()


def read_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_train_log_then_resume_then_curves(tmp_path):
    """train.py's --log end to end: a run writes one row per report, a resumed run appends
    to the same file with iterations, seconds and characters going on; curves.py draws it."""
    text = tmp_path / "text.txt"
    text.write_text(make_text())
    log, ck = tmp_path / "a.csv", tmp_path / "ck"
    p = run_script("lstm", text, *TINY, "--iters", "20", "--log", log, "--save", ck)
    assert p.returncode == 0, p.stderr
    assert log.read_text().splitlines()[0] == HEADER
    rows = read_rows(log)
    assert [int(r["iter"]) for r in rows] == [5, 10, 15, 20]
    assert all(int(r["chars"]) == int(r["iter"]) * 4 * 8 for r in rows)
    seconds = [float(r["seconds"]) for r in rows]
    assert seconds == sorted(seconds) and len(set(seconds)) == 4
    assert all(r["train_bpc"] and r["val_bpc"] and not r["wrong_bits_seq"] for r in rows)

    p = run_script("lstm", text, *TINY, "--load", ck, "--iters", "10", "--log", log)
    assert p.returncode == 0, p.stderr
    assert log.read_text().count("seconds,iter") == 1  # no second header
    rows = read_rows(log)
    assert [int(r["iter"]) for r in rows] == [5, 10, 15, 20, 25, 30]
    assert all(int(r["chars"]) == int(r["iter"]) * 4 * 8 for r in rows)
    seconds = [float(r["seconds"]) for r in rows]
    assert seconds == sorted(seconds) and len(set(seconds)) == 6

    pytest.importorskip("matplotlib")
    out = tmp_path / "a.png"
    p = curves(log, "-o", out)
    assert_png(p.returncode, p.stdout, p.stderr, out)

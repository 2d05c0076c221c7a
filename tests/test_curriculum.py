"""Two training levers for the memory tasks (train.py): --curriculum (the lessons, the
lengths each draws, the lesson rule on a scripted validation, the books at a lesson
change, exact resume at a lesson) and the DNC's --memory MIN-MAX (a memory size drawn
per batch within the range, validation at the MAX, --eval-lengths); and the one-line
refusals of both."""
import csv
import os
import re
import shutil

import numpy as np
import pytest

import common
import train
from conftest import arrays, assert_same_arrays, run_script, stderr_lines

tasks = common.load_script(os.path.join("data", "tasks.py"))
LESSON_LINE = re.compile(r"[\d.]+ s, iter (\d+), .* solved, lesson (\d+)/(\d+) ")


def in_process(model, argv):
    """Train in this process (so that a test can watch the model's calls). -> exit code"""
    args = train.make_parser(model, "test", {}).parse_args([str(a) for a in argv])
    return train.run(model, args, {})


def copy_lengths(mask):
    """A copy episode's length is its count of answer steps: mask (T, B) -> (B,)"""
    return mask.sum(0)


# ---------------------------------------------------------------- the lessons

@pytest.mark.parametrize("name, settings, ends", [
    ("copy", {"min_length": 1, "max_length": 10}, [1, 2, 4, 8, 10]),
    ("copy", {"min_length": 1, "max_length": 8}, [1, 2, 4, 8]),
    ("copy", {"min_length": 3, "max_length": 7}, [3, 6, 7]),
    ("recall", {"min_length": 2, "max_length": 6}, [2, 4, 6]),
    ("add", {"min_length": 8, "max_length": 8}, [8]),
])
def test_lessons_double_from_the_shortest_to_the_longest(name, settings, ends):
    c = train.Curriculum(tasks.make_task(name, **settings), threshold=0.9)
    assert c.ends == ends and c.lessons == len(ends) and c.lesson == 1


def test_lesson_names_say_the_new_lengths_and_the_review():
    c = train.Curriculum(tasks.make_task("copy", min_length=1, max_length=10), threshold=0.9)
    assert str(c) == "lesson 1/5 length 1"
    c.lesson = 4
    assert str(c) == "lesson 4/5 lengths 5-8 (20% 1-8)"
    c.lesson = 5
    assert str(c) == "lesson 5/5 lengths 9-10 (20% 1-10)"


def test_a_lesson_draws_its_new_lengths_and_a_fifth_over_all_so_far():
    """Lesson 4 of copy 1-10: 80% uniform over 5-8, 20% uniform over 1-8, so length L has
    probability 0.2/8 (+ 0.8/4 for L in 5-8); nothing outside 1-8."""
    c = train.Curriculum(tasks.make_task("copy", min_length=1, max_length=10), threshold=0.9, lesson=4)
    L = c.lengths(np.random.default_rng(0), 200_000)
    assert L.min() == 1 and L.max() == 8
    share = np.bincount(L, minlength=9)[1:] / L.size
    expected = np.full(8, 0.2 / 8) + np.r_[np.zeros(4), np.full(4, 0.8 / 4)]
    np.testing.assert_allclose(share, expected, atol=0.004)
    c.lesson = 1
    assert (c.lengths(np.random.default_rng(0), 1000) == 1).all()


def test_the_last_lesson_never_passes_and_the_threshold_is_inclusive():
    c = train.Curriculum(tasks.make_task("copy", min_length=1, max_length=4), threshold=0.9)
    assert c.passed(0.9) and not c.passed(0.8999)
    c.lesson = c.lessons
    assert not c.passed(1.0)


def test_episodes_take_one_length_each():
    task = tasks.make_task("copy", bits=3, min_length=1, max_length=4)
    lengths = np.array([1, 4, 2, 7])  # beyond --length is allowed: --eval-lengths does it too
    _, _, mask = task.episodes(np.random.default_rng(0), 4, length=lengths)
    assert copy_lengths(mask).tolist() == [1, 4, 2, 7]
    with pytest.raises(tasks.TaskError, match="length of 0"):
        task.episodes(np.random.default_rng(0), 2, length=np.array([3, 0]))
    with pytest.raises(tasks.TaskError, match="3 whole-number lengths"):
        task.episodes(np.random.default_rng(0), 3, length=np.array([1, 2]))


# ---------------------------------------------------------------- the source

def test_the_source_trains_and_validates_on_the_lesson():
    task = tasks.make_task("copy", bits=3, min_length=1, max_length=10)
    c = train.Curriculum(task, threshold=0.9, lesson=3)
    source = train.TaskSource(task, 16, seed=5, curriculum=c)
    rng = np.random.default_rng(0)
    trained = np.concatenate([copy_lengths(source.next(rng)[2]) for _ in range(50)])
    assert set(trained) == {1, 2, 3, 4}
    assert 0.85 < np.isin(trained, (3, 4)).mean() < 0.95  # 0.8 + 0.2 * 2/4
    val = np.concatenate([copy_lengths(m) for _, _, m in source.val])
    assert val.size == train.VAL_EPISODES and set(val) <= {1, 2, 3, 4} and np.isin(val, (3, 4)).mean() > 0.8
    # another lesson, other validation episodes; the same lesson, the same ones
    c.lesson = 4
    assert set(np.concatenate([copy_lengths(m) for _, _, m in source.validation()])) <= set(range(1, 9))
    c.lesson = 3
    for a, b in zip(source.validation(), source.val):
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)


def test_without_a_curriculum_the_episodes_are_those_of_before():
    task = tasks.make_task("copy", bits=3, min_length=1, max_length=5)
    source = train.TaskSource(task, 8, seed=3)
    rng = np.random.default_rng([3, 1])
    for got in source.val:
        for x, y in zip(got, task.episodes(rng, 8)):
            np.testing.assert_array_equal(x, y)


# ---------------------------------------------------------------- the lesson rule

# each validation in turn: (share solved, nats per episode); the calls after a pass are
# the new lesson's validation of the weights that passed
SCRIPT = [(0.5, 3.0), (0.899, 2.0), (0.9, 1.0),  # iters 1-3 on lesson 1: passed at 0.9 exactly
          (0.95, 9.0),  # lesson 2's first validation, at iter 3: the books start afresh (9 > 1)
          (0.1, 8.0), (0.95, 8.5),  # iters 4, 5: passed at iter 5
          (0.0, 7.0),  # lesson 3 at iter 5
          (1.0, 7.5),  # iter 6: passed
          (0.0, 6.0),  # lesson 4 at iter 6
          (0.0, 6.5), (0.0, 6.2)]  # iters 7, 8: stale twice


def test_lessons_advance_exactly_when_validation_meets_the_threshold(tmp_path, monkeypatch, capsys):
    calls = []

    def scripted(model, cfg, params, task, batches):
        calls.append(max(int(copy_lengths(m).max()) for _, _, m in batches))  # the lesson's longest
        solved, nats_seq = SCRIPT[len(calls) - 1]
        return {"nats": 0.5, "nats_seq": nats_seq, "wrong_bits": 1 - solved, "solved": solved, "answer_bits": 3}

    monkeypatch.setattr(train, "evaluate_task", scripted)
    lstm = common.load_script("lstm-numpy.py")
    ck = tmp_path / "ck.npz"
    code = in_process(lstm, ["--task", "copy", "--bits", 3, "--length", "1-10", "--hidden", 4, "--batch", 4,
                             "--iters", 8, "--report", 1, "--curriculum", "--threads", 1, "--save", ck,
                             "--log", tmp_path / "log.csv"])
    out = capsys.readouterr().out
    assert code == 0
    lessons = [(int(m.group(1)), int(m.group(2))) for m in map(LESSON_LINE.match, out.splitlines()) if m]
    assert lessons == [(1, 1), (2, 1), (3, 1), (4, 2), (5, 2), (6, 3), (7, 4), (8, 4)]
    assert re.findall(r"^lesson (\d)/5 passed", out, re.M) == ["1", "2", "3"]
    with open(tmp_path / "log.csv") as f:  # the CSV log names the lesson of every report
        assert [int(row["lesson"]) for row in csv.DictReader(f)] == [lesson for _, lesson in lessons]
    assert calls == [1, 1, 1, 2, 2, 2, 4, 4, 8, 8, 8]  # every validation on the lesson of the moment
    info = common.load_checkpoint(str(ck), "lstm")["info"]
    assert info["curriculum"] == {"lesson": 4, "threshold": 0.9}
    assert (info["best_val"], info["best_iter"], info["stale"]) == (6.0, 6, 2)  # lesson 4's books alone
    assert "lesson 4/5 lengths 5-8 (20% 1-8)" in out.splitlines()[-1]


def test_resume_continues_at_the_lesson_bit_for_bit_and_the_memory_range_too(tmp_path):
    """--lesson-threshold 0 passes a lesson at every report: lessons 2, 3, 4 start in the
    first 30 iterations, 5 and 6 after the resume. 30 + 20 iterations equal 50 in one run,
    with or without --curriculum given again; the DNC draws its memory sizes from the
    checkpoint's RNG too."""
    args = ["--task", "copy", "--bits", 3, "--length", "1-32", "--hidden", 6, "--batch", 8, "--report", 10,
            "--curriculum", "--lesson-threshold", 0, "--memory", "3-5", "--width", 3, "--reads", 1]
    one = run_script("dnc", *args, "--iters", 50, "--save", tmp_path / "one.npz")
    first = run_script("dnc", *args, "--iters", 30, "--save", tmp_path / "two.npz")
    shutil.copy(tmp_path / "two.npz", tmp_path / "three.npz")
    second = run_script("dnc", *args, "--iters", 20, "--load", tmp_path / "two.npz", "--save", tmp_path / "two.npz")
    bare = run_script("dnc", "--iters", 20, "--report", 10, "--load", tmp_path / "three.npz",
                      "--save", tmp_path / "three.npz")  # the lessons pass at reports: the same reports
    for p in (one, first, second, bare):
        assert p.returncode == 0, p.stderr
    assert "at iter 30, lesson 4/6 lengths 5-8 (20% 1-8)" in second.stdout
    assert [m.group(2) for m in map(LESSON_LINE.match, one.stdout.splitlines()) if m] == ["1", "2", "3", "4", "5"]
    assert [m.group(2) for m in map(LESSON_LINE.match, second.stdout.splitlines()) if m] == ["4", "5"]
    assert_same_arrays(arrays(tmp_path / "one.npz"), arrays(tmp_path / "two.npz"))
    assert_same_arrays(arrays(tmp_path / "one.npz"), arrays(tmp_path / "three.npz"))
    info = common.load_checkpoint(str(tmp_path / "two.npz"), "dnc")["info"]
    assert info["curriculum"] == {"lesson": 6, "threshold": 0.0}
    assert info["cfg"]["memory"] == 5 and info["cfg"]["memory_range"] == [3, 5]
    strip = re.compile(r"[\d.]+ s, |[\d.]+ step/s")  # the report lines at 40 and 50, each with its pass
    tail = [strip.sub("", line) for line in one.stdout.splitlines()[-5:-1]]
    assert tail == [strip.sub("", line) for line in second.stdout.splitlines()[-5:-1]]
    for given, had in (("5", "3-5"), ("3-6", "3-5")):  # a resumed run keeps its sizes: another N is refused
        p = run_script("dnc", "--iters", 1, "--load", tmp_path / "three.npz", "--memory", given)
        assert stderr_lines(p) == [f"dnc-numpy.py: error: {tmp_path / 'three.npz'} was trained with --memory {had}; "
                                   f"a resumed run keeps its sizes (drop --memory, or start a new run)"]
        assert p.returncode == 2


# ---------------------------------------------------------------- --memory MIN-MAX

def watch_memory(monkeypatch, dnc):
    """-> the memory sizes N of the forwards that train (an rng draws dropout) and of the others."""
    seen = {"train": [], "validate": []}
    forward = dnc.forward

    def watched(params, inputs, state, cfg=None, rng=None):
        seen["train" if rng is not None else "validate"].append(state["M"].shape[1])
        return forward(params, inputs, state, cfg, rng)

    monkeypatch.setattr(dnc, "forward", watched)
    return seen


DNC_TINY = ["--task", "copy", "--bits", 3, "--length", "1-3", "--hidden", 6, "--batch", 4, "--width", 3,
            "--reads", 1, "--report", 20, "--threads", 1]


def test_every_batch_trains_at_a_memory_size_drawn_from_the_range(tmp_path, monkeypatch, capsys):
    dnc = common.load_script("dnc-numpy.py")
    seen = watch_memory(monkeypatch, dnc)
    assert in_process(dnc, [*DNC_TINY, "--memory", "4-8", "--iters", 40, "--save", tmp_path / "a.npz"]) == 0
    assert len(seen["train"]) == 40 and set(seen["train"]) == {4, 5, 6, 7, 8}  # every size trains
    assert set(seen["validate"]) == {8}  # validation at the MAX
    ck = common.load_checkpoint(str(tmp_path / "a.npz"), "dnc")
    assert ck["info"]["cfg"]["memory"] == 8 and ck["info"]["cfg"]["memory_range"] == [4, 8]
    assert all(np.isfinite(v).all() for v in ck["param"].values())
    assert "'memory': 8" in capsys.readouterr().out
    # --seed fixes the sizes; another seed draws others
    drawn = list(seen["train"])
    for seed, same in ((0, True), (1, False)):
        seen["train"].clear()
        assert in_process(dnc, [*DNC_TINY, "--memory", "4-8", "--iters", 40, "--no-save", "--seed", seed]) == 0
        assert (seen["train"] == drawn) == same


def test_one_memory_size_trains_at_that_size(monkeypatch):
    dnc = common.load_script("dnc-numpy.py")
    seen = watch_memory(monkeypatch, dnc)
    assert in_process(dnc, [*DNC_TINY, "--memory", "5", "--iters", 5, "--no-save"]) == 0
    assert set(seen["train"]) == {5} and set(seen["validate"]) == {5}
    assert in_process(dnc, [*DNC_TINY, "--memory", "5-5", "--iters", 1, "--no-save"]) == 0  # a range of one
    assert set(seen["train"]) == {5}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """A DNC trained with --memory 4-8, an LSTM copy model without a curriculum, a text."""
    d = tmp_path_factory.mktemp("levers")
    (d / "text.txt").write_text("abc abd abe " * 40)
    for kind, args in (("dnc", [*DNC_TINY, "--memory", "4-8", "--iters", 2, "--save", d / "range.npz"]),
                       ("lstm", ["--task", "copy", "--hidden", 4, "--batch", 2, "--iters", 2,
                                 "--save", d / "plain.npz"])):
        p = run_script(kind, *args)
        assert p.returncode == 0, p.stderr
    return d


def test_eval_lengths_of_a_range_runs_at_the_max_unless_told(checkpoints):
    ck = checkpoints / "range.npz"
    p = run_script("dnc", "--load", ck, "--eval-lengths", "1,3", "--episodes", 10)
    assert p.returncode == 0, p.stderr
    assert "memory N=8" in p.stdout
    p = run_script("dnc", "--load", ck, "--eval-lengths", "1,3", "--episodes", 10, "--memory", 5)
    assert p.returncode == 0, p.stderr
    assert "memory N=5" in p.stdout


# ---------------------------------------------------------------- bad input: one line each

BAD = {  # name -> (kind, arguments (d: the checkpoints' folder), a piece of the message)
    "a memory range on a text": ("dnc", lambda d: [d / "text.txt", "--memory", "4-8"], "--memory 4-8"),
    "a memory range upside down": ("dnc", lambda d: ["--task", "copy", "--memory", "8-4"], "--memory"),
    "a memory range from 0": ("dnc", lambda d: ["--task", "copy", "--memory", "0-4"], "--memory"),
    "a memory range that is no range": ("dnc", lambda d: ["--task", "copy", "--memory", "4-"], "--memory"),
    "a memory range to --eval-lengths": ("dnc", lambda d: ["--load", d / "range.npz", "--eval-lengths", "1,2",
                                                           "--memory", "4-6"], "--memory N"),
    "--curriculum on a text": ("lstm", lambda d: [d / "text.txt", "--curriculum"], "--curriculum"),
    "--lesson-threshold on resuming a run without": ("dnc", lambda d: ["--load", d / "range.npz",
                                                                       "--lesson-threshold", 0.5, "--iters", 1],
                                                     "without --curriculum"),
    "--lesson-threshold alone": ("lstm", lambda d: ["--task", "copy", "--lesson-threshold", 0.5], "--curriculum"),
    "--lesson-threshold above 1": ("lstm", lambda d: ["--task", "copy", "--curriculum", "--lesson-threshold", 1.5],
                                   "--lesson-threshold"),
    "--curriculum on resuming a run without": ("lstm", lambda d: ["--load", d / "plain.npz", "--curriculum",
                                                                  "--iters", 1], "without --curriculum"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_one_line(checkpoints, case):
    kind, args, piece = BAD[case]
    p = run_script(kind, *args(checkpoints))
    assert p.returncode == 2, (p.returncode, p.stdout, p.stderr)
    assert "Traceback" not in p.stderr
    lines = stderr_lines(p)
    assert len(lines) == 1 and lines[0].startswith(f"{kind}-numpy.py: error: "), p.stderr
    assert piece in lines[0], lines[0]
    assert p.stdout == ""

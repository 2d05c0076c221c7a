"""data/tasks.py's series-copy (the DNC paper's Extended Data Fig. 1): K copy sequences in
one episode, each answered right after its delimiter. The episodes are read back step by
step, as a person would read them, and checked against what they must be; both forms, the
seeds, the settings and errors, and the command line's --item-length (a range for
series-copy, one number for recall)."""
import os
import re

import numpy as np
import pytest

import common
import train
from conftest import run_script, stderr_lines

tasks = common.load_script(os.path.join("data", "tasks.py"))
dnc = common.load_script("dnc-numpy.py")


def read_back(task, inputs, targets, mask):
    """One token-form episode (T,) read step by step -> the sequences it shows, checking on
    the way that each is followed by DELIM, then blanks while the answer is that sequence
    (mask on exactly there), and that padding is blank, unmasked, target 0."""
    delim, blank = task.marker["delim"], task.blank
    sequences, t, T = [], 0, len(inputs)
    while t < T and inputs[t] != blank:
        shown = []
        while inputs[t] < 2 ** task.bits:  # the vectors of one sequence
            assert not mask[t]
            shown.append(int(inputs[t]))
            t += 1
        assert inputs[t] == delim and not mask[t] and shown, t
        t += 1
        for x in shown:  # the answer: blank inputs, the same vectors in order
            assert inputs[t] == blank and mask[t] and targets[t] == x, t
            t += 1
        sequences.append(shown)
    assert (inputs[t:] == blank).all() and not mask[t:].any() and (targets[t:] == 0).all()
    return sequences


@pytest.mark.parametrize("settings", [{}, {"bits": 3, "min_length": 1, "max_length": 4, "min_item_length": 2,
                                           "max_item_length": 3}])
def test_episodes_are_sequences_each_copied_after_its_delimiter(settings):
    task = tasks.make_task("series-copy", io="tokens", **settings)
    inputs, targets, mask = task.episodes(np.random.default_rng(1), 40)
    lo, hi = task.min_item_length, task.max_item_length
    counts, lengths = [], []
    for b in range(inputs.shape[1]):
        sequences = read_back(task, inputs[:, b], targets[:, b], mask[:, b])
        counts.append(len(sequences))
        lengths += [len(s) for s in sequences]
        assert mask[:, b].sum() == sum(len(s) for s in sequences)
    assert set(counts) == set(range(task.min_length, task.max_length + 1))  # K over its range
    assert set(lengths) == set(range(lo, hi + 1))  # each sequence draws its own length
    longest = max(sum(2 * len(s) + 1 for s in read_back(task, inputs[:, b], targets[:, b], mask[:, b]))
                  for b in range(inputs.shape[1]))
    assert inputs.shape[0] == longest  # padded to the longest episode, no further


def test_the_length_is_the_number_of_sequences():
    task = tasks.make_task("series-copy", io="tokens", max_item_length=2)
    assert (task.min_length, task.max_length) == (10, 10)  # the paper's 10 sequences
    for K in (1, 3, 20):
        inputs, _, _ = task.episodes(np.random.default_rng(K), 8, length=K)
        assert ((inputs == task.marker["delim"]).sum(0) == K).all()
    inputs, _, _ = task.episodes(np.random.default_rng(0), 3, length=np.array([1, 4, 2]))  # a curriculum's lesson
    assert list((inputs == task.marker["delim"]).sum(0)) == [1, 4, 2]


def test_the_bit_form_is_the_token_form_in_channels():
    settings = {"bits": 4, "min_length": 2, "max_length": 5}
    x, y, mask = tasks.make_task("series-copy", **settings).episodes(np.random.default_rng(2), 16)
    tok_in, tok_out, tok_mask = tasks.make_task("series-copy", io="tokens", **settings).episodes(
        np.random.default_rng(2), 16)
    task = tasks.make_task("series-copy", **settings)
    assert x.shape[-1] == 4 + 1 and y.shape[-1] == 4 and task.input_labels[-1] == "delim"
    assert (mask == tok_mask).all()
    assert (x[..., 4] == (tok_in == task.marker["delim"])).all()  # the delimiter channel
    data = tok_in < 16
    assert ((x[..., :4].astype(int) << np.arange(4)).sum(-1)[data] == tok_in[data]).all()
    assert ((y.astype(int) << np.arange(4)).sum(-1)[mask] == tok_out[mask]).all() and (y[~mask] == 0).all()


@pytest.mark.parametrize("io", tasks.IO_FORMS)
def test_same_seed_same_episodes(io):
    task = tasks.make_task("series-copy", io=io, bits=3)
    a, b = task.episodes(np.random.default_rng(5), 8), task.episodes(np.random.default_rng(5), 8)
    c = task.episodes(np.random.default_rng(6), 8)
    assert all((p == q).all() for p, q in zip(a, b))
    assert a[0].shape != c[0].shape or (a[0] != c[0]).any()


def test_settings_defaults_and_errors():
    task = tasks.make_task("series-copy")
    assert task.settings == {"bits": 6, "min_length": 10, "max_length": 10, "min_item_length": 1, "max_item_length": 5}
    assert task.model_defaults == {"memory": 10}  # the paper's N: fewer slots than vectors
    assert task.slots_needed(20) == 5  # one sequence at a time, not the whole episode
    assert task.describe() == ("series-copy: 6-bit vectors, 10 sequences (--length) of 1-5 vectors each "
                               "(--item-length)")
    for settings, words in (({"min_item_length": 3, "max_item_length": 2}, "--item-length 3-2: the minimum is above"),
                            ({"min_item_length": 0}, "--item-length 0-5: the minimum must be at least 1"),
                            ({"min_length": 0}, "--length 0-10: the minimum must be at least 1"),
                            ({"io": "tokens", "bits": 11}, "--bits must be 1 to 10")):
        with pytest.raises(tasks.TaskError) as e:
            tasks.make_task("series-copy", **settings)
        assert str(e.value).startswith(words) and "\n" not in str(e.value)
    with pytest.raises(tasks.TaskError, match="^task copy does not take --item-length "):
        tasks.make_task("copy", min_item_length=1, max_item_length=2)


def test_item_length_on_the_command_line():
    """--item-length is MIN-MAX for series-copy and one number for recall (a range refused)."""
    p = train.make_parser(dnc, "", {})
    args = p.parse_args(["--task", "series-copy", "--item-length", "2-4", "--length", "3"])
    assert train.task_settings(args, "series-copy") == {"min_length": 3, "max_length": 3, "min_item_length": 2,
                                                        "max_item_length": 4}
    args = p.parse_args(["--task", "recall", "--item-length", "2"])
    assert train.task_settings(args, "recall") == {"item_length": 2}
    args = p.parse_args(["--task", "recall", "--item-length", "2-4"])
    with pytest.raises(common.UserError, match="^--item-length 2-4: recall's items all have one length; "
                                                "give one number$"):
        train.task_settings(args, "recall")


@pytest.mark.parametrize("args, words", [(["--task", "recall", "--item-length", "1-3"], "recall's items all have"),
                                         (["--task", "copy", "--item-length", "2"], "task copy does not take"),
                                         (["--item-length", "2"], "--item-length is a task option")])
def test_cli_refuses_an_item_length_in_one_line(args, words):
    p = run_script("dnc", *args, "--iters", 1, "--no-save")
    assert p.returncode == 2 and "Traceback" not in p.stderr
    lines = stderr_lines(p)
    assert len(lines) == 1 and words in lines[0], p.stderr


def test_cli_series_copy_trains_and_evaluates_more_sequences(tmp_path):
    path = tmp_path / "series.npz"
    p = run_script("dnc", "--task", "series-copy", "--length", "2", "--item-length", "1-2", "--bits", 3,
                   "--hidden", 12, "--batch", 4, "--width", 4, "--reads", 1, "--controller", "feedforward",
                   "--iters", 6, "--report", 3, "--threads", 1, "--save", path)
    assert p.returncode == 0, p.stderr
    assert "series-copy: 3-bit vectors, 2 sequences (--length) of 1-2 vectors each" in p.stdout
    assert "'memory': 10" in p.stdout  # the task's N
    p = run_script("dnc", "--load", path, "--eval-lengths", "2,4", "--episodes", 10, "--show")
    assert p.returncode == 0, p.stderr
    rows = re.findall(r"^ +(\d+) +[\d.]+ +[\d.]+ +[\d.]+%\s", p.stdout, re.M)  # length, wrong bits, bits, solved
    assert rows == ["2", "4"]
    assert "free gates f" in p.stdout and "usage u" in p.stdout
    p = run_script("dnc", "--load", path, "--item-length", "1-3", "--iters", 1, "--no-save")
    assert p.returncode == 2 and "--item-length" in stderr_lines(p)[0]


def test_a_curriculum_grows_the_number_of_sequences():
    task = tasks.make_task("series-copy", io="tokens", bits=3, min_length=1, max_length=10, max_item_length=2)
    curriculum = train.Curriculum(task, 0.9)
    assert curriculum.ends == [1, 2, 4, 8, 10]
    rng = np.random.default_rng(3)
    curriculum.lesson = 3  # new lengths 3-4, a review over 1-4
    inputs, _, _ = task.episodes(rng, 64, length=curriculum.lengths(rng, 64))
    counts = (inputs == task.marker["delim"]).sum(0)
    assert counts.min() >= 1 and counts.max() <= 4 and (counts >= 3).mean() > 0.5

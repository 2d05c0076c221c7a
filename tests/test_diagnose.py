"""benchmarks/diagnose.py: the facts its measures must satisfy whatever the weights (random
ones, of every controller and task form), its error count against train.evaluate_task,
its blocks of rows against one block, its f against directional_forward, and its command
line on a tiny trained model."""
import os
import subprocess
import sys

import numpy as np
import pytest

import common
import train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "benchmarks", "diagnose.py")
diagnose = common.load_script(os.path.join("benchmarks", "diagnose.py"))
dnc = diagnose.dnc
TOL = 1e-9


def random_model(task, controller="lstm", N=10, R=2, blocks=1, seed=0):
    """A DNC with random weights for the task's form -> cfg, float64 params. blocks > 1
    makes memory_forward split a batch of 6 into that many blocks of rows."""
    cfg = {"hidden": 8, "layers": 1, "controller": controller, "memory": N, "width": 4, "reads": R,
           "stop_usage_grad": False, "dropout": 0.0, "forget_bias": 1.0}
    if blocks > 1:
        cfg["block_floats"] = N * N * -(-6 // blocks)  # rows per block = block_floats // N^2
    params = dnc.init_params(cfg, task.V_in, np.random.default_rng(seed), np.float64, task.V_out)
    for v in params.values():  # off the tidy initial values, so that gates and modes vary
        v += 0.3 * np.random.default_rng(seed + 1).standard_normal(v.shape)
    return cfg, params


def traced(name="copy", io="bits", controller="lstm", length=5, episodes=6, rows=6, blocks=1, **settings):
    task = train.make_task(name, settings, io)
    cfg, params = random_model(task, controller, blocks=blocks)
    batches = diagnose.draw_episodes(task, np.random.default_rng(3), episodes, length, rows)
    return task, cfg, params, batches, diagnose.trace(params, cfg, task, batches, length)


FORMS = [("copy", "bits", "lstm", {}), ("copy", "tokens", "feedforward", {"bits": 3}),
         ("repeat-copy", "bits", "feedforward", {"max_repeats": 3}), ("repeat-copy", "tokens", "lstm", {})]


@pytest.mark.parametrize("name, io, controller, settings", FORMS)
def test_measures_stay_in_their_ranges(name, io, controller, settings):
    length, E, R, N = 4, 6, 2, 10
    task, cfg, params, batches, tr = traced(name, io, controller, length, E, rows=4, **settings)
    T = max(b[0].shape[0] for b in batches)
    mask = np.concatenate([np.pad(b[2], [(0, T - b[2].shape[0]), (0, 0)]) for b in batches], axis=1)
    assert tr.phase.shape == tr.write_mass.shape == (T, E)
    assert tr.read_mass.shape == tr.forward.shape == tr.aligned.shape == (T, E, R)
    assert (tr.phase[:length] == diagnose.INPUT).all() and (tr.phase[length] == diagnose.DELIM).all()
    assert ((tr.phase == diagnose.ANSWER) == mask).all()
    live = tr.phase != diagnose.PAD
    for name_ in ("write_mass", "write_peak", "write_gate", "alloc_gate", "read_mass", "read_peak", "backward",
                  "content", "forward", "fwd_mass", "fwd_peak", "carry"):
        v = getattr(tr, name_)
        v = v[np.isfinite(v)]
        assert v.size and (v >= -TOL).all() and (v <= 1 + TOL).all(), name_
    assert (tr.write_peak[live] <= tr.write_mass[live] + TOL).all()
    assert (tr.read_peak[live] <= tr.read_mass[live] + TOL).all()
    assert (tr.fwd_peak[live] <= tr.fwd_mass[live] + TOL).all()
    assert (tr.write_mass[live] <= tr.write_gate[live] + TOL).all()  # w^w = g^w (g^a a + (1 - g^a) c^w)
    np.testing.assert_allclose((tr.backward + tr.content + tr.forward)[live], 1, atol=TOL)  # pi: a softmax
    assert ((tr.usage[live] >= -TOL) & (tr.usage[live] <= N + TOL)).all()
    for name_ in ("input_write_peak", "link_made", "link_delim", "link_followed", "link_out"):
        v = getattr(tr, name_)
        assert (v[np.isfinite(v)] >= -TOL).all() and (v[np.isfinite(v)] <= 1 + TOL).all(), name_
        assert np.isnan(v[tr.phase != diagnose.ANSWER]).all(), name_  # measures of the answer alone
    for name_ in ("write_mass", "read_mass", "forward"):  # nothing after an episode's end
        assert np.isnan(getattr(tr, name_)[~live]).all()
    # the alignment: 0 or 1 where an answer step reproduces an input, NaN elsewhere
    reproduces = tr.source >= 0
    assert (tr.source[reproduces] < length).all() and (tr.phase[reproduces] == diagnose.ANSWER).all()
    assert set(np.unique(tr.aligned[reproduces])) <= {0.0, 1.0}
    assert np.isnan(tr.aligned[~reproduces]).all()
    aligned_by_offset = np.where(np.isfinite(tr.offset), tr.offset == 0, 0)
    np.testing.assert_array_equal(tr.aligned[reproduces], aligned_by_offset[reproduces])


@pytest.mark.parametrize("io", ["bits", "tokens"])
def test_errors_by_position_add_up_to_evaluate_task(io):
    """Random weights make many wrong bits: by position they sum to train.evaluate_task's
    count on the same episodes, and the episodes without one are its solved share."""
    task, cfg, params, batches, tr = traced("copy", io, length=6, episodes=10, rows=4)
    er = diagnose.errors_by_position(tr)
    m = train.evaluate_task(dnc, cfg, params, task, batches)
    assert er.wrong_bits.shape == er.episodes.shape == (6,) and er.first.shape == (10,)
    assert m["wrong_bits"] > 0
    assert er.wrong_bits.sum() / 10 == pytest.approx(m["wrong_bits"])
    assert (er.first == 0).mean() == pytest.approx(m["solved"])
    assert (er.episodes == 10).all() and (er.with_wrong <= er.episodes).all()
    first = [np.nonzero(tr.wrong[tr.length + 1:, e])[0] for e in range(10)]  # by hand
    assert list(er.first) == [f[0] + 1 if f.size else 0 for f in first]
    # --eval-lengths' tenths of the answer: 6 answer positions fall in tenths 0, 1, 3, 5, 6, 8
    tenths = m["by_tenth"]
    assert list(np.flatnonzero(~np.isnan(tenths))) == [10 * k // 6 for k in range(6)]
    np.testing.assert_allclose(tenths[~np.isnan(tenths)], er.wrong_bits / 10)


def test_repeat_copy_positions_count_the_episodes_that_have_them():
    task, cfg, params, batches, tr = traced("repeat-copy", length=3, episodes=8, rows=8, max_repeats=3)
    er = diagnose.errors_by_position(tr)
    k = (batches[0][2].sum(0) - 1) // 3  # each episode's repeats: k L answers and END
    assert er.episodes[0] == 8 and er.episodes[-1] == (k == k.max()).sum()
    assert er.wrong_bits.sum() / 8 == pytest.approx(train.evaluate_task(dnc, cfg, params, task, batches)["wrong_bits"])
    end = tr.length + 1 + k * 3  # repeat-copy's END reproduces no input
    assert (tr.source[end, np.arange(8)] == -1).all()


def test_blocks_of_rows_join_in_row_order():
    """memory_forward split into 3 blocks of rows gives the same trace as one block."""
    one = traced("copy", length=4, episodes=6)[-1]
    three = traced("copy", length=4, episodes=6, blocks=3)[-1]
    for name, a, b in zip(one._fields, one, three):
        np.testing.assert_array_equal(a, b, err_msg=name)


def test_forward_weighting_is_directional_forward_of_the_states():
    """fwd_mass is f = L_t w^r_{t-1} (dnc-numpy's directional_forward on the states the
    forward passed through), not the backward weighting b beside it in the cache."""
    task, cfg, params, batches, tr = traced("copy", length=4, episodes=6, blocks=2)
    inputs = batches[0][0]
    _, last, cache = dnc.forward(params, inputs, dnc.init_state(cfg, params, 6), cfg)
    states = [s.state for s in cache.steps] + [last]
    for t in range(inputs.shape[0]):
        f, b, _ = dnc.directional_forward(states[t + 1]["L"], states[t]["wr"])
        np.testing.assert_allclose(tr.fwd_mass[t], f.sum(-1), atol=1e-12)
        np.testing.assert_allclose(tr.fwd_peak[t], f.max(-1), atol=1e-12)


def test_alignment_by_hand():
    # 2 inputs written to slots 3 and 1 (episode 0) and 0 and 0 (episode 1: the second overwrote)
    write_slot = np.array([[3, 0], [1, 0], [2, 2], [0, 0], [0, 0]])  # (T = 5, E = 2); t = 2 the delimiter
    source = np.array([[-1, -1], [-1, -1], [-1, -1], [0, 0], [1, 1]])
    read_slot = np.array([[0, 0], [0, 0], [0, 0], [3, 0], [3, 2]])[:, :, None]  # (T, E, 1)
    offset, aligned = diagnose.alignment(write_slot, read_slot, source, 2, N=4)
    np.testing.assert_array_equal(aligned[3:, :, 0], [[1, 0], [0, 0]])  # slot 0 of episode 1 holds input 1 by now
    np.testing.assert_array_equal(offset[3:, :, 0], [[0, 1], [-1, np.nan]])  # slot 2 of episode 1: no input's
    assert np.isnan(aligned[:3]).all()


def test_departure_needs_a_run():
    v = np.array([0.2, 0.99, 0.98, 0.85, 0.95, 0.8, 0.7, 0.6])
    assert diagnose.departure(v, "<", 0.9) == 6  # 1 and 4 alone are no departure
    assert diagnose.departure(v[:7], "<", 0.9) == 6  # a run that reaches the end counts
    assert diagnose.departure(v, ">", 0.995) is None


def test_report_and_verdict_on_random_weights():
    task, cfg, params, batches, tr = traced("copy", length=12, episodes=6)
    text = diagnose.diagnose(task, cfg, params, 12, 6, 0, rows=4)
    for head in ("1. errors by answer position", "2a. the write head", "2c. the links", "3. verdict", "errors:"):
        assert head in text
    table = text[text.index("1. errors"):text.index("2a.")].splitlines()
    assert [line.split()[0] for line in table[2:6]] == ["1-3", "4-6", "7-9", "10-12"]  # 12 positions in 4 rows


# ----------------------------------------------------------------------------------
# The command line, on a tiny model trained for a moment


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("diagnose") / "copy.npz"
    cmd = [sys.executable, os.path.join(ROOT, "dnc-numpy.py"), "--task", "copy", "--length", "1-3", "--bits", "3",
           "--hidden", "16", "--memory", "8", "--width", "6", "--reads", "1", "--batch", "8", "--iters", "40",
           "--report", "40", "--threads", "1", "--save", str(path)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=path.parent)
    assert p.returncode == 0, p.stderr
    return path


def test_cli_report(checkpoint, tmp_path):
    cmd = [sys.executable, SCRIPT, "--load", str(checkpoint), "--length", "10", "--memory", "12", "--episodes", "20"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert "here length 10, memory N=12, 20 episodes" in p.stdout
    assert "3. verdict" in p.stdout and "read head 0" in p.stdout


def test_cli_default_length_is_twice_the_trained(checkpoint, capsys):
    assert diagnose.main(["--load", str(checkpoint), "--episodes", "4"]) == 0
    assert "trained up to length 3; here length 6, memory N=8" in capsys.readouterr().out


def one_error_line(capsys, argv):
    try:
        code = diagnose.main(argv)
    except SystemExit as e:  # argparse's own refusals
        code = e.code
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("diagnose.py: error: "), err
    return err[0]


def test_cli_refuses_bad_input_in_one_line(checkpoint, tmp_path, capsys):
    assert "no such checkpoint" in one_error_line(capsys, ["--load", str(tmp_path / "none.npz")])
    text = tmp_path / "notes.npz"
    text.write_text("not a checkpoint\n")
    assert "not a checkpoint of this project" in one_error_line(capsys, ["--load", str(text)])
    line = one_error_line(capsys, ["--load", str(checkpoint), "--length", "20"])  # N = 8 slots
    assert "length 20 needs 20 memory slots" in line and "--memory 20" in line
    assert "--episodes" in one_error_line(capsys, ["--load", str(checkpoint), "--episodes", "0"])


def write_checkpoint(path, kind="dnc", task=None):
    """A checkpoint of random weights, as a run saves it: of a text (task None) or of a task."""
    cfg = {"hidden": 4, "layers": 1, "controller": "lstm", "memory": 4, "width": 2, "reads": 1,
           "stop_usage_grad": False, "dropout": 0.0, "batch": 2, "seq": 3}
    V_in, V_out = (task.V_in, task.V_out) if task else (3, 3)
    model = dnc if kind == "dnc" else common.load_script("lstm-numpy.py")
    params = model.init_params(cfg, V_in, np.random.default_rng(0), np.float32, V_out)
    info = {"iter": 1, **({"task": {"name": task.name, "settings": task.settings, "io": task.io}} if task else {})}
    common.save_checkpoint(str(path), kind, cfg, params, common.Adagrad(params), None if task else common.Vocab("abc"),
                           info, model.init_state(cfg, params, 2), np.zeros(2, np.int64), np.random.default_rng(0))
    return str(path)


def test_cli_refuses_other_models_in_one_line(tmp_path, capsys):
    text_model = write_checkpoint(tmp_path / "text.npz")
    assert "was trained on a text" in one_error_line(capsys, ["--load", text_model])
    recall = write_checkpoint(tmp_path / "recall.npz", task=train.make_task("recall", {}, "bits"))
    assert "was trained on recall" in one_error_line(capsys, ["--load", recall])
    lstm_model = write_checkpoint(tmp_path / "lstm.npz", kind="lstm")
    assert "is a lstm checkpoint, not dnc" in one_error_line(capsys, ["--load", lstm_model])
    copy = write_checkpoint(tmp_path / "copy.npz", task=train.make_task("copy", {"max_length": 3}, "tokens"))
    assert diagnose.main(["--load", copy, "--episodes", "3", "--memory", "6"]) == 0  # random weights, tokens: it runs
    assert "--io tokens" in capsys.readouterr().out

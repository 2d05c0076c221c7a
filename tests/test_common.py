"""The shared pieces of common.py, each against an independent computation."""
import io
import math
import re

import numpy as np
import pytest

import common
import train
from conftest import make_text


# ---------------------------------------------------------------- text and vocabulary

def test_vocab_is_sorted_and_round_trips():
    v = common.Vocab("hello, world\r\n")
    assert v.chars == sorted(set("hello, world\r\n"))
    assert v.decode(v.encode("low\r\n")) == "low\r\n"
    assert list(v.encode("de")) == [v.chars.index("d"), v.chars.index("e")]
    again = common.Vocab.from_codes(v.codes())
    assert again.chars == v.chars
    with pytest.raises(common.UserError, match="not in the model's vocabulary"):
        v.encode("hellO")


def test_read_text_keeps_crlf_and_decodes(tmp_path):
    p = tmp_path / "t.txt"
    p.write_bytes("caf\u00e9\r\nbar".encode("utf-8"))
    assert common.read_text(str(p)) == "caf\u00e9\r\nbar"
    p.write_bytes("caf\u00e9".encode("latin-1"))
    with pytest.raises(common.UserError, match="--encoding"):
        common.read_text(str(p))
    assert common.read_text(str(p), "latin-1") == "caf\u00e9"


def test_split_data():
    ids = np.arange(100)
    train, val = common.split_data(ids, 0.1, 8)
    np.testing.assert_array_equal(train, np.arange(90))
    np.testing.assert_array_equal(val, np.arange(90, 100))
    train, val = common.split_data(ids, 0.0, 8)
    assert len(train) == 100 and len(val) == 0
    with pytest.raises(common.UserError, match="--seq"):
        common.split_data(ids, 0.1, 90)
    with pytest.raises(common.UserError, match="validation"):
        common.split_data(np.arange(15), 0.1, 8)


# ---------------------------------------------------------------- batching

def test_batches_windows_and_wrap():
    ids = np.arange(40)
    b = common.Batches(ids, B=2, S=6)  # cursors at 0 and 20
    inputs, targets, reset = b.next()
    assert inputs.shape == targets.shape == (6, 2)
    np.testing.assert_array_equal(inputs[:, 0], np.arange(0, 6))
    np.testing.assert_array_equal(inputs[:, 1], np.arange(20, 26))
    np.testing.assert_array_equal(targets, inputs + 1)  # the next character
    assert not reset.any()
    # consecutive windows continue each row where the last one stopped
    inputs, _, reset = b.next()
    np.testing.assert_array_equal(inputs[:, 0], np.arange(6, 12))
    np.testing.assert_array_equal(inputs[:, 1], np.arange(26, 32))
    assert not reset.any()
    b.next()  # row 1 reads 32..38: 32 + 6 + 1 = 39 still fits
    # row 1 is at 38: 38 + 6 + 1 > 40, so it wraps to the start and is marked for reset
    inputs, targets, reset = b.next()
    np.testing.assert_array_equal(inputs[:, 0], np.arange(18, 24))
    np.testing.assert_array_equal(inputs[:, 1], np.arange(0, 6))
    np.testing.assert_array_equal(targets[:, 1], np.arange(1, 7))
    np.testing.assert_array_equal(reset, [False, True])


def test_batches_use_the_last_character_before_wrapping():
    ids = np.arange(13)
    b = common.Batches(ids, B=1, S=6)
    b.next()
    inputs, targets, reset = b.next()  # 6 + 6 + 1 = 13 fits exactly
    assert targets[-1, 0] == 12 and not reset.any()
    _, _, reset = b.next()
    assert reset.all()


def test_reset_rows_zeroes_only_marked_rows():
    state = {"h0": np.ones((3, 2)), "c0": np.full((3, 2), 2.0)}
    common.reset_rows(state, np.array([False, True, False]))
    np.testing.assert_array_equal(state["h0"], [[1, 1], [0, 0], [1, 1]])
    np.testing.assert_array_equal(state["c0"], [[2, 2], [0, 0], [2, 2]])


# ---------------------------------------------------------------- softmax and loss

def test_cross_entropy_against_plain_python():
    rng = np.random.default_rng(0)
    S, B, V = 3, 2, 5
    logits = rng.standard_normal((S, B, V)) * 3
    targets = rng.integers(0, V, (S, B))
    loss, dlogits = common.cross_entropy(logits, targets)
    nll, grad = 0.0, np.zeros((S, B, V))
    for s in range(S):
        for b in range(B):
            z = [float(x) for x in logits[s, b]]
            denom = sum(math.exp(x) for x in z)
            nll -= math.log(math.exp(z[targets[s, b]]) / denom)
            for v in range(V):
                grad[s, b, v] = (math.exp(z[v]) / denom - (v == targets[s, b])) / (S * B)
    assert loss == pytest.approx(nll / (S * B), rel=1e-12)
    np.testing.assert_allclose(dlogits, grad, rtol=1e-10, atol=1e-15)


def test_cross_entropy_is_stable_for_huge_logits():
    logits = np.array([[[1000.0, 0.0, -1000.0]]])
    with np.errstate(over="raise", invalid="raise", divide="raise"):  # underflow to 0 is fine
        loss, d = common.cross_entropy(logits, np.array([[0]]))
        loss2, _ = common.cross_entropy(logits, np.array([[1]]))
    assert loss == pytest.approx(0.0) and loss2 == pytest.approx(1000.0)
    assert np.isfinite(d).all()


def test_softmax_and_log_softmax():
    x = np.array([[1e4, 1e4 + 1, 1e4 - 2], [0.0, 0.0, 0.0]])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        p = common.softmax(x)
        lp = common.log_softmax(x)
    e = np.exp([0.0, 1.0, -2.0])
    np.testing.assert_allclose(p[0], e / e.sum())
    np.testing.assert_allclose(p[1], [1 / 3] * 3)
    np.testing.assert_allclose(np.exp(lp), p)


def test_gather_backward_sums_the_rows_of_each_id():
    """Against a plain loop over the rows: repeated ids, ids that never occur, a window's
    (S, B) shape, float32 and float64."""
    rng = np.random.default_rng(4)
    ids = rng.choice([0, 2, 3, 6], size=(5, 3))  # V = 8: ids 1, 4, 5, 7 never occur
    ids[0, 0] = 7
    for dtype in (np.float64, np.float32):
        dout = rng.standard_normal((5, 3, 4)).astype(dtype)
        want = np.zeros((8, 4))
        for n, v in np.ndenumerate(ids):
            want[v] += dout[n]
        got = common.gather_backward(ids, dout, 8)
        assert got.dtype == dtype and got.shape == (8, 4)
        np.testing.assert_allclose(got, want, rtol=1e-6 if dtype == np.float32 else 1e-14, atol=1e-6)
        assert not got[[1, 4, 5]].any() and got[7].any()


def test_bpc_is_nats_over_ln2():
    assert common.bpc(math.log(2)) == pytest.approx(1.0)
    assert common.bpc(math.log(256)) == pytest.approx(8.0)


# ---------------------------------------------------------------- optimiser

def test_adagrad_and_clipping_match_their_formulas():
    rng = np.random.default_rng(0)
    params = {"a": rng.standard_normal((2, 3)), "b": rng.standard_normal(4)}
    ref = {k: v.copy() for k, v in params.items()}
    mem = {k: np.zeros_like(v) for k, v in params.items()}
    opt = common.Adagrad(params, lr=0.05)
    for _ in range(3):
        grads = {k: rng.standard_normal(v.shape) for k, v in params.items()}
        expected = {k: g.copy() for k, g in grads.items()}
        norm = common.clip_global_norm(grads, 1.0)
        true_norm = math.sqrt(sum((g ** 2).sum() for g in expected.values()))
        assert norm == pytest.approx(true_norm)
        for k in grads:
            expected[k] *= min(1.0, 1.0 / true_norm)
            np.testing.assert_allclose(grads[k], expected[k])
        opt.step(params, grads)
        for k in ref:
            mem[k] += expected[k] ** 2
            ref[k] -= 0.05 * expected[k] / np.sqrt(mem[k] + 1e-8)
            np.testing.assert_allclose(params[k], ref[k], rtol=1e-12)


def test_clip_zero_means_off():
    grads = {"a": np.full(4, 10.0)}
    assert common.clip_global_norm(grads, 0) == pytest.approx(20.0)
    np.testing.assert_array_equal(grads["a"], 10.0)


# ---------------------------------------------------------------- evaluation, sampling

def test_evaluate_equals_one_long_stream(lstm):
    """With one row, evaluate is the mean loss of the whole text read in one go."""
    text = make_text(40)
    vocab = common.Vocab(text)
    ids = vocab.encode(text)
    cfg = {"hidden": 5, "layers": 1}
    params = lstm.init_params(cfg, len(vocab), np.random.default_rng(0), np.float64)
    nats = train.evaluate_text(lstm, cfg, params, ids, S=7, rows=1)
    logits, _, _ = lstm.forward(params, ids[:-1, None], lstm.init_state(cfg, params, 1))
    loss, _ = common.cross_entropy(logits, ids[1:, None])
    assert nats == pytest.approx(loss, rel=1e-10)


TINY_CFG = {"hidden": 8, "layers": 1}


def _tiny_model(model, V, seed=0):
    return model.init_params(TINY_CFG, V, np.random.default_rng(seed), np.float64)


def test_sample_is_reproducible_and_uses_the_prime(model):
    vocab = common.Vocab("abcdefgh ")
    params = _tiny_model(model, len(vocab))
    for v in params.values():
        v *= 4  # a model with opinions, so that the prime matters
    a = common.sample(model, TINY_CFG, params, vocab, 50, 1.0, "ab", np.random.default_rng(1))
    b = common.sample(model, TINY_CFG, params, vocab, 50, 1.0, "ab", np.random.default_rng(1))
    c = common.sample(model, TINY_CFG, params, vocab, 50, 1.0, "ab", np.random.default_rng(2))
    assert a == b and len(a) == 50 and set(a) <= set(vocab.chars)
    assert a != c
    # a prime changes what follows: the state after reading it differs
    d = common.sample(model, TINY_CFG, params, vocab, 50, 1.0, "hhhh", np.random.default_rng(1))
    assert d != a


def test_low_temperature_is_greedy(model):
    vocab = common.Vocab("abcdefgh ")
    params = _tiny_model(model, len(vocab))
    cold = [common.sample(model, TINY_CFG, params, vocab, 30, 1e-8, "a", np.random.default_rng(s)) for s in range(3)]
    assert cold[0] == cold[1] == cold[2]
    # the greedy choices, computed directly with model.step
    state = model.init_state(TINY_CFG, params, 1)
    x, greedy = vocab.encode("a"), ""
    for _ in range(30):
        logits, state = model.step(params, x, state)
        x = np.array([int(np.argmax(logits[0]))])
        greedy += vocab.chars[x[0]]
    assert cold[0] == greedy


# ---------------------------------------------------------------- checkpoints, progress

def test_checkpoint_round_trip(tmp_path, model):
    vocab = common.Vocab("xyz\n")
    params = _tiny_model(model, len(vocab))
    cfg = dict(TINY_CFG, batch=2, seq=4)  # run() stores the batching with the sizes
    opt = common.Adagrad(params)
    opt.mem = {k: np.abs(v) for k, v in params.items()}
    state = model.init_state(cfg, params, 2)
    for v in state.values():
        v += 0.25
    rng = np.random.default_rng(5)
    rng.random(3)
    path = tmp_path / "ck.npz"
    best = {k: v + 1 for k, v in params.items()}
    common.save_checkpoint(str(path), model.KIND, cfg, params, opt, vocab, {"iter": 42}, state,
                           np.array([3, 9]), rng, best)
    ck = common.load_checkpoint(str(path), model.KIND)
    assert ck["info"]["iter"] == 42 and ck["info"]["kind"] == model.KIND
    assert ck["info"]["cfg"] == cfg
    assert ck["vocab"].chars == vocab.chars
    np.testing.assert_array_equal(ck["cursors"], [3, 9])
    assert ck["optim"] == "adagrad"
    for got, ref in ((ck["param"], params), (ck["opt"]["mem"], opt.mem), (ck["state"], state), (ck["best"], best)):
        assert got.keys() == ref.keys()
        for k in ref:
            np.testing.assert_array_equal(got[k], ref[k])
    again = np.random.default_rng()
    again.bit_generator.state = ck["info"]["rng"]
    assert again.random() == rng.random()
    assert not list(tmp_path.glob("*.tmp*"))  # the temp file was renamed away
    other = "lstm" if model.KIND == "rnn" else "rnn"
    with pytest.raises(common.UserError, match=f"is a {model.KIND} checkpoint, not {other}"):
        common.load_checkpoint(str(path), other)


def test_progress_line_format():
    p = train.Progress(is_task=False)
    inputs = np.zeros((10, 10), int)
    for loss in (math.log(2), 3 * math.log(2)):
        p.add(loss, None, inputs)
    line = p.line(10, val={"nats": math.log(2)})
    assert re.fullmatch(r"\d+\.\d{3} s, iter 10, 2\.0000 BPC, \d+\.\d{2} char/s, val 1\.0000 BPC", line), line
    assert p.window == [0.0, 0.0, 0.0]  # the window restarts after each line


def test_task_progress_line_counts_nats_per_episode():
    """Two batches of 4 episodes with 3 answer steps each at 1 and 2 nats per step:
    (3 * 1 + 3 * 2) * 4 / 8 episodes = 4.5 nats per episode."""
    p = train.Progress(is_task=True)
    inputs, mask = np.zeros((7, 4), int), np.zeros((7, 4), bool)
    mask[4:] = True
    p.add(1.0, mask, inputs)
    p.add(2.0, mask, inputs)
    assert p.recent_bits_per_step() == pytest.approx(1.5 / math.log(2))
    line = p.line(2, val={"nats_seq": 0.25, "wrong_bits": 0.5, "solved": 0.75})
    assert re.fullmatch(r"\d+\.\d{3} s, iter 2, 4\.5000 nats/seq, \d+\.\d{2} step/s, val 0\.2500 nats/seq, "
                        r"0\.500 wrong bits/seq, 75\.0% solved", line), line


def test_gradcheck_table_format(rnn):
    out = io.StringIO()
    common.check_model_gradients(rnn, {"hidden": 4, "layers": 1}, checks=3, out=out)
    lines = out.getvalue().splitlines()
    assert re.match(r"Wx0:\tn = \[.+, .+\]\tmin .+, max .+", lines[0])
    assert re.match(r"\t\ta = \[.+, .+\]\tmean .+ # 3/3", lines[1])

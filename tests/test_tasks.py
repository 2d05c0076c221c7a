"""data/tasks.py: each generator against an independent reading of its episodes, read in
the token form (one integer a step, io="tokens"); tests/test_bits.py checks that the bit
form (the default) holds the same episodes as channels."""
import json
import os

import numpy as np
import pytest

import common

tasks = common.load_script(os.path.join("data", "tasks.py"))


def rows(*arrays):
    """(T, B) arrays -> per episode b, the columns (T,) of each."""
    return zip(*(a.T for a in arrays))


def from_bits(bits):
    """(L, B) 0/1, least significant first -> (B,) int."""
    return (bits.astype(np.int64) << np.arange(len(bits))[:, None]).sum(axis=0)


def token_task(name, **settings):
    """The task in the token form, whose episodes are the integers the generators build."""
    return tasks.make_task(name, io="tokens", **settings)


def check_shapes(task, inputs, targets, mask):
    assert inputs.dtype == targets.dtype == np.int64 and mask.dtype == bool
    assert inputs.shape == targets.shape == mask.shape
    assert inputs.min() >= 0 and inputs.max() < task.V and targets.max() < task.V
    assert (targets[~mask] == 0).all()
    assert mask.any(axis=0).all() and mask[-1].any()  # every row answers; T is the longest row


# ----------------------------------------------------------------------------------
# add


@pytest.mark.parametrize("length", [None, 2, 5, 13, 62])
def test_add_targets_are_the_sum(length):
    settings = {} if length is not None else {"min_length": 3, "max_length": 12}
    task = token_task("add", **settings)
    inputs, targets, mask = task.episodes(np.random.default_rng(0), 500, length)
    check_shapes(task, inputs, targets, mask)
    L = mask.sum(axis=0)
    if length is None:
        assert L.min() == 3 and L.max() == 12  # every length of the range turns up in 500
    else:
        assert (L == length).all() and mask.all()
    assert (mask == (np.arange(len(mask))[:, None] < L)).all()  # answer steps: the first L
    a, b, c = from_bits(inputs >> 1), from_bits(inputs & 1), from_bits(targets)
    assert (c == a + b).all()
    assert (a < 2 ** (L - 1)).all() and (b < 2 ** (L - 1)).all()
    assert len(np.unique(a)) >= min(50, 2 ** (L.min() - 1))  # really random, not a constant


def test_add_tokens():
    task = token_task("add")
    assert (task.V, task.blank, task.out_bits, task.slots_needed(8)) == (4, 0, 1, 0)
    assert task.token_bits([0, 1, 2, 3]).tolist() == [[0], [1], [-1], [-1]]
    assert task.input_channels([0, 1, 2, 3]).tolist() == [[0, 0], [0, 1], [1, 0], [1, 1]]
    assert task.input_labels == ["a", "b"]


# ----------------------------------------------------------------------------------
# copy


def test_copy_episodes():
    task = token_task("copy", bits=5, min_length=1, max_length=9)
    inputs, targets, mask = task.episodes(np.random.default_rng(1), 200)
    check_shapes(task, inputs, targets, mask)
    L = mask.sum(axis=0)
    assert L.min() == 1 and L.max() == 9  # lengths vary within one batch
    assert len(inputs) == 2 * L.max() + 1
    delim = task.marker["delim"]
    for x, y, m, n in zip(inputs.T, targets.T, mask.T, L):
        assert (x[:n] < 2 ** 5).all() and x[n] == delim and (x[n + 1:] == task.blank).all()
        assert (np.flatnonzero(m) == np.arange(n + 1, 2 * n + 1)).all()
        assert (y[m] == x[:n]).all()  # the answer is the sequence, in order
        assert not m[2 * n + 1:].any()  # padding


def test_copy_fixed_length_beyond_the_range():
    task = token_task("copy")
    inputs, targets, mask = task.episodes(np.random.default_rng(2), 4, length=30)
    assert inputs.shape == (61, 4) and (mask.sum(0) == 30).all()
    assert (targets[31:] == inputs[:30]).all() and (inputs[30] == task.marker["delim"]).all()
    assert task.slots_needed(30) == 30


# ----------------------------------------------------------------------------------
# repeat-copy


def test_repeat_copy_episodes():
    task = token_task("repeat-copy", bits=3, min_length=1, max_length=4, max_repeats=3)
    inputs, targets, mask = task.episodes(np.random.default_rng(3), 200)
    check_shapes(task, inputs, targets, mask)
    repeat = [task.marker[f"repeat{k}"] for k in (1, 2, 3)]
    end = task.marker["end"]
    seen = set()
    for x, y, m in rows(inputs, targets, mask):
        n = np.flatnonzero(x >= 2 ** 3)[0]  # the first marker ends the sequence
        k = repeat.index(x[n]) + 1  # read back the repeat count
        seen.add((n, k))
        assert (x[n + 1:] == task.blank).all()
        assert m.sum() == k * n + 1 and (np.flatnonzero(m) == np.arange(n + 1, n + k * n + 2)).all()
        assert y[m].tolist() == x[:n].tolist() * k + [end]
    assert seen == {(n, k) for n in range(1, 5) for k in range(1, 4)}
    _, _, mask = task.episodes(np.random.default_rng(3), 50, length=6)
    assert set(((mask.sum(0) - 1) // 6).tolist()) <= {1, 2, 3} and ((mask.sum(0) - 1) % 6 == 0).all()


def test_repeat_copy_token_bits():
    task = token_task("repeat-copy")  # 4 bits, repeats 1-2
    assert task.out_bits == 5 and task.V == 16 + 2 + 1 + 1
    bits = task.token_bits(np.arange(16))
    assert (bits[:, 4] == 0).all() and (from_bits(bits[:, :4].T) == np.arange(16)).all()
    assert task.token_bits(task.marker["end"]).tolist() == [0, 0, 0, 0, 1]
    for tok in (task.marker["repeat1"], task.marker["repeat2"], task.blank):
        assert task.token_bits(tok).tolist() == [-1] * 5
    assert task.model_defaults == {"hidden": 64, "memory": 16, "width": 16, "reads": 4, "batch": 16}


# ----------------------------------------------------------------------------------
# recall


@pytest.mark.parametrize("bits,item_length", [(6, 3), (3, 1)])
def test_recall_answers_the_item_after_the_query(bits, item_length):
    m = item_length
    task = token_task("recall", bits=bits, min_length=2, max_length=8, item_length=m)
    inputs, targets, mask = task.episodes(np.random.default_rng(4), 300)
    check_shapes(task, inputs, targets, mask)
    item, query = task.marker["item"], task.marker["query"]
    counts = set()
    for x, y, a in rows(inputs, targets, mask):
        q = np.flatnonzero(x == query)
        assert len(q) == 2 and q[1] == q[0] + m + 1
        n = q[0] // (m + 1)  # items before the query
        counts.add(n)
        assert (x[:q[0]:m + 1] == item).all() and (x[:q[0]] != query).all()
        items = x[:q[0]].reshape(n, m + 1)[:, 1:]  # (n, m)
        asked = x[q[0] + 1:q[1]]
        match = np.flatnonzero((items == asked).all(axis=1))
        assert len(match) == 1 and match[0] < n - 1  # unique, never the last
        assert (np.flatnonzero(a) == np.arange(q[1] + 1, q[1] + 1 + m)).all()
        assert (y[a] == items[match[0] + 1]).all()
        assert (x[q[1] + 1:] == task.blank).all()
    assert counts == set(range(2, 9))
    assert task.slots_needed(5) == 5 * m


def test_token_bits_round_trip_and_channels():
    for name in ("copy", "recall"):
        task = token_task(name, bits=4)
        tok = np.arange(16).reshape(4, 4)
        bits = task.token_bits(tok)
        assert bits.shape == (4, 4, 4) and bits.dtype == np.int8
        assert (from_bits(bits.reshape(16, 4).T) == np.arange(16)).all()
        for t in list(task.marker.values()) + [task.blank]:
            assert (task.token_bits(t) == -1).all()
        ch = task.input_channels(np.arange(task.V))
        assert ch.dtype == np.float32 and ch.shape == (task.V, len(task.input_labels))
        assert (ch[:16, :4] == bits.reshape(16, 4)).all() and (ch[:16, 4:] == 0).all()
        assert (ch[16:-1, 4:] == np.eye(len(task.marker))).all() and (ch[-1] == 0).all()
        assert task.input_labels[4:] == list(task.marker)


# ----------------------------------------------------------------------------------
# seeds, settings, errors


@pytest.mark.parametrize("io", tasks.IO_FORMS)
@pytest.mark.parametrize("name", list(tasks.TASKS))
def test_same_seed_same_episodes(name, io):
    task = tasks.make_task(name, io=io)
    a = task.episodes(np.random.default_rng(7), 32)
    b = task.episodes(np.random.default_rng(7), 32)
    c = task.episodes(np.random.default_rng(8), 32)
    assert all((x == y).all() for x, y in zip(a, b))
    assert a[0].shape != c[0].shape or (a[0] != c[0]).any()


@pytest.mark.parametrize("name", list(tasks.TASKS))
def test_settings_rebuild_an_equal_task(name):
    task = tasks.make_task(name)
    assert task.name == name and isinstance(task, tasks.TASKS[name])
    settings = json.loads(json.dumps(task.settings))  # JSON-able, plain ints
    assert all(type(v) is int for v in settings.values())
    assert tasks.make_task(name, **settings) == task
    assert task.io == "bits" and tasks.make_task(name, io="tokens", **settings) != task  # the form counts
    assert tasks.make_task(name, min_length=np.int64(2)).settings["min_length"] == 2
    assert task.describe().startswith(name + ":") and "\n" not in task.describe()
    assert isinstance(task.model_defaults, dict)


def test_defaults_and_descriptions():
    assert tasks.make_task("copy").settings == {"bits": 6, "min_length": 1, "max_length": 10}
    assert tasks.make_task("copy").describe() == "copy: 6-bit vectors, length 1-10"
    assert tasks.make_task("recall").settings == {"bits": 6, "min_length": 2, "max_length": 6,
                                                  "item_length": 3}
    assert "items" in tasks.make_task("recall").describe()
    assert tasks.make_task("add").settings == {"min_length": 8, "max_length": 8}
    assert tasks.make_task("add").model_defaults == {"hidden": 16}
    assert tasks.make_task("copy").model_defaults == {} == tasks.make_task("recall").model_defaults
    assert tasks.make_task("copy", bits=None).settings["bits"] == 6  # None: not given


def message(name, **settings):
    with pytest.raises(tasks.TaskError) as e:
        tasks.make_task(name, **settings)
    assert "\n" not in str(e.value)
    return str(e.value)


def test_errors():
    assert message("x") == "unknown task 'x'; known: copy, repeat-copy, recall, add, series-copy"
    assert message("copy", bits=0) == "--bits must be 1 to 62, got 0"
    assert message("copy", io="tokens", bits=0) == ("--bits must be 1 to 10 with --io tokens (a softmax "
                                                    "over 2^bits tokens; --io bits takes up to 62), got 0")
    assert "got 11" in message("recall", io="tokens", bits=11)
    assert "got 63" in message("recall", bits=63)
    assert message("copy", io="bytes") == "--io must be bits or tokens, got 'bytes'"
    assert message("copy", min_length=5, max_length=2) == "--length 5-2: the minimum is above the maximum"
    assert "at least 1" in message("copy", min_length=0)
    assert message("repeat-copy", min_repeats=3) == "--repeats 3-2: the minimum is above the maximum"
    assert "--repeats" in message("repeat-copy", min_repeats=0, max_repeats=0)
    assert "--bits" in message("add", bits=4) and "--length" in message("add", bits=4)
    assert "foo" in message("copy", foo=1, bar=2) and "bar" in message("copy", foo=1, bar=2)
    assert "--length 1" in message("add", min_length=1, max_length=1)
    assert "at most 62" in message("add", max_length=63)
    assert message("recall", min_length=1).startswith("--length 1-6: the minimum must be at least 2")
    assert "--item-length" in message("recall", item_length=0)
    assert "4 different items" in message("recall", bits=2, item_length=1)
    assert "whole number" in message("copy", bits=2.5) and "whole number" in message("copy", bits="6")
    with pytest.raises(tasks.TaskError):
        tasks.make_task("add").episodes(np.random.default_rng(0), 2, length=63)
    with pytest.raises(tasks.TaskError):
        tasks.make_task("recall").episodes(np.random.default_rng(0), 2, length=1)
    assert issubclass(tasks.TaskError, ValueError)


def test_parse_range():
    assert tasks.parse_range("3") == (3, 3)
    assert tasks.parse_range("1-10") == (1, 10)
    assert tasks.parse_range(" 2 - 4 ") == (2, 4)
    for bad in ("abc", "5-2", "0-3", "0", "1-", "-3", "", "1-2-3", "1.5"):
        with pytest.raises(tasks.TaskError):
            tasks.parse_range(bad)
    with pytest.raises(tasks.TaskError, match="^--repeats 5-2: the minimum is above the maximum$"):
        tasks.parse_range("5-2", option="--repeats")


def test_slots_needed():
    assert tasks.make_task("copy").slots_needed(7) == 7
    assert tasks.make_task("repeat-copy").slots_needed(3) == 3
    assert tasks.make_task("recall", item_length=2).slots_needed(6) == 12
    assert tasks.make_task("add").slots_needed(8) == 0

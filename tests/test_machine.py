"""machine.py: the platform, out of the training loop: the allocator setting, BLAS
threads (through threadpoolctl, an optional extra) and which sizes a second thread pays for."""
import os
import subprocess
import sys

import numpy as np
import pytest

import common
import machine
from conftest import ROOT

MODELS = {kind: common.load_script(f"{kind}-numpy.py") for kind in ("rnn", "lstm", "dnc")}
CFGS = {"rnn": {"hidden": 8, "layers": 1, "dropout": 0.0}, "lstm": {"hidden": 8, "layers": 1, "dropout": 0.0},
        "dnc": {"hidden": 8, "layers": 1, "memory": 4, "width": 4, "reads": 2, "stop_usage_grad": False,
                "dropout": 0.0}}


KEEP_PROBE = """
import os, sys
import numpy as np
import machine
kept = machine.keep_freed_memory() if sys.argv[1] == "keep" else False
page = os.sysconf("SC_PAGE_SIZE")
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * page
a = np.ones(64 << 20, np.uint8)  # 64 MiB, every page touched
before = rss()
del a
print(kept, (before - rss()) >> 20)  # MiB handed back to the kernel by the free
"""


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs Linux's /proc")
def test_keep_freed_memory_keeps_freed_blocks_for_the_next_array():
    """glibc returns a freed 64 MiB block to the kernel at once; after keep_freed_memory()
    (which every script calls) the process keeps it for the next array."""
    def probe(mode):
        p = subprocess.run([sys.executable, "-c", KEEP_PROBE, mode], cwd=ROOT, capture_output=True, text=True,
                           check=True)
        kept, returned_mib = p.stdout.split()
        return kept == "True", int(returned_mib)

    kept, returned = probe("keep")
    if not kept:
        pytest.skip("the C library is not glibc: keep_freed_memory does nothing here")
    assert returned < 8, returned
    assert probe("default")[1] >= 56  # without it the free gives the block back


def test_threads_that_pay_follow_the_measured_sizes():
    """A second thread where the step's recurrent product is big (LSTM 128/32: 1.27-1.41x
    measured) and not where it is small (RNN 32/16: 0.89x) or the DNC's links dominate
    (N 256: 0.95x); never more threads than cores, and at most two."""
    def pay(kind, cores=2, B=32, **sizes):
        cfg = {**CFGS[kind], **sizes}
        params = MODELS[kind].init_params(cfg, 74, np.random.default_rng(0), np.float32)
        return machine.threads_that_pay(params, cfg, B, cores)

    assert pay("lstm", hidden=128) == 2
    assert pay("lstm", hidden=128, cores=1) == 1
    assert pay("lstm", hidden=128, cores=8) == 2
    assert pay("rnn", hidden=32, B=16) == 1
    assert pay("rnn", hidden=256) == 2
    assert pay("dnc", hidden=128, memory=16, width=16, reads=4) == 2
    assert pay("dnc", hidden=128, memory=256, width=16, reads=4) == 1


@pytest.mark.skipif(machine.threadpoolctl is None, reason="threadpoolctl (an optional extra) is not installed")
def test_blas_threads_are_set_and_auto_backs_off_when_the_cores_get_busy(monkeypatch):
    before = machine.blas_threads()
    if before is None:
        pytest.skip("threadpoolctl finds no BLAS to set")
    try:
        for n in (1, 2):
            assert machine.set_blas_threads(n) and machine.blas_threads() == n
        cfg = dict(CFGS["lstm"], hidden=128)
        params = MODELS["lstm"].init_params(cfg, 74, np.random.default_rng(0), np.float32)
        for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
            monkeypatch.delenv(var, raising=False)
        monkeypatch.setattr(machine, "cores", lambda: 2)
        monkeypatch.setattr(os, "getloadavg", lambda: (0.1, 0.1, 0.1))  # an idle machine
        t = machine.BlasThreads("auto", params, cfg, 32)
        assert (t.n, machine.blas_threads(), t.describe) == (2, 2, "BLAS threads 2 (auto)")
        assert t.watch(100_000.0, "char/s") is None and t.watch(60_000.0, "char/s") is None  # noise
        line = t.watch(40_000.0, "char/s")  # under half the best: another job took a core
        assert line.startswith("the cores got busy (40000 char/s against 100000")
        assert (t.n, machine.blas_threads()) == (1, 1)
        assert t.watch(1.0, "char/s") is None and t.n == 1  # for good
        monkeypatch.setattr(os, "getloadavg", lambda: (1.0, 0.5, 0.2))  # another job on one of the two cores
        t = machine.BlasThreads("auto", params, cfg, 32)
        assert (t.n, t.describe) == (1, "BLAS threads 1 (auto: no idle core)")
        t = machine.BlasThreads(2, params, cfg, 32)  # a number is used as given, and kept
        assert (t.n, machine.blas_threads(), t.watch(1e5, "char/s"), t.watch(1.0, "char/s"), t.n) == \
            (2, 2, None, None, 2)
        monkeypatch.setenv("OPENBLAS_NUM_THREADS", "1")  # the user's environment stands under auto
        t = machine.BlasThreads("auto", params, cfg, 32)
        assert t.n is None and "OPENBLAS_NUM_THREADS=1" in t.describe and machine.blas_threads() == 2
    finally:
        machine.set_blas_threads(before)


def test_without_threadpoolctl_the_library_keeps_its_threads(monkeypatch):
    """threadpoolctl is an optional extra: without it --threads changes nothing, and the
    start line says so."""
    monkeypatch.setattr(machine, "threadpoolctl", None)
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
        monkeypatch.delenv(var, raising=False)
    cfg = dict(CFGS["lstm"], hidden=128)
    params = MODELS["lstm"].init_params(cfg, 74, np.random.default_rng(0), np.float32)
    t = machine.BlasThreads(1, params, cfg, 32)
    assert t.n is None and "without threadpoolctl" in t.describe



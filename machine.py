"""The platform, kept out of the training loop: how many threads NumPy's matrix products
use, the C allocator's setting that keeps freed memory for the next array, and how much
memory is free. Nothing here changes what a model computes, only how fast or whether
it fits. Each piece is kept because it pays at the default sizes, measured side by side
(benchmarks/README.md): the allocator 1.11x for the DNC (N 16; nothing for the RNN and
LSTM, whose step arrays are small), a second BLAS thread 1.3-1.4x for the LSTM 128/32.

BLAS threads are set through threadpoolctl, an optional extra (requirements.txt lists
it); without it the library keeps its own choice, as OPENBLAS_NUM_THREADS or
OMP_NUM_THREADS set it.
"""
import ctypes
import os
import platform

try:
    import threadpoolctl
except ImportError:
    threadpoolctl = None


def keep_freed_memory():
    """Ask glibc's malloc to keep the memory NumPy frees for the next array, rather than
    hand every block over 128 KiB back to the kernel, which must then page-fault and zero
    it again for the next array of that size (a step makes many: a window's (S, B, G)
    gates, the DNC's (B, N, N) links). Peak memory stays the same. Linux with glibc
    only; elsewhere nothing changes. -> whether the setting took"""
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # from glibc's <malloc.h>
    return bool(mallopt(M_MMAP_THRESHOLD, 1 << 30)) and bool(mallopt(M_TRIM_THRESHOLD, 1 << 30))


def set_blas_threads(n):
    """Use n threads in NumPy's matrix products from now on. -> whether it could (needs
    threadpoolctl)."""
    if threadpoolctl is None:
        return False
    threadpoolctl.ThreadpoolController().limit(limits=n, user_api="blas")
    return True


def blas_threads():
    """How many threads NumPy's matrix products use now; None if threadpoolctl is absent."""
    if threadpoolctl is None:
        return None
    counts = [p["num_threads"] for p in threadpoolctl.threadpool_info() if p["user_api"] == "blas"]
    return max(counts) if counts else None


def cores():
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def threads_that_pay(params, cfg, B, cores):
    """How many BLAS threads train these sizes fastest on an idle machine: a second thread
    (of at most two; more were not measured) when one step's recurrent product
    h_{t-1} Wh has at least 2^19 multiply-adds and outweighs the DNC's (B, N, N) link
    work ((B, N, K) with --sparse-links K), which NumPy runs on one thread anyway. Measured on 2 idle cores: LSTM 128/32
    1.27-1.41x, RNN 256/32 1.40x, DNC N 16 1.09x; RNN 32/16 0.89x, where splitting a
    small product costs more than it saves; the DNC at N 64 1.03x and N 256 0.95x."""
    product = B * params["Wh0"].size if "Wh0" in params else 0  # a feedforward controller has none
    N = cfg.get("memory", 0)
    links = 16 * B * N * min(cfg.get("sparse_links") or N, N)  # (B, N, N), or --sparse-links' (B, N, K)
    return min(cores, 2) if product >= 2 ** 19 and links < product else 1


class BlasThreads:
    """--threads: how many threads NumPy's matrix products use while training.

    A number is used as given. auto (the default) keeps OPENBLAS_NUM_THREADS or
    OMP_NUM_THREADS if either is set; otherwise it takes threads_that_pay(), but one
    thread when the machine's load (the last minute's average) leaves no core idle, and it
    drops to one thread for good if the training rate of a report falls below half the
    best so far. OpenBLAS's threads wait for each other at every product, so when other
    work takes a core each product waits for a thread the scheduler runs late (two runs
    side by side on 2 cores: 28k char/s each with two threads, 115k with one)."""

    def __init__(self, asked, params, cfg, B):
        self.auto, self.best = False, 0.0
        env = [v for v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS") if v in os.environ]
        if asked != "auto":
            self.n, why = int(asked), "--threads"
        elif env:
            self.n, why = None, f"{env[0]}={os.environ[env[0]]}"
        else:
            n = cores()
            self.n, self.auto, why = threads_that_pay(params, cfg, B, n), True, "auto"
            if self.n > 1 and hasattr(os, "getloadavg") and os.getloadavg()[0] > n - self.n + 0.5:
                self.n, why = 1, "auto: no idle core"
        if self.n is not None and not set_blas_threads(self.n):
            self.n, self.auto, why = None, False, "without threadpoolctl, as the library chose"
        self.describe = f"BLAS threads {self.n if self.n else blas_threads() or 'as the library chose'} ({why})"

    def watch(self, rate, unit):
        """After each report, with the training rate since the previous one -> a line to
        print, or None."""
        if self.auto and self.n > 1 and self.best and rate < self.best / 2:
            self.n, self.auto = 1, False
            set_blas_threads(1)
            self.describe += ", then 1"
            return (f"the cores got busy ({rate:.0f} {unit} against {self.best:.0f} before): one BLAS thread "
                    f"from here on")
        self.best = max(self.best, rate)
        return None


def available_memory():
    """Bytes of memory this process may still use (Linux: MemAvailable), None if unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def describe():
    """The machine in one line, for benchmark reports: platform, processor, cores, load."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    nproc = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = ""
    if hasattr(os, "getloadavg"):  # other jobs on a shared machine show here
        load = ", load average {:.1f} / {:.1f} / {:.1f} at the end (1 / 5 / 15 min)".format(*os.getloadavg())
    return f"{platform.platform()}, {cpu}, nproc {nproc}{load}"

"""benchmarks/compare.py --quick keeps working without the PyTorch peers (CI has none); scaling.py
and chaos.py run end to end at tiny sizes."""
import math
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMPARE = os.path.join(ROOT, "benchmarks", "compare.py")


def test_compare_quick_without_peers(tmp_path):
    out = tmp_path / "results.md"
    # --no-peers: the peers stay off even where torch happens to be importable
    cmd = [sys.executable, COMPARE, "--quick", "--seconds", "0.3", "--rounds", "1",
           "--profile", "--no-peers", "--out", str(out)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    table = p.stdout
    assert out.read_text() == table
    for name in ("RNN 32/16/25", "LSTM 32/16/25", "LSTM 128/32/32", "DNC 128"):
        row = next(line for line in table.splitlines() if line.startswith(f"| {name}"))
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert "not available" in cells[4]  # the peer's char/s
        assert cells[1] == "1", row  # the BLAS threads our side ran on (--threads defaults to 1)
        assert cells[2].replace(",", "").rstrip("k").replace(".", "").isdigit(), row  # ours: a rate
    assert "## The numpy GEMM ceiling" in table
    assert "## Where our iterations go" in table
    # the floor's arithmetic: products at the ceiling + the rest at batch 1 (= ours at 1 less
    # its products), and ours against it
    floor = table[table.index("## The floor"):]
    for name in ("RNN 32/16/25", "LSTM 128/32/32", "DNC 128, N16"):
        row = next(line for line in floor.splitlines() if line.startswith(f"| {name}"))
        cells = [c.strip() for c in row.strip("|").split("|")]
        ours, gemm, ours_1, gemm_1, low = map(float, cells[1:6])
        assert 0 < gemm_1 < ours_1 and 0 < gemm < ours, row
        assert abs(low - (gemm + ours_1 - gemm_1)) <= 0.0016, row  # each cell rounded to 0.0005
        assert abs(float(cells[6].rstrip("x")) - ours / low) <= (ours / low) * 0.0005 * (1 / ours + 1 / low) + 0.0051, row
        assert cells[7] == "n/a", row  # no peer, no ratio to scale


def test_a_quick_run_does_not_overwrite_the_results(tmp_path):
    """--quick without --out prints its table and writes no file: the committed
    benchmarks/results.md keeps the full run's figures."""
    results = os.path.join(ROOT, "benchmarks", "results.md")
    before = os.stat(results).st_mtime_ns if os.path.exists(results) else None
    cmd = [sys.executable, COMPARE, "--quick", "--seconds", "0.2", "--rounds", "1", "--no-peers", "--only", "rnn"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert "| RNN 32/16/25" in p.stdout and "written to" not in p.stderr
    assert (os.stat(results).st_mtime_ns if os.path.exists(results) else None) == before


def test_stability_short_run(tmp_path):
    """benchmarks/stability.py (the long NaN hunt) runs end to end on a small text."""
    from conftest import make_text

    text = tmp_path / "text.txt"
    text.write_text(make_text(600))
    cmd = [sys.executable, os.path.join(ROOT, "benchmarks", "stability.py"), "--model", "dnc",
           "--text", str(text), "--iters", "4", "--every", "2", "--batch", "4", "--seq", "8"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout.count("params, Adagrad memory and state all finite") == 2
    assert "every value finite" in p.stdout


def test_before_after_compares_two_checkouts():
    """benchmarks/before_after.py runs both sides and prints a ratio per configuration
    (here the checkout against itself, and the allocator setting against none)."""
    script = os.path.join(ROOT, "benchmarks", "before_after.py")
    for extra in ([ROOT], ["--allocator"]):
        cmd = [sys.executable, script, *extra, "--only", "rnn", "--rounds", "1", "--seconds", "0.2"]
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, p.stderr
        row = next(line for line in p.stdout.splitlines() if line.startswith("| RNN 32/16/25"))
        cells = [c.strip() for c in row.strip("|").split("|")]
        before, after = (float(c.replace(",", "")) for c in cells[2:4])
        assert before > 0 and after > 0
        assert abs(float(cells[4].split("x")[0]) - after / before) < 0.01 + 0.01 * after / before, row


def test_scaling_tiny_run():
    """benchmarks/scaling.py runs its cells end to end at tiny sizes, prints the table and
    the ratios, and marks a cell over the memory budget as not fitting without running it:
    at batch 2, seq 3, the dense N 512 needs about 0.017 GiB, the sparse one 0.0064."""
    cmd = [sys.executable, os.path.join(ROOT, "benchmarks", "scaling.py"), "--sizes", "16,512", "--batch", "2",
           "--seq", "3", "--repeats", "1", "--no-peers", "--budget-gib", "0.01", "--floor"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.strip("|").split("|")]
            for line in p.stdout.splitlines() if line.startswith(("| 16 ", "| 512 "))}
    assert float(rows["16"][1]) > 0 and float(rows["16"][3]) > 0  # dense and sparse ms/step at N 16
    assert rows["512"][1].startswith("does not fit") and float(rows["512"][3]) > 0  # only the sparse fits
    assert "not available (--no-peers)" in rows["16"][5]
    assert float(rows["16"][7]) > 0 and float(rows["512"][7]) > 0  # the filled sparse model fits too
    sparse_links, filled_links = (float(n.replace(",", "")) for n in rows["512"][9].split(" / "))
    assert filled_links > 400 and filled_links > 10 * sparse_links  # a link a row, against a few
    assert "- sparse K 8 N 1024 / N 16: not measured" in p.stdout
    assert "N 16 floor: {'ms': " in p.stderr  # --floor: the step with the link ops free runs (N 1024 does not fit)


def test_chaos_tiny_run():
    """benchmarks/chaos.py trains the two copies side by side: a line every --every
    iterations, both losses finite, and at first as close as parameters 1e-7 apart make them."""
    cmd = [sys.executable, os.path.join(ROOT, "benchmarks", "chaos.py"), "--iters", "4", "--every", "2",
           "--hidden", "8", "--batch", "2", "--sparse-links", "3"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    rows = [line.split() for line in p.stdout.splitlines()[2:]]
    assert [int(r[0]) for r in rows] == [2, 4]
    first, second = float(rows[0][1]), float(rows[0][2])
    assert all(map(math.isfinite, (first, second))) and abs(first - second) <= 1e-3 * abs(first)

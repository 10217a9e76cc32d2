"""ouroboros' metrics against the reference implementations: time and peak memory.

Each measurement runs in its own process (so peak memory is its own), on the same
seeded features: a mixture of Gaussian clusters, float32, as Inception features are.

- PRDC (k = 5) at N = M = 10,000, d = 2048: ouroboros vs the `prdc` package
  (targets: >= 2x faster, <= 1/4 of its peak memory); results compared.
- PRDC at N = M = 50,000, d = 2048: ouroboros alone (target: < 3 GB peak).
- FID from statistics at d = 2048: ouroboros vs the `scipy.linalg.sqrtm` formula of
  pytorch-fid / clean-fid (target: >= 10x faster); values compared.
- The FLOP-bound time of the distance products, 2 d (N^2 + M^2 + N M), at the float32
  matrix-product rate this machine reaches, to show how close to the limit we run.

Usage: python benchmarks/metrics.py [--quick]   (--quick: N = 2,000 / 5,000, for a smoke run)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time

import numpy as np


def make_features(n: int, d: int, seed: int, shift: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = np.random.default_rng(12345).normal(size=(20, d)).astype(np.float32) * 2.0
    out = np.empty((n, d), dtype=np.float32)
    for i in range(0, n, 4096):  # in chunks: no float64 copy of the whole set
        m = min(4096, n - i)
        out[i : i + m] = centers[rng.integers(0, 20, m)] + rng.standard_normal((m, d), dtype=np.float32) + shift
    return out


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(method: str, n: int, d: int) -> None:
    """Run one measurement in this (fresh) process; print JSON."""
    if method == "ours":
        import torch  # noqa: F401  (imported before the baseline so its memory is not counted as the metric's)

        from ouroboros.metrics import prdc as run
    else:
        import contextlib
        import io

        from prdc import compute_prdc

        def run(real, fake, k):
            with contextlib.redirect_stdout(io.StringIO()):
                return compute_prdc(real, fake, nearest_k=k)
    real, fake = make_features(n, d, 1), make_features(n, d, 2, shift=0.05)
    base = rss_mb()
    start = time.perf_counter()
    result = run(real, fake, k=5)
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "peak_mb": peak_mb(), "base_mb": base,
                      "result": {k: float(v) for k, v in result.items()}}))


def measure(method: str, n: int, d: int) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--child", method, str(n), str(d)], capture_output=True, text=True)
    if proc.returncode:
        sys.exit(f"{method} at N={n} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def matmul_gflops(dtype: str) -> float:
    import torch

    a = torch.randn(4096, 2048, dtype=getattr(torch, dtype))
    b = torch.randn(2048, 4096, dtype=getattr(torch, dtype))
    a @ b  # warm-up
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * 4096 * 2048 * 4096 / best / 1e9


def fid_timings(d: int) -> dict:
    import scipy.linalg

    from ouroboros.metrics import feature_stats, fid_from_stats

    s1 = feature_stats(make_features(4 * d, d, 1))
    s2 = feature_stats(make_features(4 * d, d, 2, shift=0.05))
    start = time.perf_counter()
    ours = fid_from_stats(*s1, *s2)
    t_ours = time.perf_counter() - start
    start = time.perf_counter()
    covmean = scipy.linalg.sqrtm(s1[1] @ s2[1])
    ref = float(((s1[0] - s2[0]) ** 2).sum() + np.trace(s1[1]) + np.trace(s2[1]) - 2 * np.trace(covmean.real))
    t_ref = time.perf_counter() - start
    return {"ours": t_ours, "ref": t_ref, "fid": ours, "fid_ref": ref}


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    args = parser.parse_args()
    d = 2048
    n_small, n_large = (2000, 5000) if args.quick else (10_000, 50_000)
    import torch

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    f32, f64 = matmul_gflops("float32"), matmul_gflops("float64")
    print(f"matrix product rate: float32 {f32:.0f} GFLOP/s, float64 {f64:.0f} GFLOP/s\n")

    ours, ref = measure("ours", n_small, d), measure("prdc", n_small, d)
    big = measure("ours", n_large, d)
    # Distance products: the references compute N^2 + M^2 + NM entries (3 N^2 for N = M);
    # ouroboros computes the symmetric N x N and M x M halves once (2 N^2 in all).
    bound = lambda n, entries: 2 * d * entries * n * n / (f32 * 1e9)  # noqa: E731

    print(f"PRDC, k = 5, d = {d}")
    print(f"{'N = M':>8} {'impl':<11}{'time s':>9}{'peak MB':>9}{'extra MB':>10}{'products':>10}"
          f"{'FLOP-bound s':>14}{'x bound':>9}")
    for n, name, r, entries in [(n_small, "prdc pkg", ref, 3), (n_small, "ouroboros", ours, 2),
                                (n_large, "ouroboros", big, 2)]:
        print(f"{n:>8} {name:<11}{r['seconds']:>9.1f}{r['peak_mb']:>9.0f}{r['peak_mb'] - r['base_mb']:>10.0f}"
              f"{f'{entries} N^2':>10}{bound(n, entries):>14.1f}{r['seconds'] / bound(n, entries):>9.2f}")
    print("(peak MB: the whole process, inputs and runtime included; extra MB: beyond the inputs and imports)")
    speed = ref["seconds"] / ours["seconds"]
    mem_peak = ours["peak_mb"] / ref["peak_mb"]
    mem_extra = (ours["peak_mb"] - ours["base_mb"]) / (ref["peak_mb"] - ref["base_mb"])
    diff = max(abs(ours["result"][k] - ref["result"][k]) for k in ours["result"])
    print(f"\nN = {n_small}: {speed:.2f}x faster than prdc (target >= 2); peak memory {mem_peak:.2f}x of prdc's, "
          f"memory beyond the inputs {mem_extra:.3f}x (target <= 0.25)")
    print(f"largest difference from prdc's values: {diff:.2e} (float32 inputs: prdc compares float32-rounded "
          f"distances; ouroboros exact float64)")
    print(f"N = {n_large}: peak {big['peak_mb'] / 1024:.2f} GB (target < 3 GB)")

    fid_t = fid_timings(d)
    print(f"\nFID from statistics, d = {d}")
    print(f"{'impl':<22}{'time s':>9}{'FID':>16}")
    print(f"{'sqrtm (pytorch-fid)':<22}{fid_t['ref']:>9.2f}{fid_t['fid_ref']:>16.6f}")
    print(f"{'ouroboros':<22}{fid_t['ours']:>9.2f}{fid_t['fid']:>16.6f}")
    print(f"{fid_t['ref'] / fid_t['ours']:.1f}x faster (target >= 10); relative difference "
          f"{abs(fid_t['fid'] - fid_t['fid_ref']) / abs(fid_t['fid_ref']):.1e}")
    ok = speed >= 2 and mem_extra <= 0.25 and big["peak_mb"] < 3 * 1024 and fid_t["ref"] / fid_t["ours"] >= 10
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

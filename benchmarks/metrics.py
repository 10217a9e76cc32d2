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

- Hard cases for exact k-NN at N = M = 5,000, d = 64 and 2048: features scaled by
  2^66 and 2^-80 (past float32's range), offset by 1e6, collapsed onto 20 distinct
  points, and half of each set one repeated point. Time against the plain case (target:
  no cliff, within ~2x), and agreement with a float64 brute force (plain at d = 64,
  duplicates) or the `prdc` package (plain at d = 2048); the scaled and offset sets are
  built so that their distances are exactly the plain ones, so they must equal it.

Usage: python benchmarks/metrics.py [--quick] [--hard]
  (--quick: N = 2,000 / 5,000, for a smoke run; --hard: only the hard k-NN cases)
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


def brute_prdc(real: np.ndarray, fake: np.ndarray, k: int = 5) -> dict:
    """PRDC (strict, as the prdc package) from exact float64 distances sum((x - y)^2),
    computed once per pair of *distinct* rows and expanded (duplicates have identical
    distances), a few rows at a time."""
    import torch

    def sq(a, b):
        a, b = torch.from_numpy(a), torch.from_numpy(b)
        step = max(1, 2**24 // (len(b) * a.shape[1]))
        return torch.cat([((a[i : i + step, None] - b[None]) ** 2).sum(-1) for i in range(0, len(a), step)]).numpy()

    (ur, r_of), (uf, f_of) = (np.unique(np.asarray(x, np.float64), axis=0, return_inverse=True) for x in (real, fake))
    r_of, f_of = r_of.ravel(), f_of.ravel()
    r_w, f_w = np.bincount(r_of), np.bincount(f_of)

    def kth(u, w):  # (k+1)-th smallest distance with multiplicities, self (distance 0) included
        d2 = sq(u, u)
        order = np.argsort(d2, axis=1)
        pos = (np.cumsum(w[order], axis=1) < k + 1).sum(1)
        return np.take_along_axis(d2, order, 1)[np.arange(len(u)), pos]

    r_real, r_fake, rf = kth(ur, r_w), kth(uf, f_w), sq(ur, uf)
    in_real, in_fake = rf < r_real[:, None], rf < r_fake[None, :]
    count = (in_real * r_w[:, None]).sum(0)[f_of]  # real balls holding each fake row
    return {"precision": float((count > 0).mean()), "recall": float(in_fake.any(1)[r_of].mean()),
            "density": float(count.mean() / k), "coverage": float(in_real.any(1)[r_of].mean())}


def hard_cases(n: int = 5000, dims=(64, 2048)) -> None:
    """Exact k-NN where float32 alone fails: time and agreement (see the module docstring)."""
    import contextlib
    import io

    from prdc import compute_prdc

    from ouroboros.metrics import prdc

    print(f"\nPRDC, k = 5, hard cases for exact k-NN, N = M = {n}")
    print(f"{'d':>5} {'case':<22}{'time s':>8}{'x plain':>9}  agreement   (time: best of 3, interleaved)")
    for d in dims:
        # Plain features on a grid of 2^-16 (|x| < 2^6): adding 1e6 is exact in float64.
        real = np.round(make_features(n, d, 1).astype(np.float64) * 2**16) / 2**16
        fake = np.round(make_features(n, d, 2, shift=0.05).astype(np.float64) * 2**16) / 2**16
        rng = np.random.default_rng(0)
        half_r, half_f = real.copy(), fake.copy()
        half_r[: n // 2], half_f[: n // 2] = real[0], real[0]
        cases = {
            "plain": (real.astype(np.float32), fake.astype(np.float32)),
            "x 2^66 (float32)": ((real * 2.0**66).astype(np.float32), (fake * 2.0**66).astype(np.float32)),
            "x 2^-80 (float32)": ((real * 2.0**-80).astype(np.float32), (fake * 2.0**-80).astype(np.float32)),
            "+ 1e6 (float64)": (real + 1e6, fake + 1e6),
            "20 distinct points": (real[rng.integers(0, 20, n)], fake[rng.integers(0, 20, n)]),
            "half one point": (half_r, half_f),
        }
        # Best of 3, the cases interleaved, so that a busy moment on a shared machine
        # does not land on one case only.
        seconds = {name: float("inf") for name in cases}
        for _ in range(3):
            for name, (r, f) in cases.items():
                start = time.perf_counter()
                prdc(r, f, k=5)
                seconds[name] = min(seconds[name], time.perf_counter() - start)
        plain = None
        for name, (r, f) in cases.items():
            ours = prdc(r, f, k=5)
            if name == "plain" and d > 64:
                with contextlib.redirect_stdout(io.StringIO()):
                    ref, what = compute_prdc(r, f, nearest_k=5), "prdc package"
            elif name == "plain" or "distinct" in name or (d <= 64 and name == "half one point"):
                ref, what = brute_prdc(r, f), "brute force"
            elif name == "half one point":
                ref, what = None, "(brute force at d = 64 only)"
            else:  # built so that every distance is exactly the plain case's
                ref, what = plain, "plain case"
            plain = ours if name == "plain" else plain
            if ref is None:
                agreement = what
            else:
                diff = max(abs(ours[key] - float(ref[key])) for key in ours)
                agreement = f"{'equal' if diff == 0 else f'max diff {diff:.1e}'} ({what})"
            print(f"{d:>5} {name:<22}{seconds[name]:>8.2f}{seconds[name] / seconds['plain']:>9.2f}  {agreement}",
                  flush=True)


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--hard", action="store_true", help="only the hard cases for exact k-NN")
    args = parser.parse_args()
    if args.hard:
        hard_cases(2000 if args.quick else 5000)
        return 0
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
    hard_cases(2000 if args.quick else 5000)
    ok = speed >= 2 and mem_extra <= 0.25 and big["peak_mb"] < 3 * 1024 and fid_t["ref"] / fid_t["ours"] >= 10
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

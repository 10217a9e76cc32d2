"""How often would the theory tests pass a wrong formula? A table, per closed-form check
of tests/test_theory.py and tests/test_loop_theory.py and per wrong formula, of

- "bound": the bound the tests assert (`gaussian_loop.acceptance`, generations >= 1):
  the largest chance that any one generation's check passes;
- "joint": the chance that the whole check passes (every generation within Z = 4 standard
  errors), with the Monte Carlo means drawn from the normal law with the chains' own
  covariance across generations (200,000 draws).

Power is 1 minus these. With --old REV it measures the tests of that revision instead
(their chains run through the loop's own code, so it takes a few minutes).

    PYTHONPATH=src python benchmarks/theory_power.py [--old d52c95c]
"""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "src"), str(REPO / "tests")]

from gaussian_loop import Z, acceptance, gmm_moments, moments, simulate, simulate_gmm  # noqa: E402


def joint(samples: np.ndarray, right, wrong, draws: int = 200_000, seed: int = 0) -> float:
    """P(every generation passes) for a wrong formula, means ~ N(right, Cov / n)."""
    n = len(samples)
    cov = np.cov(samples, rowvar=False) / n
    se = np.sqrt(np.diag(cov))
    means = np.random.default_rng(seed).multivariate_normal(np.asarray(right, float), cov, size=draws,
                                                            method="cholesky")
    return float((np.abs(means - np.asarray(wrong)) <= Z * se).all(axis=1).mean())


def rows_for(check: str, samples, right, wrongs: dict) -> list[tuple]:
    return [(check, name, acceptance(samples, right, wrong, skip=1), joint(samples, right, wrong))
            for name, wrong in wrongs.items()]


def new_rows() -> list[tuple]:
    from test_loop_theory import CASES, CHAINS, G, N, A, n_real_for

    rows = []
    for tau in (1.0, 0.8):  # tests/test_theory.py
        m, t, s2 = 20, np.arange(1, 9), 2.0
        means, var = simulate("replace", 8, 40_000, n=m, n_real=m, V=s2, tau=tau, seed=123)
        a = tau * (m - 1) / m
        right_v = s2 * ((m - 1) / m) ** t * tau ** (t - 1)
        right_d = s2 / m * np.array([np.sum(a ** np.arange(k)) for k in t])
        rows += rows_for(f"test_theory replace tau={tau} variance", var, right_v,
                         {"no shrink": s2 * tau ** (t - 1), "exponent - 1": right_v * m / (m - 1),
                          "exponent + 1": right_v * (m - 1) / m})
        rows += rows_for(f"test_theory replace tau={tau} drift", means**2, right_d,
                         {"1/(N-1)": right_d * m / (m - 1), "x 0.9": 0.9 * right_d})
    for name, scenario, setting, tau in CASES:
        kw = dict(n=N, n_real=n_real_for(scenario, setting), tau=tau, **setting)
        exact = moments(scenario, G, **kw)
        means, var = simulate(scenario, G, CHAINS, seed=7, **kw)
        rows += rows_for(f"{name} variance", var, exact["S"], {
            "no shrink": moments(scenario, G, ddof=1, **kw)["S"], "exponent + 1": exact["S"] * A,
            "exponent - 1": exact["S"] / A})
        rows += rows_for(f"{name} drift", means**2, exact["D"], {"1/(N-1)": exact["D"] / A, "x 0.9": exact["D"] * 0.9})
    n, gens, weights = 40, 6, (0.35, 0.65)
    out = simulate_gmm(gens, 20_000, n=n, weights=weights, seed=5)
    for k, w in enumerate(weights):
        exact, a = gmm_moments(gens, n=n, w=w), (w * n - 1) / (w * n)
        het = out["w"][:, :, k] * (1 - out["w"][:, :, k])
        rows += rows_for(f"gmm component {k} weight", het, exact["H"], {
            "no drift": np.full(gens, exact["H"][0]), "exponent - 1": exact["H"] / (1 - 1 / n),
            "exponent + 1": exact["H"] * (1 - 1 / n)})
        rows += rows_for(f"gmm component {k} variance", out["s2"][:, :, k], exact["S"], {
            "no shrink": gmm_moments(gens, n=n, w=w, shrink=False)["S"], "exponent + 1": exact["S"] * a,
            "exponent - 1": exact["S"] / a})
        rows += rows_for(f"gmm component {k} drift", out["e"][:, :, k] ** 2, exact["D"], {
            "1/(n-1)": gmm_moments(gens, n=n, w=w, drift_ddof=1)["D"], "x 0.9": 0.9 * exact["D"]})
    return rows


def old_rows(rev: str) -> list[tuple]:
    """The tests of revision `rev`: its test_theory.py (3000 chains of the math core) and
    test_loop_theory.py (400-500 chains of the loop's code, uint8 images)."""
    folder = Path(tempfile.mkdtemp())
    for name in ("test_theory.py", "test_loop_theory.py"):
        text = subprocess.run(["git", "-C", str(REPO), "show", f"{rev}:tests/{name}"], capture_output=True,
                              text=True, check=True).stdout
        (folder / f"old_{name}").write_text(text.replace("from test_theory import", "from old_test_theory import"))
    sys.path.insert(0, str(folder))
    old_core, old_loop = importlib.import_module("old_test_theory"), importlib.import_module("old_test_loop_theory")
    rows = []
    m, t, s2 = old_core.M, np.arange(1, old_core.T + 1), 2.0
    for tau in (1.0, 0.8):
        means, covs = old_core.replace_chains(0.5, s2, tau, seed=123)
        var, drift = covs[:, :, 0, 0], (means[:, :, 0] - 0.5) ** 2
        a = tau * (m - 1) / m
        right_v = s2 * ((m - 1) / m) ** t * tau ** (t - 1)
        right_d = s2 / m * np.array([np.sum(a ** np.arange(k)) for k in t])
        rows += rows_for(f"old test_theory replace tau={tau} variance", var, right_v,
                         {"no shrink": s2 * tau ** (t - 1), "exponent - 1": right_v * m / (m - 1),
                          "exponent + 1": right_v * (m - 1) / m})
        rows += rows_for(f"old test_theory replace tau={tau} drift", drift, right_d,
                         {"1/(N-1)": right_d * m / (m - 1), "x 0.9": 0.9 * right_d})
    L = old_loop
    grey = dict(V=L.SIGMA**2 + L.Q, r=L.R, q=L.Q)
    for scenario, rho, count, n_real in [("replace", 0.5, L.CHAINS, L.N), ("accumulate", 0.5, L.CHAINS, L.N),
                                         ("mix", 0.5, 400, L.N), ("mix", 0.2, 400, L.N),
                                         ("fresh", 0.5, 400, L.N + (L.G - 1) * 10),
                                         ("fresh", 0.2, 400, L.N + (L.G - 1) * 4)]:
        means, var = L.chains(scenario, n_real=n_real, rho=rho, count=count)
        kw = dict(n=L.N, n_real=n_real, rho=rho, **grey)
        exact = moments(scenario, L.G, **kw)
        a = (L.N - 1) / L.N
        label = f"old test_loop_theory {scenario}" + (f" rho={rho}" if scenario in ("mix", "fresh") else "")
        rows += rows_for(f"{label} variance", var, exact["S"], {
            "no shrink": moments(scenario, L.G, ddof=1, **kw)["S"], "exponent + 1": exact["S"] * a,
            "exponent - 1": exact["S"] / a})
        rows += rows_for(f"{label} drift", (means - L.MU) ** 2, exact["D"],
                         {"1/(N-1)": exact["D"] / a, "x 0.9": exact["D"] * 0.9})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--old", metavar="REV", help="measure the theory tests of this git revision instead")
    args = parser.parse_args()
    rows = old_rows(args.old) if args.old else new_rows()
    print("| check | wrong formula | P(pass) bound, g >= 1 | P(pass) joint | power |")
    print("|---|---|---|---|---|")
    for check, wrong, bound, together in rows:
        print(f"| {check} | {wrong} | {bound:.2g} | {together:.3g} | {1 - together:.1%} |")


if __name__ == "__main__":
    main()

"""Exact k-nearest-neighbour geometry in chunks, with memory bounded by the chunk.

Squared Euclidean distances come from one matrix product per block,
``|x|^2 + |y|^2 - 2 x.y``. On the CPU the product runs in float32 (twice the speed
of float64) and every decision that float32 could get wrong is redone in float64:

- the float32 dot product of x and y is within ``(gamma_D + 3u) |x| |y|`` of the exact
  one (u = 2^-24, gamma_D = D u / (1 - D u), the standard bound for any summation
  order, plus rounding the inputs to float32);
- a comparison ``d2 < r2`` whose float32 value lies within that margin of ``r2``, and
  every candidate for a k-th neighbour, is recomputed exactly as
  ``sum((x - y)^2)`` in float64.

So results equal a float64 computation, whatever the chunk size. On CUDA the
products run in float64 directly (TF32 settings cannot loosen the bound).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

U32 = 2.0**-24
DEFAULT_BLOCK = 1 << 22  # entries per distance block: 16 MiB of float32, 32 MiB of float64


@dataclass
class Prepared:
    """A feature set ready for blocked distances: float64 rows, their squared norms,
    and (on CPU) a float32 copy for the fast product."""

    x64: torch.Tensor
    sq: torch.Tensor  # squared norms, float64
    norm: torch.Tensor  # norms, float64
    fast: torch.Tensor  # float32 (CPU) or float64 (CUDA) copy used in the product

    @classmethod
    def of(cls, x: torch.Tensor, device: torch.device | None = None) -> "Prepared":
        device = device or x.device
        x64 = x.to(device=device, dtype=torch.float64)
        sq = (x64 * x64).sum(dim=1)
        fast = x64 if device.type == "cuda" else x.to(device=device, dtype=torch.float32)
        return cls(x64, sq, sq.sqrt(), fast)

    def __len__(self) -> int:
        return self.x64.shape[0]


def _dot_margin(d: int, exact: bool) -> float:
    """Relative bound on |float32 x.y - x.y| in units of |x||y|; 0 where float64 is used."""
    if exact:
        return 1e-13  # float64 round-off, far below anything float32 could decide
    gamma = d * U32 / (1.0 - d * U32)
    return gamma + 3.0 * U32


def _exact_sq(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Exact float64 squared distances between paired rows a[i] and b[i]."""
    return ((a - b) ** 2).sum(dim=-1)


def _blocks(n_rows: int, n_cols: int, block: int):
    rows = max(1, min(n_rows, block // max(1, n_cols)))
    if rows >= 64 or rows == n_rows:
        cols = n_cols
    else:  # very wide: split columns too
        rows = min(n_rows, 64)
        cols = max(1, block // rows)
    for i0 in range(0, n_rows, rows):
        for j0 in range(0, n_cols, cols):
            yield slice(i0, min(i0 + rows, n_rows)), slice(j0, min(j0 + cols, n_cols))


def _sq_block(a: Prepared, b: Prepared, rs: slice, cs: slice) -> tuple[torch.Tensor, torch.Tensor]:
    """(approximate squared distances, absolute error margin) for one block, float64."""
    dot = (a.fast[rs] @ b.fast[cs].T).double()
    d2 = a.sq[rs, None] + b.sq[None, cs] - 2.0 * dot
    margin = 2.0 * _dot_margin(a.x64.shape[1], a.fast.dtype == torch.float64) * (a.norm[rs, None] * b.norm[None, cs])
    return d2, margin


def kth_neighbour_sq(x: Prepared, k: int, block: int = DEFAULT_BLOCK) -> torch.Tensor:
    """Squared distance from each row of x to its k-th nearest neighbour in x, self excluded.

    Like the `prdc` package, this is the (k+1)-th smallest distance with the point
    itself (distance 0) counted, so exact duplicates count as neighbours.
    """
    n = len(x)
    need = k + 1
    extra = min(n, need + 16)  # candidates kept per row
    result = torch.empty(n, dtype=torch.float64, device=x.x64.device)
    row_block = max(1, block // n)
    max_norm = float(x.norm.max())
    rel = _dot_margin(x.x64.shape[1], x.fast.dtype == torch.float64)
    for i0 in range(0, n, row_block):
        rs = slice(i0, min(i0 + row_block, n))
        d2, _ = _sq_block(x, x, rs, slice(0, n))
        vals, idx = torch.topk(d2, extra, dim=1, largest=False, sorted=True)
        bound = 2.0 * rel * x.norm[rs] * max_norm
        threshold = vals[:, need - 1] + 2.0 * bound
        # Rows whose candidate list could miss one of the true k+1 nearest: do them in full.
        complete = (vals[:, -1] > threshold) | (extra == n)
        exact = _exact_sq(x.x64[rs][:, None, :], x.x64[idx])
        exact = torch.where(vals <= threshold[:, None], exact, torch.full_like(exact, math.inf))
        result[rs] = exact.kthvalue(need, dim=1).values
        for r in torch.nonzero(~complete).flatten().tolist():
            i = i0 + r
            full = _exact_sq(x.x64[i][None, :], x.x64)
            result[i] = full.kthvalue(need).values
    return result


def ball_membership(queries: Prepared, centers: Prepared, center_r2: torch.Tensor, query_r2: torch.Tensor,
                    strict: bool, block: int = DEFAULT_BLOCK):
    """Who lies in whose k-NN ball, between a query set and a center set, in one pass.

    With balls B(c_j, r_j) around the centers and B(q_i, s_i) around the queries:

    - ``count[i]``: how many center balls hold query i (precision, density);
    - ``covered[j]``: whether any query lies in center j's ball (coverage);
    - ``reached[j]``: whether center j lies in any query's ball (recall).

    "Holds" is ``d < r`` if `strict` else ``d <= r`` (compared as squares).
    """
    nq, nc = len(queries), len(centers)
    dev = queries.x64.device
    count = torch.zeros(nq, dtype=torch.int64, device=dev)
    covered = torch.zeros(nc, dtype=torch.bool, device=dev)
    reached = torch.zeros(nc, dtype=torch.bool, device=dev)

    def inside(d2, margin, r2, rs, cs):
        r2 = r2.expand_as(d2)
        result = d2 < r2 - margin
        unsure = (d2 >= r2 - margin) & (d2 <= r2 + margin)
        if bool(unsure.any()):
            ii, jj = torch.nonzero(unsure, as_tuple=True)
            ex = _exact_sq(queries.x64[rs][ii], centers.x64[cs][jj])
            result[ii, jj] = ex < r2[ii, jj] if strict else ex <= r2[ii, jj]
        return result

    for rs, cs in _blocks(nq, nc, block):
        d2, margin = _sq_block(queries, centers, rs, cs)
        in_center_ball = inside(d2, margin, center_r2[None, cs], rs, cs)
        count[rs] += in_center_ball.sum(dim=1)
        covered[cs] |= in_center_ball.any(dim=0)
        reached[cs] |= inside(d2, margin, query_r2[rs, None], rs, cs).any(dim=0)
    return count, covered, reached

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
DEFAULT_BLOCK = 1 << 22  # entries per distance block (1,024 rows x 4,096 columns): 32 MiB as float64
BLOCK_ROWS = 1024  # rows per block: large enough for the matrix product to run near its peak


@dataclass
class Prepared:
    """A feature set ready for blocked distances: the rows as given (float32 or float64,
    not copied when already on the device), their float64 norms, and the copy used in
    the product (float32 on CPU, float64 on CUDA; the rows themselves when they match).
    Exact recomputations convert only the rows they touch to float64."""

    x: torch.Tensor
    sq: torch.Tensor  # squared norms, float64
    norm: torch.Tensor  # norms, float64
    fast: torch.Tensor

    @classmethod
    def of(cls, x: torch.Tensor, device: torch.device | None = None, chunk: int = 256) -> "Prepared":
        device = device or x.device
        x = x.to(device)
        sq = torch.cat([(c.double() ** 2).sum(dim=1) for c in x.split(chunk)])
        fast_dtype = torch.float64 if device.type == "cuda" else torch.float32
        return cls(x, sq, sq.sqrt(), x.to(fast_dtype))

    def rows64(self, index) -> torch.Tensor:
        return self.x[index].double()

    @property
    def exact(self) -> bool:
        """True when the product itself runs in float64."""
        return self.fast.dtype == torch.float64

    @property
    def dim(self) -> int:
        return self.x.shape[1]

    def __len__(self) -> int:
        return self.x.shape[0]


def _dot_margin(d: int, exact: bool) -> float:
    """Relative bound on the product's error in units of |x||y|: float32 (CPU) or float64 (CUDA)."""
    if exact:
        return 1e-13  # float64 round-off, far below anything float32 could decide
    gamma = d * U32 / (1.0 - d * U32)
    return gamma + 3.0 * U32


def _exact_sq(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Exact float64 squared distances between paired rows a[i] and b[i]."""
    return ((a - b) ** 2).sum(dim=-1)


def _exact_pairs(a: "Prepared", ia: torch.Tensor, b: "Prepared", ib: torch.Tensor, block: int = DEFAULT_BLOCK):
    """Exact float64 squared distances between rows a[ia[p]] and b[ib[p]], in chunks of
    pairs so the float64 rows gathered at once stay within `block` entries."""
    step = max(1, block // (4 * max(1, a.dim)))
    out = [_exact_sq(a.rows64(ia[p : p + step]), b.rows64(ib[p : p + step])) for p in range(0, len(ia), step)]
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.float64, device=a.x.device)


def _blocks(n_rows: int, n_cols: int, block: int):
    """Row-major (rows, cols) slices covering an n_rows x n_cols matrix, each at most
    `block` entries (but at least one row by one column)."""
    rows = max(1, min(n_rows, BLOCK_ROWS, block))
    cols = max(1, min(n_cols, block // rows))
    for i0 in range(0, n_rows, rows):
        for j0 in range(0, n_cols, cols):
            yield slice(i0, min(i0 + rows, n_rows)), slice(j0, min(j0 + cols, n_cols))


def _sq_block(a: Prepared, b: Prepared, rs: slice, cs: slice) -> tuple[torch.Tensor, torch.Tensor]:
    """Approximate squared distances for one block (float64), and a per-row bound on
    their error: 2 (gamma_D + 3u) |x_i| max_j |y_j|."""
    d2 = (a.fast[rs] @ b.fast[cs].T).double().mul_(-2.0).add_(a.sq[rs, None]).add_(b.sq[None, cs])
    margin = (2.0 * _dot_margin(a.dim, a.exact and b.exact) * float(b.norm[cs].max())) * a.norm[rs, None]
    return d2, margin


def kth_neighbour_sq(x: Prepared, k: int, block: int = DEFAULT_BLOCK) -> torch.Tensor:
    """Squared distance from each row of x to its k-th nearest neighbour in x, self excluded.

    Like the `prdc` package, this is the (k+1)-th smallest distance with the point
    itself (distance 0) counted, so exact duplicates count as neighbours. The distance
    matrix is symmetric, so only blocks on and above the diagonal are computed; each
    updates the candidate lists of both its rows and its columns.
    """
    n = len(x)
    need = k + 1
    keep = min(n, need + 16)  # candidates kept per row
    dev = x.x.device
    vals = torch.full((n, keep), math.inf, dtype=torch.float64, device=dev)
    idx = torch.zeros((n, keep), dtype=torch.int64, device=dev)
    bound = torch.zeros(n, dtype=torch.float64, device=dev)

    def merge(rows: slice, d2: torch.Tensor, col_start: int, margin: torch.Tensor) -> None:
        v, j = torch.topk(d2, min(keep, d2.shape[1]), dim=1, largest=False, sorted=True)
        allv, allj = torch.cat([vals[rows], v], 1), torch.cat([idx[rows], j + col_start], 1)
        best, order = torch.topk(allv, keep, dim=1, largest=False, sorted=True)
        vals[rows], idx[rows] = best, torch.gather(allj, 1, order)
        bound[rows] = torch.maximum(bound[rows], margin[:, 0])

    side = max(1, min(n, BLOCK_ROWS, math.isqrt(block)))
    for i0 in range(0, n, side):
        rs = slice(i0, min(i0 + side, n))
        for j0 in range(i0, n, side):
            cs = slice(j0, min(j0 + side, n))
            d2, margin = _sq_block(x, x, rs, cs)
            merge(rs, d2, cs.start, margin)
            if j0 != i0:  # the mirrored block, for the column points
                mirrored = (2.0 * _dot_margin(x.dim, x.exact) * float(x.norm[rs].max())) * x.norm[cs, None]
                merge(cs, d2.T, rs.start, mirrored)
    result = torch.empty(n, dtype=torch.float64, device=dev)
    for i0 in range(0, n, side):
        rs = slice(i0, min(i0 + side, n))
        _finish_rows(x, rs, vals[rs], idx[rs], bound[rs, None], need, block, result)
    return result


def _finish_rows(x: Prepared, rs: slice, vals, idx, bound, need: int, block: int, result) -> None:
    """Exact k-th neighbour distances for rows `rs` from their float32 candidates."""
    n = len(x)
    bound = bound[:, 0]
    # Every one of the true `need` nearest has an approximate value within this threshold.
    threshold = vals[:, need - 1] + 2.0 * bound
    complete = (vals[:, -1] > threshold) | (vals.shape[1] == n)
    exact = torch.full_like(vals, math.inf)
    is_self = idx == torch.arange(rs.start, rs.stop, device=idx.device)[:, None]
    exact[is_self] = 0.0  # no need to recompute a point's distance to itself
    ii, jj = torch.nonzero((vals <= threshold[:, None]) & ~is_self, as_tuple=True)
    exact[ii, jj] = _exact_pairs(x, ii + rs.start, x, idx[ii, jj], block)
    result[rs] = exact.kthvalue(need, dim=1).values
    # Rows whose candidate list could miss one of the true nearest: redo them in full.
    for r in torch.nonzero(~complete).flatten().tolist():
        i = rs.start + r
        full = torch.cat([_exact_sq(x.rows64(i)[None, :], x.rows64(slice(j, j + 4096))) for j in range(0, n, 4096)])
        result[i] = full.kthvalue(need).values


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
    dev = queries.x.device
    count = torch.zeros(nq, dtype=torch.int64, device=dev)
    covered = torch.zeros(nc, dtype=torch.bool, device=dev)
    reached = torch.zeros(nc, dtype=torch.bool, device=dev)

    def inside(d2, margin, r2, rs, cs):
        t = d2 - r2
        result = t < -margin  # certainly inside, whatever float32 did
        unsure = t.abs_() <= margin
        if bool(unsure.any()):
            ii, jj = torch.nonzero(unsure, as_tuple=True)
            ex = _exact_pairs(queries, ii + rs.start, centers, jj + cs.start, block)
            r2 = r2.expand_as(d2)[ii, jj]
            result[ii, jj] = ex < r2 if strict else ex <= r2
        return result

    for rs, cs in _blocks(nq, nc, block):
        d2, margin = _sq_block(queries, centers, rs, cs)
        in_center_ball = inside(d2, margin, center_r2[None, cs], rs, cs)
        count[rs] += in_center_ball.sum(dim=1)
        covered[cs] |= in_center_ball.any(dim=0)
        reached[cs] |= inside(d2, margin, query_r2[rs, None], rs, cs).any(dim=0)
    return count, covered, reached

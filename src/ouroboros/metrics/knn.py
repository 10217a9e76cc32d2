"""Exact k-nearest-neighbour geometry in chunks, with memory bounded by the chunk.

Every result equals a float64 brute force on the features as given: squared distances
``sum((x - y)^2)`` in float64, compared as squares (up to the order in which the D
terms are added, which differs between numpy and torch by an ulp or so). Most comparisons are decided by a
fast approximation instead, and only those it cannot decide are recomputed exactly.

**The fast approximation.** Squared distances come from one matrix product per block,
``|x|^2 + |y|^2 - 2 x.y``, on CPU in float32 (twice the speed of float64), on CUDA in
float64 (so TF32 settings cannot loosen the bound). Before that product both sets are
mapped by ``x -> s (x - c)``: a common centre ``c`` (the midrange of both sets) and a
power of two ``s`` that brings the largest centred coordinate into [0.5, 1).

- Scaling by a power of two is exact, so features of any magnitude float32 could not
  hold (``2**66`` squares past its range, ``2**-80`` below it) lose nothing.
- Centring removes a common offset, which otherwise dominates ``|x| |y|`` and hence the
  error bound below: with ``+1e6`` on every coordinate almost no comparison could be
  decided in float32.
- Features that need neither (the centre within the spread, coordinates between 2^-40
  and 2^40 in magnitude, already in the product's dtype: what a network gives) are used
  as given, ``c = 0`` and ``s = 1``: no copy of either set, and the same bound holds.
- Centring is *not* exact: ``x - c`` is rounded to float64, a relative error of at most
  u64 = 2^-53 per coordinate. We never need it to be exact, because the centred copy
  only decides which pairs to recompute; every value that reaches a result (a k-th
  neighbour radius, a comparison left undecided) is recomputed from the *original*
  rows, exactly as the brute force computes it. Centring's rounding is folded into the
  error bound, like float32's.

**The error bound.** With ``x~, y~`` the centred, scaled rows (norms in float64), the
approximate squared distance is within

    2 (gamma_D + 3u) |x~| |y~|  +  4 (D + 4) u64 (|x~| + |y~|)^2  +  2 D 2^-140

of the float64 brute-force value, in scaled units (then divided by ``s^2``, exactly).
The first term is the float32 product (u = 2^-24, gamma_D = D u / (1 - D u), the
standard bound for any summation order, plus rounding the inputs to float32); the
second covers float64 rounding: of centring, of the norms, and of the brute force
itself; the last, float32 underflow of tiny products. A comparison ``d2 < r2`` whose
approximate value lies within the bound of ``r2`` is recomputed exactly.

**Exact duplicates** are merged before any of this (`distinct_rows`): a row repeated m
times is one point of weight m. Identical rows have identical distances to everything,
so nothing changes, but a collapsed set (5,000 rows that are 20 points) costs what 20
points cost instead of a near-tie on every pair.

**k-th neighbours** keep a short candidate list per row (the smallest approximate
values); a row whose list could miss one of its true nearest gets a longer list, up to
all n (`kth_neighbour_sq`).

Exceptions: features whose squared distances overflow float64 (largest centred
coordinate above 2^480) or fall below its normal range (below 2^-480) are refused with a
`UserError`; a float64 brute force cannot compare them either.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ouroboros.errors import UserError

U32 = 2.0**-24
U64 = 2.0**-53
DEFAULT_BLOCK = 1 << 22  # entries per distance block (1,024 rows x 4,096 columns): 32 MiB as float64
BLOCK_ROWS = 1024  # rows per block: large enough for the matrix product to run near its peak
MAX_EXPONENT = 480  # |log2| of the largest centred coordinate we accept: squares stay normal float64
GROWTH = 4  # how much longer an incomplete row's candidate list gets each round


def distinct_rows(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Merge bitwise-identical rows: (distinct rows, inverse, counts) with
    ``x == distinct[inverse]`` and ``counts[g]`` the rows in group g. When every row is
    distinct, `x` itself comes back (no copy) with an identity inverse."""
    n = x.shape[0]
    if x.device.type == "cpu":
        # Sort rows as raw bytes (any dtype, bfloat16 included): no copy of the data,
        # only of the order.
        a = x.contiguous().reshape(-1).view(torch.uint8).reshape(n, -1).numpy()
        rows = a.view(np.dtype((np.void, a.shape[1]))).ravel()
        order = np.argsort(rows, kind="stable")
        same = np.empty(max(n - 1, 0), dtype=bool)
        for i in range(0, n - 1, 4096):  # compare neighbours in sorted order, in chunks
            o = order[i : i + 4097]
            same[i : i + len(o) - 1] = rows[o[1:]] == rows[o[:-1]]
        order = torch.from_numpy(order)
        new_group = torch.from_numpy(np.concatenate([[True], ~same]))
    else:
        # torch.unique sorts lexicographically on the device; recover each group's first row.
        _, inverse, _ = torch.unique(x, dim=0, return_inverse=True, return_counts=True)
        order = torch.argsort(inverse, stable=True)
        new_group = torch.ones(n, dtype=torch.bool, device=x.device)
        new_group[1:] = inverse[order[1:]] != inverse[order[:-1]]
    group_sorted = torch.cumsum(new_group.long(), 0) - 1
    inverse = torch.empty(n, dtype=torch.int64, device=x.device)
    inverse[order] = group_sorted
    firsts = order[new_group]
    counts = torch.bincount(inverse, minlength=len(firsts))
    if len(firsts) == n:
        return x, torch.arange(n, device=x.device), counts
    return x[firsts], inverse, counts


@dataclass
class Prepared:
    """A feature set ready for blocked distances: the rows as given (float32 or float64,
    not copied when already on the device; exact recomputations read these), the
    centred and scaled copy used in the product (float32 on CPU, float64 on CUDA), its
    float64 norms (scaled units, for the error bound) and squared norms (times
    ``inv_s2``, ready for distances), and ``inv_s2 = 1 / s^2``, which turns scaled
    squared distances back into the original units (exactly: a power of two)."""

    x: torch.Tensor
    norm: torch.Tensor  # norms of the centred, scaled rows, float64
    sq: torch.Tensor  # their squares times inv_s2, float64
    fast: torch.Tensor
    inv_s2: float

    @classmethod
    def pair(cls, a: torch.Tensor, b: torch.Tensor, device: torch.device | None = None,
             chunk: int = 256) -> tuple["Prepared", "Prepared"]:
        """Both sets, centred on one common centre and scaled by one power of two, so
        distances between them keep their meaning."""
        device = device or a.device
        a, b = a.to(device), b.to(device)
        lo = torch.minimum(a.min(dim=0).values, b.min(dim=0).values).double()
        hi = torch.maximum(a.max(dim=0).values, b.max(dim=0).values).double()
        centre = lo / 2 + hi / 2  # halves first: cannot overflow
        spread = float(torch.maximum(hi - centre, centre - lo).max())
        exponent = 0 if spread == 0.0 else math.frexp(spread)[1]  # spread * 2^-exponent in [0.5, 1)
        if abs(exponent) > MAX_EXPONENT:
            size = "large" if exponent > 0 else "small"
            fix = "divide" if exponent > 0 else "multiply"
            raise UserError(
                f"features are too {size} for float64 distances (coordinates spread over {spread:.3g}); "
                f"{fix} both sets by the same constant first")
        fast_dtype = torch.float64 if device.type == "cuda" else torch.float32
        largest = float(torch.maximum(lo.abs(), hi.abs()).max())
        if a.dtype == b.dtype == fast_dtype and float(centre.abs().max()) <= spread and (
                largest == 0.0 or 2.0**-40 <= largest <= 2.0**40):
            # Features near the origin, of ordinary magnitude (as network features are):
            # centring would gain at most a small factor in the bound and scaling nothing,
            # so use the rows as given and spare a copy of both sets.
            centre, exponent = None, 0
        return cls.of(a, centre, exponent, device, chunk), cls.of(b, centre, exponent, device, chunk)

    @classmethod
    def of(cls, x: torch.Tensor, centre: torch.Tensor | None, exponent: int, device: torch.device,
           chunk: int = 256) -> "Prepared":
        """`centre` None (and `exponent` 0): the rows as given are the fast copy."""
        x = x.to(device)
        fast_dtype = torch.float64 if device.type == "cuda" else torch.float32
        fast = x if centre is None else torch.empty(x.shape, dtype=fast_dtype, device=device)
        sq = torch.empty(x.shape[0], dtype=torch.float64, device=device)
        scale = 2.0**-exponent
        for i in range(0, x.shape[0], chunk):  # in chunks: no float64 copy of the whole set
            c = x[i : i + chunk].double()  # the rows themselves when they are float64: never in place
            if centre is not None:
                c = (c - centre).mul_(scale)
                fast[i : i + chunk] = c
            sq[i : i + chunk] = (c**2).sum(dim=1)
        return cls(x, sq.sqrt(), sq * 4.0**exponent, fast, 4.0**exponent)

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


def _margin(a: Prepared, b: Prepared, row_norm: torch.Tensor, col_norm: float) -> torch.Tensor:
    """Bound on |approximate - brute-force float64| squared distance, in original units,
    between rows of norm `row_norm` in a and rows of norm at most `col_norm` in b (see
    the module docstring)."""
    d = a.dim
    u = U64 if (a.exact and b.exact) else U32
    dot = d * u / (1.0 - d * u) + 3.0 * u
    f64 = 4.0 * (d + 4) * U64
    s = a.inv_s2  # the bound in scaled units, converted to original ones; in place: this runs per block
    bound = (row_norm + col_norm).square_().mul_(f64 * s).add_(row_norm, alpha=2.0 * dot * col_norm * s)
    return bound.add_(2.0 * d * 2.0**-140 * s)


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


def _sq_block(a: Prepared, b: Prepared, rs, cs) -> tuple[torch.Tensor, torch.Tensor]:
    """Approximate squared distances for one block (float64, original units), and a
    per-row bound on their error."""
    # Scaling by -2 inv_s2 (a power of two) is exact: this is the scaled-units value,
    # converted, in one pass.
    d2 = (a.fast[rs] @ b.fast[cs].T).double().mul_(-2.0 * a.inv_s2).add_(a.sq[rs, None]).add_(b.sq[None, cs])
    return d2, _margin(a, b, a.norm[rs, None], float(b.norm[cs].max()))


class _Candidates:
    """Per row, the `keep` smallest approximate squared distances seen so far (sorted),
    their columns, and the largest error bound of any block the row was in."""

    def __init__(self, rows: int, keep: int, device):
        self.keep = keep
        self.vals = torch.full((rows, keep), math.inf, dtype=torch.float64, device=device)
        self.idx = torch.zeros((rows, keep), dtype=torch.int64, device=device)
        self.bound = torch.zeros(rows, dtype=torch.float64, device=device)

    def merge(self, rows, d2: torch.Tensor, col_start: int, margin: torch.Tensor) -> None:
        v, j = torch.topk(d2, min(self.keep, d2.shape[1]), dim=1, largest=False, sorted=True)
        allv, allj = torch.cat([self.vals[rows], v], 1), torch.cat([self.idx[rows], j + col_start], 1)
        best, order = torch.topk(allv, self.keep, dim=1, largest=False, sorted=True)
        self.vals[rows], self.idx[rows] = best, torch.gather(allj, 1, order)
        self.bound[rows] = torch.maximum(self.bound[rows], margin[:, 0])


def _symmetric_pass(x: Prepared, keep: int, block: int) -> _Candidates:
    """Candidates for every row. The distance matrix is symmetric, so only blocks on and
    above the diagonal are computed; each updates the lists of its rows and its columns.
    A point's distance to itself is set to -inf, so it always leads its own list."""
    n = len(x)
    cand = _Candidates(n, keep, x.x.device)
    side = max(1, min(n, BLOCK_ROWS, math.isqrt(block)))
    for i0 in range(0, n, side):
        rs = slice(i0, min(i0 + side, n))
        for j0 in range(i0, n, side):
            cs = slice(j0, min(j0 + side, n))
            d2, margin = _sq_block(x, x, rs, cs)
            if j0 == i0:
                d2.fill_diagonal_(-math.inf)
            cand.merge(rs, d2, cs.start, margin)
            if j0 != i0:  # the mirrored block, for the column points
                cand.merge(cs, d2.T, rs.start, _margin(x, x, x.norm[cs, None], float(x.norm[rs].max())))
    return cand


def _row_pass(x: Prepared, rows: torch.Tensor, keep: int, block: int) -> _Candidates:
    """Candidates for the given rows against all columns (self at -inf, as above)."""
    n = len(x)
    cand = _Candidates(len(rows), keep, x.x.device)
    cols = max(1, block // len(rows))
    local = torch.arange(len(rows), device=rows.device)
    # The rows' fast copies, gathered once rather than per block (exact recomputations
    # happen later, in _finish, from x itself).
    picked = Prepared(x.x, x.norm[rows], x.sq[rows], x.fast[rows], x.inv_s2)
    for j0 in range(0, n, cols):
        cs = slice(j0, min(j0 + cols, n))
        d2, margin = _sq_block(picked, x, slice(None), cs)
        mine = (rows >= cs.start) & (rows < cs.stop)
        d2[local[mine], rows[mine] - cs.start] = -math.inf
        cand.merge(slice(None), d2, cs.start, margin)
    return cand


def _finish(x: Prepared, rows: torch.Tensor, vals: torch.Tensor, idx: torch.Tensor, bound: torch.Tensor,
            weight: torch.Tensor, need: int, block: int, result: torch.Tensor) -> torch.Tensor:
    """Exact k-th neighbour distances for `rows` from their candidates, where the list is
    known to be long enough; returns which rows were finished.

    Counting multiplicities, let v be the need-th smallest approximate value and b the
    row's bound. The true need-th smallest distance t is at most v + b, so only
    candidates with approximate value <= v + 2b can matter: those are recomputed
    exactly, and q is the need-th smallest of them (self counted at 0). q = t unless a
    point outside the list is closer than q; every such point is at least
    max(0, L - b) away, L being the list's largest approximate value. So the row is
    done when q <= max(0, L - b), or when the list holds every point.
    """
    w = weight[idx]
    at_need = (w.cumsum(1) < need).sum(1, keepdim=True)  # first position where the weights reach `need`
    threshold = vals.gather(1, at_need) + 2.0 * bound[:, None]
    is_self = idx == rows[:, None]
    exact = torch.full_like(vals, math.inf)
    exact[is_self] = 0.0  # no need to recompute a point's distance to itself
    ii, jj = torch.nonzero((vals <= threshold) & ~is_self, as_tuple=True)
    exact[ii, jj] = _exact_pairs(x, rows[ii], x, idx[ii, jj], block)
    exact, order = exact.sort(dim=1)
    q = exact.gather(1, (w.gather(1, order).cumsum(1) < need).sum(1, keepdim=True))[:, 0]
    done = (q <= (vals[:, -1] - bound).clamp(min=0.0)) | (vals.shape[1] == len(x))
    result[rows[done]] = q[done]
    return done


def kth_neighbour_sq(x: Prepared, k: int, block: int = DEFAULT_BLOCK, weight: torch.Tensor | None = None):
    """Squared distance from each row of x to its k-th nearest neighbour in x, self excluded.

    Like the `prdc` package, this is the (k+1)-th smallest distance with the point
    itself (distance 0) counted, so exact duplicates count as neighbours; a row of
    `weight` w stands for w identical points. One symmetric pass keeps k + 17
    candidates per row; rows whose list may be too short (many points within the error
    bound of their k-th neighbour) are redone against all rows with a list `GROWTH`
    times longer, until all are done (at worst, a list of every point).
    """
    n = len(x)
    dev = x.x.device
    weight = torch.ones(n, dtype=torch.int64, device=dev) if weight is None else weight.to(dev)
    need = k + 1
    result = torch.empty(n, dtype=torch.float64, device=dev)
    keep = min(n, need + 16)
    cand = _symmetric_pass(x, keep, block)
    pending = []
    side = max(1, min(n, BLOCK_ROWS, math.isqrt(block)))
    for i0 in range(0, n, side):
        rows = torch.arange(i0, min(i0 + side, n), device=dev)
        done = _finish(x, rows, cand.vals[rows], cand.idx[rows], cand.bound[rows], weight, need, block, result)
        pending.append(rows[~done])
    pending = torch.cat(pending)
    while len(pending):
        keep = min(n, keep * GROWTH)
        still = []
        for rows in pending.split(max(1, min(BLOCK_ROWS, block // keep))):  # rows x keep lists fit one block
            part = _row_pass(x, rows, keep, block)
            done = _finish(x, rows, part.vals, part.idx, part.bound, weight, need, block, result)
            still.append(rows[~done])
        pending = torch.cat(still)
    return result


def ball_membership(queries: Prepared, centers: Prepared, center_r2: torch.Tensor, query_r2: torch.Tensor,
                    strict: bool, block: int = DEFAULT_BLOCK, center_weight: torch.Tensor | None = None):
    """Who lies in whose k-NN ball, between a query set and a center set, in one pass.

    With balls B(c_j, r_j) around the centers and B(q_i, s_i) around the queries:

    - ``count[i]``: how many center balls hold query i (precision, density), each
      center counted `center_weight[j]` times (its multiplicity; default 1);
    - ``covered[j]``: whether any query lies in center j's ball (coverage);
    - ``reached[j]``: whether center j lies in any query's ball (recall).

    "Holds" is ``d < r`` if `strict` else ``d <= r`` (compared as squares).
    """
    nq, nc = len(queries), len(centers)
    dev = queries.x.device
    if center_weight is None:
        center_weight = torch.ones(nc, dtype=torch.int64, device=dev)
    center_weight = center_weight.to(dev)
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
        count[rs] += (in_center_ball * center_weight[None, cs]).sum(dim=1)
        covered[cs] |= in_center_ball.any(dim=0)
        reached[cs] |= inside(d2, margin, query_r2[rs, None], rs, cs).any(dim=0)
    return count, covered, reached

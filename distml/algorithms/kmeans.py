"""K-means over the engine interface: k-means|| or k-means++ seeding, then Lloyd.

* ``init="k-means||"`` (Bahmani et al., as in Spark MLlib): two oversampling
  rounds (MLlib's default ``initSteps``) pick ~2k candidates per round with probability proportional to their
  squared distance; the candidates, weighted by how many rows they attract, are
  reduced to k centres on the driver by weighted k-means++ and Lloyd (MLlib's
  ``LocalKMeans``; :func:`recluster`, a few dozen points, numpy only). Row draws are keyed by global
  row number, so the result does not depend on the partitioning.
* ``init="auto"`` (the default) runs that k-means|| on a stratified sample of
  :data:`~distml.algorithms.sampling.SAMPLE_ROWS` rows held on the driver when the data
  has more (one pass to fetch it, where k-means|| over every row makes four), and over
  every row otherwise; Lloyd then runs on the full data as always.
* ``init="k-means++"`` reproduces scikit-learn's greedy k-means++ exactly (the
  same ``RandomState`` stream, the same candidate rule), two passes per centre:
  use it for small k or to match scikit-learn's labels.
* ``init="random"`` picks rows like scikit-learn; an array gives the centres.

Lloyd iterations compute per-partition sums, counts and inertia; the stopping rule
is scikit-learn's (total squared centre shift ≤ ``tol`` × mean feature variance).
Empty clusters are re-seeded with the rows farthest from their centres (ties
broken by row number), so reruns are identical.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from distml.algorithms import sampling
from distml.algorithms.engine import (
    BLOCK_ROWS,
    Engine,
    Partition,
    concat,
    contiguous_rows,
    tree_reduce,
)
from distml.algorithms.random import row_keys, row_uniforms
from distml.algorithms.sampling import sample_stride

_EXACT_CHOICE_MAX_ROWS = 10_000_000


# -- per-partition functions (module level so every engine can ship them) ---------------------
# Rows per block when computing distances (engine.BLOCK_ROWS): keeps the (block x k)
# temporaries in cache.


def _squared_distances(
    X: np.ndarray,
    x_norms: np.ndarray,
    centers: np.ndarray,
    center_norms: np.ndarray,
    out: np.ndarray,
) -> np.ndarray:
    """``‖x - c‖²`` for every row and centre, written into ``out`` (rows × centres).

    Blocks reuse one buffer: no temporary is allocated per block, which matters where
    the allocator returns large blocks to the OS at once (Dask sets
    ``MALLOC_TRIM_THRESHOLD_``, making every fresh 1 MB temporary an mmap and page faults).
    """
    D = out[: len(X)]
    np.matmul(X, centers.T, out=D)
    D *= -2.0
    D += center_norms
    D += x_norms[:, None]
    np.maximum(D, 0.0, out=D)
    return D


def _blocks(part: Partition, contiguous: bool = False):  # type: ignore[no-untyped-def]
    """``(lo, hi, rows, their ‖x‖²)`` in blocks of :data:`BLOCK_ROWS` rows; with
    ``contiguous`` each block is copied into one reused buffer so that its rows x centres
    products can run with ``np.dot`` (see :func:`contiguous_rows`).

    The norms are computed block by block while the block is in cache, not kept beside
    the partition: a cached copy was one more float per row (76 MiB at 10⁷ rows) for the
    whole fit; the values are the same bits (a row's dot product does not depend on the
    rows around it)."""
    block = (
        np.empty((min(BLOCK_ROWS, part.n_rows), part.X.shape[1]), order="F") if contiguous else None
    )
    for lo in range(0, part.n_rows, BLOCK_ROWS):
        rows = part.X[lo : lo + BLOCK_ROWS]
        norms = np.einsum("ij,ij->i", rows, rows)
        X = rows if block is None else contiguous_rows(part.X, lo, block)
        yield lo, lo + len(X), X, norms


def _buffer(part: Partition, k: int) -> np.ndarray:
    return np.empty((min(BLOCK_ROWS, part.n_rows), k))


def _norms(centers: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->i", centers, centers)


class _Scores:
    """``‖c‖² - 2 x·c`` for a block of rows and every centre (rows × centres), in one buffer
    reused block after block (no temporary per block: see :func:`_squared_distances`).

    A row's own ``‖x‖²`` is left out: it does not change which centre is nearest, and adding
    it to the minimum alone gives the bits adding it to every entry first would (rounding is
    monotonic), at a fraction of the work. ``-2`` is folded into the centres (exact: a power
    of two) and ``‖c‖²`` is added over the flat buffer, not broadcast along rows of k.
    """

    def __init__(self, part: Partition, centers: np.ndarray) -> None:
        rows = min(BLOCK_ROWS, part.n_rows)
        self.weights = (-2.0 * centers).T
        self.tiled = np.tile(_norms(centers), rows)
        self.buffer = np.empty((rows, len(centers)))

    def __call__(self, X: np.ndarray) -> np.ndarray:
        D = self.buffer[: len(X)]
        np.dot(X, self.weights, out=D)
        flat = D.reshape(-1)
        flat += self.tiled[: flat.size]
        return D


def _nearest_in_block(D: np.ndarray, norms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row's nearest centre and its squared distance ``max(score + ‖x‖², 0)``."""
    labels = D.argmin(axis=1)
    d2 = D[np.arange(len(D)), labels]
    d2 += norms
    np.maximum(d2, 0.0, out=d2)
    return labels, d2


def _centre_scores(
    X: np.ndarray, weights: np.ndarray, center_norms: np.ndarray, buffer: np.ndarray
) -> np.ndarray:
    """``‖c‖² - 2 c·x`` laid out centres × rows, in ``buffer`` (``weights`` = ``-2 · centres``,
    ``center_norms`` a column): the minimum over centres then runs along contiguous rows."""
    S = buffer[:, : len(X)]
    np.matmul(weights, X.T, out=S)  # centres x rows: this product's threads did overlap
    S += center_norms
    return S


def _closest(part: Partition, centers: np.ndarray) -> np.ndarray:
    """Squared distance to each row's closest centre (no index needed: a cheaper sweep)."""
    dist = np.empty(part.n_rows)
    weights = -2.0 * centers  # exact, as in _Scores; the row norms join the minimum only
    center_norms = _norms(centers)[:, None]
    buffer = np.empty((len(centers), min(BLOCK_ROWS, part.n_rows)))
    for lo, hi, X, norms in _blocks(part):
        np.min(_centre_scores(X, weights, center_norms, buffer), axis=0, out=dist[lo:hi])
        dist[lo:hi] += norms
    np.maximum(dist, 0.0, out=dist)
    return dist


def lloyd_step(part: Partition, centers: np.ndarray) -> tuple[np.ndarray, np.ndarray, float, float]:
    """Per-cluster sums and counts, the inertia against ``centers``, and ``Σ‖x‖²``.

    One sweep in cache-sized blocks: distances, nearest centre, then the block's
    rows summed per cluster by a small dense one-hot product. ``Σ‖x‖²`` (with the
    sums and counts) gives scikit-learn's variance-scaled tolerance without a pass.
    """
    k, d = centers.shape
    sums = np.zeros((k, d))
    block_sums = np.empty((k, d))
    counts = np.zeros(k)
    inertia = squares = 0.0
    clusters = np.arange(k)[:, None]
    scores = _Scores(part, centers)
    onehot = np.empty((k, min(BLOCK_ROWS, part.n_rows)))
    for lo, hi, X, norms in _blocks(part, contiguous=True):  # np.dot: threads overlap
        labels, d2 = _nearest_in_block(scores(X), norms)
        inertia += float(d2.sum())
        squares += float(norms.sum())
        members = onehot[:, : hi - lo]  # (k × block) one-hot, written in place
        np.equal(labels, clusters, out=members, casting="unsafe")
        sums += np.dot(members, X, out=block_sums)
        counts += np.bincount(labels, minlength=k)
    return sums, counts, inertia, squares


def farthest_rows(part: Partition, centers: np.ndarray, m: int) -> list[tuple[float, int, Any]]:
    """The ``m`` rows farthest from their closest centre, as (distance, row id, row)."""
    if part.n_rows == 0:
        return []
    dist = _closest(part, centers)
    ids = part.row_ids
    order = np.lexsort((ids, -dist))[:m]
    return [(float(dist[i]), int(ids[i]), part.X[i].copy()) for i in order]


def _keep_farthest(m: int):
    def combine(a: list, b: list) -> list:
        return sorted(a + b, key=lambda t: (-t[0], t[1]))[:m]

    return combine


def rows_at_positions(
    part: Partition, offsets: np.ndarray, positions: np.ndarray
) -> list[tuple[int, np.ndarray]]:
    """Rows at the given global training positions that fall in this partition."""
    lo = offsets[part.index]
    hit = positions[(positions >= lo) & (positions < lo + part.n_rows)]
    return [(int(p), part.X[p - lo].copy()) for p in hit]


def smallest_keys(part: Partition, seed: int, stream: int, m: int) -> list[tuple[int, int, Any]]:
    """The ``m`` rows with the smallest random keys: a uniform sample independent of layout."""
    if part.n_rows == 0:
        return []
    ids = part.row_ids
    keys = row_keys(seed, stream, ids)
    # the m smallest in O(n), then ordered by (key, row id) like the combine step
    chosen = np.argpartition(keys, m - 1)[:m] if m < part.n_rows else np.arange(part.n_rows)
    order = chosen[np.lexsort((ids[chosen], keys[chosen]))]
    return [(int(keys[i]), int(ids[i]), part.X[i].copy()) for i in order]


def _keep_smallest(m: int):
    def combine(a: list, b: list) -> list:
        return sorted(a + b, key=lambda t: (t[0], t[1]))[:m]

    return combine


def cost(part: Partition, centers: np.ndarray) -> float:
    return float(_closest(part, centers).sum()) if part.n_rows else 0.0


def oversample(
    part: Partition, centers: np.ndarray, phi: float, ell: float, seed: int, stream: int
) -> list[tuple[int, np.ndarray]]:
    """k-means|| sampling: keep each row with probability ``ell · d² / phi``."""
    if part.n_rows == 0:
        return []
    prob = ell * _closest(part, centers) / phi
    ids = part.row_ids
    chosen = np.nonzero(row_uniforms(seed, stream, ids) < prob)[0]
    return [(int(ids[i]), part.X[i].copy()) for i in chosen]


def cost_and_oversample(
    part: Partition, centers: np.ndarray, ell: float, seed: int, stream: int
) -> tuple[float, list[tuple[int, float, float, np.ndarray]]]:
    """One k-means|| round in one pass: this partition's cost ``phi_p`` and every row that
    :func:`oversample` could keep once the total ``phi`` is known.

    A row is kept when ``u < ell · d² / phi``; since ``phi >= phi_p`` (a sum of non-negative
    terms, rounding included), such a row also has ``u < ell · d² / phi_p``: that superset
    (about ``ell`` rows in all) comes back with its ``d²`` and ``u``, and the driver applies
    the exact rule — the same rows as a cost pass followed by a sampling pass, in one pass.
    """
    if part.n_rows == 0:
        return 0.0, []
    closest = _closest(part, centers)
    phi_p = float(closest.sum())
    if phi_p <= 0:
        return phi_p, []
    ids = part.row_ids
    uniforms = row_uniforms(seed, stream, ids)
    scaled = ell * closest
    maybe = np.nonzero(uniforms < scaled / phi_p)[0]
    return phi_p, [
        (int(ids[i]), float(scaled[i]), float(uniforms[i]), part.X[i].copy()) for i in maybe
    ]


def _add_cost_and_rows(a: tuple[float, list], b: tuple[float, list]) -> tuple[float, list]:
    """Costs added in :func:`tree_reduce` order (the same sum as a cost pass), rows joined."""
    return a[0] + b[0], a[1] + b[1]


def closest_counts(part: Partition, candidates: np.ndarray) -> np.ndarray:
    """How many rows each candidate is the closest to (the first one on a tie).

    k-means‖ has a few dozen candidates: a row-wise ``argmin`` over so many is slow, so the
    scores are laid out candidates × rows, where the minimum vectorises, and each candidate
    counts the rows whose minimum it attains; the rare rows that tie are settled apart.
    """
    k = len(candidates)
    counts = np.zeros(k)
    if part.n_rows == 0:
        return counts
    weights, center_norms = -2.0 * candidates, _norms(candidates)[:, None]
    rows = min(BLOCK_ROWS, part.n_rows)
    buffer, hits = np.empty((k, rows)), np.empty((k, rows), dtype=bool)
    for lo, hi, X, _ in _blocks(part):  # a row's own ‖x‖² does not change its closest
        S = _centre_scores(X, weights, center_norms, buffer)
        E = hits[:, : hi - lo]
        np.equal(S, S.min(axis=0), out=E)
        per = E.sum(axis=1)
        if per.sum() != hi - lo:  # rows at the same distance from two candidates
            for row in np.nonzero(E.sum(axis=0) > 1)[0]:
                per -= E[:, row]
                per[int(np.argmax(E[:, row]))] += 1
        counts += per
    return counts


def pick_by_potential(
    part: Partition, centers: np.ndarray, offsets: np.ndarray, targets: np.ndarray, last: int
) -> list[tuple[int, np.ndarray]]:
    """Rows where the running sum of closest distances crosses each target (k-means++ draw).

    ``last`` is the last non-empty partition, which also takes targets past the total.
    """
    if part.n_rows == 0:
        return []
    cumulative = np.cumsum(_closest(part, centers)) + offsets[part.index]
    lo, hi = offsets[part.index], cumulative[-1]
    out = []
    for j, value in enumerate(targets):
        if lo <= value < hi or (part.index == last and value >= hi):
            i = min(int(np.searchsorted(cumulative, value)), part.n_rows - 1)
            out.append((j, part.X[i].copy()))
    return out


def candidate_potentials(
    part: Partition, centers: np.ndarray, candidates: np.ndarray
) -> list[tuple[int, np.ndarray]]:
    """Per candidate: Σ min(closest², d²(x, candidate)) over this partition."""
    if part.n_rows == 0:
        return [(part.index, np.zeros(len(candidates)))]
    closest = _closest(part, centers)
    total = np.zeros(len(candidates))
    buffer, candidate_norms = _buffer(part, len(candidates)), _norms(candidates)
    for lo, hi, X, norms in _blocks(part):
        D = _squared_distances(X, norms, candidates, candidate_norms, buffer)
        np.minimum(D, closest[lo:hi, None], out=D)
        total += D.sum(axis=0)
    return [(part.index, total)]


# -- drivers ----------------------------------------------------------------------------------
@dataclass
class KMeansSolution:
    centers: np.ndarray
    inertia: float
    n_iter: int


def absolute_tolerance(tol: float, counts: np.ndarray, sums: np.ndarray, sq_norms: float) -> float:
    """scikit-learn's tolerance: ``tol`` × the mean per-feature variance, from a Lloyd pass."""
    n = float(counts.sum())
    mean = sums.sum(axis=0) / n
    variance_sum = max(sq_norms / n - float(mean @ mean), 0.0)
    return tol * variance_sum / sums.shape[1]


def _train_offsets(engine: Engine) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(engine.partition_sizes)]).astype(np.int64)


def init_random(engine: Engine, k: int, rs: np.random.RandomState) -> np.ndarray:
    positions = rs.permutation(engine.n_rows)[:k]
    found = dict(
        engine.map_reduce(rows_at_positions, _train_offsets(engine), positions, combine=concat)
    )
    return np.array([found[int(p)] for p in positions])


def init_kmeans_plusplus(engine: Engine, k: int, rs: np.random.RandomState) -> np.ndarray:
    """scikit-learn's greedy k-means++ (``n_local_trials = 2 + log k``), distributed."""
    n = engine.n_rows
    if n <= _EXACT_CHOICE_MAX_ROWS:
        first = int(rs.choice(n, p=np.full(n, 1.0 / n)))
    else:
        first = min(int(rs.random_sample() * n), n - 1)
    found = engine.map_reduce(
        rows_at_positions, _train_offsets(engine), np.array([first]), combine=concat
    )
    centers = np.array([found[0][1]])
    trials = 2 + int(np.log(k))
    last = max(i for i, size in enumerate(engine.partition_sizes) if size > 0)
    per_part = engine.map_reduce(candidate_potentials, centers, centers, combine=concat)
    current = [v[0] for _, v in sorted(per_part, key=lambda t: t[0])]
    potential = float(tree_reduce(current))
    for _ in range(1, k):
        targets = rs.uniform(size=trials) * potential
        offsets = np.concatenate([[0.0], np.cumsum(current)])[:-1]
        picked = dict(
            engine.map_reduce(pick_by_potential, centers, offsets, targets, last, combine=concat)
        )
        candidates = np.array([picked[j] for j in range(trials)])
        per_part = engine.map_reduce(candidate_potentials, centers, candidates, combine=concat)
        vectors = [v for _, v in sorted(per_part, key=lambda t: t[0])]
        totals = tree_reduce(vectors)
        best = int(np.argmin(totals))
        potential = float(totals[best])
        current = [v[best] for v in vectors]
        centers = np.vstack([centers, candidates[best]])
    return centers


def init_kmeans_parallel(
    engine: Engine, k: int, seed: int, rounds: int = 2, oversampling: float = 2.0
) -> np.ndarray:
    """k-means|| seeding (see module docstring)."""
    sample = engine.map_reduce(smallest_keys, seed, 0, k, combine=_keep_smallest(k))
    reserve = np.array([row for _, _, row in sample])
    centers = reserve[:1]
    ell = oversampling * k
    for r in range(1, rounds + 1):
        phi, maybe = engine.map_reduce(
            cost_and_oversample, centers, ell, seed, r, combine=_add_cost_and_rows
        )
        if phi <= 0:
            break
        # oversample's rule, u < ell·d²/phi, on the superset each partition sent
        chosen = [(row_id, row) for row_id, scaled, u, row in maybe if u < scaled / phi]
        if chosen:
            chosen.sort(key=lambda t: t[0])
            centers = np.vstack([centers, np.array([row for _, row in chosen])])
    candidates = np.unique(np.vstack([centers, reserve]), axis=0)
    if len(candidates) <= k:
        return _pad(candidates, reserve, k)
    weights = engine.map_reduce(closest_counts, candidates)
    keep = weights > 0
    candidates, weights = candidates[keep], weights[keep]
    if len(candidates) <= k:
        return _pad(candidates, reserve, k)
    return recluster(candidates, weights.astype(np.float64), k, seed)


def recluster(points: np.ndarray, weights: np.ndarray, k: int, seed: int) -> np.ndarray:
    """k centres of weighted ``points`` (more than k distinct rows): scikit-learn's greedy
    k-means++ seeding with weights (``2 + log k`` candidates per centre), then weighted
    Lloyd iterations until no point changes cluster (at most 300)."""
    rs = np.random.RandomState(seed % (2**32))
    n = len(points)

    def squared(centers: np.ndarray) -> np.ndarray:  # points × centres, exact differences
        return ((points[:, None, :] - centers[None, :, :]) ** 2).sum(axis=2)

    chosen = [int(rs.choice(n, p=weights / weights.sum()))]
    closest = squared(points[chosen])[:, 0]
    trials = 2 + int(np.log(k))
    for _ in range(1, k):
        cumulative = np.cumsum(weights * closest)
        picks = np.searchsorted(cumulative, rs.uniform(size=trials) * cumulative[-1])
        picks = np.minimum(picks, n - 1)
        candidates = np.minimum(closest[:, None], squared(points[picks]))  # points × trials
        best = int(np.argmin(weights @ candidates))
        chosen.append(int(picks[best]))
        closest = candidates[:, best]
    centers = points[chosen].copy()
    labels = np.full(n, -1)
    for _ in range(300):
        nearest = squared(centers).argmin(axis=1)
        if np.array_equal(nearest, labels):
            break
        labels = nearest
        for j in range(k):
            mine = labels == j
            if weights[mine].sum() > 0:  # an emptied cluster keeps its centre
                centers[j] = weights[mine] @ points[mine] / weights[mine].sum()
    return centers


def _pad(candidates: np.ndarray, reserve: np.ndarray, k: int) -> np.ndarray:
    rows = list(candidates)
    for row in reserve:
        if len(rows) >= k:
            break
        rows.append(row)
    while len(rows) < k:  # fewer distinct rows than clusters: duplicate (as scikit-learn warns)
        rows.append(rows[len(rows) % len(candidates)])
    return np.array(rows[:k])


def lloyd(engine: Engine, centers: np.ndarray, max_iter: int, tol: float) -> KMeansSolution:
    """Lloyd iterations from ``centers`` until the squared centre shift is within
    ``tol`` × the mean feature variance (scikit-learn's rule)."""
    centers = np.array(centers, dtype=np.float64)
    k = len(centers)
    n_iter = 0
    tol_abs = 0.0
    for iteration in range(1, max_iter + 1):
        n_iter = iteration
        sums, counts, _, sq_norms = engine.map_reduce(lloyd_step, centers)
        if iteration == 1:
            tol_abs = absolute_tolerance(tol, counts, sums, sq_norms)
        new = np.empty_like(centers)
        filled = counts > 0
        new[filled] = sums[filled] / counts[filled][:, None]
        empty = np.nonzero(~filled)[0]
        if len(empty):
            far = engine.map_reduce(
                farthest_rows, centers, len(empty), combine=_keep_farthest(len(empty))
            )
            for j, (_, _, row) in zip(empty, far, strict=False):
                new[j] = row
        shift = float(((new - centers) ** 2).sum())
        centers = new
        if shift <= tol_abs:
            break
    _, _, inertia, _ = engine.map_reduce(lloyd_step, centers)
    assert k == len(centers)
    return KMeansSolution(centers=centers, inertia=float(inertia), n_iter=n_iter)


#: ``init="auto"`` seeds on the sample only while it has this many rows per cluster: k-means||
#: draws ~4k candidates, and small clusters need rows in the sample to be found.
SAMPLE_ROWS_PER_CLUSTER = 50


def seeding_sample(engine: Engine, seed: int, n_clusters: int) -> Engine | None:
    """The stratified sample (:mod:`distml.algorithms.sampling`) as a one-partition engine
    on the driver, or ``None`` when the sample would be every row, or too few rows for
    ``n_clusters``."""
    stride = sample_stride(engine.n_rows)
    if stride == 1 or engine.n_rows // stride < SAMPLE_ROWS_PER_CLUSTER * n_clusters:
        return None
    return sampling.fetch(engine, stride, seed)


def fit_kmeans(
    engine: Engine,
    n_clusters: int,
    init: str | np.ndarray = "auto",
    n_init: int = 1,
    max_iter: int = 300,
    tol: float = 1e-4,
    random_state: int | None = None,
) -> KMeansSolution:
    """Best of ``n_init`` seedings + Lloyd runs (lowest inertia; the first on ties, runs
    within 1e-9 relative of each other counting as ties)."""
    rs = np.random.RandomState(random_state)
    sample: Engine | None = None  # init="auto": drawn once, reused by every seeding
    best: KMeansSolution | None = None
    for _ in range(n_init):
        if isinstance(init, np.ndarray):
            start = init
        elif init == "k-means++":
            start = init_kmeans_plusplus(engine, n_clusters, rs)
        elif init == "random":
            start = init_random(engine, n_clusters, rs)
        else:  # "k-means||", or "auto": the same on a sample of large data
            seed = int(rs.randint(np.iinfo(np.int32).max))
            if init == "auto" and sample is None:
                sample = seeding_sample(engine, seed, n_clusters) or engine
            start = init_kmeans_parallel(sample if init == "auto" else engine, n_clusters, seed)
        solution = lloyd(engine, start, max_iter, tol)
        # the first on ties, and runs within rounding of each other are ties: the same optimum
        # reached by two seedings differs in the last bits, which partitioning can reorder
        if best is None or solution.inertia < best.inertia * (1.0 - 1e-9):
            best = solution
    assert best is not None
    return best

"""Exact medians of distributed columns in a few passes, without sorting the data.

Pass 1 counts each column's non-missing values and finds their range. A
histogram pass then bins the candidates into :data:`BINS` bins and keeps only
the bin(s) holding the middle order statistic(s). Candidates are defined by the
same binning formula at every level (never by comparing with bin edges), so each
pass classifies every value identically and the rank bookkeeping stays exact.
Once at most :data:`GATHER_LIMIT` candidates remain (typically after one
histogram), they are gathered and the median is read off them. The result
equals ``numpy.nanmedian`` of the whole column: the error bound is 0.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from distml.algorithms.engine import Engine, Partition

BINS = 4096
GATHER_LIMIT = 2_000_000

Level = tuple[float, float, int, int]  # (lo, hi, first bin kept, last bin kept)
Prepare = Callable[[Partition], dict[str, Any]]


def _bin(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    if hi <= lo:
        return np.zeros(len(values), dtype=np.int64)
    scaled = (values - lo) / (hi - lo) * BINS
    return np.clip(scaled, 0, BINS - 1).astype(np.int64)


def _candidates(values: np.ndarray, chain: list[Level]) -> np.ndarray:
    values = values[~np.isnan(values)]
    for lo, hi, first, last in chain:
        index = _bin(values, lo, hi)
        values = values[(index >= first) & (index <= last)]
    return values


def _ranges(part: Partition, prepare: Prepare, columns: list[str]) -> np.ndarray:
    """Per column: [count, min, max] of the non-missing values."""
    frame = prepare(part)
    out = np.zeros((len(columns), 3))
    out[:, 1], out[:, 2] = np.inf, -np.inf
    for j, name in enumerate(columns):
        values = _candidates(frame[name], [])
        if len(values):
            out[j] = (len(values), values.min(), values.max())
    return out


def _merge_ranges(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.column_stack(
        [a[:, 0] + b[:, 0], np.minimum(a[:, 1], b[:, 1]), np.maximum(a[:, 2], b[:, 2])]
    )


def _histograms(
    part: Partition,
    prepare: Prepare,
    columns: list[str],
    chains: list[list[Level]],
    ranges: list[tuple[float, float]],
) -> np.ndarray:
    """Per column: the candidates' counts in BINS bins of its range, then their min and max."""
    frame = prepare(part)
    out = np.zeros((len(columns), BINS + 2))
    out[:, -2], out[:, -1] = np.inf, -np.inf
    for j, name in enumerate(columns):
        values = _candidates(frame[name], chains[j])
        out[j, :BINS] = np.bincount(_bin(values, *ranges[j]), minlength=BINS)
        if len(values):
            out[j, -2:] = values.min(), values.max()
    return out


def _merge_histograms(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    out = a + b
    out[:, -2] = np.minimum(a[:, -2], b[:, -2])
    out[:, -1] = np.maximum(a[:, -1], b[:, -1])
    return out


def _gather(
    part: Partition, prepare: Prepare, columns: list[str], chains: list[list[Level]]
) -> list[np.ndarray]:
    frame = prepare(part)
    return [_candidates(frame[name], chains[j]) for j, name in enumerate(columns)]


def _concat(a: list[np.ndarray], b: list[np.ndarray]) -> list[np.ndarray]:
    return [np.concatenate([x, y]) for x, y in zip(a, b, strict=True)]


def medians(engine: Engine, prepare: Prepare, columns: list[str]) -> np.ndarray:
    """Exact ``nanmedian`` of each column of ``prepare(partition)``; NaN for an empty column."""
    ranges = engine.map_reduce(_ranges, prepare, columns, combine=_merge_ranges)
    count = ranges[:, 0]
    wanted = [(int(np.floor((n - 1) / 2)), int(np.ceil((n - 1) / 2))) for n in count]
    chains: list[list[Level]] = [[] for _ in columns]
    bounds = [(float(r[1]), float(r[2])) for r in ranges]
    below = [0] * len(columns)  # candidates dropped for being smaller than the median
    inside = [int(n) for n in count]
    result = np.full(len(columns), np.nan)
    todo = []
    for j in range(len(columns)):
        if count[j] == 0:
            continue
        if bounds[j][0] == bounds[j][1]:  # a single distinct value
            result[j] = bounds[j][0]
        else:
            todo.append(j)
    while todo:
        ready = [j for j in todo if inside[j] <= GATHER_LIMIT]
        if ready:
            found = engine.map_reduce(
                _gather,
                prepare,
                [columns[j] for j in ready],
                [chains[j] for j in ready],
                combine=_concat,
            )
            for j, values in zip(ready, found, strict=True):
                ordered = np.sort(values)
                low, high = (rank - below[j] for rank in wanted[j])
                result[j] = (ordered[low] + ordered[high]) / 2
        todo = [j for j in todo if j not in ready]
        if not todo:
            break
        hist = engine.map_reduce(
            _histograms,
            prepare,
            [columns[j] for j in todo],
            [chains[j] for j in todo],
            [bounds[j] for j in todo],
            combine=_merge_histograms,
        )
        for row, j in enumerate(list(todo)):  # rows follow the order the pass was given
            if hist[row, -2] == hist[row, -1]:  # every candidate is the same value
                result[j] = hist[row, -2]
                todo.remove(j)
                continue
            cumulative = below[j] + np.cumsum(hist[row, :BINS])
            first = int(np.searchsorted(cumulative, wanted[j][0], side="right"))
            last = int(np.searchsorted(cumulative, wanted[j][1], side="right"))
            below[j] += int(hist[row, :first].sum())
            inside[j] = int(hist[row, first : last + 1].sum())
            lo, hi = bounds[j]
            chains[j].append((lo, hi, first, last))
            width = (hi - lo) / BINS
            bounds[j] = (lo + first * width, lo + (last + 1) * width)
    return result

"""The deterministic train/test split."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.model_selection import train_test_split

import distml.data.split as split_module
from distml.data import Split
from distml.errors import SpecError


@pytest.mark.parametrize("n", [5, 6, 37, 1000])
@pytest.mark.parametrize("seed", [0, 42])
def test_small_splits_select_sklearns_test_rows(n: int, seed: int) -> None:
    rows = np.arange(n)
    _, expected_test = train_test_split(rows, test_size=0.2, random_state=seed)
    mask = Split(0.2, seed).test_mask(n, rows)
    assert sorted(rows[mask].tolist()) == sorted(expected_test.tolist())


def test_mask_is_the_same_whatever_the_partitioning(monkeypatch: pytest.MonkeyPatch) -> None:
    for limit in (10**6, 10):  # exact and hashed modes
        monkeypatch.setattr(split_module, "EXACT_SPLIT_MAX_ROWS", limit)
        split = Split(0.25, 7)
        whole = split.test_mask(5000, np.arange(5000))
        pieces = np.concatenate(
            [split.test_mask(5000, ids) for ids in np.array_split(np.arange(5000), 13)]
        )
        assert np.array_equal(whole, pieces)


def test_hashed_split_fraction_is_close_to_test_size(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(split_module, "EXACT_SPLIT_MAX_ROWS", 10)
    mask = Split(0.2, 1).test_mask(200_000, np.arange(200_000))
    assert abs(mask.mean() - 0.2) < 0.005  # binomial sd is 0.0009


def test_invalid_test_size() -> None:
    with pytest.raises(SpecError, match="test_size must be between 0 and 1, got 1.5"):
        Split(1.5, 0)

"""scikit-learn's own conformance suite (``check_estimator``) on distml's estimators.

Every check passes: no expected failures are declared (README, *Deliberate
differences*, lists where distml's defaults differ without breaking a check).
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

import distml
from distml.errors import DataError, DistmlError, InputTypeError

ESTIMATORS = [
    distml.LinearRegression(),
    distml.LogisticRegression(),
    distml.KMeans(n_clusters=3, random_state=0),
]
# scikit-learn's own LogisticRegression stops at max_iter=100 on the unscaled iris data of
# check_non_transformer_estimators_n_iter and warns too: the warning is expected there
pytestmark = pytest.mark.filterwarnings("ignore::distml.errors.ConvergenceWarning")

#: Checks distml fails on purpose, with the reason: none today.
EXPECTED_FAILURES: dict[str, dict[str, str]] = {}


@parametrize_with_checks(
    ESTIMATORS, expected_failed_checks=lambda est: EXPECTED_FAILURES.get(type(est).__name__, {})
)
def test_sklearn_check_estimator(estimator, check) -> None:
    check(estimator)


def test_bad_input_errors_are_sklearns_classes_and_distmls() -> None:
    """What the suite probes raises scikit-learn's class and a distml error naming it."""
    X, y = np.arange(20.0).reshape(10, 2), np.arange(10.0)
    scipy_sparse = pytest.importorskip("scipy.sparse")
    with pytest.raises(InputTypeError, match="Sparse data was passed") as info:
        distml.LinearRegression().fit(scipy_sparse.csr_matrix(X), y)
    assert isinstance(info.value, TypeError) and isinstance(info.value, DistmlError)
    with pytest.raises(DataError, match="Complex data not supported"):
        distml.LinearRegression().fit(X + 1j, y)
    with pytest.raises(DataError, match="0 sample"):
        distml.LinearRegression().fit(np.empty((0, 2)), np.empty(0))
    with pytest.raises(DataError, match="Unknown label type: continuous"):
        distml.LogisticRegression().fit(X, y + 0.5)
    with pytest.raises(DataError, match="only one class"):
        distml.LogisticRegression().fit(X, np.zeros(10))
    model = distml.KMeans(n_clusters=2, random_state=0).fit(X)
    with pytest.raises(ValueError, match="X has 3 features, but KMeans is expecting 2"):
        model.predict(np.ones((2, 3)))
    np.testing.assert_array_equal(model.fit_predict(X), model.labels_)
    np.testing.assert_allclose(model.fit_transform(X), model.transform(X))

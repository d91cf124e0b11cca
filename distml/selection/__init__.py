"""Model selection: k-fold cross-validation and grid or random search on persisted data."""

from distml.selection.folds import fold_of, fold_rows
from distml.selection.search import Candidate, Plan, best, cross_validate, set_candidate

__all__ = ["Candidate", "Plan", "best", "cross_validate", "fold_of", "fold_rows", "set_candidate"]

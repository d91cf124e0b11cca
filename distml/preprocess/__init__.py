"""Preprocessing stages (impute, scale, one_hot, select) and the pipeline that runs them."""

from distml.preprocess.pipeline import Pipeline, build_pipeline
from distml.preprocess.stages import STAGES, Impute, OneHot, Scale, Select, Stage

__all__ = ["STAGES", "Impute", "OneHot", "Pipeline", "Scale", "Select", "Stage", "build_pipeline"]

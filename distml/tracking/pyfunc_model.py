"""The python_function model as code (MLflow's "models from code"): MLflow runs this file
to build the model at load time, so nothing is pickled (:mod:`distml.tracking.pyfunc`)."""

from mlflow.models import set_model

from distml.tracking.pyfunc import DistmlModel

set_model(DistmlModel())

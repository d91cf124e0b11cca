"""``distml serve``: saved models behind HTTP, MLflow's scoring protocol and the Open
Inference Protocol (v2), one process (or ``--workers`` processes) on uvicorn.

Modules, lowest first: ``errors`` (request errors and their status codes), ``batch``
(rows a request carries, converted to the model's column types), ``served`` (a
loaded model: its inputs, outputs and numpy-only prediction), ``registry`` (MODEL
arguments → named models, loaded once), ``mlflow_protocol`` and ``v2_protocol``
(parsing and replies), ``metrics`` (Prometheus), ``app`` (the ASGI app: the scoring
fast path in front of a FastAPI app for everything else), ``server`` (sockets,
uvicorn, workers, signals). FastAPI, uvicorn and prometheus-client are imported only
here (the ``serve`` extra).
"""

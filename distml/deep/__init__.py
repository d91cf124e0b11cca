"""Keras on ``tf.distribute``: MirroredStrategy over this machine's devices, fed by tf.data from Parquet.

Nothing here is imported by ``import distml``; TensorFlow itself is imported only
when a Keras job runs (quietly, see :func:`distml.deep.devices.import_tensorflow`).
"""

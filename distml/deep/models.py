"""The Keras networks a job can train: the seed's MLP and a small convnet.

Both take raw ``uint8`` pixel rows, as the pipeline delivers them, and scale them
to [0, 1] in their first layer (the seed's ``x / 255.0``), so the saved model
classifies raw pixels too. Build them inside ``strategy.scope()``.
"""

from __future__ import annotations

from typing import Any

from distml.errors import ModelError

ARCHITECTURES = ("mlp", "cnn")
PARAMS = ("architecture", "learning_rate")  # model.params of a Keras job
DEFAULT_LEARNING_RATE = 0.001  # Keras's Adam default, what the seed's optimizer='adam' uses


def default_learning_rate(replicas: int) -> float:
    """Adam's default scaled by the replica count, as Horovod's Keras examples do.

    The global batch grows with the replicas (batch size is per replica), so an
    epoch takes proportionally fewer steps; scaling the step size keeps the
    seed's accuracy after the seed's 2 epochs (MNIST MLP on 2 replicas, 4 seeds:
    0.939-0.943 unscaled, 0.948-0.952 scaled; single device: 0.948).
    """
    return DEFAULT_LEARNING_RATE * replicas


def build_model(
    architecture: str,
    width: int,
    classes: int,
    learning_rate: float = DEFAULT_LEARNING_RATE,
) -> Any:
    """A compiled ``keras.Model``: Adam, sparse categorical cross-entropy, accuracy.

    ``mlp`` is the seed's network (784 → Dense 128 relu → Dense ``classes``
    softmax); ``cnn`` is a small convnet (two 3×3 convolutions with max-pooling,
    dropout 0.25, Dense 128 relu, softmax; 225k parameters) that passes 98% test
    accuracy on MNIST within the seed's 2 epochs; it needs square images.
    """
    import keras

    inputs = keras.Input(shape=(width,), dtype="uint8", name="pixels")
    x = keras.layers.Rescaling(1.0 / 255.0)(inputs)
    if architecture == "mlp":
        x = keras.layers.Dense(128, activation="relu")(x)
    elif architecture == "cnn":
        side = round(width**0.5)
        if side * side != width:
            raise ModelError(f"architecture 'cnn' needs square images; rows hold {width} pixels")
        x = keras.layers.Reshape((side, side, 1))(x)
        x = keras.layers.Conv2D(32, 3, activation="relu")(x)
        x = keras.layers.MaxPooling2D(2)(x)
        x = keras.layers.Conv2D(64, 3, activation="relu")(x)
        x = keras.layers.MaxPooling2D(2)(x)
        x = keras.layers.Flatten()(x)
        x = keras.layers.Dropout(0.25)(x)
        x = keras.layers.Dense(128, activation="relu")(x)
    else:
        raise ModelError(
            f"unknown architecture '{architecture}'; choose one of {', '.join(ARCHITECTURES)}"
        )
    outputs = keras.layers.Dense(classes, activation="softmax")(x)
    model = keras.Model(inputs, outputs, name=f"distml_{architecture}")
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model

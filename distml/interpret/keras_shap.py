"""SHAP for Keras image classifiers: shap's model-agnostic kernel explainer on a
deterministic sample of images.

shap's gradient-based explainers (``DeepExplainer``, ``GradientExplainer``) fail on
Keras 3 models (they reach into TensorFlow graph internals Keras 3 no longer exposes), so
distml uses ``shap.KernelExplainer`` on the network's class probabilities: the images of
``EXPLAIN_ROWS`` rows drawn with seed 0, against ``BACKGROUND_ROWS`` background images
drawn the same way. Pixels equal in an image and every background image are left out by
the explainer (MNIST's border), and the values of each image add up to its predicted
probabilities minus the background's mean (checked, to float32 precision). Approximate:
``nsamples`` coalitions per image, not all 2^784.

Files: ``shap_summary.json`` (method, sample, base values, the images' row numbers),
``shap_summary.csv`` (mean |SHAP| and mean SHAP per pixel and class),
``shap_values.npy`` (every value: images × pixels × classes, in the listed row order) and
``shap_summary.png`` (mean |SHAP| per pixel as one image per class, for square images).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from distml.errors import DataError

EXPLAIN_ROWS = 20
BACKGROUND_ROWS = 20
NSAMPLES = 1000
PREDICT_CHUNK = 8192  # images per forward pass of the network
SEED = 0


def sample_images(
    data: str, pixels: str, width: int, rows: int, background: int, seed: int = SEED
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(explained images, their row numbers, background images, their row numbers)``:
    distinct rows drawn with ``seed`` over the whole dataset, read row group by row group."""
    from distml.data.dataset import filesystem_for
    from distml.deep.pipeline import pixel_matrix
    from distml.predict.inputs import ScoringInput

    source = ScoringInput(data)
    total = source.num_rows
    if total < (2 if background else 1):
        raise DataError(f"{data}: {total} rows; SHAP needs images to explain and a background")
    explained = min(rows, total - 1) if background else min(rows, total)
    drawn = np.random.default_rng(seed).choice(
        total, size=min(explained + background, total), replace=False
    )
    wanted = np.sort(drawn)
    found: dict[int, np.ndarray] = {}
    start = 0
    fs = filesystem_for(source.uri, source.storage)
    for file in source.files:
        end = start + file.num_rows
        inside = wanted[(wanted >= start) & (wanted < end)]
        if len(inside):
            parquet = pq.ParquetFile(file.path, filesystem=fs)
            group_start = start
            for group in range(parquet.num_row_groups):
                group_rows = parquet.metadata.row_group(group).num_rows
                mine = inside[(inside >= group_start) & (inside < group_start + group_rows)]
                if len(mine):
                    table = parquet.read_row_group(group, columns=[pixels])
                    images = pixel_matrix(table.column(pixels), width)
                    for row in mine:
                        found[int(row)] = images[row - group_start].copy()
                group_start += group_rows
        start = end
    ids = [int(i) for i in drawn]  # the draw's order: the first ones are explained
    images = np.stack([found[i] for i in ids])
    return (
        images[:explained],
        np.array(ids[:explained]),
        images[explained:],
        np.array(ids[explained:]),
    )


def kernel_shap(
    predict: Callable[[np.ndarray], np.ndarray],
    X: np.ndarray,
    background: np.ndarray,
    nsamples: int = NSAMPLES,
) -> tuple[np.ndarray, np.ndarray]:
    """``(values (n, pixels, classes), base values (classes,))`` from shap's kernel
    explainer (seeded: the same sample of coalitions on every run)."""
    import shap

    state = np.random.get_state()  # shap draws its coalitions from numpy's global RNG
    np.random.seed(SEED)
    try:
        explainer = shap.KernelExplainer(predict, background)
        values = np.asarray(explainer.shap_values(X, nsamples=nsamples, silent=True))
        base = np.asarray(explainer.expected_value, dtype=np.float64)
    finally:
        np.random.set_state(state)
    return values.reshape(len(X), X.shape[1], -1).astype(np.float64), base


def write_keras_shap(
    model_file: str | Path,
    data: str,
    out: Path,
    pixels: str,
    width: int,
    background_data: str | None = None,
    rows: int = EXPLAIN_ROWS,
    background_rows: int = BACKGROUND_ROWS,
    nsamples: int = NSAMPLES,
    plots_too: bool = True,
) -> dict[str, Any]:
    """Explain the Keras classifier in ``model_file`` on a sample of ``data``'s images
    (background: a sample of ``background_data``'s, else other rows of ``data``) into
    ``out``; returns what ``shap_summary.json`` holds."""
    from distml.deep.devices import import_tensorflow

    if background_data is None:
        X, ids, background, bg_ids = sample_images(data, pixels, width, rows, background_rows)
    else:
        X, ids, _, _ = sample_images(data, pixels, width, rows, 0)
        background, bg_ids, _, _ = sample_images(background_data, pixels, width, background_rows, 0)
    import_tensorflow()
    import keras

    model = keras.models.load_model(model_file, compile=False)

    def predict(images: np.ndarray) -> np.ndarray:
        # predict_on_batch by chunks: Keras' predict() builds a tf.data pipeline on every
        # call (half the explainer's time on the seed's network), and shap calls it per image
        batch = np.asarray(images, dtype=np.float32)
        chunks = [model.predict_on_batch(batch[i : i + PREDICT_CHUNK])
                  for i in range(0, len(batch), PREDICT_CHUNK)]  # fmt: skip
        return np.concatenate([np.asarray(c) for c in chunks]).astype(np.float64)

    values, base = kernel_shap(predict, X, background, nsamples)
    probabilities = predict(X)
    additivity = float(np.abs(values.sum(axis=1) + base - probabilities).max())
    classes = values.shape[2]
    mean_abs, mean = np.abs(values).mean(axis=0), values.mean(axis=0)
    info: dict[str, Any] = {
        "method": "kernel",
        "exact": False,
        "explainer": f"shap.KernelExplainer, {nsamples} coalitions per image (seed {SEED})",
        "model": "keras",
        "output": "probability of each class",
        "outputs": [str(k) for k in range(classes)],
        "features": f"{width} pixels of column '{pixels}'",
        "explained_rows": int(len(X)),
        "row_numbers": ids.tolist(),
        "background": {
            "rows": int(len(background)),
            "from": f"rows of {background_data}" if background_data else "other rows of the data",
            "row_numbers": bg_ids.tolist(),
        },
        "base_value": base.tolist(),
        "additivity_max_error": additivity,
        "top_pixels": [
            {"class": k, "pixels": np.argsort(-mean_abs[:, k], kind="stable")[:10].tolist()}
            for k in range(classes)
        ],
    }
    with (out / "shap_summary.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["pixel", "class", "mean_abs_shap", "mean_shap"])
        for k in range(classes):
            for j in range(width):
                writer.writerow([j, k, repr(float(mean_abs[j, k])), repr(float(mean[j, k]))])
    side = int(round(width**0.5))
    if plots_too and side * side == width:
        _heatmaps(mean_abs, side, out / "shap_summary.png")
        info["plot"] = {"file": "shap_summary.png", "sample_rows": int(len(X)), "seed": SEED}
    np.save(out / "shap_values.npy", values)  # (images, pixels, classes), rows as listed
    info["values_file"] = "shap_values.npy"
    (out / "shap_summary.json").write_text(json.dumps(info, indent=2))
    return info


def _heatmaps(mean_abs: np.ndarray, side: int, path: Path) -> None:
    """Mean |SHAP| per pixel, one ``side × side`` image per class."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    classes = mean_abs.shape[1]
    columns = min(classes, 5)
    lines = -(-classes // columns)
    fig, axes = plt.subplots(lines, columns, figsize=(2.2 * columns, 2.6 * lines + 0.4))
    for k, ax in enumerate(np.ravel(axes)):
        ax.axis("off")
        if k < classes:
            ax.imshow(mean_abs[:, k].reshape(side, side), cmap="magma")
            ax.set_title(f"class {k}", fontsize=9)
    fig.suptitle("mean |SHAP| per pixel (kernel SHAP, sampled images)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)

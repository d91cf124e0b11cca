#!/usr/bin/env bash
# Keras throughput on a machine with GPUs. With >= 2: MirroredStrategy over every GPU in one
# process vs train.workers = one worker per GPU (NCCL) vs one worker on one GPU. With 1:
# MirroredStrategy on it vs one worker on it vs one worker on the CPU.
# NOT RUN YET: written without access to a GPU machine (issue 14). Needs the gpu extra:
#   pip install -e '.[dask,spark,gpu]'      # not 'all': the tf extra is tensorflow-cpu
# Usage: benchmarks/keras_multiworker_gpu.sh [MNIST_IDX_FOLDER] [OUT]
set -euo pipefail
SOURCE=${1:-../shared/data/mnist}
OUT=${2:-bench-out/keras-multiworker-gpu}
nvidia-smi -L
python -c "import tensorflow as tf; print(tf.__version__, tf.config.list_physical_devices('GPU'))"
python benchmarks/keras_multiworker.py --gpu --source "$SOURCE" --out "$OUT" \
    --architectures mlp,cnn --epochs 3 --batch-size 256 --repeat 2 | tee "$OUT.md"

"""Datasets (partitioned Parquet), splits, generators and the seed examples."""

from distml.data.dataset import Dataset, PartitionSpec
from distml.data.examples import write_example, write_examples
from distml.data.generate import Recipe, generate
from distml.data.split import Split

__all__ = [
    "Dataset",
    "PartitionSpec",
    "Recipe",
    "Split",
    "generate",
    "write_example",
    "write_examples",
]

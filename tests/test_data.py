"""Data sets: bundled splits (fixed, seeded, stratified) and a user's .npz with every bad-input case."""

import re

import numpy as np
import pytest

from accel.data import bundled_for_shape, load_dataset, sample
from accel.errors import DataError


def test_mnist5k_split_is_fixed_stratified_and_disjoint():
    test, train = load_dataset("mnist5k", "test"), load_dataset("mnist5k", "train")
    assert test.x.shape == (1000, 1, 28, 28) and train.x.shape == (4000, 1, 28, 28)
    assert test.x.dtype == np.float32 and 0.0 <= test.x.min() and test.x.max() <= 1.0
    assert np.all(np.bincount(test.y) == 100) and np.all(np.bincount(train.y) == 400)
    train_keys = {row.tobytes() for row in train.x.reshape(4000, -1)}
    assert not any(row.tobytes() in train_keys for row in test.x.reshape(1000, -1))
    again = load_dataset("mnist5k", "test")
    np.testing.assert_array_equal(again.x, test.x)
    np.testing.assert_array_equal(load_dataset("mnist5k", "calib").y, train.y)


def test_digits_split():
    test, train = load_dataset("digits", "test"), load_dataset("digits")  # default split: test
    assert train.x.shape == (360, 1, 8, 8)
    train = load_dataset("digits", "train")
    assert len(train) == 1437 and len(test) == 360 and test.num_classes == 10
    assert test.x.max() == 1.0 and test.x.min() == 0.0


def test_npz_round_trip(tmp_path):
    path = tmp_path / "mine.npz"
    x = np.random.default_rng(0).normal(size=(5, 3, 4, 4)).astype(np.float32)
    np.savez(path, x=x, y=np.arange(5))
    ds = load_dataset(path)
    np.testing.assert_array_equal(ds.x, x)
    assert ds.y.dtype == np.int64 and len(ds) == 5


@pytest.mark.parametrize("arrays, message", [
    ({"x": np.zeros((2, 1, 4, 4), np.float32)}, r"missing array 'y'; expected 'x' \(float32 NCHW\) and 'y' "
                                                r"\(integer labels\), found 'x'"),
    ({"images": np.zeros(2), "labels": np.zeros(2)}, r"missing array 'x' and 'y'"),
    ({"x": np.zeros((2, 1, 4, 4), np.uint8), "y": np.zeros(2, int)}, r"'x' has dtype uint8; expected float32"),
    ({"x": np.zeros((2, 16), np.float32), "y": np.zeros(2, int)}, r"'x' has shape \(2, 16\); expected 4 dim"),
    ({"x": np.zeros((2, 1, 4, 4), np.float32), "y": np.zeros(3, int)}, r"'y' has shape \(3,\); expected \(2,\)"),
    ({"x": np.zeros((2, 1, 4, 4), np.float32), "y": np.zeros(2)}, r"'y' has dtype float64; expected integer"),
    ({"x": np.full((1, 1, 2, 2), np.nan, np.float32), "y": np.zeros(1, int)}, r"'x' holds NaN or Inf"),
    ({"x": np.zeros((0, 1, 4, 4), np.float32), "y": np.zeros(0, int)}, r"the test set is empty"),
])
def test_bad_npz(tmp_path, arrays, message):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(DataError, match=rf"^{re.escape(str(path))}: {message}"):
        load_dataset(path)


def test_missing_unreadable_and_unknown(tmp_path):
    with pytest.raises(DataError, match=r"absent.npz: no such file"):
        load_dataset(tmp_path / "absent.npz")
    broken = tmp_path / "broken.npz"
    broken.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(DataError, match=r"broken.npz: not a readable .npz file"):
        load_dataset(broken)
    with pytest.raises(DataError, match=r"^data set 'cifar' is unknown; expected mnist5k, digits or a path"):
        load_dataset("cifar")
    with pytest.raises(DataError, match=r"^split 'val' is not one of train, test, calib"):
        load_dataset("digits", "val")


def test_sample_is_seeded_and_bounded():
    x = np.arange(100)[:, None]
    a, b = sample(x, 10, seed=3), sample(x, 10, seed=3)
    np.testing.assert_array_equal(a, b)
    assert len(np.unique(a)) == 10 and not np.array_equal(a, sample(x, 10, seed=4))
    assert sample(x, 500).shape == (100, 1)
    with pytest.raises(DataError, match="the calibration set is empty"):
        sample(x[:0], 10)


def test_bundled_for_shape():
    assert bundled_for_shape((1, 28, 28)) == "mnist5k" and bundled_for_shape((1, 8, 8)) == "digits"
    assert bundled_for_shape((3, 32, 32)) is None

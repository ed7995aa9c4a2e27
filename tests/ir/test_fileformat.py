import json
import zipfile

import numpy as np
import pytest

from accel.engine import run_model
from accel.errors import ModelError, ModelFormatError, OutputError
from accel.ir import load_model, save_model

from .helpers import small_resnet


def test_round_trip_preserves_results(tmp_path):
    model = small_resnet()
    path = save_model(model, tmp_path / "m.qmodel")
    loaded = load_model(path)
    assert [l.name for l in loaded.layers] == [l.name for l in model.layers]
    assert loaded.config == model.config and loaded.metadata == {"name": "small_resnet"}
    x = np.random.default_rng(1).integers(-128, 128, (4, 1, 12, 12)).astype(np.int8)
    a, b = run_model(model, x), run_model(loaded, x)
    assert np.array_equal(a["fc"], b["fc"])


def test_archive_holds_no_pickles(tmp_path):
    path = save_model(small_resnet(), tmp_path / "m.qmodel")
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
    assert names[0] == "manifest.json" and all(n.endswith(".npy") for n in names[1:])


def test_refuses_to_overwrite(tmp_path):
    path = tmp_path / "m.qmodel"
    path.write_bytes(b"precious")
    with pytest.raises(OutputError, match="already exists"):
        save_model(small_resnet(), path)
    assert path.read_bytes() == b"precious"


def test_destination_checked_before_the_model(tmp_path):
    """A missing folder is reported before validation and serialization, not after."""
    model = small_resnet()
    model.layers[0].op = "no_such_op"
    with pytest.raises(ModelError):
        save_model(model, tmp_path / "m.qmodel")
    with pytest.raises(OutputError, match=r"m\.qmodel: folder .*missing does not exist$"):
        save_model(model, tmp_path / "missing" / "m.qmodel")
    assert list(tmp_path.iterdir()) == []


def test_truncated_file(tmp_path):
    path = save_model(small_resnet(), tmp_path / "m.qmodel")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    message = r"m\.qmodel: not a readable \.qmodel \(zip\) file: truncated or corrupted"
    with pytest.raises(ModelFormatError, match=message):
        load_model(path)


def _rewrite(path, transform):
    with zipfile.ZipFile(path) as zf:
        entries = {n: zf.read(n) for n in zf.namelist()}
    entries = transform(entries)
    with zipfile.ZipFile(path, "w") as zf:
        for n, d in entries.items():
            zf.writestr(n, d)


def test_corrupted_array_fails_checksum(tmp_path):
    path = save_model(small_resnet(), tmp_path / "m.qmodel")

    def flip(entries):
        name = next(n for n in entries if n.endswith("_codes.npy"))
        data = bytearray(entries[name])
        data[-1] ^= 0x01
        entries[name] = bytes(data)
        return entries

    _rewrite(path, flip)
    with pytest.raises(ModelFormatError, match=r"layer 'stem' array 'codes': checksum mismatch"):
        load_model(path)


def test_newer_version_is_refused(tmp_path):
    path = save_model(small_resnet(), tmp_path / "m.qmodel")

    def bump(entries):
        manifest = json.loads(entries["manifest.json"])
        manifest["version"] = 2
        entries["manifest.json"] = json.dumps(manifest).encode()
        return entries

    _rewrite(path, bump)
    with pytest.raises(ModelFormatError, match="format version 2 was written by a newer accel"):
        load_model(path)


def test_missing_manifest_and_missing_file(tmp_path):
    path = tmp_path / "x.qmodel"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("other.txt", "hi")
    with pytest.raises(ModelFormatError, match="missing manifest.json"):
        load_model(path)
    with pytest.raises(ModelFormatError, match="no such model file"):
        load_model(tmp_path / "absent.qmodel")

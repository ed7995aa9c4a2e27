"""Multipoint layers in the .qmodel (format version 2): round trip, version, malformed arrays."""

import json
import zipfile

import numpy as np
import pytest

from accel.engine import run_model, run_model_contract
from accel.errors import ModelError, ModelFormatError
from accel.ir import layer_macs, load_model, save_model
from accel.ir.summary import summarize
from tests.support.models import small_resnet


def _manifest(path):
    with zipfile.ZipFile(path) as zf:
        return json.loads(zf.read("manifest.json"))


def test_round_trip_keeps_points_and_results(tmp_path):
    model = small_resnet(multipoint=True)
    path = save_model(model, tmp_path / "m.qmodel")
    assert _manifest(path)["version"] == 2
    loaded = load_model(path)
    for a, b in zip(model.layers, loaded.layers):
        assert a.n_points == b.n_points
        for field in ("point_codes", "point_channel", "point_shift"):
            if field in a.arrays:
                assert np.array_equal(a.arrays[field], b.arrays[field])
    x = np.random.default_rng(3).integers(-128, 128, (3, 1, 12, 12)).astype(np.int8)
    assert np.array_equal(run_model(loaded, x)["fc"], run_model_contract(model, x)["fc"])
    # points change the result: the same model without them differs
    assert not np.array_equal(run_model(small_resnet(), x)["fc"], run_model(loaded, x)["fc"])


def test_model_without_points_stays_version_1(tmp_path):
    assert _manifest(save_model(small_resnet(), tmp_path / "m.qmodel"))["version"] == 1


def test_macs_count_the_extra_rows():
    plain, multi = small_resnet(), small_resnet(multipoint=True)
    assert [r["points"] for r in summarize(multi)["layers"] if r["macs"]] == [3, 3, 3, 3]
    assert summarize(multi)["total_macs"] > summarize(plain)["total_macs"]
    stem_plain, stem_multi = plain.layer("stem"), multi.layer("stem")
    # stem: 8 channels, 3 points -> 11 rows of 9 products at 144 pixels
    assert layer_macs(plain, stem_plain) == 144 * 8 * 9
    assert layer_macs(multi, stem_multi) == 144 * 11 * 9


def _edit(model, layer, field, value):
    model.layer(layer).arrays[field] = value
    return model


@pytest.mark.parametrize("field, value, message", [
    ("point_shift", np.array([2, 17, 0]), r"layer 'stem' \(conv2d\): field 'point_shift': value 17 at index \(1,\) "
                                          r"is out of range, allowed 0..16"),
    ("point_channel", np.array([1, 8, 0]), r"field 'point_channel': value 8 at index \(1,\) is out of range, "
                                           r"allowed 0..7"),
    ("point_channel", np.array([1, 2]), r"field 'point_channel': expected shape \(3,\), got \(2,\)"),
    ("point_codes", np.zeros((3, 1, 3, 2), np.uint8), r"field 'point_codes': expected shape \(P, 1, 3, 3\)"),
    ("point_codes", np.full((3, 1, 3, 3), 16, np.uint8), r"field 'point_codes': value 16 .* allowed 0..15"),
])
def test_malformed_points_are_one_line_errors(field, value, message):
    model = _edit(small_resnet(multipoint=True), "stem", field, value)
    with pytest.raises(ModelError, match=message):
        model.validate()


def test_points_need_all_three_arrays():
    model = small_resnet(multipoint=True)
    del model.layer("fc").arrays["point_shift"]
    with pytest.raises(ModelError, match=r"layer 'fc' \(linear\): field 'point_shift': missing: a multipoint"):
        model.validate()


def test_reader_names_the_file_and_field(tmp_path):
    path = save_model(small_resnet(multipoint=True), tmp_path / "m.qmodel")
    with zipfile.ZipFile(path) as zf:
        entries = {n: zf.read(n) for n in zf.namelist()}
    manifest = json.loads(entries["manifest.json"])
    manifest["version"] = 1  # points in a version-1 file: a reader of version 1 would drop them silently
    entries["manifest.json"] = json.dumps(manifest).encode()
    with zipfile.ZipFile(path, "w") as zf:
        for n, d in entries.items():
            zf.writestr(n, d)
    with pytest.raises(ModelFormatError, match=r"m.qmodel: layer 'stem' array 'point_codes' needs format "
                                               r"version 2; the manifest says version 1"):
        load_model(path)

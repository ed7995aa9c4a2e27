"""The sweep file: parsing, its one-line errors, expansion into points, resolution and the store."""

import sqlite3

import pytest

from accel.config import load_config
from accel.errors import ConfigError, OutputError
from accel.sweep import SCHEMA, load_points, open_db, parse_spec, resolve_point
from accel.sweep.store import POINT_COLUMNS, finished_keys, point_key, record_point

BASE = 'name = "t"\nmodel = "cnn_digits"\n'


def spec_of(text, tmp_path):
    return parse_spec(BASE + text, tmp_path / "s.toml")


def test_grid_is_the_product_in_file_order(tmp_path):
    spec = spec_of('[grid]\nlut = ["pot", "mse"]\nweight_bits = [3, 4]\narray = ["4x4", "8x8"]\n', tmp_path)
    points = spec.points()
    assert len(points) == 8
    assert points[0] == {"lut": "pot", "weight_bits": 3, "array": "4x4"}
    assert points[1] == {"lut": "pot", "weight_bits": 3, "array": "8x8"}
    assert spec.data == spec.calib == "digits"  # the bundled model's own data set
    assert spec.model_path.name == "cnn_digits.onnx" and spec.model_path.is_file()


def test_random_samples_are_seeded_and_crossed_with_the_grid(tmp_path):
    text = '[grid]\nlut = ["pot", "mse"]\n[random]\nsamples = 5\nseed = 3\nacc_bits = [16, 20, 24, 28, 32]\n' \
           'rows = [2, 4, 8, 16]\n'
    first, again = spec_of(text, tmp_path).points(), spec_of(text, tmp_path).points()
    assert first == again and len(first) <= 10
    assert {p["lut"] for p in first} == {"pot", "mse"}
    assert all(p["acc_bits"] in (16, 20, 24, 28, 32) and p["rows"] in (2, 4, 8, 16) for p in first)
    other = spec_of(text.replace("seed = 3", "seed = 4"), tmp_path).points()
    assert other != first


def test_no_axes_is_one_point(tmp_path):
    assert spec_of("", tmp_path).points() == [{}]


@pytest.mark.parametrize("text, message", [
    ('colour = "red"\n', r"s\.toml: unknown key 'colour' in the sweep file"),
    ('[grid]\nluts = ["pot"]\n', r"s\.toml: unknown axis 'luts' in \[grid\]"),
    ('[grid]\nlut = "pot"\n', r"s\.toml: \[grid\] lut = 'pot': expected a non-empty list"),
    ('[grid]\nlut = []\n', r"s\.toml: \[grid\] lut = \[\]: expected a non-empty list"),
    ('[accelerator]\nrowz = 4\n', r"s\.toml: unknown key 'rowz' in \[accelerator\]"),
    ('[accelerator]\nrows = 0\n', r"s\.toml: \[accelerator\]: config\.rows"),
    ('[quantize]\nmethod = "x"\n', r"s\.toml: unknown key 'method' in \[quantize\]"),
    ('[random]\nlut = ["pot"]\n', r"s\.toml: \[random\] has axes but no 'samples'"),
    ('[random]\nsamples = 0\nlut = ["pot"]\n', r"s\.toml: \[random\] samples 0"),
    ('[random]\nsamples = 2\n', r"s\.toml: \[random\] samples = 2 but no axis"),
    ('[grid]\nlut = ["pot"]\n[random]\nsamples = 2\nlut = ["mse"]\n', r"s\.toml: axis 'lut' is in both"),
    ('[grid]\narray = ["4x4"]\nrows = [2]\n', r"s\.toml: axis 'array' sets rows and cols"),
    ("eval_images = 0\n", r"s\.toml: eval_images 0: expected a positive number"),
    ('data = "cifar"\n', r"s\.toml: data 'cifar': expected mnist5k, digits or an \.npz path"),
    ('target = "vu9p"\n', r"s\.toml: target 'vu9p': expected one of"),
    ("synth = 1\n", r"s\.toml: synth 1: expected true or false"),
    ("[grid\n", r"s\.toml: not valid TOML"),
])
def test_errors_name_the_file_and_the_key(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message) as info:
        spec_of(text, tmp_path)
    assert "\n" not in str(info.value)


def test_model_errors(tmp_path):
    with pytest.raises(ConfigError, match=r"s\.toml: missing key 'model'"):
        parse_spec('name = "t"\n', tmp_path / "s.toml")
    with pytest.raises(ConfigError, match=r"s\.toml: model 'nope': expected a bundled model \(cnn_mnist"):
        parse_spec('name = "t"\nmodel = "nope"\n', tmp_path / "s.toml")
    with pytest.raises(ConfigError, match=r"s\.toml: model 'm\.onnx': no such file"):
        parse_spec('name = "t"\nmodel = "m.onnx"\ndata = "digits"\n', tmp_path / "s.toml")
    with pytest.raises(ConfigError, match=r"s\.toml: name 'a b'"):
        parse_spec('name = "a b"\nmodel = "cnn_digits"\n', tmp_path / "s.toml")


def test_resolve_applies_axes_over_the_base(tmp_path):
    spec = spec_of('[accelerator]\nacc_bits = 24\nrows = 2\n[quantize]\nlut = "apot"\ncle = true\n', tmp_path)
    point = resolve_point(spec, {"array": "4x16", "weight_bits": 3, "bias_correction": True})
    assert (point.config.rows, point.config.cols, point.config.acc_bits, point.config.weight_bits) == (4, 16, 24, 3)
    assert point.quantize["lut"] == "apot" and point.quantize["cle"] is True
    assert point.quantize["bias_correction"] == "auto" and point.quantize["calib"] == "digits"
    assert point.synth is False
    toml_path = tmp_path / "cfg.toml"
    toml_path.write_text(point.config.to_toml())
    assert load_config(toml_path) == point.config  # loadable by accel quantize --config


@pytest.mark.parametrize("point, message", [
    ({"pe_kind": "shift", "lut": "mse"}, r"LUT family 'mse' cannot be decoded by the 'shift' PEs"),
    ({"acc_bits": 40}, r"config\.acc_bits"),
    ({"array": "8by8"}, r"array '8by8': expected ROWSxCOLS"),
    ({"granularity": "tensor"}, r"granularity 'tensor'"),
    ({"cle": "yes"}, r"cle 'yes': expected true or false"),
    ({"lut": "user"}, r"lut 'user' needs user_lut"),
    ({"synth": True, "acc_bits": 8}, r"acc_bits"),  # the gateware cannot build it
])
def test_invalid_combinations_say_why(tmp_path, point, message):
    with pytest.raises(ConfigError, match=message):
        resolve_point(spec_of("", tmp_path), point)


def test_store_schema_wal_and_round_trip(tmp_path):
    db = tmp_path / "s.db"
    conn = open_db(db)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert tuple(r[1] for r in conn.execute("PRAGMA table_info(points)")) == POINT_COLUMNS
    key = point_key({"a": 1}, "h", "v")
    assert key != point_key({"a": 1}, "h2", "v") != point_key({"a": 1}, "h", "v2")
    assert len(key) == 64
    row = {"key": key, "sweep": "t", "model": "m", "status": "invalid", "error": "why", "params_json": '{"a": 1}',
           "accelerator_toml": "", "quantize_json": "{}", "finished_at": "now"}
    record_point(conn, row)
    assert finished_keys(conn, [key, "other"]) == {key}
    conn.close()
    (point,) = load_points(db)
    assert point["params"] == {"a": 1} and point["status"] == "invalid" and point["accuracy"] is None


def test_store_refuses_what_is_not_a_sweep_database(tmp_path):
    junk = tmp_path / "junk.db"
    junk.write_text("not sqlite at all, not even close; " * 100)
    with pytest.raises(OutputError, match=r"junk\.db: not a usable sweep database"):
        open_db(junk)
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE points (key TEXT, value REAL)")
    with pytest.raises(OutputError, match=r"other\.db: its 'points' table has columns key, value"):
        load_points(other)
    with pytest.raises(OutputError, match=r"missing\.db: no such sweep database"):
        load_points(tmp_path / "missing.db")
    with pytest.raises(OutputError, match=r"folder .*nowhere does not exist"):
        open_db(tmp_path / "nowhere" / "s.db")


def test_schema_is_the_published_one():
    """``accel report`` reads these names: they do not change."""
    conn = sqlite3.connect(":memory:")
    conn.executescript(SCHEMA)
    sweeps = [r[1] for r in conn.execute("PRAGMA table_info(sweeps)")]
    assert sweeps == ["name", "spec_toml", "created_at"]
    points = [r[1] for r in conn.execute("PRAGMA table_info(points)")]
    assert points == ["key", "sweep", "model", "status", "error", "params_json", "accelerator_toml", "quantize_json",
                      "accuracy", "float_accuracy", "cycles", "energy_uj", "bits_per_weight", "lut4", "dsp",
                      "fmax_mhz", "seconds", "finished_at", "code_version", "model_hash"]


def test_code_version_names_the_commit_in_a_checkout():
    import re
    from pathlib import Path

    import accel
    from accel.sweep import code_version

    version = code_version()
    assert version.startswith(accel.__version__)
    if (Path(accel.__file__).parents[1] / ".git").exists():
        assert re.fullmatch(re.escape(accel.__version__) + r"\+g[0-9a-f]{40,64}", version)

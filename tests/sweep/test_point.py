"""One point measured in this process (what a Dask worker runs): the quantization shared between points
that differ only in the array is the one a fresh measurement makes; a failure is a row, not an exception."""

from accel.sweep import parse_spec
from accel.sweep import point as point_module
from accel.sweep.point import measure_point
from accel.sweep.runner import plan_points

SPEC = """name = "p"
model = "cnn_digits"
eval_images = 80
[grid]
levels = [8, 99]
array = ["4x4", "2x8"]
[random]
samples = 1
clock_mhz = [50.0, 200.0]
vector_lanes = [2, 16]
"""


def _tasks(tmp_path):
    spec = parse_spec(SPEC, tmp_path / "p.toml")
    return [p.task for p in plan_points(spec, "hash", "version")]


def _measured(task):
    row = measure_point(task)
    del row["seconds"]
    return row


def test_points_differing_in_hardware_only_fields_share_one_quantization(tmp_path, monkeypatch):
    first, second = _tasks(tmp_path)[:2]
    assert first["quantize"] == second["quantize"] and first["accelerator"] != second["accelerator"]
    monkeypatch.setattr(point_module, "_MODELS", point_module.OrderedDict())
    shared = [_measured(first), _measured(second)]
    assert len(point_module._MODELS) == 1  # quantized and evaluated once
    point_module._MODELS.clear()
    fresh = _measured(second)
    assert shared[1] == fresh and fresh["status"] == "done"
    assert shared[0]["accuracy"] == fresh["accuracy"] and shared[0]["cycles"] != fresh["cycles"]


def test_a_failing_point_is_a_row_with_one_line(tmp_path):
    row = measure_point(_tasks(tmp_path)[2])  # 99 levels on 4-bit weights
    assert row["status"] == "failed" and row["seconds"] >= 0
    assert "levels 99, expected an integer in 2..16" in row["error"] and "\n" not in row["error"]

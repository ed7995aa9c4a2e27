"""The sweep report's pieces without a browser: command lines from front-end options, a sweep
with nothing measured yet, a database that a running sweep is still writing."""

import sqlite3

from accel.report.html import quantize_command
from accel.report.sweep_report import write_sweep_report
from tests.support.sweepdb import hand_made_points, point, write_db


def test_command_line_of_every_kind_of_option():
    options = {"lut": "user", "user_lut": [-64, -8, 0, 8, 64], "granularity": "layer", "levels": 4,
               "calib": "digits", "calib_method": "mse", "calib_size": 128, "calib_seed": 3, "cle": False,
               "bias_correction": True, "adaround": True, "adaround_iters": 50, "teacher": "big.onnx"}
    expected = ("accel quantize 'my model.onnx' --config cfg.toml --calib digits --lut user --user-lut=-64,-8,0,8,64 "
                "--granularity layer --levels 4 --calib-method mse --calib-size 128 --seed 3 --bias-correction "
                "--adaround --adaround-iters 50 -o p.qmodel")
    # The flags come in one order whatever the order of the JSON (the sweep sorts its keys).
    for order in (options, dict(sorted(options.items())), dict(reversed(options.items()))):
        assert quantize_command("my model.onnx", order, "cfg.toml", "p.qmodel") == (expected, ["teacher='big.onnx'"])


def test_options_that_are_off_give_no_flag():
    command, unknown = quantize_command("m.onnx", {"lut": "pot", "cle": False, "bias_correction": None,
                                                   "adaround": False, "adaround_iters": 500, "levels": None},
                                        "c.toml", "o.qmodel")
    assert (command, unknown) == ("accel quantize m.onnx --config c.toml --lut pot -o o.qmodel", [])


def test_only_failed_points_give_a_page_without_plots(tmp_path):
    rows = [r for r in hand_made_points() if r["status"] != "done"]
    report = write_sweep_report(write_db(tmp_path / "s.db", rows), tmp_path / "out")
    assert report.plots == [] and report.configs == []
    assert report.counts["points_failed"] == report.counts["points_invalid"] == 1
    page = report.report.read_text()
    assert "nothing to plot" in page and "weight_bits 9: expected 2..8" in page


def test_a_sweep_still_writing_is_read_as_far_as_committed(tmp_path):
    db = write_db(tmp_path / "s.db", hand_made_points()[:4])
    writer = sqlite3.connect(db)  # a running sweep: WAL holds a committed row, another is in flight
    try:
        late = point("cnn_digits", {"lut": "apot", "weight_bits": 4}, accuracy=99.0, cycles=10, energy_uj=0.01,
                     bits_per_weight=4.0)
        writer.execute(f"INSERT INTO points ({', '.join(late)}) VALUES ({', '.join('?' * len(late))})",
                       list(late.values()))
        writer.commit()
        writer.execute("BEGIN IMMEDIATE")
        writer.execute("DELETE FROM points")  # not committed: the report must not see it
        assert (tmp_path / "s.db-wal").exists()
        report = write_sweep_report(db, tmp_path / "out")
    finally:
        writer.rollback()
        writer.close()
    assert report.counts["points_total"] == 5
    assert late["key"][:12] + ".toml" in [p.name for p in report.configs]  # the best point, on every front

"""``accel sweep`` end to end: real sweeps on a local Dask cluster, the SQLite rows, rerun and resume
after SIGKILL, and the command's one-line errors."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import tomllib

import pytest

from accel.cli import main
from accel.sweep import load_points
from tests.support.cli import accel, one_line_error

# levels first: --limit 4 takes the four points with 8 levels (3 measured, 1 invalid); the four with
# 99 levels fail in the front end (a 4-bit LUT has at most 16) or are invalid.
SMALL = """name = "small"
model = "cnn_digits"
data = "digits"
eval_images = 100

[grid]
levels = [8, 99]
lut = ["pot", "mse"]
pe_kind = ["general", "shift"]
"""


def sweep_json(*args):
    code, out, err = accel("sweep", *args, "--json")
    assert code == 0, err
    return json.loads(out)


def test_small_sweep_writes_plausible_rows_and_a_rerun_skips_them(tmp_path):
    spec, db = tmp_path / "small.toml", tmp_path / "s.db"
    spec.write_text(SMALL)
    first = sweep_json(spec, "--db", db, "--limit", "4")
    assert first == {**first, "points_total": 4, "points_done": 3, "points_skipped_as_done": 0,
                     "points_computed": 3, "points_failed": 0, "points_invalid": 1, "db": str(db)}
    points = {tuple(sorted(p["params"].items())): p for p in load_points(db)}
    assert len(points) == 4
    invalid = points[(("levels", 8), ("lut", "mse"), ("pe_kind", "shift"))]
    assert invalid["status"] == "invalid" and "cannot be decoded by the 'shift' PEs" in invalid["error"]
    done = [p for p in points.values() if p["status"] == "done"]
    float_top1 = {p["float_accuracy"] for p in done}
    assert len(float_top1) == 1 and 80 <= float_top1.pop() <= 100  # one float network, the same 100 images
    for p in done:
        assert 50 <= p["accuracy"] <= 100 and p["error"] is None
        assert p["cycles"] > 0 and p["energy_uj"] > 0 and 4 <= p["bits_per_weight"] < 8
        assert p["lut4"] is None and p["seconds"] > 0 and p["finished_at"]
        assert p["code_version"].startswith("0.") and len(p["model_hash"]) == 64
        config = tomllib.loads(p["accelerator_toml"])
        assert config["pe_kind"] == p["params"]["pe_kind"] and config["weight_bits"] == 4
        assert p["quantize"]["lut"] == p["params"]["lut"] and p["quantize"]["levels"] == 8
        assert p["quantize"]["calib"] == "digits" and p["sweep"] == "small" and p["model"] == "cnn_digits"
        assert p["quantize"]["lut_scope"] == config["lut_scope"] == "channel" and p["quantize"]["weight_bits"] == 4

    again = sweep_json(spec, "--db", db, "--limit", "4")
    assert again["points_skipped_as_done"] == again["points_total"] == 4 and again["points_computed"] == 0
    assert {p["key"]: p["finished_at"] for p in load_points(db)} == {p["key"]: p["finished_at"] for p in
                                                                    points.values()}

    # The rest, on a cluster of our own through --scheduler: failing points are recorded with their
    # error and do not stop the sweep.
    from dask.distributed import LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, protocol="tcp",
                      host="127.0.0.1", dashboard_address=None) as cluster:
        code, out, err = accel("sweep", spec, "--db", db, "--scheduler", cluster.scheduler_address)  # a table
    assert code == 0, err
    assert "lut=mse pe_kind=shift" in out and "cannot be decoded by the 'shift' PEs" in out
    assert f"sweep small: 8 points in {db}: 3 done (4 finished before this run), 2 invalid, 3 failed; " \
           f"3 measured in " in out
    failed = [p for p in load_points(db) if p["status"] == "failed"]
    assert len(failed) == 3
    assert all("levels 99, expected an integer in 2..16" in p["error"] and "\n" not in p["error"] for p in failed)
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT spec_toml FROM sweeps WHERE name = 'small'").fetchone()[0] == SMALL


def _done_rows(db):
    """``{key: finished_at}`` of the done rows, or {} while the database is not there yet."""
    if not db.exists():
        return {}
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
            return dict(conn.execute("SELECT key, finished_at FROM points WHERE status = 'done'"))
    except sqlite3.OperationalError:  # the table is not created yet
        return {}


def test_resume_after_sigkill_computes_no_point_twice(tmp_path):
    spec, db = tmp_path / "kill.toml", tmp_path / "k.db"
    spec.write_text('name = "kill"\nmodel = "cnn_digits"\neval_images = 60\n[grid]\n'
                    'lut = ["pot", "uniform", "apot", "mse"]\nweight_bits = [3, 4]\n')
    proc = subprocess.Popen([sys.executable, "-m", "accel", "sweep", str(spec), "--db", str(db), "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        while not _done_rows(db) and proc.poll() is None:
            try:
                proc.wait(timeout=0.02)
            except subprocess.TimeoutExpired:
                pass
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # the client, its scheduler and the worker processes
        proc.communicate()
    before = _done_rows(db)
    assert before, "the sweep ended before any point was committed"

    resumed = sweep_json(spec, "--db", db)
    assert resumed["points_total"] == resumed["points_done"] == 8
    assert resumed["points_skipped_as_done"] == len(before)
    assert resumed["points_computed"] == 8 - len(before)  # only the points not committed before the kill
    after = _done_rows(db)
    assert len(after) == 8
    assert {key: after[key] for key in before} == before  # the first run's rows untouched


@pytest.mark.parametrize("args, pattern", [
    (["missing.toml"], r"missing\.toml: no such sweep file"),
    (["bad.toml"], r"bad\.toml: unknown key 'colour' in the sweep file"),
    (["bad.toml", "--scheduler", "localhost"], r"--scheduler 'localhost': expected a Dask scheduler address "
                                               r"tcp://HOST:PORT"),
    (["good.toml", "--scheduler", "tcp://127.0.0.1:8786", "--workers", "2"], r"--workers sizes the local cluster"),
    (["good.toml", "--db", "nowhere/s.db"], r"nowhere/s\.db: folder nowhere does not exist"),
])
def test_cli_errors_are_one_line(tmp_path, monkeypatch, capsys, args, pattern):
    (tmp_path / "bad.toml").write_text('name = "b"\nmodel = "cnn_digits"\ncolour = "red"\n')
    (tmp_path / "good.toml").write_text('name = "g"\nmodel = "cnn_digits"\n')
    monkeypatch.chdir(tmp_path)
    code = main(["sweep", *args])  # in this process: the same entry point as `accel`, without its start-up time
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    one_line_error(err, pattern)


@pytest.mark.synthesis
@pytest.mark.slow
def test_synthesis_adds_area_and_fmax(tmp_path):
    spec, db = tmp_path / "synth.toml", tmp_path / "y.db"
    spec.write_text('name = "synth"\nmodel = "cnn_digits"\neval_images = 50\nsynth = true\ntarget = "ecp5-25k"\n'
                    '[accelerator]\nrows = 2\ncols = 2\n[grid]\nacc_bits = [32, 12]\n')
    summary = sweep_json(spec, "--db", db)
    assert (summary["points_done"], summary["points_invalid"]) == (1, 1)
    (done,) = [p for p in load_points(db) if p["status"] == "done"]
    assert done["lut4"] > 0 and done["dsp"] >= 0 and done["fmax_mhz"] > 0
    (invalid,) = [p for p in load_points(db) if p["status"] == "invalid"]
    assert "the gateware cannot build 12" in invalid["error"]

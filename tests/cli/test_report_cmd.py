"""``accel report``: a sweep database to an HTML report; user errors are one line and exit 2,
the database is only read, and an existing report is never replaced without --force."""

import hashlib
import json
import sqlite3

import pytest

from accel.report.sweepdb import load_sweep
from tests.support.cli import one_line_error, run_accel
from tests.support.sweepdb import hand_made_points, point, write_db


@pytest.fixture
def db(tmp_path):
    return write_db(tmp_path / "sweep.db", hand_made_points())


def fails(proc, pattern):
    assert proc.returncode == 2, proc.stderr
    one_line_error(proc.stderr, pattern)
    assert proc.stdout == ""


def test_report_writes_page_plots_and_configs(db, tmp_path):
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    proc = run_accel("report", db, "-o", tmp_path / "rep", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert (out["points_total"], out["points_done"], out["points_failed"], out["points_invalid"]) == (14, 12, 1, 1)
    assert out["models"] == ["cnn_digits", "cnn_mnist"]
    # LUT4 and DSP exist only for cnn_digits' synthesized points; they are plotted all the same.
    assert sorted(p.rsplit("/", 1)[1] for p in out["plots"]) == [
        "pareto_bits_per_weight.png", "pareto_cycles.png", "pareto_dsp.png", "pareto_energy_uj.png",
        "pareto_lut4.png"]
    for path in out["plots"]:
        assert open(path, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    assert len(out["configs"]) == out["pareto_points"] > 0
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before  # read-only


def test_summary_line_and_default_folder(db, tmp_path):
    proc = run_accel("report", db, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("wrote out/report/report.html: 14 points (12 done, 1 failed, 1 invalid) of 2 "
                                  "model(s), ")
    assert len(proc.stdout.splitlines()) == 1
    assert (tmp_path / "out" / "report" / "report.html").is_file()


def test_without_synthesis_no_area_plots(tmp_path):
    rows = [point("cnn_digits", {"lut": lut, "rows": r}, accuracy=acc, cycles=c, energy_uj=e, bits_per_weight=4.1)
            for lut, r, acc, c, e in [("mse", 8, 97.0, 1000, 0.5), ("pot", 16, 96.0, 500, 0.3)]]
    db = write_db(tmp_path / "s.db", rows, wal=False)
    proc = run_accel("report", db, "-o", tmp_path / "rep", "--json")
    assert proc.returncode == 0, proc.stderr
    assert [p.rsplit("/", 1)[1] for p in json.loads(proc.stdout)["plots"]] == [
        "pareto_energy_uj.png", "pareto_cycles.png", "pareto_bits_per_weight.png"]


def test_existing_report_is_refused_then_replaced_with_force(db, tmp_path):
    out = tmp_path / "rep"
    assert run_accel("report", db, "-o", out).returncode == 0
    (out / "report.html").write_text("mine")
    fails(run_accel("report", db, "-o", out), r".*/rep/report\.html: already exists; refusing to overwrite it "
                                                r"\(use --force\)$")
    assert (out / "report.html").read_text() == "mine"
    proc = run_accel("report", db, "-o", out, "--force")
    assert proc.returncode == 0, proc.stderr
    assert (out / "report.html").read_text().startswith("<!DOCTYPE html>")


def test_output_that_is_a_file(db, tmp_path):
    (tmp_path / "taken").write_text("x")
    fails(run_accel("report", db, "-o", tmp_path / "taken"), r".*/taken: is not a folder$")


def _no_points_table(path):
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE results (x)")
    conn.commit()
    conn.close()


def _points_without_columns(path):
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE points (key TEXT, status TEXT)")
    conn.commit()
    conn.close()


def _bad_json(path):
    bad = point("cnn_digits", {"lut": "mse"}, accuracy=90.0)
    bad["params_json"] = "{lut: mse"
    write_db(path, [bad])


@pytest.mark.parametrize("make, pattern", [
    (None, r".*/sweep\.db: no such file; expected a sweep database \(written by accel sweep --db\)$"),
    (lambda p: p.write_text("not a database\n" * 20), r".*/sweep\.db: not a usable SQLite database \(file is not a "
                                                       r"database\)$"),
    (_no_points_table, r".*/sweep\.db: has no 'points' table; expected a sweep database \(written by accel sweep\)$"),
    (_points_without_columns, r".*/sweep\.db: table 'points' lacks column\(s\) sweep, model, error, params_json, "),
    (lambda p: write_db(p, []), r".*/sweep\.db: holds no points yet; run accel sweep first$"),
    (_bad_json, r".*/sweep\.db: point [0-9a-f]{12}: params_json is not JSON \("),
], ids=["missing", "not-sqlite", "no-points-table", "missing-columns", "empty", "bad-json"])
def test_bad_database_is_one_line(tmp_path, make, pattern):
    path = tmp_path / "sweep.db"
    if make is not None:
        make(path)
    fails(run_accel("report", path, "-o", tmp_path / "rep"), pattern)
    assert not (tmp_path / "rep").exists()  # nothing written before the database is known good


def test_reader_decodes_rows(db):
    results = load_sweep(db)
    assert [s["name"] for s in results.sweeps] == ["hand"]
    failed = results.with_status("failed")[0]
    assert failed.params == {"lut": "pot", "weight_bits": 2, "rows": 32, "cols": 32}
    assert failed.error.startswith("ToolError")
    done = results.with_status("done")
    assert {p.lut_family for p in done} == {"mse", "pot", "uniform"}
    assert all(p.quantize["calib"] == "digits" for p in done)

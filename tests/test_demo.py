"""The main job's library side (:mod:`accel.demo`): one bundled model, report written once, nothing overwritten."""

import json
import shutil
from pathlib import Path

import pytest

from accel.demo import models_table, report_text, run_main_job
from accel.errors import OutputError
from accel.frontend.workflow import MODELS_DIR, bundled_models
from accel.ir import load_model
from accel.perf import estimate
from tests.support.models import committed_float_top1


@pytest.fixture
def one_model(tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    shutil.copy(MODELS_DIR / "cnn_digits.onnx", models)
    (models / "models.json").write_text(json.dumps({"cnn_digits": bundled_models()["cnn_digits"]}))
    return models


def test_demo_writes_reports_and_models(tmp_path, one_model):
    out = tmp_path / "out"
    report = run_main_job(out, rtl=False, sweep=False, models_dir=one_model, progress=False)
    (row,) = report["models"]
    assert row["model"] == "cnn_digits" and row["images"] == 360
    assert row["float_top1"] == committed_float_top1("cnn_digits")
    assert row["drop"] == pytest.approx(row["float_top1"] - row["quant_top1"], abs=0.01)
    assert row["cost"]["cycles"] == estimate(load_model(out / "cnn_digits.qmodel")).cycles > 0
    assert json.loads((out / "demo_report.json").read_text()) == report
    markdown = (out / "demo_report.md").read_text()
    assert "| cnn_digits | digits | 360 |" in markdown and "| --- | --- | ---: |" in markdown
    assert (out / "cnn_digits.qmodel").is_file()
    assert report_text(report).splitlines()[1].startswith("cnn_digits")
    assert sorted(p.name for p in out.iterdir()) == ["cnn_digits.qmodel", "demo_report.json", "demo_report.md"]

    # A second run refuses before any work, naming the first file in the way; --force replaces them.
    (out / "demo_report.md").write_text("my notes")
    refused = r"demo_report\.md: already exists; refusing to overwrite it \(use --force\)$"
    with pytest.raises(OutputError, match=refused):
        run_main_job(out, rtl=False, sweep=False, models_dir=one_model, progress=False)
    assert (out / "demo_report.md").read_text() == "my notes"
    run_main_job(out, rtl=False, sweep=False, models_dir=one_model, progress=False, overwrite=True)
    assert "| cnn_digits |" in (out / "demo_report.md").read_text()


def test_demo_runs_a_sweep_into_an_html_report_with_layer_costs(tmp_path, one_model):
    """The sweep, its report, the per-layer costs and the area line (the cache folder is empty: the
    demo says how to synthesize instead of starting a place-and-route)."""
    out = tmp_path / "out"
    report = run_main_job(out, rtl=False, sweep=True, sweep_limit=2, models_dir=one_model, progress=False,
                          build_dir=tmp_path / "cache")
    sweep = report["sweep"]
    assert (sweep["points_total"], sweep["points_done"]) == (2, 2)
    assert (out / "sweep.db").is_file() and (out / "report" / "report.html").is_file()
    assert [Path(p).name for p in sweep["plots"]] == ["pareto_energy_uj.png", "pareto_cycles.png",
                                                      "pareto_bits_per_weight.png"]
    costs = report["layers"]
    perf = estimate(load_model(out / "cnn_digits.qmodel"))
    assert costs["rows"][-1][0] == "total" and costs["rows"][-1][3] == f"{perf.cycles:,}"
    assert len(costs["rows"]) == len(perf.layers) + 1
    assert report["area"] == {"target": "ecp5-85k", "cached": False, "hint": report["area"]["hint"]}
    assert "accel rtl synth --target ecp5-85k" in report["area"]["hint"]
    markdown = (out / "demo_report.md").read_text()
    assert "## Sweep" in markdown and "](report/pareto_cycles.png)" in markdown
    assert "## Cycles and energy per layer: cnn_digits" in markdown
    # A second run with overwrite starts a fresh database rather than resuming the old one.
    again = run_main_job(out, rtl=False, sweep=True, sweep_limit=2, models_dir=one_model, progress=False,
                         overwrite=True, build_dir=tmp_path / "cache")
    assert again["sweep"]["points_skipped_as_done"] == 0


def test_demo_out_is_a_file(tmp_path, one_model):
    (tmp_path / "out").write_text("")
    with pytest.raises(OutputError, match=r"out: is not a folder$"):
        run_main_job(tmp_path / "out", rtl=False, sweep=False, models_dir=one_model, progress=False)


def test_models_table_formats():
    report = {"models": [{"model": "m", "data": "d", "images": 10, "float_top1": 99.0, "quant_top1": 98.5,
                          "drop": 0.5, "agreement": 99.5, "min_layer_sqnr_db": None,
                          "cost": {"cycles": 12345, "energy_uj": 0.28934, "bits_per_weight": 5.625}}]}
    assert models_table(report).markdown().splitlines()[-1] == (
        "| m | d | 10 | 99.00 | 98.50 | 0.50 | 99.50 | exact | 12,345 | 0.289 | 5.62 |")
    assert models_table(report, detailed=False).text().splitlines() == [
        "model  data  float top-1  quantized top-1  drop  agreement  cycles  uJ/inference  bits/weight",
        "m      d           99.00            98.50  0.50      99.50  12,345         0.289         5.62"]
    assert json.loads(models_table(report).json())[0]["worst layer SQNR (dB)"] is None

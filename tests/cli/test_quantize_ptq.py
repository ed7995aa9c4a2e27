"""``accel quantize`` with the post-training methods (--cle, --bias-correction, --adaround, --multipoint)."""

import re

from accel.ir import load_model
from tests.support.cli import DIGITS, accel, one_line_error


def test_quantize_with_every_ptq_method(tmp_path):
    rc, out, err = accel("quantize", DIGITS, "--calib", "digits", "--weight-bits", "2", "--cle", "--bias-correction",
                         "--adaround", "--adaround-iters", "30", "--multipoint", "0.25", "-o", "p.qmodel", cwd=tmp_path)
    assert rc == 0, err
    assert re.search(r"; post-training: CLE, AdaRound \(30 iterations/layer\), multipoint \(0.25 extra columns per "
                     r"channel\), bias correction \(auto\)$", out.strip())
    model = load_model(tmp_path / "p.qmodel")
    ptq = model.metadata["ptq"]
    assert ptq["options"] == {"cle": True, "bias_correction": "auto", "adaround": True, "adaround_iters": 30,
                              "multipoint": 0.25}
    assert ptq["cle"]["pairs"] == 3 and len(ptq["adaround"]) == 4
    # every requantized layer (not the logits) got its points, on top of AdaRound's codes
    assert len(ptq["multipoint"]) == 3 and all(r["points"] > 0 for r in ptq["multipoint"].values())
    assert sum(layer.n_points for layer in model.layers) == sum(r["points"] for r in ptq["multipoint"].values())
    assert set(ptq["bias_correction_empirical"]) == set(ptq["adaround"])  # no BatchNorm: all empirical
    rc, out, err = accel("eval", "p.qmodel", "--data", "digits", cwd=tmp_path)
    assert rc == 0, err


def test_adaround_iters_without_adaround_is_a_usage_error(tmp_path):
    rc, _, err = accel("quantize", DIGITS, "--calib", "digits", "--adaround-iters", "5", "-o", "p.qmodel",
                       cwd=tmp_path)
    assert rc == 2
    one_line_error(err, r"--adaround-iters sets AdaRound's iterations; it needs --adaround$")
    assert not (tmp_path / "p.qmodel").exists()


def test_unknown_bias_correction_mode_is_a_usage_error(tmp_path):
    rc, _, err = accel("quantize", DIGITS, "--calib", "digits", "--bias-correction", "magic", "-o", "p.qmodel",
                       cwd=tmp_path)
    assert rc == 2 and "--bias-correction" in err


def test_multipoint_help_says_its_cost_and_a_bad_fraction_is_a_usage_error(tmp_path):
    rc, out, _ = accel("quantize", "--help")
    assert rc == 0
    text = " ".join(out.split())
    assert "--multipoint FRACTION" in text and "one more array column" in text and "accel perf" in text
    rc, _, err = accel("quantize", DIGITS, "--calib", "digits", "--multipoint", "0", "-o", "p.qmodel", cwd=tmp_path)
    assert rc == 2 and "--multipoint" in err and "expected a fraction of output channels above 0" in err
    assert not (tmp_path / "p.qmodel").exists()

"""``accel quantize`` with the post-training methods (--cle, --bias-correction, --adaround)."""

import re

from accel.ir import load_model
from tests.support.cli import DIGITS, accel, one_line_error


def test_quantize_with_every_ptq_method(tmp_path):
    rc, out, err = accel("quantize", DIGITS, "--calib", "digits", "--weight-bits", "2", "--cle", "--bias-correction",
                         "--adaround", "--adaround-iters", "30", "-o", "p.qmodel", cwd=tmp_path)
    assert rc == 0, err
    assert re.search(r"; post-training: CLE, AdaRound \(30 iterations/layer\), bias correction \(auto\)$", out.strip())
    ptq = load_model(tmp_path / "p.qmodel").metadata["ptq"]
    assert ptq["options"] == {"cle": True, "bias_correction": "auto", "adaround": True, "adaround_iters": 30}
    assert ptq["cle"]["pairs"] == 3 and len(ptq["adaround"]) == 4
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

"""``accel quantize`` and ``accel eval`` run as a new user would, including every kind of bad input."""

import json
import re

import numpy as np
import pytest

from accel.frontend.workflow import MODELS_DIR
from accel.ir import load_model
from accel.perf import estimate
from tests.support.cli import DIGITS, accel, one_line_error
from tests.support.models import committed_float_top1


def test_quantize_then_eval_json_and_table(tmp_path):
    rc, out, err = accel("quantize", DIGITS, "--calib", "digits", "-o", "d.qmodel", cwd=tmp_path)
    assert rc == 0, err
    assert re.match(r"^wrote d\.qmodel: 7 layers \(4 on the MAC array\), W4 mse LUTs per channel \(channel "
                    r"power-of-two scales, requant shift\), A8, calibrated \(percentile\) on 256 images of digits$",
                    out.strip())
    rc, out, err = accel("eval", "d.qmodel", "--data", "digits", "--json", cwd=tmp_path)
    assert rc == 0, err
    result = json.loads(out)
    assert set(result) >= {"float_top1", "quant_top1", "agreement", "layers", "cost"}
    assert result["float_top1"] == committed_float_top1("cnn_digits")
    # the cost of an inference is accel perf's, on the model's own accelerator
    priced = estimate(load_model(tmp_path / "d.qmodel"))
    assert result["cost"]["cycles"] == priced.cycles > 0 and result["cost"]["array"] == "8x8"
    assert result["cost"]["energy_uj"] == pytest.approx(priced.energy_uj, abs=1e-4)
    assert result["float_top1"] - result["quant_top1"] <= 1.0 and result["agreement"] >= 97
    assert len(result["layers"]) == 7 and all(layer["sqnr_db"] > 10 for layer in result["layers"])
    rc, out, err = accel("eval", "d.qmodel", "--data", "digits", cwd=tmp_path)
    assert rc == 0 and "quantized top-1" in out and "per-layer SQNR" in out
    assert f"per inference on the 8x8 array at 100 MHz: {priced.cycles:,} cycles" in out


def test_eval_onnx_quantizes_on_the_fly_with_the_defaults(tmp_path):
    rc, out, err = accel("eval", DIGITS, "--data", "digits", "--json", cwd=tmp_path)
    assert rc == 0, err
    result = json.loads(out)
    assert result["float_top1"] > 98 and result["quant_top1"] > 96


def test_quantize_options_and_overwrite(tmp_path):
    args = ["quantize", DIGITS, "-o", "w3.qmodel", "--weight-bits", "3", "--act-bits", "7", "--lut-scope", "layer",
            "--granularity", "layer", "--lut", "uniform", "--calib-method", "minmax", "--calib-size", "64"]
    rc, out, err = accel(*args, cwd=tmp_path)
    assert rc == 0, err
    assert "W3 uniform LUT (layer power-of-two scales" in out and "A7" in out and "64 images" in out
    from accel.ir import load_model

    model = load_model(tmp_path / "w3.qmodel")
    assert model.config.weight_bits == 3 and model.config.act_bits == 7 and model.config.lut_scope.value == "layer"
    assert all(layer.arrays["lut"].shape[1] == 8 for layer in model.layers if layer.op == "conv2d")
    rc, out, err = accel(*args, cwd=tmp_path)
    assert rc == 2
    one_line_error(err, r"w3\.qmodel: already exists; refusing to overwrite it \(use --force\)$")
    rc, out, err = accel(*args, "--force", cwd=tmp_path)
    assert rc == 0, err


def test_eval_without_the_source_onnx_reports_quantized_top1_only(tmp_path):
    import shutil

    shutil.copy(DIGITS, tmp_path / "net.onnx")
    assert accel("quantize", "net.onnx", "--calib", "digits", "-o", "net.qmodel", cwd=tmp_path)[0] == 0
    (tmp_path / "net.onnx").unlink()
    rc, out, err = accel("eval", "net.qmodel", "--data", "digits", "--json", cwd=tmp_path)
    assert rc == 0, err
    result = json.loads(out)
    assert result["float_top1"] is None and result["agreement"] is None and result["layers"] == []
    assert result["quant_top1"] > 95


def test_bad_inputs_give_one_line_errors(tmp_path):
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes((MODELS_DIR / "cnn_digits.onnx").read_bytes()[:500])
    np.savez(tmp_path / "noy.npz", x=np.zeros((3, 1, 8, 8), np.float32))
    np.savez(tmp_path / "empty.npz", x=np.zeros((0, 1, 8, 8), np.float32), y=np.zeros(0, int))
    (tmp_path / "own.onnx").write_bytes((MODELS_DIR / "cnn_digits.onnx").read_bytes())
    (tmp_path / "sibling.toml").write_text("[accelerator]\nrows = 4\n[energy]\nmac_pj = 1.0\n")
    (tmp_path / "damaged.qmodel").write_bytes(b"PK\x03\x04" + bytes(100))
    cases = [
        (["quantize", truncated, "-o", "a.qmodel"], rf"{re.escape(str(truncated))}: not a valid ONNX file"),
        (["quantize", DIGITS, "--calib", "noy.npz", "-o", "a.qmodel"], r"noy\.npz: missing array 'y'"),
        (["quantize", DIGITS, "--calib", "empty.npz", "-o", "a.qmodel"], r"empty\.npz: the calib set is empty"),
        (["quantize", DIGITS, "--calib", "mnist5k", "-o", "a.qmodel"],
         r"mnist5k: images have shape \(1, 28, 28\); model .*cnn_digits\.onnx expects \(1, 8, 8\)$"),
        (["quantize", DIGITS, "--weight-bits", "9", "-o", "a.qmodel"], r"config\.weight_bits: 9 is out of range"),
        (["quantize", "missing.onnx", "-o", "a.qmodel"], r"missing\.onnx: no such file$"),
        (["eval", DIGITS, "--data", "mnist5k"],
         r"mnist5k: images have shape \(1, 28, 28\); model .*cnn_digits\.onnx expects \(1, 8, 8\)$"),
        (["eval", DIGITS, "--data", "noy.npz"], r"noy\.npz: missing array 'y'"),
        (["eval", "nothing.qmodel", "--data", "digits"], r"nothing\.qmodel: no such model file$"),
        (["quantize", "own.onnx", "-o", "a.qmodel"],
         r"own\.onnx: no calibration data; give --calib DATA \(mnist5k, digits or an \.npz with 'x' normalized "),
        (["quantize", DIGITS, "--config", "sibling.toml", "-o", "a.qmodel"],
         r"sibling\.toml: 'energy' is outside the \[accelerator\] table; "),
        (["eval", "damaged.qmodel", "--data", "digits"],
         r"damaged\.qmodel: not a readable \.qmodel \(zip\) file: truncated or corrupted \(BadZipFile: "),
        (["quantize", DIGITS, "--lut", "user", "--user-lut", "1,x", "-o", "a.qmodel"],
         r"--user-lut '1,x': expected comma-separated integers in -128\.\.127$"),
    ]
    for args, pattern in cases:
        rc, out, err = accel(*args, cwd=tmp_path)
        assert rc == 2, (args, err)
        one_line_error(err, pattern)
    assert not (tmp_path / "a.qmodel").exists()


def test_eval_refuses_a_changed_source_network(tmp_path):
    import shutil

    shutil.copy(DIGITS, tmp_path / "net.onnx")
    assert accel("quantize", "net.onnx", "--calib", "digits", "-o", "net.qmodel", cwd=tmp_path)[0] == 0
    shutil.copy(MODELS_DIR / "resnet_mnist.onnx", tmp_path / "net.onnx")  # replaced by another network
    rc, out, err = accel("eval", "net.qmodel", "--data", "digits", cwd=tmp_path)
    assert rc == 2 and out == ""
    one_line_error(err, r"net\.qmodel: its source network .*net\.onnx has changed since it was quantized")


def test_calibration_unlike_the_models_data_warns_in_one_line(tmp_path):
    from accel.data import load_dataset

    calib = load_dataset("digits", "calib")
    np.savez(tmp_path / "normalized.npz", x=(calib.x - calib.x.mean()) / calib.x.std(), y=calib.y)
    rc, out, err = accel("quantize", DIGITS, "--calib", "normalized.npz", "-o", "n.qmodel", cwd=tmp_path)
    assert rc == 0, err
    lines = [line for line in err.splitlines() if "WARNING" in line]  # stderr also holds progress bars
    assert len(lines) == 1 and re.match(r"^WARNING accel\.frontend\.calibrate: calibration data normalized\.npz "
                                        r"differs grossly from digits, the data set of cnn_digits: ", lines[0])
    rc, out, err = accel("eval", "n.qmodel", "--data", "digits", "--json", cwd=tmp_path)
    assert rc == 0 and len([line for line in err.splitlines() if line.strip()]) == 1
    assert "calibration data normalized.npz differs grossly from digits (test)" in err


def test_eval_reports_the_engine_and_backends_agree(tmp_path):
    from accel.engine.capability import EPILOGUE_KERNELS, FUSED_KERNELS, INT_KERNELS, QCONV_KERNELS
    from accel.engine.onnx_lowering import QCONV_KERNEL
    from accel.engine.torch_backend import cuda_available

    rc, out, err = accel("quantize", DIGITS, "--calib", "digits", "-o", "d.qmodel", cwd=tmp_path)
    assert rc == 0, err
    results = {}
    for backend in ("fast", "torch"):
        rc, out, err = accel("eval", "d.qmodel", "--data", "digits", "--json", "--backend", backend, cwd=tmp_path)
        assert rc == 0, err
        results[backend] = json.loads(out)
    fast = results["fast"]["engine"]
    kernels = set(INT_KERNELS) | set(FUSED_KERNELS) | set(QCONV_KERNELS) | set(EPILOGUE_KERNELS)
    assert fast["backend"] == "fast" and set(fast["int_kernels"]) == kernels
    assert set(fast["int_kernels"].values()) <= {"exact", "rejected"}
    assert len(fast["layer_paths"]) == 7 and "numba" not in fast["layer_paths"].values()
    # cnn_digits' one convolution that meets the qconv proof has a 4x4 map, below QCONV_MIN_POSITIONS: the
    # verdict is reported either way, and a qconv layer only ever appears with an exact one.
    assert QCONV_KERNEL in fast["int_kernels"]
    assert "qconv" not in fast["layer_paths"].values() or fast["int_kernels"][QCONV_KERNEL] == "exact"
    assert results["torch"]["engine"]["device"].startswith("cpu")
    assert results["torch"]["quant_top1"] == results["fast"]["quant_top1"]
    if not cuda_available():
        rc, out, err = accel("eval", "d.qmodel", "--data", "digits", "--backend", "cuda", cwd=tmp_path)
        assert rc == 2
        one_line_error(err, "backend cuda: PyTorch sees no CUDA device")


def test_quantize_fits_the_lut_family_to_the_pe_kind(tmp_path):
    (tmp_path / "shift.toml").write_text('pe_kind = "shift"\n')
    rc, out, err = accel("quantize", DIGITS, "--config", "shift.toml", "-o", "mse.qmodel", cwd=tmp_path)
    assert rc == 2 and not (tmp_path / "mse.qmodel").exists()
    one_line_error(err, r"LUT family 'mse' cannot be decoded by the 'shift' PEs \(config\.pe_kind\); "
                        r"use --lut pot or user$")
    rc, out, err = accel("quantize", DIGITS, "--config", "shift.toml", "--lut", "pot", "-o", "pot.qmodel",
                         cwd=tmp_path)
    assert rc == 0, err
    from accel.datapath import pe_decodable
    from accel.ir import load_model

    model = load_model(tmp_path / "pot.qmodel")
    assert model.config.pe_kind.value == "shift"
    assert all(pe_decodable(layer.arrays["lut"], "shift").all() for layer in model.layers if "lut" in layer.arrays)

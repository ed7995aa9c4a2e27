"""``accel train`` as a user runs it: a trained model, exact export, checkpoints, bad input."""

import re

from accel.frontend.workflow import MODELS_DIR
from accel.ir import load_model
from tests.support.cli import accel, one_line_error
from tests.support.models import shifted_cnn_digits

DIGITS = str(MODELS_DIR / "cnn_digits.onnx")


def test_train_writes_an_exact_model_and_removes_its_checkpoint(tmp_path):
    rc, out, err = accel("train", DIGITS, "--train", "digits", "--calib", "digits", "--weight-bits", "2",
                         "--act-bits", "4", "--epochs", "1", "--learn-lut", "--distill", "-o", "t.qmodel",
                         cwd=tmp_path)
    assert rc == 0, err
    assert re.match(r"^wrote t\.qmodel: W2A4 trained 1 epochs in \d+ s \(loss [\d.]+ -> [\d.]+\); top-1 [\d.]+% on "
                    r"360 test images of digits \(post-training [\d.]+%\); engine logits equal to the trained "
                    r"network's on 360 of 360$", out.strip()), out
    model = load_model(tmp_path / "t.qmodel")
    qat = model.metadata["qat"]
    assert qat["options"]["learn_lut"] and qat["options"]["distill"] and len(qat["history"]) == 1
    assert qat["export_check"]["equal_logits"] == 360
    assert model.config.weight_bits == 2 and model.config.act_bits == 4
    assert not (tmp_path / "t.qmodel.ckpt").exists()
    rc, _, err = accel("train", DIGITS, "--train", "digits", "-o", "t.qmodel", cwd=tmp_path)
    assert rc == 2
    one_line_error(err, r"t\.qmodel: already exists; refusing to overwrite it \(use --force\)$")


def test_a_left_checkpoint_needs_resume(tmp_path):
    (tmp_path / "t.qmodel.ckpt").write_bytes(b"not a checkpoint")
    rc, _, err = accel("train", DIGITS, "--train", "digits", "-o", "t.qmodel", cwd=tmp_path)
    assert rc == 2
    one_line_error(err, r"t\.qmodel\.ckpt: a checkpoint of an interrupted run exists; add --resume")
    rc, _, err = accel("train", DIGITS, "--train", "digits", "--resume", "-o", "t.qmodel", cwd=tmp_path)
    assert rc == 2
    one_line_error(err, r"t\.qmodel\.ckpt: not a training checkpoint of accel")
    assert (tmp_path / "t.qmodel.ckpt").read_bytes() == b"not a checkpoint"


def test_train_bad_input(tmp_path):
    rc, _, err = accel("train", DIGITS, "--train", "mnist5k", "-o", "t.qmodel", cwd=tmp_path)
    assert rc == 2
    one_line_error(err, r"mnist5k: images have shape \(1, 28, 28\); model .*cnn_digits\.onnx expects \(1, 8, 8\)$")
    rc, _, err = accel("train", DIGITS, "--train", "digits", "--epochs", "0", "-o", "t.qmodel", cwd=tmp_path)
    assert rc == 2 and "--epochs: 0: expected a positive integer" in err
    rc, _, err = accel("train", DIGITS, "--train", "digits", "--sparsity", "-1", "-o", "t.qmodel", cwd=tmp_path)
    assert rc == 2 and "expected a number of 0 or more" in err
    assert list(tmp_path.iterdir()) == []


def test_search_precision_meets_the_budget_and_fine_tunes_exactly(tmp_path):
    from accel.precision import model_weight_bits, network_cost

    rc, out, err = accel("search-precision", DIGITS, "--budget", "3bpw", "--train", "digits", "--epochs", "1",
                         "-o", "s.qmodel", cwd=tmp_path)
    assert rc == 0, err
    assert re.search(r"^wrote s\.qmodel: per-layer bits for a budget of 3 bits per weight: [\d.]+ bits per "
                     r"weight \(LUTs, shifts and biases included\); fine-tuned 1 epochs with self-distillation: "
                     r"top-1 [\d.]+% on 360 test images of digits$", out.strip().splitlines()[-1])
    assert out.splitlines()[0].split() == ["layer", "weight", "bits", "act", "bits", "sensitivity", "W", "(KL)",
                                           "sensitivity", "A", "(KL)"]
    model = load_model(tmp_path / "s.qmodel")
    assert network_cost(model, model_weight_bits(model), "bpw") <= 3.0
    assert model.metadata["qat"]["export_check"]["equal_logits"] == 360
    assert model.metadata["precision"]["unit"] == "bpw"
    rc, _, err = accel("search-precision", DIGITS, "--budget", "3 bits", "-o", "x.qmodel", cwd=tmp_path)
    assert rc == 2
    one_line_error(err, r"budget '3 bits': expected a positive number of bits per weight")
    rc, _, err = accel("search-precision", DIGITS, "--budget", "3", "--epochs", "2", "-o", "x.qmodel", cwd=tmp_path)
    assert rc == 2
    one_line_error(err, r"--epochs needs --train DATA")


def test_train_learns_offsets_from_an_mse_calibration(tmp_path):
    shifted = shifted_cnn_digits(tmp_path / "shifted.onnx", "/classifier/classifier.2/Relu", 20.0)
    rc, out, err = accel("train", shifted, "--train", "digits", "--calib", "digits", "--act-bits", "4", "--epochs", "1",
                         "--learn-offsets", "--calib-method", "mse", "--schedule", "cosine", "-o", "t.qmodel",
                         cwd=tmp_path)
    assert rc == 0, err
    model = load_model(tmp_path / "t.qmodel")
    assert model.metadata["frontend"]["calib_method"] == "mse"
    options = model.metadata["qat"]["options"]
    assert options["learn_offsets"] and options["schedule"] == "cosine"
    assert model.metadata["activation_offsets"]["shifted"] > 0
    assert model.metadata["qat"]["export_check"]["equal_logits"] == 360
    rc, _, err = accel("train", shifted, "--train", "digits", "--schedule", "linear", "-o", "u.qmodel", cwd=tmp_path)
    assert rc == 2 and "invalid choice: 'linear'" in err


def test_search_precision_for_an_energy_budget(tmp_path):
    from accel.perf import estimate

    rc, out, err = accel("search-precision", DIGITS, "--budget", "260nJ", "-o", "e.qmodel", cwd=tmp_path)
    assert rc == 0, err
    assert re.search(r"^wrote e\.qmodel: per-layer bits for a budget of 0\.26 uJ per inference: [\d.]+ uJ per "
                     r"inference \(packed activations and weight codes, accel perf's energy model\)$",
                     out.strip().splitlines()[-1])
    model = load_model(tmp_path / "e.qmodel")
    precision = model.metadata["precision"]
    assert precision["unit"] == "uJ" and estimate(model, packed=True).energy_uj <= 0.26
    rows = {line.split()[0]: line.split()[1:3] for line in out.splitlines()[1:-1]}
    assert {name: int(bits[1]) for name, bits in rows.items() if len(bits) == 2 and bits[1].isdigit()} == \
        precision["act_bits"]

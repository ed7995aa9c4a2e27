"""Sweep databases made by hand, in the schema that ``accel sweep`` writes and ``accel report`` reads."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

from accel.config import AcceleratorConfig
from accel.sweep.store import SCHEMA


def accelerator_toml(**fields) -> str:
    """A full configuration as the sweep stores it (every field, the energy table last)."""
    return AcceleratorConfig(**fields).to_toml()


def point(model: str, params: dict, status: str = "done", error: str | None = None, **metrics) -> dict:
    """One row; ``params`` holds the varied axes (``lut`` goes to the front-end options, ``rows``,
    ``cols`` and ``weight_bits`` to the accelerator), ``metrics`` the measured columns."""
    accel_fields = {k: v for k, v in params.items() if k in ("rows", "cols", "weight_bits")}
    quantize = {"lut": params.get("lut", "mse"), "granularity": "channel", "levels": None, "user_lut": None,
                "calib_method": "minmax", "calib_size": 64, "calib_seed": 0, "cle": bool(params.get("cle")),
                "bias_correction": None, "adaround": False, "adaround_iters": 500, "calib": "digits"}
    key = hashlib.sha256(json.dumps([model, params], sort_keys=True).encode()).hexdigest()
    return {"key": key, "sweep": "hand", "model": model, "status": status, "error": error,
            "params_json": json.dumps(params), "quantize_json": json.dumps(quantize),
            "accelerator_toml": accelerator_toml(**accel_fields) if status != "invalid" else "",
            "finished_at": f"2026-11-30T18:00:{len(key) % 60:02d}", "code_version": "test", "model_hash": "0" * 64,
            **metrics}


def write_db(path: str | Path, points: list[dict], *, wal: bool = True) -> Path:
    """A sweep database holding ``points`` (WAL mode, as the sweep leaves it)."""
    conn = sqlite3.connect(path)
    if wal:
        conn.execute("PRAGMA journal_mode=WAL")
    conn.executescript(SCHEMA)
    conn.execute("INSERT INTO sweeps VALUES ('hand', 'name = \"hand\"', '2026-11-30T18:00:00')")
    for row in points:
        columns = ", ".join(row)
        conn.execute(f"INSERT INTO points ({columns}) VALUES ({', '.join('?' * len(row))})", list(row.values()))
    conn.commit()
    conn.close()
    return Path(path)


def hand_made_points() -> list[dict]:
    """Two models, three LUT families, synthesis on some points; one failed and one invalid point."""
    rows = []
    for i, (lut, bits, rows_) in enumerate([("mse", 4, 8), ("pot", 4, 8), ("uniform", 3, 4), ("mse", 2, 4),
                                            ("pot", 3, 16), ("uniform", 4, 16)]):
        acc = 90.0 + 2 * bits - (1.5 if lut == "pot" else 0) + 0.1 * i
        cycles = 40_000 * 8 // rows_
        synth = {"lut4": 900 * rows_ // 4 + 50 * bits, "dsp": 0, "fmax_mhz": 110.0 + i} if rows_ != 4 else {}
        rows.append(point("cnn_digits", {"lut": lut, "weight_bits": bits, "rows": rows_, "cols": rows_},
                          accuracy=acc, float_accuracy=98.5, cycles=cycles, bits_per_weight=bits + 0.05,
                          energy_uj=0.02 * cycles / 1000 + 0.01 * bits, seconds=2.0 + i, **synth))
        rows.append(point("cnn_mnist", {"lut": lut, "weight_bits": bits, "rows": rows_, "cols": rows_},
                          accuracy=acc - 1.0, float_accuracy=97.8, cycles=3 * cycles, energy_uj=0.06 * cycles / 1000,
                          bits_per_weight=bits + 0.02, seconds=5.0 + i))
    rows.append(point("cnn_digits", {"lut": "pot", "weight_bits": 2, "rows": 32, "cols": 32}, status="failed",
                      error="ToolError: nextpnr ran out of <LUTs> & failed"))
    rows.append(point("cnn_digits", {"lut": "pot", "weight_bits": 9}, status="invalid",
                      error="weight_bits 9: expected 2..8"))
    return rows


def real_point(folder: Path) -> dict:
    """One point measured for real: the bundled cnn_digits quantized with the defaults, its top-1
    through the engine on the digits test split, cycles and energy from the performance model."""
    from accel.frontend.calibrate import DEFAULT_CALIB_SIZE, DEFAULT_METHOD
    from accel.frontend.quantize import DEFAULT_GRANULARITY, DEFAULT_LUT
    from accel.frontend.workflow import MODELS_DIR, evaluate_file, quantize_file
    from accel.perf import estimate

    model, _ = quantize_file(MODELS_DIR / "cnn_digits.onnx", Path(folder) / "real.qmodel", calib="digits")
    result = evaluate_file(Path(folder) / "real.qmodel", "digits")
    perf = estimate(model)
    row = point("cnn_digits", {"lut": DEFAULT_LUT, "real": True}, accuracy=result.quant_top1,
                float_accuracy=result.float_top1, cycles=perf.cycles, energy_uj=perf.energy_uj,
                bits_per_weight=perf.bits_per_weight, seconds=1.0)
    row["accelerator_toml"] = model.config.to_toml()
    row["quantize_json"] = json.dumps({"lut": DEFAULT_LUT, "granularity": DEFAULT_GRANULARITY,
                                       "calib_method": DEFAULT_METHOD, "calib_size": DEFAULT_CALIB_SIZE,
                                       "calib_seed": 0, "cle": False, "bias_correction": None, "adaround": False,
                                       "calib": "digits"})
    return row

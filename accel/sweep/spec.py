"""The sweep file (``SWEEP.toml``): what to sweep, parsed strictly, expanded into points.

A point is a plain dict of the varied axes (``{"lut": "pot", "weight_bits": 3}``);
:func:`resolve_point` turns it, with the file's base tables, into the full accelerator
configuration and front-end options, or says why the combination cannot exist.
See ``docs/SWEEPS.md`` for the format.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import random
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from ..config import AcceleratorConfig
from ..errors import AccelError, ConfigError

__all__ = ["SweepSpec", "ResolvedPoint", "load_spec", "parse_spec", "resolve_point", "FRONTEND_KEYS",
           "ACCELERATOR_KEYS", "AXES", "DEFAULT_TARGET"]

#: Front-end options a point may set (in ``[quantize]`` or as an axis), with their defaults.
FRONTEND_KEYS = {"lut": None, "granularity": None, "levels": None, "user_lut": None, "calib_method": None,
                 "calib_size": None, "calib_seed": 0, "cle": False, "bias_correction": False, "adaround": False,
                 "adaround_iters": None}
#: Accelerator fields a point may set (``[accelerator]`` or an axis); the energy table only in ``[accelerator]``.
ACCELERATOR_KEYS = tuple(f.name for f in dataclasses.fields(AcceleratorConfig) if f.name != "energy")
#: Every axis: the front-end options, the accelerator fields, ``array`` ("RxC": rows and cols
#: together) and ``synth`` (area and Fmax through ``accel.synth``).
AXES = (*FRONTEND_KEYS, *ACCELERATOR_KEYS, "array", "synth")
#: FPGA of ``synth = true`` unless ``target`` says otherwise.
DEFAULT_TARGET = "ecp5-85k"
_TOP_KEYS = ("name", "model", "data", "calib", "eval_images", "synth", "target", "accelerator", "quantize",
             "grid", "random")
_RANDOM_KEYS = ("samples", "seed")
_DATA_NAMES = ("mnist5k", "digits")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class SweepSpec:
    """A parsed sweep file.

    Members
    -------
    path : Path
        The file; relative paths inside it (model, data) are relative to its folder.
    text : str
        The file as written (stored with the sweep).
    name, model : str
        The sweep's name and the model as given (a bundled name or an ``.onnx`` path).
    model_path : Path
        The ONNX file.
    data, calib : str
        Test data (its test split) and calibration data (its calibration split).
    eval_images : int or None
        Evaluate on the first N test images only (all when ``None``).
    accelerator, quantize : dict
        The base tables that every point starts from.
    synth : bool
        Synthesize each point's core (overridden by a ``synth`` axis).
    target : str
        The FPGA of synthesis.
    grid, random : dict
        Axis -> list of values; ``random`` is sampled ``samples`` times with ``seed``.
    """

    path: Path
    text: str
    name: str
    model: str
    model_path: Path
    data: str
    calib: str
    eval_images: int | None
    accelerator: dict = field(default_factory=dict)
    quantize: dict = field(default_factory=dict)
    synth: bool = False
    target: str = DEFAULT_TARGET
    grid: dict = field(default_factory=dict)
    random: dict = field(default_factory=dict)
    samples: int = 0
    seed: int = 0

    def points(self) -> list[dict]:
        """The points: every combination of the grid, each with ``samples`` random draws of its own
        (one value per random axis, from one generator seeded with ``seed``); duplicates dropped,
        order kept."""
        grid_keys = list(self.grid)
        grid = [dict(zip(grid_keys, values)) for values in itertools.product(*(self.grid[k] for k in grid_keys))]
        rng = random.Random(self.seed)
        points, seen = [], set()
        for base in grid:
            draws = [{k: rng.choice(self.random[k]) for k in self.random} for _ in range(self.samples)] or [{}]
            for draw in draws:
                point = {**base, **draw}
                text = json.dumps(point, sort_keys=True)
                if text not in seen:
                    seen.add(text)
                    points.append(point)
        return points


@dataclass(frozen=True)
class ResolvedPoint:
    """A point made whole: what the key hashes and what a worker needs."""

    config: AcceleratorConfig
    quantize: dict          #: every front-end option, with the calibration data as ``calib``
    synth: bool
    target: str

    def canonical(self, spec: SweepSpec) -> dict:
        """The point's full configuration (what its key hashes, with the model's hash and the code version)."""
        return {"sweep": spec.name, "data": spec.data, "eval_images": spec.eval_images,
                "accelerator": self.config.to_dict(), "quantize": self.quantize,
                "synth": self.target if self.synth else False}


def load_spec(path: str | os.PathLike) -> SweepSpec:
    """Read and check a sweep file (:class:`~accel.errors.ConfigError`, one line, naming the file and key)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such sweep file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the sweep file ({getattr(exc, 'strerror', None) or exc})") from None
    return parse_spec(text, path)


def parse_spec(text: str, path: str | os.PathLike = "sweep.toml") -> SweepSpec:
    """Parse the text of a sweep file; ``path`` names it in errors and anchors its relative paths."""
    path = Path(path)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    _known(path, "the sweep file", data, _TOP_KEYS)
    name = _string(path, data, "name", required=True)
    if not _NAME.match(name):
        raise ConfigError(f"{path}: name {name!r}: expected letters, digits, '_', '-' or '.'")
    model, model_path, bundled_data = _model(path, _string(path, data, "model", required=True))
    data_name = _data(path, "data", _string(path, data, "data") or bundled_data)
    calib = _data(path, "calib", _string(path, data, "calib") or data_name)
    eval_images = data.get("eval_images")
    if eval_images is not None and not _positive_int(eval_images):
        raise ConfigError(f"{path}: eval_images {eval_images!r}: expected a positive number of images")
    accelerator = _table(path, data, "accelerator")
    _known(path, "[accelerator]", accelerator, (*ACCELERATOR_KEYS, "energy"))
    try:
        AcceleratorConfig.from_dict(accelerator, source=f"{path}: [accelerator]")
    except AccelError as exc:
        raise ConfigError(str(exc)) from None
    quantize = _table(path, data, "quantize")
    _known(path, "[quantize]", quantize, tuple(FRONTEND_KEYS))
    synth = data.get("synth", False)
    if not isinstance(synth, bool):
        raise ConfigError(f"{path}: synth {synth!r}: expected true or false")
    target = _string(path, data, "target") or DEFAULT_TARGET
    from ..synth.targets import TARGETS

    if target not in TARGETS:
        raise ConfigError(f"{path}: target {target!r}: expected one of {', '.join(TARGETS)}")
    grid = _axes(path, "grid", _table(path, data, "grid"))
    random_table = dict(_table(path, data, "random"))
    samples, seed = random_table.pop("samples", None), random_table.pop("seed", 0)
    random_axes = _axes(path, "random", random_table)
    if random_axes and samples is None:
        raise ConfigError(f"{path}: [random] has axes but no 'samples' (how many points to draw)")
    if samples is not None and not _positive_int(samples):
        raise ConfigError(f"{path}: [random] samples {samples!r}: expected a positive number of points")
    if not _non_negative_int(seed):
        raise ConfigError(f"{path}: [random] seed {seed!r}: expected a non-negative integer")
    if samples is not None and not random_axes:
        raise ConfigError(f"{path}: [random] samples = {samples} but no axis to sample; add key = [values]")
    both = sorted(set(grid) & set(random_axes))
    if both:
        raise ConfigError(f"{path}: axis {both[0]!r} is in both [grid] and [random]; keep it in one")
    swept = set(grid) | set(random_axes)
    if "array" in swept and swept & {"rows", "cols"}:
        raise ConfigError(f"{path}: axis 'array' sets rows and cols; it cannot be swept with 'rows' or 'cols'")
    return SweepSpec(path=path, text=text, name=name, model=model, model_path=model_path, data=data_name,
                     calib=calib, eval_images=eval_images, accelerator=accelerator, quantize=quantize, synth=synth,
                     target=target, grid=grid, random=random_axes, samples=samples or 0, seed=seed)


def _known(path: Path, where: str, table: dict, allowed) -> None:
    unknown = sorted(set(table) - set(allowed))
    if unknown:
        raise ConfigError(f"{path}: unknown key {unknown[0]!r} in {where}; allowed: {', '.join(allowed)}")


def _positive_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _non_negative_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _string(path: Path, data: dict, key: str, required: bool = False) -> str | None:
    value = data.get(key)
    if value is None and required:
        raise ConfigError(f"{path}: missing key {key!r}")
    if value is not None and (not isinstance(value, str) or not value):
        raise ConfigError(f"{path}: {key} {value!r}: expected a non-empty string")
    return value


def _table(path: Path, data: dict, key: str) -> dict:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{path}: {key!r} must be a table ([{key}]), got {value!r}")
    return value


def _model(path: Path, model: str) -> tuple[str, Path, str | None]:
    """The model as given, its ONNX file, and the data set a bundled model names."""
    from ..frontend.workflow import MODELS_DIR, bundled_models

    if model.lower().endswith(".onnx"):
        file = (path.parent / model).resolve()
        if not file.is_file():
            raise ConfigError(f"{path}: model {model!r}: no such file {file}")
        bundled = bundled_models().get(file.stem) if file.parent == MODELS_DIR.resolve() else None
        return model, file, bundled["data"] if bundled else None
    index = bundled_models()
    if model not in index:
        raise ConfigError(f"{path}: model {model!r}: expected a bundled model ({', '.join(index)}) or an .onnx path")
    return model, MODELS_DIR / f"{model}.onnx", index[model]["data"]


def _data(path: Path, key: str, value: str | None) -> str:
    if value is None:
        raise ConfigError(f"{path}: missing key {key!r} (mnist5k, digits or an .npz path)")
    if value in _DATA_NAMES:
        return value
    if not value.lower().endswith(".npz"):
        raise ConfigError(f"{path}: {key} {value!r}: expected mnist5k, digits or an .npz path")
    file = (path.parent / value).resolve()
    if not file.is_file():
        raise ConfigError(f"{path}: {key} {value!r}: no such file {file}")
    return str(file)


def _axes(path: Path, where: str, table: dict) -> dict:
    for key, values in table.items():
        if key not in AXES:
            raise ConfigError(f"{path}: unknown axis {key!r} in [{where}]; allowed: {', '.join(AXES)}")
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{path}: [{where}] {key} = {values!r}: expected a non-empty list of values")
    return dict(table)


def _array(value) -> dict:
    match = re.fullmatch(r"(\d+)x(\d+)", value) if isinstance(value, str) else None
    if not match:
        raise ConfigError(f"array {value!r}: expected ROWSxCOLS, e.g. \"8x8\"")
    return {"rows": int(match[1]), "cols": int(match[2])}


def resolve_point(spec: SweepSpec, point: dict) -> ResolvedPoint:
    """The full configuration of ``point`` (its axes over the file's base tables).

    Raises
    ------
    ConfigError
        The combination cannot exist (a field out of range, a LUT family that the PEs cannot
        decode, a core the gateware cannot build with synthesis on); the message says why.
    """
    from ..frontend.calibrate import DEFAULT_CALIB_SIZE, DEFAULT_METHOD
    from ..frontend.ptq.adaround import DEFAULT_ITERS
    from ..frontend.ptq.pipeline import PTQOptions
    from ..frontend.quantize import DEFAULT_GRANULARITY, DEFAULT_LUT, QuantizeOptions
    from ..frontend.weights import check_pe_family

    fields = {**spec.accelerator, **{k: v for k, v in point.items() if k in ACCELERATOR_KEYS}}
    if "array" in point:
        fields.update(_array(point["array"]))
    try:
        config = AcceleratorConfig.from_dict(fields, source="point")
    except ConfigError as exc:
        raise ConfigError(str(exc).removeprefix("point: ")) from None
    options = dict(FRONTEND_KEYS)
    options.update(lut=DEFAULT_LUT, granularity=DEFAULT_GRANULARITY, calib_method=DEFAULT_METHOD,
                   calib_size=DEFAULT_CALIB_SIZE, adaround_iters=DEFAULT_ITERS)
    options.update(spec.quantize)
    options.update({k: v for k, v in point.items() if k in FRONTEND_KEYS})
    bias = options["bias_correction"]
    if bias is True:
        options["bias_correction"] = "auto"
    elif bias is False:
        options["bias_correction"] = None
    for flag in ("cle", "adaround"):
        if not isinstance(options[flag], bool):
            raise ConfigError(f"{flag} {options[flag]!r}: expected true or false")
    if options["lut"] == "user" and options["user_lut"] is None:
        raise ConfigError("lut 'user' needs user_lut = [levels]")
    if options["user_lut"] is not None:
        if options["lut"] != "user":
            raise ConfigError(f"user_lut gives the levels of the 'user' LUT family; lut is {options['lut']!r}")
        if not isinstance(options["user_lut"], list) or not all(
                isinstance(v, int) and not isinstance(v, bool) and -128 <= v <= 127 for v in options["user_lut"]):
            raise ConfigError(f"user_lut {options['user_lut']!r}: expected a list of integers in -128..127")
    QuantizeOptions(**quantize_kwargs(options))
    PTQOptions(**ptq_kwargs(options))
    check_pe_family(options["lut"], config.pe_kind.value, options["user_lut"])
    synth = point.get("synth", spec.synth)
    if not isinstance(synth, bool):
        raise ConfigError(f"synth {synth!r}: expected true or false")
    if synth:
        from ..hw.params import check_buildable

        check_buildable(config)
    # The accelerator fields that `accel quantize` also takes as options are repeated here, so that the
    # front-end options of a row read as one `accel quantize` command line.
    repeated = {"weight_bits": config.weight_bits, "act_bits": config.act_bits, "lut_scope": config.lut_scope.value}
    return ResolvedPoint(config=config, quantize={**options, **repeated, "calib": spec.calib}, synth=synth,
                         target=spec.target)


def quantize_kwargs(options: dict) -> dict:
    """The :class:`~accel.frontend.quantize.QuantizeOptions` arguments among a point's front-end options."""
    user = options["user_lut"]
    return {"lut": options["lut"], "granularity": options["granularity"], "levels": options["levels"],
            "calib_method": options["calib_method"], "calib_size": options["calib_size"],
            "seed": options["calib_seed"], "user_lut": None if user is None else tuple(user)}


def ptq_kwargs(options: dict) -> dict:
    """The :class:`~accel.frontend.ptq.pipeline.PTQOptions` arguments among a point's front-end options."""
    return {"cle": options["cle"], "bias_correction": options["bias_correction"], "adaround": options["adaround"],
            "adaround_iters": options["adaround_iters"]}

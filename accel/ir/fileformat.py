"""The ``.qmodel`` file format: a zip of ``manifest.json`` and ``.npy`` arrays.

Never pickle: arrays load with ``allow_pickle=False``; each carries a SHA-256
checksum in the manifest. Version 2 adds multipoint layers (contract v1.3); a
model without them is still written as version 1. A file from a newer accel is
refused with a message saying so.

Reading trusts nothing in the file. Every damage (a cut or flipped byte, a
forged entry) is a :class:`~accel.errors.ModelFormatError` or
:class:`~accel.errors.ModelError` naming the file, never another exception.
What a file can make us allocate is bounded before anything is inflated: the
manifest by :data:`MAX_MANIFEST_BYTES`; each array by the size its manifest
shape and dtype give (checked against the zip entry's declared size and the
``.npy`` header), read through a bounded decompressor; and all arrays together
by :data:`MAX_MODEL_BYTES`.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import re
import struct
import zipfile
import zlib
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from ..config import AcceleratorConfig
from ..errors import AccelError, ModelFormatError
from ..report.files import check_output, open_atomic
from .model import Layer, Model, TensorInfo

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "MAX_MANIFEST_BYTES", "MAX_MODEL_BYTES", "save_model",
           "load_model", "load_model_bytes"]

FORMAT_NAME = "accel-qmodel"
#: Version 2 adds multipoint layers (arrays ``point_codes``, ``point_channel``, ``point_shift``;
#: contract v1.3); a model without them is written as version 1, which older readers accept.
FORMAT_VERSION = 2
#: The first version that may hold each optional array introduced after version 1.
_ARRAY_SINCE = {"point_codes": 2, "point_channel": 2, "point_shift": 2}
#: Largest ``manifest.json`` a reader inflates (the bundled models' manifests are a few KiB).
MAX_MANIFEST_BYTES = 16 << 20
#: Largest total of array data (as the manifest declares it) a reader accepts: 1 GiB, far
#: above any network the accelerator's buffers serve, far below what a zip bomb asks for.
MAX_MODEL_BYTES = 1 << 30
#: Largest ``.npy`` header accepted (numpy writes 128 bytes for every array we save).
_MAX_NPY_HEADER = 4096
#: Array dtypes a ``.qmodel`` may hold: integers only (codes, LUTs, biases, shifts, multipliers).
_ARRAY_DTYPES = ("int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64")


def _array_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(arr), allow_pickle=False)
    return buf.getvalue()


def save_model(model: Model, path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Validate ``model`` and write it to ``path`` (atomically; refuses to overwrite unless asked).

    Raises
    ------
    OutputError
        ``path`` exists (without ``overwrite``) or its folder is missing or not writable
        (checked before anything is serialized).
    ModelError
        The model is inconsistent.
    """
    path = check_output(path, overwrite=overwrite)
    model.validate()
    layers = []
    files: dict[str, bytes] = {}
    for i, layer in enumerate(model.layers):
        arrays = {}
        for field, arr in layer.arrays.items():
            name = f"arrays/{i:04d}_{field}.npy"
            data = _array_bytes(np.asarray(arr))
            files[name] = data
            arrays[field] = {"file": name, "sha256": hashlib.sha256(data).hexdigest(),
                             "dtype": str(np.asarray(arr).dtype), "shape": list(np.shape(arr))}
        layers.append({"name": layer.name, "op": layer.op, "inputs": list(layer.inputs),
                       "output": layer.output, "attrs": _jsonable(layer.attrs), "arrays": arrays})
    manifest = {
        "format": FORMAT_NAME,
        "version": max([1] + [_ARRAY_SINCE.get(f, 1) for layer in model.layers for f in layer.arrays]),
        "config": model.config.to_dict(),
        "inputs": list(model.inputs),
        "outputs": list(model.outputs),
        "tensors": [t.to_dict() for t in model.tensors.values()],
        "layers": layers,
        "metadata": _jsonable(model.metadata),
    }
    with open_atomic(path, overwrite=overwrite, binary=True) as f, \
            zipfile.ZipFile(f, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("manifest.json", json.dumps(manifest, indent=1))
        for name, data in files.items():
            zf.writestr(name, data)
    return path


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def load_model(path: str | os.PathLike) -> Model:
    """Read and validate a ``.qmodel`` file.

    Raises
    ------
    ModelFormatError
        The file is missing, not a zip (truncated or corrupted), lacks its
        manifest, is of a newer format version, has a malformed manifest, an
        array that fails its checksum or differs from its manifest entry, or
        declares more data than :data:`MAX_MODEL_BYTES`.
    ModelError
        The contents are readable but inconsistent (a layer field is wrong).
    """
    path = Path(path)
    if not path.is_file():
        raise ModelFormatError(f"{path}: no such model file")
    try:
        with open(path, "rb") as file:
            return _load(file, str(path))
    except OSError as exc:
        raise ModelFormatError(f"{path}: cannot read the model ({exc.strerror or exc})") from None


def load_model_bytes(data: bytes, name: str = "<bytes>") -> Model:
    """Read and validate a ``.qmodel`` held in memory; errors name it ``name``.

    Raises the same errors as :func:`load_model`.
    """
    return _load(io.BytesIO(data), name)


#: What the zip and zlib layers raise on damaged input (a flipped compression method is
#: ``NotImplementedError``, a flipped encryption flag ``RuntimeError``, a cut stream ``EOFError``).
_ZIP_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, ValueError,
               NotImplementedError, RuntimeError, struct.error, UnicodeDecodeError, OverflowError)


def _load(file: BinaryIO, name: str) -> Model:
    try:
        with zipfile.ZipFile(file) as zf:
            model = _read(zf, name)
    except ModelFormatError:
        raise
    except AccelError as exc:
        raise type(exc)(str(exc) if str(exc).startswith(f"{name}: ") else f"{name}: {exc}") from None
    except OSError as exc:
        raise ModelFormatError(f"{name}: cannot read the model ({exc})") from None
    except _ZIP_ERRORS as exc:
        raise ModelFormatError(f"{name}: not a readable .qmodel (zip) file: truncated or corrupted "
                               f"({type(exc).__name__}: {exc})") from None
    try:
        return model.validate()
    except AccelError as exc:
        raise type(exc)(f"{name}: {exc}") from None
    except (TypeError, ValueError, KeyError, IndexError, OverflowError) as exc:
        # A forged manifest whose types pass the schema but whose values trip an op's checks.
        raise ModelFormatError(f"{name}: the model is inconsistent ({type(exc).__name__}: {exc})") from None


def _read_member(zf: zipfile.ZipFile, member: str, limit: int, where: str) -> bytes:
    """The bytes of ``member``, refusing before inflation when it declares more than ``limit``.

    The declared size is not trusted either: at most ``limit + 1`` bytes are inflated.
    """
    try:
        info = zf.getinfo(member)
    except KeyError:
        raise ModelFormatError(f"{where}: {member} is missing from the archive") from None
    if info.file_size > limit:
        raise ModelFormatError(f"{where}: {member} declares {info.file_size} bytes; at most {limit} expected")
    try:
        with zf.open(info) as stream:
            data = stream.read(limit + 1)
    except _ZIP_ERRORS as exc:
        raise ModelFormatError(f"{where}: {member} is corrupted ({type(exc).__name__}: {exc})") from None
    if len(data) > limit:
        raise ModelFormatError(f"{where}: {member} inflates beyond {limit} bytes")
    return data


def _reject_constant(token: str):
    raise ValueError(f"{token} is not a number JSON allows")


def _read(zf: zipfile.ZipFile, name: str) -> Model:
    if "manifest.json" not in zf.namelist():
        raise ModelFormatError(f"{name}: missing manifest.json; not a .qmodel file")
    raw = _read_member(zf, "manifest.json", MAX_MANIFEST_BYTES, name)
    try:
        manifest = json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise ModelFormatError(f"{name}: manifest.json is not valid JSON ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        raise ModelFormatError(f"{name}: manifest.json does not describe an {FORMAT_NAME} file")
    version = manifest.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ModelFormatError(f"{name}: manifest field 'version' is {version!r}; expected a positive integer")
    if version > FORMAT_VERSION:
        raise ModelFormatError(f"{name}: format version {version} was written by a newer accel; "
                               f"this accel reads versions up to {FORMAT_VERSION}")
    _check_manifest(manifest, name)
    budget = sum(_declared_bytes(info) for entry in manifest["layers"] for info in entry["arrays"].values())
    if budget > MAX_MODEL_BYTES:
        raise ModelFormatError(f"{name}: the manifest declares {budget} bytes of arrays; at most "
                               f"{MAX_MODEL_BYTES} (MAX_MODEL_BYTES) are read")
    config = AcceleratorConfig.from_dict(manifest["config"], source=f"{name}: config")
    tensors = {t["name"]: TensorInfo(t["name"], tuple(t["shape"]), t["dtype"], t["exponent"])
               for t in manifest["tensors"]}
    layers = []
    for entry in manifest["layers"]:
        newer = [f for f in entry["arrays"] if _ARRAY_SINCE.get(f, 1) > version]
        if newer:
            raise ModelFormatError(f"{name}: layer {entry['name']!r} array {newer[0]!r} needs format version "
                                   f"{_ARRAY_SINCE[newer[0]]}; the manifest says version {version}")
        arrays = {field: _read_array(zf, info, f"{name}: layer {entry['name']!r} array {field!r}")
                  for field, info in entry["arrays"].items()}
        layers.append(Layer(entry["name"], entry["op"], list(entry["inputs"]), entry["output"],
                            dict(entry["attrs"]), arrays))
    return Model(config, list(manifest["inputs"]), list(manifest["outputs"]), tensors, layers,
                 dict(manifest["metadata"]))


def _declared_bytes(info: dict) -> int:
    return math.prod(info["shape"]) * np.dtype(info["dtype"]).itemsize


def _read_array(zf: zipfile.ZipFile, info: dict, where: str) -> np.ndarray:
    """One array, checked against its manifest entry: size before inflating, then checksum and header."""
    payload = _declared_bytes(info)
    data = _read_member(zf, info["file"], payload + _MAX_NPY_HEADER, where)
    if hashlib.sha256(data).hexdigest() != info["sha256"]:
        raise ModelFormatError(f"{where}: checksum mismatch; the file is corrupted")
    stream = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(stream)
        if version not in ((1, 0), (2, 0)):
            raise ValueError(f"npy format version {version} is not 1.0 or 2.0")
        read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                       else np.lib.format.read_array_header_2_0)
        shape, fortran_order, dtype = read_header(stream, max_header_size=_MAX_NPY_HEADER)
    except (ValueError, TypeError, SyntaxError, OverflowError) as exc:
        raise ModelFormatError(f"{where}: not a plain numpy array ({exc})") from None
    if dtype.hasobject or str(dtype) != info["dtype"] or list(shape) != info["shape"]:
        raise ModelFormatError(f"{where}: holds {dtype} {list(shape)}; the manifest says "
                               f"{info['dtype']} {info['shape']}")
    if len(data) - stream.tell() != payload:
        raise ModelFormatError(f"{where}: holds {len(data) - stream.tell()} bytes of data; "
                               f"{info['dtype']} {info['shape']} needs {payload}")
    arr = np.frombuffer(data, dtype, offset=stream.tell())
    return arr.reshape(shape, order="F" if fortran_order else "C").copy()


# The manifest's schema: each field's type, checked before any value is used, so that a
# forged or damaged manifest is one named error rather than a TypeError deep inside.
_SHA256 = re.compile(r"[0-9a-f]{64}")
_MEMBER = re.compile(r"arrays/[0-9]{4,}_[A-Za-z0-9_]+\.npy")
_MAX_NESTING = 16


def _expect(ok: Any, name: str, where: str, expected: str, value: Any) -> None:
    if not ok:
        shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
        raise ModelFormatError(f"{name}: manifest.json is malformed: {where or 'the manifest'} is {shown}; "
                               f"expected {expected}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _fields(**checks):
    """A check that ``value`` is an object with exactly these fields, each passing its check."""
    def check(name, where, value):
        _expect(isinstance(value, dict) and set(value) == set(checks), name, where,
                f"an object with fields {', '.join(checks)}", value)
        for key, check_field in checks.items():
            check_field(name, f"{where}.{key}" if where else key, value[key])
    return check


def _list_of(check_item):
    def check(name, where, value):
        _expect(isinstance(value, list), name, where, "a list", value)
        for i, item in enumerate(value):
            check_item(name, f"{where}[{i}]", item)
    return check


def _dims(low: int):
    def check(name, where, value):
        _expect(isinstance(value, list) and all(_is_int(v) and low <= v <= MAX_MODEL_BYTES for v in value),
                name, where, f"a list of integers in {low}..{MAX_MODEL_BYTES}", value)
    return check


def _any(name, where, value):
    pass  # checked on its own (the version, before the rest)


def _string(name, where, value):
    _expect(isinstance(value, str), name, where, "a string", value)


def _exponent(name, where, value):
    _expect(value is None or _is_int(value), name, where, "an integer or null", value)


def _member(name, where, value):
    _expect(isinstance(value, str) and _MEMBER.fullmatch(value), name, where,
            "a member name arrays/NNNN_FIELD.npy", value)


def _sha256(name, where, value):
    _expect(isinstance(value, str) and _SHA256.fullmatch(value), name, where, "64 lowercase hex digits", value)


def _array_dtype(name, where, value):
    _expect(value in _ARRAY_DTYPES, name, where, f"one of {', '.join(_ARRAY_DTYPES)}", value)


def _json_value(name, where, value, depth=0):
    _expect(depth <= _MAX_NESTING, name, where, f"at most {_MAX_NESTING} levels of nesting", value)
    if isinstance(value, list):
        for i, item in enumerate(value):
            _json_value(name, f"{where}[{i}]", item, depth + 1)
    elif isinstance(value, dict):
        for key, item in value.items():
            _json_value(name, f"{where}.{key}", item, depth + 1)
    else:
        _expect(value is None or isinstance(value, (str, bool, int, float)), name, where, "a JSON value", value)


def _json_object(name, where, value):
    _expect(isinstance(value, dict), name, where, "an object", value)
    _json_value(name, where, value)


def _array_table(name, where, value):
    _expect(isinstance(value, dict), name, where, "an object", value)
    for field, entry in value.items():
        _ARRAY_ENTRY(name, f"{where}.{field}", entry)


def _strings(name, where, value):
    _expect(isinstance(value, list) and all(isinstance(v, str) for v in value), name, where,
            "a list of strings", value)


_ARRAY_ENTRY = _fields(file=_member, sha256=_sha256, dtype=_array_dtype, shape=_dims(0))
_MANIFEST = _fields(
    format=_string, version=_any, config=_json_object, inputs=_strings, outputs=_strings,
    tensors=_list_of(_fields(name=_string, shape=_dims(1), dtype=_string, exponent=_exponent)),
    layers=_list_of(_fields(name=_string, op=_string, inputs=_strings, output=_string, attrs=_json_object,
                            arrays=_array_table)),
    metadata=_json_object)


def _check_manifest(manifest: dict, name: str) -> None:
    _MANIFEST(name, "", manifest)

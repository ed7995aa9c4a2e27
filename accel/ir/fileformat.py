"""The ``.qmodel`` file format: a zip of ``manifest.json`` and ``.npy`` arrays.

Never pickle: arrays load with ``allow_pickle=False``; each carries a SHA-256
checksum in the manifest. Version 1 is the only version so far; a file from a
newer accel is refused with a message saying so.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile
from pathlib import Path

import numpy as np

from ..config import AcceleratorConfig
from ..errors import AccelError, ModelFormatError
from ..report.files import check_output, open_atomic
from .model import Layer, Model, TensorInfo

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "save_model", "load_model"]

FORMAT_NAME = "accel-qmodel"
FORMAT_VERSION = 1


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
        "version": FORMAT_VERSION,
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
        manifest, is of a newer format version, or an array fails its checksum.
    ModelError
        The contents are readable but inconsistent (a layer field is wrong).
    """
    path = Path(path)
    if not path.is_file():
        raise ModelFormatError(f"{path}: no such model file")
    try:
        with zipfile.ZipFile(path) as zf:
            return _read(zf, path)
    except zipfile.BadZipFile:
        raise ModelFormatError(f"{path}: not a readable .qmodel (zip) file: truncated or corrupted") from None
    except (OSError, EOFError, zipfile.LargeZipFile) as exc:
        raise ModelFormatError(f"{path}: cannot read the model ({exc})") from None


def _read(zf: zipfile.ZipFile, path: Path) -> Model:
    try:
        raw = zf.read("manifest.json")
    except KeyError:
        raise ModelFormatError(f"{path}: missing manifest.json; not a .qmodel file") from None
    except (zipfile.BadZipFile, ValueError, EOFError) as exc:  # a bad CRC or a cut entry
        raise ModelFormatError(f"{path}: manifest.json is corrupted ({exc})") from None
    try:
        manifest = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelFormatError(f"{path}: manifest.json is not valid JSON ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        raise ModelFormatError(f"{path}: manifest.json does not describe an {FORMAT_NAME} file")
    version = manifest.get("version")
    if not isinstance(version, int) or version < 1:
        raise ModelFormatError(f"{path}: manifest field 'version' is {version!r}; expected a positive integer")
    if version > FORMAT_VERSION:
        raise ModelFormatError(f"{path}: format version {version} was written by a newer accel; "
                               f"this accel reads versions up to {FORMAT_VERSION}")
    try:
        config = AcceleratorConfig.from_dict(manifest["config"], source=f"{path}: config")
        tensors = {}
        for t in manifest["tensors"]:
            tensors[t["name"]] = TensorInfo(t["name"], tuple(t["shape"]), t["dtype"], t.get("exponent"))
        layers = []
        for entry in manifest["layers"]:
            arrays = {}
            for field, info in entry["arrays"].items():
                where = f"{path}: layer {entry['name']!r} array {field!r}"
                try:
                    data = zf.read(info["file"])
                except KeyError:
                    raise ModelFormatError(f"{where}: {info['file']} is missing from the archive") from None
                except (zipfile.BadZipFile, ValueError, EOFError) as exc:
                    raise ModelFormatError(f"{where}: corrupted ({exc})") from None
                if hashlib.sha256(data).hexdigest() != info["sha256"]:
                    raise ModelFormatError(f"{where}: checksum mismatch; the file is corrupted")
                try:
                    arr = np.load(io.BytesIO(data), allow_pickle=False)
                except ValueError as exc:
                    raise ModelFormatError(f"{where}: not a plain numpy array ({exc})") from None
                arrays[field] = arr
            layers.append(Layer(entry["name"], entry["op"], list(entry["inputs"]), entry["output"],
                                dict(entry["attrs"]), arrays))
        model = Model(config, list(manifest["inputs"]), list(manifest["outputs"]), tensors, layers,
                      dict(manifest.get("metadata", {})))
    except AccelError as exc:
        if str(exc).startswith(str(path)):
            raise
        raise type(exc)(f"{path}: {exc}") from None
    except (KeyError, TypeError, AttributeError) as exc:
        raise ModelFormatError(f"{path}: manifest.json is malformed (missing or bad entry {exc})") from None
    try:
        return model.validate()
    except AccelError as exc:
        raise type(exc)(f"{path}: {exc}") from None

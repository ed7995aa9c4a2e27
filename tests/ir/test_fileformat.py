import hashlib
import io
import json
import tracemalloc
import zipfile

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from accel.engine import run_model
from accel.errors import AccelError, ModelError, ModelFormatError, OutputError
from accel.ir import FORMAT_VERSION, load_model, save_model
from accel.ir.fileformat import MAX_MODEL_BYTES, load_model_bytes
from tests.support.models import small_resnet


def test_round_trip_preserves_results(tmp_path):
    model = small_resnet()
    path = save_model(model, tmp_path / "m.qmodel")
    loaded = load_model(path)
    assert [l.name for l in loaded.layers] == [l.name for l in model.layers]
    assert loaded.config == model.config and loaded.metadata == {"name": "small_resnet"}
    x = np.random.default_rng(1).integers(-128, 128, (4, 1, 12, 12)).astype(np.int8)
    a, b = run_model(model, x), run_model(loaded, x)
    assert np.array_equal(a["fc"], b["fc"])


def test_archive_holds_no_pickles(tmp_path):
    path = save_model(small_resnet(), tmp_path / "m.qmodel")
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
    assert names[0] == "manifest.json" and all(n.endswith(".npy") for n in names[1:])


def test_refuses_to_overwrite(tmp_path):
    path = tmp_path / "m.qmodel"
    path.write_bytes(b"precious")
    with pytest.raises(OutputError, match="already exists"):
        save_model(small_resnet(), path)
    assert path.read_bytes() == b"precious"


def test_destination_checked_before_the_model(tmp_path):
    """A missing folder is reported before validation and serialization, not after."""
    model = small_resnet()
    model.layers[0].op = "no_such_op"
    with pytest.raises(ModelError):
        save_model(model, tmp_path / "m.qmodel")
    with pytest.raises(OutputError, match=r"m\.qmodel: folder .*missing does not exist$"):
        save_model(model, tmp_path / "missing" / "m.qmodel")
    assert list(tmp_path.iterdir()) == []


def test_truncated_file(tmp_path):
    path = save_model(small_resnet(), tmp_path / "m.qmodel")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    message = r"m\.qmodel: not a readable \.qmodel \(zip\) file: truncated or corrupted"
    with pytest.raises(ModelFormatError, match=message):
        load_model(path)


def _rewrite(path, transform):
    with zipfile.ZipFile(path) as zf:
        entries = {n: zf.read(n) for n in zf.namelist()}
    entries = transform(entries)
    with zipfile.ZipFile(path, "w") as zf:
        for n, d in entries.items():
            zf.writestr(n, d)


def test_corrupted_array_fails_checksum(tmp_path):
    path = save_model(small_resnet(), tmp_path / "m.qmodel")

    def flip(entries):
        name = next(n for n in entries if n.endswith("_codes.npy"))
        data = bytearray(entries[name])
        data[-1] ^= 0x01
        entries[name] = bytes(data)
        return entries

    _rewrite(path, flip)
    with pytest.raises(ModelFormatError, match=r"layer 'stem' array 'codes': checksum mismatch"):
        load_model(path)


def test_newer_version_is_refused(tmp_path):
    path = save_model(small_resnet(), tmp_path / "m.qmodel")

    def bump(entries):
        manifest = json.loads(entries["manifest.json"])
        manifest["version"] = FORMAT_VERSION + 1
        entries["manifest.json"] = json.dumps(manifest).encode()
        return entries

    _rewrite(path, bump)
    with pytest.raises(ModelFormatError, match=f"format version {FORMAT_VERSION + 1} was written by a newer accel"):
        load_model(path)


def test_missing_manifest_and_missing_file(tmp_path):
    path = tmp_path / "x.qmodel"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("other.txt", "hi")
    with pytest.raises(ModelFormatError, match="missing manifest.json"):
        load_model(path)
    with pytest.raises(ModelFormatError, match="no such model file"):
        load_model(tmp_path / "absent.qmodel")


# --- damaged and forged files: every one is a clean, named error (issue 7.4) ---

@pytest.fixture(scope="module", params=["cnn_digits", "small_resnet"])
def qmodel_bytes(request, tmp_path_factory):
    """A real ``.qmodel``: the bundled digits network quantized by the front end, or the
    small residual network that holds every op."""
    path = tmp_path_factory.mktemp("qmodel") / f"{request.param}.qmodel"
    if request.param == "cnn_digits":
        from accel.data import load_dataset
        from accel.frontend.onnx_import import import_onnx
        from accel.frontend.quantize import default_config, quantize_graph
        from accel.frontend.workflow import MODELS_DIR

        graph = import_onnx(MODELS_DIR / "cnn_digits.onnx")
        model = quantize_graph(graph, load_dataset("digits", "calib").x[:64], default_config())
    else:
        model = small_resnet()
    return save_model(model, path).read_bytes()


def _assert_same_model(a, b):
    assert a.config == b.config and a.inputs == b.inputs and a.outputs == b.outputs
    assert a.metadata == b.metadata
    assert {k: t.to_dict() for k, t in a.tensors.items()} == {k: t.to_dict() for k, t in b.tensors.items()}
    assert [(x.name, x.op, x.inputs, x.output, x.attrs) for x in a.layers] == \
        [(x.name, x.op, x.inputs, x.output, x.attrs) for x in b.layers]
    for x, y in zip(a.layers, b.layers):
        assert x.arrays.keys() == y.arrays.keys()
        for field in x.arrays:
            assert x.arrays[field].dtype == y.arrays[field].dtype
            assert np.array_equal(x.arrays[field], y.arrays[field]), (x.name, field)


def _load_clean_or_same(data: bytes, original: bytes) -> str:
    """Load ``data``: either the model of ``original`` or an accel error that names the file."""
    try:
        model = load_model_bytes(data, "damaged.qmodel")
    except AccelError as exc:
        assert str(exc).startswith("damaged.qmodel: ") and "\n" not in str(exc), str(exc)
        return "error"
    _assert_same_model(model, load_model_bytes(original))
    return "same"


def _examples(n: int) -> int:
    return max(n, settings().max_examples)  # ACCEL_FULL=1 raises the profile's count


@settings(max_examples=_examples(800))
@given(position=st.integers(0, 1 << 30), mask=st.integers(1, 255))
def test_a_flipped_byte_gives_a_clean_error_or_the_same_model(qmodel_bytes, position, mask):
    data = bytearray(qmodel_bytes)
    data[position % len(data)] ^= mask
    _load_clean_or_same(bytes(data), qmodel_bytes)


@settings(max_examples=_examples(300))
@given(flips=st.lists(st.tuples(st.integers(0, 1 << 30), st.integers(1, 255)), min_size=2, max_size=8))
def test_several_flipped_bytes_give_a_clean_error_or_the_same_model(qmodel_bytes, flips):
    data = bytearray(qmodel_bytes)
    for position, mask in flips:
        data[position % len(data)] ^= mask
    _load_clean_or_same(bytes(data), qmodel_bytes)


@settings(max_examples=_examples(300))
@given(keep=st.integers(0, 1 << 30), tail=st.booleans())
def test_a_cut_file_gives_a_clean_error(qmodel_bytes, keep, tail):
    keep %= len(qmodel_bytes)
    data = qmodel_bytes[len(qmodel_bytes) - keep:] if tail else qmodel_bytes[:keep]
    assert _load_clean_or_same(data, qmodel_bytes) == "error"


def test_every_byte_flipped_in_turn(qmodel_bytes):
    """About 1,500 evenly spaced bytes of the archive inverted, one at a time: none a crash."""
    step = max(1, len(qmodel_bytes) // 1500)
    outcomes = [_load_clean_or_same(qmodel_bytes[:i] + bytes([qmodel_bytes[i] ^ 0xFF]) + qmodel_bytes[i + 1:],
                                    qmodel_bytes)
                for i in range(0, len(qmodel_bytes), step)]
    assert outcomes.count("error") > len(outcomes) // 2  # most damage is caught, none crashes


def _entries(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return {n: zf.read(n) for n in zf.namelist()}


def _archive(entries: dict[str, bytes], streamed: tuple[str, int] | None = None) -> bytes:
    """A zip of ``entries``; ``streamed`` (member, MiB) writes that member as that many MiB of zeros."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries.items():
            if streamed and name == streamed[0]:
                with zf.open(name, "w") as stream:
                    for _ in range(streamed[1]):
                        stream.write(bytes(1 << 20))
            else:
                zf.writestr(name, data)
    return buf.getvalue()


def _small_resnet_parts(tmp_path) -> tuple[dict, dict[str, bytes]]:
    entries = _entries(save_model(small_resnet(), tmp_path / "m.qmodel").read_bytes())
    return json.loads(entries["manifest.json"]), entries


def _npy(array) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=True)  # the forger may pickle; the reader must refuse
    return buf.getvalue()


def _replace_codes(manifest, entries, payload: bytes, dtype="uint8", shape=(8, 1, 3, 3)):
    info = manifest["layers"][0]["arrays"]["codes"]
    entries[info["file"]] = payload
    info["sha256"] = hashlib.sha256(payload).hexdigest()
    info["dtype"], info["shape"] = dtype, list(shape)


def _set(container, key, value):
    container[key] = value


@pytest.mark.parametrize("transform, message", [
    (lambda m, e: _set(m["layers"][0], "inputs", "image"),
     r"manifest\.json is malformed: layers\[0\]\.inputs is 'image'; expected a list of strings$"),
    (lambda m, e: _set(m["tensors"][0], "shape", [1, -12, 12]),
     r"malformed: tensors\[0\]\.shape is \[1, -12, 12\]; expected a list of integers in 1\.\."),
    (lambda m, e: _set(m["layers"][0]["arrays"]["codes"], "dtype", "object"),
     r"malformed: layers\[0\]\.arrays\.codes\.dtype is 'object'; expected one of int8, "),
    (lambda m, e: _set(m["layers"][0]["arrays"]["codes"], "file", "../../etc/passwd"),
     r"arrays\.codes\.file is '\.\./\.\./etc/passwd'; expected a member name"),
    (lambda m, e: _set(m["layers"][1]["attrs"], "stride", {"a": [[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]}),
     r"attrs\.stride\.a.*expected at most 16 levels of nesting$"),
    (lambda m, e: _set(m, "extra", 1), r"the manifest is .*; expected an object with fields format, "),
    (lambda m, e: _set(m["layers"][8], "op", "reshape") or _set(m["layers"][8]["attrs"], "shape", 7),
     r"the model is inconsistent \(TypeError: "),
    (lambda m, e: _replace_codes(m, e, _npy(np.array([1, "x"], object))),
     r"layer 'stem' array 'codes': holds object \[2\]; the manifest says uint8 \[8, 1, 3, 3\]$"),
    (lambda m, e: _replace_codes(m, e, _npy(np.zeros((8, 1, 3, 3), np.int64)), "int64", (8, 1, 3, 4)),
     r"layer 'stem' array 'codes': holds int64 \[8, 1, 3, 3\]; the manifest says int64 \[8, 1, 3, 4\]$"),
    (lambda m, e: _replace_codes(m, e, _npy(np.zeros((8, 1, 3, 3), ">i8")), "int64"),
     r"layer 'stem' array 'codes': holds >i8 \[8, 1, 3, 3\]; the manifest says int64"),
    (lambda m, e: _replace_codes(m, e, _npy(np.zeros((8, 1, 3, 3), np.uint8)) + b"\0"),
     r"layer 'stem' array 'codes': holds 73 bytes of data; uint8 \[8, 1, 3, 3\] needs 72$"),
    (lambda m, e: _set(m["config"], "clock_mhz", 10 ** 400), r"config: config\.clock_mhz: expected a finite"),
    (lambda m, e: _set(m["layers"][0], "name", m["layers"][1]["name"]), r"duplicate layer name$"),
])
def test_forged_manifest_or_array_is_a_named_error(tmp_path, transform, message):
    manifest, entries = _small_resnet_parts(tmp_path)
    transform(manifest, entries)
    entries["manifest.json"] = json.dumps(manifest).encode()
    with pytest.raises(AccelError, match=rf"^forged\.qmodel: (?:.*){message}") as info:
        load_model_bytes(_archive(entries), "forged.qmodel")
    assert "\n" not in str(info.value)


def _bomb(tmp_path, declared_shape, member_mib: int, forged_size: int | None) -> bytes:
    """small_resnet whose first array declares ``declared_shape`` (uint8) while its member
    inflates to ``member_mib`` MiB of zeros (about a thousandth of that on disk)."""
    manifest, entries = _small_resnet_parts(tmp_path)
    info = manifest["layers"][0]["arrays"]["codes"]
    info["dtype"], info["shape"] = "uint8", list(declared_shape)
    entries["manifest.json"] = json.dumps(manifest).encode()
    data = bytearray(_archive(entries, streamed=(info["file"], member_mib)))
    if forged_size is not None:
        # The member's central directory record (the one before its name's last occurrence)
        # holds the inflated size at offset 24: make it lie.
        record = data.rfind(b"PK\x01\x02", 0, data.rfind(info["file"].encode()))
        data[record + 24:record + 28] = forged_size.to_bytes(4, "little")
    return bytes(data)


@pytest.mark.parametrize("declared_shape, member_mib, forged_size, message", [
    # the manifest is honest about a small array; the member declares 256 MiB
    ((8, 1, 3, 3), 256, None, r"arrays/0000_codes\.npy declares 268435456 bytes; at most 4168 expected$"),
    # the member's declared size is forged small too: inflation stops where the declaration does
    ((8, 1, 3, 3), 256, 100, r"arrays/0000_codes\.npy is corrupted \(BadZipFile: Bad CRC-32"),
    # the manifest itself asks for more than MAX_MODEL_BYTES
    ((1 << 16, 1 << 15), 64, None, rf"the manifest declares \d+ bytes of arrays; at most {MAX_MODEL_BYTES} "),
])
def test_zip_bomb_is_refused_without_a_big_allocation(tmp_path, declared_shape, member_mib, forged_size,
                                                       message):
    bomb = _bomb(tmp_path, declared_shape, member_mib, forged_size)
    assert len(bomb) * 500 < member_mib << 20  # a real bomb: it inflates over 500 times
    tracemalloc.start()
    try:
        with pytest.raises(ModelFormatError, match=r"^bomb\.qmodel: (?:.*)" + message):
            load_model_bytes(bomb, "bomb.qmodel")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20, f"reading a {len(bomb)}-byte bomb allocated {peak} bytes at its peak"


def test_damaged_deflate_stream_is_a_named_error(tmp_path):
    data = bytearray(save_model(small_resnet(), tmp_path / "m.qmodel").read_bytes())
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as zf:
        info = zf.getinfo("manifest.json")
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    data[start] = 0xFF  # a deflate block of the reserved type 3: zlib refuses it
    with pytest.raises(ModelFormatError, match=r"^x\.qmodel: manifest\.json is corrupted \(error: .*"
                                               r"invalid block type\)$"):
        load_model_bytes(bytes(data), "x.qmodel")

"""Execution of integer models on batches.

Backends, all bit-exact to :mod:`accel.datapath`:

``reference``
    numba kernels in int64 for every op, the MAC kernel vectorised along the
    output pixels (the oracle that the gateware tests compare with).
``fast`` (default)
    runs of consecutive layers are lowered to an exact floating-point ONNX
    graph and executed by onnxruntime; each conv/linear layer takes the fastest
    path whose exactness is proved from its weights and types (float32 below
    2^24, float32 chunks or a float64 GEMM below 2^53, an integer GEMM that passed
    its run-time self-test; see :mod:`accel.engine.onnx_lowering`); only a
    saturating accumulator that can overflow runs in the numba kernels.
``torch`` / ``cuda``
    PyTorch, im2col + GEMM in float32/float64 under the same bounds, integer
    epilogue (:mod:`accel.engine.torch_backend`); ``torch`` on the CPU, ``cuda``
    on a GPU.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from ..config import Overflow, Requant, Rounding
from ..datapath import DTYPE_RANGES, combine_points, conv_output_size, decode_weights, point_weights, requantize
from ..errors import DataError, ModelError
from ..ir import MAC_OPS, Layer, Model, layer_macs
from . import kernels

__all__ = ["BACKENDS", "Engine", "NUMBA_HANDLERS", "run_model", "run_layer", "segment_feed"]

#: The CPU backends (every test runs each of them); "cuda" runs the "torch" backend's code on a GPU.
BACKENDS = ("fast", "reference", "torch")
_ALL_BACKENDS = BACKENDS + ("cuda",)
_NP_DTYPE = {"int8": np.int8, "uint8": np.uint8, "int32": np.int32}


class _MacPlan:
    """A conv2d/linear layer prepared once for the numba kernel: decoded weights and requant arrays."""

    def __init__(self, layer: Layer, model: Model):
        cfg = model.config
        codes = layer.arrays["codes"]
        w = decode_weights(codes, layer.arrays["lut"])
        if layer.op == "linear":
            w = w.reshape(w.shape[0], w.shape[1], 1, 1)
        self.w = np.ascontiguousarray(w, dtype=np.int64)
        n = w.shape[0]
        self.bias = np.asarray(layer.arrays["bias"], dtype=np.int64)
        self.shift = np.asarray(layer.arrays["shift"], dtype=np.int64)
        if cfg.requant is Requant.MULTIPLY_SHIFT:
            self.mult = np.asarray(layer.arrays["mult"], dtype=np.int64)
        else:
            self.mult = np.ones(n, dtype=np.int64)
        a = layer.attrs
        if layer.op == "conv2d":
            self.stride, self.padding = tuple(a["stride"]), tuple(a["padding"])
            self.dilation, self.groups, self.pad_value = tuple(a["dilation"]), a["groups"], a["pad_value"]
        else:
            self.stride, self.padding, self.dilation, self.groups, self.pad_value = (1, 1), (0,) * 4, (1, 1), 1, 0
        self.lo, self.hi, self.raw = int(a["lo"]), int(a["hi"]), bool(a["raw"])
        self.cfg = cfg
        self.out_dtype = _NP_DTYPE[model.tensors[layer.output].dtype]
        self.points = None
        if layer.points is not None:
            # Extra rows as dense rows over every group's columns (zeros elsewhere: the kernel skips a
            # zero weight, so the order of the real additions, which saturation sees, is unchanged).
            point_codes, channel, shift = layer.points
            wp = point_weights(point_codes, channel, layer.arrays["lut"]).reshape(len(channel), -1)
            dense = np.zeros((len(channel), self.groups * wp.shape[1]), np.int64)
            for p, group in enumerate(np.asarray(channel, np.int64) // (n // self.groups)):
                dense[p, group * wp.shape[1]:(group + 1) * wp.shape[1]] = wp[p]
            self.points = (dense, np.asarray(channel, np.int64), np.asarray(shift, np.int64))

    def run(self, x: np.ndarray) -> np.ndarray:
        n, cg, kh, kw = self.w.shape
        if x.ndim == 2:  # linear: the batch plays the pixels, so the kernel runs along it
            cols = np.ascontiguousarray(x.T)[None]
            oh = ow = 1
        else:
            b, c, h, wd = x.shape
            (sh, sw), (pt, pl, pb, pr), (dh, dw) = self.stride, self.padding, self.dilation
            oh = conv_output_size(h, kh, sh, pt, pb, dh)
            ow = conv_output_size(wd, kw, sw, pl, pr, dw)
            cols = np.empty((b, c * kh * kw, oh * ow), dtype=x.dtype if self.pad_fits(x.dtype) else np.int16)
            kernels.im2col_kp(x, kh, kw, sh, sw, pt, pl, dh, dw, self.pad_value, oh, ow, cols)
        if self.points is None:
            out = np.empty((cols.shape[0], n, cols.shape[2]), dtype=self.out_dtype)
            self._mac(cols, self.w.reshape(n, -1), self.bias, self.shift, self.mult, self.groups, self.raw, out)
        else:
            out = self._run_points(cols)
        if x.ndim == 2:
            return np.ascontiguousarray(out[0].T)
        return out.reshape(out.shape[0], n, oh, ow)

    def _mac(self, cols, w, bias, shift, mult, groups, raw, out) -> None:
        cfg = self.cfg
        kernels.mac_columns(cols, w, bias, shift, mult, self.lo, self.hi, groups, cfg.acc_bits,
                            cfg.overflow is Overflow.SATURATE, cfg.requant is Requant.MULTIPLY_SHIFT,
                            cfg.rounding is Rounding.HALF_UP, raw, out)

    def _run_points(self, cols: np.ndarray) -> np.ndarray:
        """A multipoint layer: main and extra accumulators raw, joined by the contract's shift-and-add,
        then requantized (contract v1.3)."""
        cfg, n = self.cfg, self.w.shape[0]
        dense, channel, shift = self.points
        acc = np.empty((cols.shape[0], n, cols.shape[2]), np.int64)
        self._mac(cols, self.w.reshape(n, -1), self.bias, self.shift, self.mult, self.groups, True, acc)
        lanes = np.empty((cols.shape[0], len(channel), cols.shape[2]), np.int64)
        zeros = np.zeros(len(channel), np.int64)
        self._mac(cols, dense, zeros, zeros, zeros, 1, True, lanes)
        acc = combine_points(acc.transpose(0, 2, 1), lanes.transpose(0, 2, 1), channel, shift, cfg.acc_bits,
                             cfg.overflow)
        if not self.raw:
            acc = requantize(acc, self.shift, self.mult, self.lo, self.hi, cfg)
        return np.ascontiguousarray(acc.transpose(0, 2, 1)).astype(self.out_dtype)

    def pad_fits(self, dtype) -> bool:
        """Whether ``pad_value`` is a value of the input's dtype (else the columns widen to int16)."""
        info = np.iinfo(dtype)
        return info.min <= self.pad_value <= info.max


class Engine:
    """An integer model prepared for execution.

    Parameters
    ----------
    model : Model
        A validated integer model.
    backend : {"fast", "reference", "torch", "cuda"}
        See the module docstring; all are bit-exact.
    int_kernels : bool
        Let the fast backend use integer GEMM kernels that passed their exactness self-test
        (:mod:`accel.engine.capability`); False keeps to the float paths.
    """

    def __init__(self, model: Model, backend: str = "fast", *, int_kernels: bool = True):
        if backend not in _ALL_BACKENDS:
            raise ValueError(f"backend {backend!r} is not one of {', '.join(_ALL_BACKENDS)}")
        self.model = model
        self.backend = backend
        self.int_kernels = int_kernels
        self._plans = {layer.name: _MacPlan(layer, model) for layer in model.layers if layer.op in MAC_OPS}
        self._torch = None
        if backend in ("torch", "cuda"):
            from .torch_backend import TorchExecutor

            self._torch = TorchExecutor(model, "cpu" if backend == "torch" else "cuda",
                                        lambda layer, x: self._plans[layer.name].run(x))
        self._segment_cache: dict[bool, list] = {}

    def layer_paths(self) -> dict[str, str]:
        """Per layer, how this engine runs it: "numba" on the reference backend, else the path of
        :func:`accel.engine.onnx_lowering.layer_path` ("f32", "f32-split", "f64", "int8", "qconv", "qgemm"
        or "numba")."""
        if self.backend == "reference":
            return {layer.name: "numba" for layer in self.model.layers}
        if self._torch is not None:
            return self._torch.layer_paths()
        from .onnx_lowering import layer_path

        return {layer.name: layer_path(self.model, layer, self.int_kernels) for layer in self.model.layers}

    def describe(self) -> dict:
        """What runs the model here, for reports: backend, device, CPU flags, the verdicts of the integer
        kernels' self-tests (fast backend) and every layer's path."""
        from .capability import chosen_kernels, cpu_summary

        info = {"backend": self.backend}
        if self._torch is not None:
            info["device"] = self._torch.device_name()
            info.update(cpu_summary())
        elif self.backend == "fast":
            info.update(chosen_kernels() if self.int_kernels else cpu_summary())
        else:
            info.update(cpu_summary())
        info["layer_paths"] = self.layer_paths()
        return info

    def run_layer(self, layer: Layer | str, inputs: list[np.ndarray]) -> np.ndarray:
        """Run one layer on its input tensors (batch first) in the numba kernels."""
        if isinstance(layer, str):
            layer = self.model.layer(layer)
        handler = NUMBA_HANDLERS.get(layer.op)
        if handler is None:
            raise ModelError(f"layer {layer.name!r}: unknown op {layer.op!r}")
        return handler(self, layer, inputs)

    def check_inputs(self, inputs) -> dict[str, np.ndarray]:
        """Normalise ``inputs`` to {name: array} and check shapes, dtypes and ranges."""
        model = self.model
        if not isinstance(inputs, Mapping):
            if len(model.inputs) != 1:
                raise DataError(f"model has {len(model.inputs)} inputs ({', '.join(model.inputs)}); "
                                "pass a dict of arrays")
            inputs = {model.inputs[0]: inputs}
        checked = {}
        for name in model.inputs:
            if name not in inputs:
                raise DataError(f"input {name!r}: missing")
            arr = np.asarray(inputs[name])
            info = model.tensors[name]
            if arr.dtype.kind not in "iu":
                raise DataError(f"input {name!r}: expected integers ({info.dtype}), got dtype {arr.dtype}; "
                                "quantize real-valued data with accel.datapath.quantize_input")
            if arr.ndim != len(info.shape) + 1 or tuple(arr.shape[1:]) != info.shape:
                raise DataError(f"input {name!r}: expected shape (batch, {', '.join(map(str, info.shape))}), "
                                f"got {arr.shape}")
            lo, hi = info.range
            full = DTYPE_RANGES.get(info.dtype) == (lo, hi) and arr.dtype == _NP_DTYPE[info.dtype]
            if arr.size and not full and (arr.min() < lo or arr.max() > hi):  # (a full-range dtype cannot leave it)
                raise DataError(f"input {name!r}: values {arr.min()}..{arr.max()} outside {info.dtype} "
                                f"range {lo}..{hi}")
            checked[name] = np.ascontiguousarray(arr.astype(_NP_DTYPE[info.dtype], copy=False))
        return checked

    def run(self, inputs, *, return_all: bool = False, batch_size: int | None = None,
            progress: bool = False) -> dict[str, np.ndarray]:
        """Run the model; returns the output tensors (every tensor with ``return_all``)."""
        inputs = self.check_inputs(inputs)
        total = next(iter(inputs.values())).shape[0]
        if batch_size is None or batch_size >= total:
            return self._run_batch(inputs, return_all)
        starts = range(0, total, batch_size)
        if progress:
            from tqdm import tqdm
            starts = tqdm(starts, desc="engine", unit="batch", leave=False)
        parts = [self._run_batch({k: v[s:s + batch_size] for k, v in inputs.items()}, return_all)
                 for s in starts]
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    def _segments(self, return_all: bool) -> list:
        """The execution plan: ("numba", layer) steps and ("onnx", session, inputs, outputs) segments."""
        if return_all in self._segment_cache:
            return self._segment_cache[return_all]
        layers = self.model.layers
        steps: list = []
        if self.backend == "reference":
            steps = [("numba", layer) for layer in layers]
        else:
            paths = self.layer_paths()
            run: list[Layer] = []
            for i, layer in enumerate(layers + [None]):
                if layer is not None and paths[layer.name] != "numba":
                    run.append(layer)
                    continue
                if run:
                    steps.append(self._onnx_segment(run, layers[i:], return_all))
                    run = []
                if layer is not None:
                    steps.append(("numba", layer))
        self._segment_cache[return_all] = steps
        return steps

    def _onnx_segment(self, run: list[Layer], later: list[Layer], return_all: bool):
        from .onnx_lowering import lower_layers, segment_inputs, session_config

        produced = [layer.output for layer in run]
        inputs = []
        for layer in run:
            for t in layer.inputs:
                if t not in produced and t not in inputs:
                    inputs.append(t)
        needed = {t for layer in later for t in layer.inputs} | set(self.model.outputs)
        outputs = [t for t in produced if return_all or t in needed]
        proto = lower_layers(self.model, run, inputs, outputs, self.int_kernels)
        macs = sum(layer_macs(self.model, layer) for layer in run)
        return ("onnx", _Sessions(proto.SerializeToString(), session_config(proto)), segment_inputs(proto), outputs,
                macs)

    def _run_batch(self, inputs: dict[str, np.ndarray], return_all: bool) -> dict[str, np.ndarray]:
        if self._torch is not None:
            return self._torch.run(inputs, return_all)
        values = dict(inputs)
        for step in self._segments(return_all):
            if step[0] == "numba":
                layer = step[1]
                values[layer.output] = self.run_layer(layer, [values[t] for t in layer.inputs])
            else:
                _, session, specs, outputs, macs = step
                feed = segment_feed(specs, values)
                batch = len(next(iter(feed.values()))) if feed else 1
                # a small call runs on one thread: waking and joining a second costs more than it saves
                threads = 1 if batch * macs < SINGLE_THREAD_MACS else _threads()
                results = session.get(threads).run(outputs, feed)
                values.update(zip(outputs, results))
        if return_all:
            return values
        return {name: values[name] for name in self.model.outputs}


def segment_feed(specs: list[tuple[str, str, bool]], values: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The inputs of a :func:`~accel.engine.onnx_lowering.lower_layers` graph (its
    :func:`~accel.engine.onnx_lowering.segment_inputs`) from the model's tensors: an int8 tensor's
    :func:`~accel.engine.onnx_lowering.shifted_input` is its bytes with the sign bit flipped, ``x + 128`` exactly."""
    return {name: values[tensor].view(np.uint8) ^ np.uint8(0x80) if shifted else values[tensor]
            for name, tensor, shifted in specs}


class _Sessions:
    """One graph segment's onnxruntime sessions, one per intra-op thread count, each built on first use."""

    def __init__(self, proto: bytes, config: dict[str, str] | None = None):
        self.proto = proto
        self.config = config or {}  # session config entries (onnx_lowering.session_config)
        self.built: dict = {}

    def get(self, threads: int):
        if threads not in self.built:
            import onnxruntime as ort

            opts = ort.SessionOptions()
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
            opts.log_severity_level = 3
            for key, value in self.config.items():
                opts.add_session_config_entry(key, value)
            self.built[threads] = ort.InferenceSession(self.proto, opts, providers=["CPUExecutionProvider"])
        return self.built[threads]


def _out_dtype(model: Model, layer: Layer):
    return _NP_DTYPE[model.tensors[layer.output].dtype]


def _half_up(model: Model) -> bool:
    return model.config.rounding is Rounding.HALF_UP


def _requant_flat(model: Model, layer: Layer, values, mult, shift) -> np.ndarray:
    """``clamp(rshift_round(values * mult, shift), lo, hi)`` element-wise, in the layer's output type."""
    flat = np.ascontiguousarray(values).reshape(-1)
    out = np.empty(flat.shape, dtype=_out_dtype(model, layer))
    kernels.requant_array(flat, np.int64(mult), np.int64(shift), np.int64(layer.attrs["lo"]),
                          np.int64(layer.attrs["hi"]), _half_up(model), out)
    return out.reshape(values.shape)


def _numba_mac(engine: Engine, layer: Layer, inputs: list[np.ndarray]) -> np.ndarray:
    return engine._plans[layer.name].run(inputs[0])


def _numba_add(engine: Engine, layer: Layer, inputs: list[np.ndarray]) -> np.ndarray:
    a = layer.attrs
    total = (inputs[0].astype(np.int64) << a["shift_a"]) + (inputs[1].astype(np.int64) << a["shift_b"])
    return _requant_flat(engine.model, layer, total, 1, a["shift"])


def _pool_output(engine: Engine, layer: Layer, x: np.ndarray) -> np.ndarray:
    (kh, kw), (sh, sw), (pt, pl, pb, pr) = layer.attrs["kernel"], layer.attrs["stride"], layer.attrs["padding"]
    b, c, h, w = x.shape
    return np.empty((b, c, conv_output_size(h, kh, sh, pt, pb), conv_output_size(w, kw, sw, pl, pr)),
                    dtype=_out_dtype(engine.model, layer))


def _numba_max_pool(engine: Engine, layer: Layer, inputs: list[np.ndarray]) -> np.ndarray:
    a, x = layer.attrs, inputs[0]
    out = _pool_output(engine, layer, x)
    kernels.max_pool2d(x, *a["kernel"], *a["stride"], *a["padding"][:2], out)
    return out


def _numba_avg_pool(engine: Engine, layer: Layer, inputs: list[np.ndarray]) -> np.ndarray:
    a, arr, x = layer.attrs, layer.arrays, inputs[0]
    out = _pool_output(engine, layer, x)
    exclude = "count_mult" in arr  # padding excluded: one multiplier and shift per window size
    size = a["kernel"][0] * a["kernel"][1]
    mults = np.asarray(arr["count_mult"] if exclude else np.full(size, a["mult"]), np.int64)
    shifts = np.asarray(arr["count_shift"] if exclude else np.full(size, a["shift"]), np.int64)
    kernels.avg_pool2d(x, *a["kernel"], *a["stride"], *a["padding"][:2], np.int64(a["pad_value"]), mults, shifts,
                       exclude, np.int64(a["lo"]), np.int64(a["hi"]), _half_up(engine.model), out)
    return out


def _numba_global_avg_pool(engine: Engine, layer: Layer, inputs: list[np.ndarray]) -> np.ndarray:
    total = inputs[0].astype(np.int64).sum(axis=(2, 3), keepdims=True)
    return _requant_flat(engine.model, layer, total, layer.attrs["mult"], layer.attrs["shift"])


def _numba_flatten(engine: Engine, layer: Layer, inputs: list[np.ndarray]) -> np.ndarray:
    return inputs[0].reshape(inputs[0].shape[0], -1)


def _numba_reshape(engine: Engine, layer: Layer, inputs: list[np.ndarray]) -> np.ndarray:
    return inputs[0].reshape((inputs[0].shape[0],) + tuple(layer.attrs["shape"]))


def _numba_concat(engine: Engine, layer: Layer, inputs: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(inputs, axis=layer.attrs["axis"])


#: The reference backend: one handler per op of :data:`accel.ir.OPS`, (engine, layer, inputs) -> output.
NUMBA_HANDLERS = {
    "conv2d": _numba_mac, "linear": _numba_mac, "add": _numba_add, "max_pool": _numba_max_pool,
    "avg_pool": _numba_avg_pool, "global_avg_pool": _numba_global_avg_pool, "flatten": _numba_flatten,
    "reshape": _numba_reshape, "concat": _numba_concat,
}


#: A segment call with fewer multiply-accumulates than this runs on one onnxruntime thread: at batch 1 one
#: thread was faster than two on the bundled models (mobilenet_mnist 41.6k against 33.6k images/s, cnn_digits 74k
#: against 54k, resnet_mnist 32.3k against 30.2k; interleaved, 9 rounds, 2026-12-01), while ResNet-18 at 1.8 G
#: MACs per image gains from both.
SINGLE_THREAD_MACS = 1 << 23


def _threads() -> int:
    import numba

    return int(numba.get_num_threads())


def run_model(model: Model, inputs, *, backend: str = "fast", return_all: bool = False,
              batch_size: int | None = None, progress: bool = False) -> dict[str, np.ndarray]:
    """Run ``model`` on integer ``inputs`` (an array for a single-input model, or a dict).

    Returns a dict of output tensors (all tensors with ``return_all=True``) with the
    dtypes the model declares (int8, uint8 or int32).
    """
    return Engine(model, backend).run(inputs, return_all=return_all, batch_size=batch_size,
                                      progress=progress)


def run_layer(model: Model, layer: Layer | str, inputs: list[np.ndarray], backend: str = "fast") -> np.ndarray:
    """Run one layer of ``model`` on its input tensors."""
    if isinstance(layer, str):
        layer = model.layer(layer)
    sub = Model(model.config, list(layer.inputs), [layer.output], model.tensors, [layer], model.metadata)
    engine = Engine(sub, backend)
    feeds = engine.check_inputs(dict(zip(layer.inputs, inputs)))
    return engine.run(feeds)[layer.output]

"""The integer model (IR): tensors, layers, validation and the ``.qmodel`` file format."""

from ..datapath import DTYPE_RANGES
from .builder import ModelBuilder
from .fileformat import FORMAT_NAME, FORMAT_VERSION, load_model, save_model
from .model import Layer, Model, TensorInfo
from .ops import MAC_OPS, OPS, layer_macs

__all__ = ["DTYPE_RANGES", "FORMAT_NAME", "FORMAT_VERSION", "Layer", "MAC_OPS", "Model",
           "ModelBuilder", "OPS", "TensorInfo", "layer_macs", "load_model", "save_model"]

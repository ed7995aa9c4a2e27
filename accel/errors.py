"""Typed errors of accel. Each names the file, layer or field that is wrong.

The CLI turns any :class:`AccelError` into one line on stderr and exit status 2.
"""

__all__ = ["AccelError", "ConfigError", "ModelFormatError", "ModelError", "DataError",
           "ModelImportError", "ToolError", "OutputError",
           "UsageError", "ResultsError"]


class AccelError(Exception):
    """Base class of the errors a user can cause and fix."""


class ConfigError(AccelError, ValueError):
    """An accelerator configuration field is missing, mistyped or out of range."""


class ModelFormatError(AccelError):
    """A ``.qmodel`` file is truncated, corrupted, or of an unsupported version."""


class ModelError(AccelError, ValueError):
    """An integer model is inconsistent: a layer's field has a bad value, shape or dtype."""


class DataError(AccelError):
    """A data set argument (``mnist5k``, ``digits`` or an ``.npz``) is unusable."""


class ModelImportError(AccelError):
    """A trained network (ONNX, PyTorch) cannot be imported."""


class ToolError(AccelError):
    """An external tool (simulator, synthesizer) is missing or failed."""


class OutputError(AccelError):
    """An output cannot be written: it exists (and overwriting was not asked for), or its folder
    is missing, not a folder, or not writable."""


class UsageError(AccelError):
    """Command-line options that contradict each other (an option that would have no effect)."""


class ResultsError(AccelError):
    """A results file to read (a sweep's SQLite database) is missing, not of the expected schema,
    or holds a malformed row."""

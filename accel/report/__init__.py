"""Reports: tables rendered one way (text, markdown, CSV, JSON) and output files written safely.

* :class:`Table` — columns and rows, rendered by :meth:`Table.render` in any of :data:`FORMATS`;
* :mod:`accel.report.files` — every file accel writes goes through it: checked before the work,
  written atomically under a unique temporary name, never replacing a user's file unless asked.

Both modules are leaves (they import nothing of accel but :mod:`accel.errors`), so any layer
may use them: the gateware's port description, the front end's ``.qmodel`` writer, the CLI.
"""

from .files import (
           check_output,
           check_output_dir,
           clean_stale_temporaries,
           open_atomic,
           write_bytes,
           write_json,
           write_text,
)
from .table import FORMATS, Column, Table

__all__ = ["FORMATS", "Column", "Table", "check_output", "check_output_dir", "clean_stale_temporaries",
           "open_atomic", "write_bytes", "write_json", "write_text"]

"""Design-space sweeps (``accel sweep``): a TOML file of axes expanded into points, each measured
(accuracy on the bit-exact engine, cycles and energy, bits per weight, optionally area and Fmax)
on Dask distributed and committed at once to an SQLite database, so that a rerun resumes.

Above the front end, the performance model and synthesis, whose public functions it calls.
"""

from .runner import SweepSummary, code_version, run_sweep
from .spec import AXES, SweepSpec, load_spec, parse_spec, resolve_point
from .store import SCHEMA, load_points, open_db

__all__ = ["AXES", "SCHEMA", "SweepSpec", "SweepSummary", "code_version", "load_points", "load_spec", "open_db",
           "parse_spec", "resolve_point", "run_sweep"]

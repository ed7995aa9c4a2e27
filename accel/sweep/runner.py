"""Running a sweep on Dask distributed, each finished point committed at once to SQLite.

The client process (this one) expands the sweep, skips the points its database already holds
as finished, records the invalid ones, submits the rest to the cluster (a
``LocalCluster`` of ``workers`` single-threaded processes, or the scheduler at an address) and
writes each point's row as its future completes. A sweep killed at any moment loses only the
points in flight: every earlier row is committed, and a rerun skips it.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

from ..errors import AccelError, ModelImportError, ToolError, UsageError
from .point import one_line
from .spec import SweepSpec, resolve_point
from .store import canonical_json, finished_keys, open_db, point_key, record_point, record_sweep

__all__ = ["SweepSummary", "PlannedPoint", "plan_points", "run_sweep", "code_version",
           "check_scheduler_address"]

_log = logging.getLogger(__name__)
#: ``tcp://HOST:PORT`` (or tls://, ucx://): an address another process can reach.
_SCHEDULER = re.compile(r"^(tcp|tls|ucx)://[^\s:/]+:\d{1,5}$")


@dataclass
class SweepSummary:
    """What ``accel sweep --json`` prints."""

    points_total: int            #: distinct points of the sweep (after ``limit``)
    points_done: int             #: points measured, now or by an earlier run
    points_skipped_as_done: int  #: points found finished (done or invalid) in the database and not run again
    points_computed: int         #: points measured by this run (done or failed)
    points_failed: int           #: points whose measurement raised (this run); a rerun tries them again
    points_invalid: int          #: combinations that cannot exist
    db: str
    seconds: float
    keys: tuple[str, ...] = ()   #: the points' keys, in sweep order (not printed)

    def to_dict(self) -> dict:
        out = asdict(self)
        del out["keys"]
        return out


@dataclass(frozen=True)
class PlannedPoint:
    """One point of a sweep with its key, its row's fixed columns and either its task or why it is invalid."""

    key: str
    row: dict
    task: dict | None
    invalid: str | None


def code_version() -> str:
    """``accel.__version__``, plus ``+g<commit>`` when accel runs from a git checkout (uncommitted
    changes are not seen: commit before a sweep whose results should be told apart)."""
    from .. import __version__

    root = Path(__file__).resolve().parents[2]
    if (root / "pyproject.toml").is_file() and (root / ".git").exists():
        try:
            done = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                                  timeout=30)
            commit = done.stdout.strip()
            if done.returncode == 0 and re.fullmatch(r"[0-9a-f]{40,64}", commit):
                return f"{__version__}+g{commit}"
        except (OSError, subprocess.SubprocessError):
            pass
    return __version__


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def plan_points(spec: SweepSpec, model_hash: str, version: str, limit: int | None = None) -> list[PlannedPoint]:
    """The sweep's distinct points (the first ``limit``), each resolved and keyed."""
    planned, seen = [], set()
    for params in spec.points():
        if limit is not None and len(planned) >= limit:
            break
        try:
            resolved = resolve_point(spec, params)
        except (AccelError, TypeError, ValueError) as exc:
            resolved, why = None, one_line(exc)
        if resolved is None:
            # keyed by what made it invalid: its axes over the base tables (fix a base field and it is new)
            canonical = {"sweep": spec.name, "invalid": params, "accelerator": spec.accelerator,
                         "quantize": spec.quantize, "synth": spec.synth and spec.target}
            accelerator, quantize = "", {}
        else:
            canonical = resolved.canonical(spec)
            accelerator, quantize = resolved.config.to_toml(), resolved.quantize
        key = point_key(canonical, model_hash, version)
        if key in seen:  # two spellings of one configuration (say rows = 8 in the base and in an axis)
            continue
        seen.add(key)
        row = {"key": key, "sweep": spec.name, "model": spec.model, "params_json": canonical_json(params),
               "accelerator_toml": accelerator, "quantize_json": canonical_json(quantize),
               "code_version": version, "model_hash": model_hash}
        if resolved is None:
            planned.append(PlannedPoint(key, row, None, why))
            continue
        task = {"model": spec.model, "model_path": str(spec.model_path), "model_hash": model_hash,
                "data": spec.data, "eval_images": spec.eval_images, "accelerator": resolved.config.to_dict(),
                "quantize": resolved.quantize, "synth": resolved.synth, "target": resolved.target}
        planned.append(PlannedPoint(key, row, task, None))
    return planned


def check_scheduler_address(address: str) -> str:
    """``tcp://HOST:PORT`` (or another Dask protocol), else a one-line :class:`UsageError`."""
    if not _SCHEDULER.match(address) or not 0 < int(address.rsplit(":", 1)[1]) < 65536:
        raise UsageError(f"--scheduler {address!r}: expected a Dask scheduler address tcp://HOST:PORT")
    return address


def _worker_threads(workers: int) -> int:
    return max(1, (os.cpu_count() or 1) // workers)


class _Cluster:
    """A Dask client on a ``LocalCluster`` or on the scheduler at ``address``; closed on exit."""

    def __init__(self, address: str | None, workers: int):
        self.address, self.workers = address, workers
        self.cluster = self.client = None

    def __enter__(self):
        from dask.distributed import Client, LocalCluster

        # Dask's scheduler logs every client and worker at INFO (its import sets that level): keep the
        # user's stderr for the progress bar and for warnings. At shutdown the nanny warns of each
        # worker it stops the hard way, after the last point.
        logging.getLogger("distributed").setLevel(logging.WARNING)
        logging.getLogger("distributed.nanny").setLevel(logging.ERROR)

        if self.address is not None:
            try:
                self.client = Client(self.address, timeout="15s")
            except (OSError, TimeoutError) as exc:
                raise ToolError(f"--scheduler {self.address}: cannot reach the Dask scheduler ({one_line(exc)})") \
                    from None
            return self.client
        threads = str(_worker_threads(self.workers))
        # One task per worker; the engine's own threads share the cores between the workers.
        env = {"NUMBA_NUM_THREADS": threads, "OMP_NUM_THREADS": threads}
        self.cluster = LocalCluster(n_workers=self.workers, threads_per_worker=1, processes=True,
                                    dashboard_address=None, silence_logs=logging.ERROR, env=env)
        self.client = Client(self.cluster)
        return self.client

    def __exit__(self, *exc_info):
        if self.client is not None:
            self.client.close()
        if self.cluster is not None:
            self.cluster.close()
        return False


def run_sweep(spec: SweepSpec, db_path: str | os.PathLike, *, scheduler: str | None = None, workers: int = 1,
              limit: int | None = None, progress: bool = False) -> SweepSummary:
    """Run ``spec``'s points that ``db_path`` does not hold finished, committing each row as it completes.

    Raises
    ------
    UsageError
        A bad scheduler address or number of workers.
    OutputError
        The database cannot be opened or written.
    ToolError
        The scheduler cannot be reached.
    """
    import time

    from tqdm import tqdm

    start = time.perf_counter()
    if scheduler is not None:
        check_scheduler_address(scheduler)
    if workers < 1:
        raise UsageError(f"--workers {workers}: expected at least one worker")
    from ..frontend.quantize import source_sha256

    conn = open_db(db_path)
    try:
        model_hash, version = source_sha256(spec.model_path), code_version()
        if not model_hash:
            raise ModelImportError(f"{spec.model_path}: cannot read the model")
        planned = plan_points(spec, model_hash, version, limit)
        record_sweep(conn, spec.name, spec.text, _now())
        finished = finished_keys(conn, [p.key for p in planned])
        todo = [p for p in planned if p.key not in finished]
        counts = {"done": 0, "failed": 0, "invalid": 0}
        bar = tqdm(total=len(planned), initial=len(finished), desc=f"sweep {spec.name}", unit="point",
                   disable=not progress, file=sys.stderr)
        try:
            for point in todo:
                if point.invalid is not None:
                    record_point(conn, {**point.row, "status": "invalid", "error": point.invalid,
                                        "finished_at": _now()})
                    counts["invalid"] += 1
                    bar.update()
            tasks = [p for p in todo if p.task is not None]
            if tasks:
                _run_tasks(conn, tasks, scheduler, workers, counts, bar)
        finally:
            bar.close()
        rows = {key: status for key, status in conn.execute(
            "SELECT key, status FROM points WHERE sweep = ?", (spec.name,))}
    finally:
        conn.close()
    statuses = [rows.get(p.key) for p in planned]
    return SweepSummary(points_total=len(planned), points_done=statuses.count("done"),
                        points_skipped_as_done=len(finished), points_computed=counts["done"] + counts["failed"],
                        points_failed=counts["failed"], points_invalid=statuses.count("invalid"), db=str(db_path),
                        seconds=round(time.perf_counter() - start, 2), keys=tuple(p.key for p in planned))


def _run_tasks(conn, points: list[PlannedPoint], scheduler, workers, counts, bar) -> None:
    """Submit the points to the cluster and commit each row as its future completes."""
    from dask.distributed import as_completed

    from .point import measure_point, quantization_key

    by_key = {}
    with _Cluster(scheduler, workers) as client:
        # Points that share a quantization go preferably to one worker, which then quantizes once
        # (a preference: an idle worker still takes them).
        client.wait_for_workers(1)
        addresses = sorted(client.scheduler_info()["workers"])
        groups: dict[str, str] = {}
        futures = []
        for point in points:
            group = groups.setdefault(quantization_key(point.task), addresses[len(groups) % len(addresses)])
            future = client.submit(measure_point, point.task, key=f"accel-sweep-{point.key}", workers=[group],
                                   allow_other_workers=True)
            by_key[future.key] = point
            futures.append(future)
        for future in as_completed(futures):
            point = by_key[future.key]
            try:
                result = future.result()
            except Exception as exc:  # the worker died (KilledWorker) or the task could not run at all
                result = {"status": "failed", "error": one_line(exc)}
            record_point(conn, {**point.row, **result, "finished_at": _now()})
            counts[result["status"]] += 1
            bar.update()
            if result["status"] == "failed":
                _log.warning(f"point {point.row['params_json']}: {result['error']}")

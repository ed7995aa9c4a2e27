"""The ``accel`` command line: one entry point, one module per command group.

Each module in :data:`COMMAND_MODULES` has ``register(subparsers)`` which adds
its parser and sets ``func(args) -> int``. The CLI holds no logic of its own:
commands call the library. User errors (:class:`~accel.errors.AccelError`)
print one line and exit 2; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import sys

from ..errors import AccelError

__all__ = ["main", "build_parser", "COMMAND_MODULES"]

#: Command modules, in the order ``accel --help`` lists them.
COMMAND_MODULES = [
    "accel.cli.config_cmd",
    "accel.cli.demo",
    "accel.cli.quantize_cmd",
    "accel.cli.train_cmd",
    "accel.cli.search_cmd",
    "accel.cli.eval_cmd",
    "accel.cli.inspect_cmd",
    "accel.cli.perf_cmd",
    "accel.cli.rtl_cmd",
    "accel.cli.sweep_cmd",
    "accel.cli.report_cmd",
]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2, as for every user error
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="accel", description="Hardware/software co-design for low-bit "
                     "LUT/shift neural-network accelerators.")
    from .. import __version__

    parser.add_argument("--version", action="version", version=f"accel {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def _close_progress_bars() -> None:
    """Close any progress bar still drawn (a loop left by an exception), so that the message that
    follows starts on a clean line instead of after the bar."""
    tqdm_module = sys.modules.get("tqdm")
    if tqdm_module is None:
        return
    # ``tqdm._instances`` (a WeakSet of open bars) is what tqdm.write itself uses (tqdm 4.x).
    for bar in list(getattr(tqdm_module.tqdm, "_instances", ())):
        bar.close()


def _quiet_broken_pipe() -> int:
    """The reader of our output went away (``accel inspect ... | head``): stop quietly.

    Python's own recipe: point stdout at /dev/null so that the interpreter's final flush does not
    raise again. Exit status 141 = 128 + SIGPIPE, what a tool killed by SIGPIPE reports.
    """
    _close_progress_bars()
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return 128 + signal.SIGPIPE


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        status = int(args.func(args) or 0)
        sys.stdout.flush()  # here, not at exit, so that a closed pipe is seen below
        return status
    except BrokenPipeError:
        return _quiet_broken_pipe()
    except AccelError as exc:
        _close_progress_bars()
        if args.debug:
            raise
        print(f"accel: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        _close_progress_bars()
        print("accel: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

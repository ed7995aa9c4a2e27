"""``accel config``: show, check or write an accelerator configuration."""

from __future__ import annotations

import argparse

import tomli_w

from ..config import AcceleratorConfig, load_config, save_config
from ..errors import UsageError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("config", help="show, check or write an accelerator configuration (TOML)",
                       description="Show the configuration (defaults, or CFG.toml checked), "
                                   "or write the defaults to a new file with --init.")
    p.add_argument("config", nargs="?", metavar="CFG.toml", help="configuration to check and show")
    p.add_argument("--init", metavar="PATH", help="write the default configuration to PATH (an existing file "
                                                  "only with --force)")
    p.add_argument("--force", action="store_true", help="with --init: replace an existing PATH")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.init:
        if args.config:
            raise UsageError(f"--init writes the defaults; it does not read {args.config} (give one or the other)")
        save_config(AcceleratorConfig(), args.init, overwrite=args.force)
        print(f"wrote {args.init}")
        return 0
    if args.force:
        raise UsageError("--force replaces the file written by --init; without --init nothing is written")
    config = load_config(args.config)
    data = config.to_dict()
    energy = data.pop("energy")
    print(tomli_w.dumps({**data, "energy": energy}), end="")
    return 0

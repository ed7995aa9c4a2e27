"""``accel config``: show, check or write an accelerator configuration."""

from __future__ import annotations

import argparse

import tomli_w

from ..config import AcceleratorConfig, load_config, save_config


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("config", help="show, check or write an accelerator configuration (TOML)",
                       description="Show the configuration (defaults, or CFG.toml checked), "
                                   "or write the defaults to a new file with --init.")
    p.add_argument("config", nargs="?", metavar="CFG.toml", help="configuration to check and show")
    p.add_argument("--init", metavar="PATH", help="write the default configuration to PATH (never overwrites)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.init:
        save_config(AcceleratorConfig(), args.init)
        print(f"wrote {args.init}")
        return 0
    config = load_config(args.config)
    data = config.to_dict()
    energy = data.pop("energy")
    print(tomli_w.dumps({**data, "energy": energy}), end="")
    return 0

"""`mad-agent check-config FILE`: validate an agent TOML (plus MAD_ environment) and exit.

Exit 0: valid. 1: invalid fields (each printed as dotted.path: message (got value)). 2: the file
cannot be read or is not TOML.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from agent.settings import ConfigError, ConfigFileError, load_settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", type=Path, help="agent TOML file (MAD_* environment variables apply on top)")
    parser.add_argument("--show", action="store_true", help="print the effective settings (passwords hidden)")


def run(args: argparse.Namespace) -> int:
    try:
        settings = load_settings(args.config)
    except ConfigFileError as exc:
        print(f"{exc.source}: {'; '.join(exc.problems)}", file=sys.stderr)
        return 2
    except ConfigError as exc:
        print(f"{exc.source}: {len(exc.problems)} invalid field(s)", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    if args.show:
        print(settings.model_dump_json(indent=2))
    print(f"{args.config}: OK")
    return 0

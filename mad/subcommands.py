"""A tiny argparse front end shared by `mad-train` and `mad-agent`.

Each subcommand lives in its own module defining `add_arguments(parser)` and
`run(args) -> int`; modules are imported when the parser is built, and one that
does not exist yet is left out so a partial checkout still runs.
"""

from __future__ import annotations

import argparse
import importlib


def build_parser(prog: str, description: str, commands: dict[str, tuple[str, str]]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=description)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module_name, help_text) in commands.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                continue  # command not built in this checkout
            raise
        command_parser = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(command_parser)
        command_parser.set_defaults(_run=module.run)
    return parser


def main(prog: str, description: str, commands: dict[str, tuple[str, str]], argv: list[str] | None) -> int:
    args = build_parser(prog, description, commands).parse_args(argv)
    return int(args._run(args) or 0)

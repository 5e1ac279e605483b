"""`mad-agent`: the partial-discharge monitoring service and its tools."""

from __future__ import annotations

import sys

from mad import subcommands

# name -> (module, one-line help). Each module defines add_arguments(parser) and run(args) -> int.
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("agent.commands.run", "run the live agent (MQTT in, alarms out)"),
    "replay": ("agent.commands.replay", "run a recorded.h5 through the agent's pipeline"),
    "check-config": ("agent.commands.check_config", "validate an agent TOML config and exit"),
    "simulate": ("agent.commands.simulate", "publish synthetic sensors over MQTT at real rate"),
    "record": ("agent.commands.record", "capture live sensor topics into a recorded.h5"),
    "commission": ("agent.commands.commission", "learn sensors' PD-free backgrounds before they alarm"),
}


def main(argv: list[str] | None = None) -> int:
    return subcommands.main("mad-agent", __doc__ or "", COMMANDS, argv)


if __name__ == "__main__":
    sys.exit(main())

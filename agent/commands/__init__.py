"""One module per `mad-agent` subcommand; each defines `add_arguments(parser)` and `run(args) -> int`."""

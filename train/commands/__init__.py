"""One module per `mad-train` subcommand; each defines `add_arguments(parser)` and `run(args) -> int`."""

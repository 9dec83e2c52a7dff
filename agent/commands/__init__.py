"""One module per ``edgemeter`` subcommand; each exposes ``register(subparsers)``."""

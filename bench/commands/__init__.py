"""`bench` subcommands: each module here defines ``add_parser(subparsers)`` that registers one
subcommand and sets ``func`` (called with the parsed args, returns an exit code)."""

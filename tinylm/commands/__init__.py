"""One module per `tinylm` subcommand; see tinylm/cli.py for how they are wired together."""

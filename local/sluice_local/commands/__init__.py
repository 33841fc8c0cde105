"""The subcommands of ``sluice``, one module each."""

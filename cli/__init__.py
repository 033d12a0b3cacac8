"""Command line interface: ``icm`` (see cli.main)."""

"""Operator commands of `mailroom` (wired up in mailroom/cli.py), one module each."""

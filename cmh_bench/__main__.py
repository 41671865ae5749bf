"""``python -m cmh_bench`` runs the command line."""

from cmh_bench.cli import entry_point

entry_point()

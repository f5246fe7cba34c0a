"""``python -m relentad`` runs the CLI."""

from .cli import main

main()

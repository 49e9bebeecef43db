"""``python -m helpers``: the atskit command."""

from helpers.cli import main

raise SystemExit(main())

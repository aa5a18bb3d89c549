"""``python -m learngene COMMAND ...``: the same as the ``learngene`` console command."""
from learngene.cli import main

raise SystemExit(main())

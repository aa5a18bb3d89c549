"""The command-line tools; installed as ``learngene.tools`` and run as ``learngene COMMAND`` (see learngene/cli.py)."""

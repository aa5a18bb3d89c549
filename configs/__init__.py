"""The default configs and benchmark presets, shipped in the package as ``learngene.configs`` (pyproject.toml)."""

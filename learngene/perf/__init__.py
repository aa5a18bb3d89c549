"""What learngene training costs, measured (``tools/bench_speed.py`` is the command over it): ``measure`` (timing in
interleaved rounds, FLOPs, peak memory, result rows), ``sections`` (the ``aux``, ``kd``, ``toggles`` and ``expand``
comparisons) and ``check`` (one GPU's health through the shipped recipes' own step loops)."""

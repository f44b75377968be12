"""The engine benchmark: ``python -m bench`` (or ``make bench``).

Self-contained: it makes its own temporary instance folder, embedded Redis and SQLite
database, measures the engine against its baselines side by side, prints a table and writes
``bench/results.json``. See ``bench/README.md`` for what each figure means.
"""

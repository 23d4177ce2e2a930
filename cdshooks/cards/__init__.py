"""The clinical rules: one module per rule, named after its id, loaded by ``rules.load()``.

Modules whose names start with ``_`` are shared helpers, not rules.
"""

"""Alembic migrations of the store's schema (``cdshooks db upgrade``, or at start-up)."""

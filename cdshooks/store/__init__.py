"""The database: issued cards, feedback, the JWT replay cache (SQLAlchemy, Alembic migrations).
"""

from .database import IssuedCard, Store, StoreUnavailable

__all__ = ["IssuedCard", "Store", "StoreUnavailable"]


"""The database: issued cards, feedback, the JWT replay cache (SQLAlchemy).
"""

from .database import IssuedCard, Store

__all__ = ["IssuedCard", "Store"]

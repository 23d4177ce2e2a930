"""Population runs: hook calls evaluated for many patients without HTTP, and their reports.
"""

from .inprocess import Answer, Service
from .report import cards_table
from .simulation import simulate

__all__ = ["Answer", "Service", "cards_table", "simulate"]

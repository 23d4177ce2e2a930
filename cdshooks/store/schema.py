"""Schema: the three tables, as SQLAlchemy Core metadata (the migrations in ``migrations/`` build them).

* ``issued_card``: every card the service answered with (uuid, rule, service, hookInstance),
  so that feedback is attributable to the rule that issued the card; kept for
  ``CDSHOOKS_ISSUED_RETENTION_DAYS``;
* ``feedback``: one row per feedback item, unique on (card, outcome, outcomeTimestamp), so a
  repeated POST does not duplicate it; it keeps the issuing rule, so it outlives the card record;
* ``seen_token``: the JWT ``jti`` replay cache, shared by every worker process, kept until
  the token expires.
"""

from __future__ import annotations

from sqlalchemy import Column, DateTime, Integer, MetaData, String, Table, Text, UniqueConstraint

__all__ = ["metadata", "issued_card", "feedback", "seen_token"]

metadata = MetaData()

issued_card = Table(
    "issued_card", metadata,
    Column("uuid", String(64), primary_key=True),
    Column("rule_id", String(64), nullable=False, index=True),
    Column("service_id", String(64), nullable=False),
    Column("hook_instance", String(128), nullable=False),
    Column("indicator", String(16), nullable=False),
    Column("suggestions", Text, nullable=False),  # JSON list of suggestion uuids
    Column("issued_at", DateTime(timezone=True), nullable=False, index=True),
)

feedback = Table(
    "feedback", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("card_uuid", String(64), nullable=False, index=True),
    Column("rule_id", String(64), index=True),  # null when the card is unknown to this service
    Column("service_id", String(64), nullable=False),
    Column("hook_instance", String(128)),
    Column("outcome", String(16), nullable=False),
    Column("accepted_suggestions", Text),  # JSON list of suggestion uuids
    Column("override_system", String(256)),
    Column("override_code", String(128)),
    Column("override_comment", Text),
    Column("outcome_timestamp", String(40), nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("card_uuid", "outcome", "outcome_timestamp", name="uq_feedback_item"),
)

seen_token = Table(
    "seen_token", metadata,
    Column("issuer", String(512), primary_key=True),
    Column("jti", String(256), primary_key=True),
    Column("expires_at", DateTime(timezone=True), nullable=False, index=True),
)

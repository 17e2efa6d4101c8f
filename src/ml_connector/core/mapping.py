"""Mapping tables: (flow, table, source value) → target value, and resuming parked records.

A record whose mapping is missing is parked in the outbox with the key it waits
for (`<table>:<source value>`). Setting that mapping resumes it: the stream maps
the stored source record again and the new write is delivered.
"""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from ml_connector.core import audit
from ml_connector.core.models import MappingRow, OutboxRow


def waits_for(table: str, source_value: str) -> str:
    return f"{table}:{source_value}"


def get(session: Session, flow: str, table: str, source_value: str) -> str | None:
    row = session.get(MappingRow, (flow, table, source_value))
    return row.target_value if row else None


def table(session: Session, flow: str, table: str) -> dict[str, str]:
    rows = session.scalars(select(MappingRow).where(MappingRow.flow == flow, MappingRow.table == table))
    return {r.source_value: r.target_value for r in rows}


def put(session: Session, flow: str, table_: str, source_value: str, target_value: str,
        *, actor: str = "cli") -> list[int]:
    """Set a mapping; return the ids of parked outbox entries that were waiting for it."""
    row = session.get(MappingRow, (flow, table_, source_value))
    if row is None:
        session.add(MappingRow(flow=flow, table=table_, source_value=source_value, target_value=target_value))
    else:
        row.target_value = target_value
    audit.record(session, "mapping.set", flow=flow, detail={"table": table_, "source": source_value,
                                                           "target": target_value, "actor": actor})
    key = waits_for(table_, source_value)
    return list(session.scalars(select(OutboxRow.id).where(
        OutboxRow.flow == flow, OutboxRow.state == "parked", OutboxRow.parked_on == key)))


def remove(session: Session, flow: str, table_: str, source_value: str, *, actor: str | None = None) -> None:
    session.execute(delete(MappingRow).where(MappingRow.flow == flow, MappingRow.table == table_,
                                             MappingRow.source_value == source_value))
    audit.record(session, "mapping.removed", flow=flow, detail={"table": table_, "source": source_value,
                                                               **({"actor": actor} if actor else {})})


def seed_from_config(session: Session, flow: str, tables: dict[str, dict[str, str]]) -> None:
    """Mapping tables declared in the YAML file are loaded (config wins over stored values)."""
    for tname, values in (tables or {}).items():
        for src, tgt in (values or {}).items():
            row = session.get(MappingRow, (flow, tname, str(src)))
            if row is None:
                session.add(MappingRow(flow=flow, table=tname, source_value=str(src), target_value=str(tgt)))
            elif row.target_value != str(tgt):
                row.target_value = str(tgt)

"""Data Extension definitions as data: what a flow declares, what Marketing Cloud holds, and the
comparison that names the first field that differs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from ml_connector.core.http import PermanentError

FieldType = Literal["Text", "Number", "Date", "Boolean", "EmailAddress", "Phone", "Decimal", "Locale"]


@dataclass(frozen=True)
class DeField:
    name: str
    type: FieldType = "Text"
    length: int | None = None        # Text / EmailAddress / Phone
    primary: bool = False            # primary-key fields are required
    required: bool = False
    precision: int | None = None     # Decimal
    scale: int | None = None

    @property
    def is_required(self) -> bool:
        return self.required or self.primary

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type, "length": self.length, "primary": self.primary,
                "required": self.is_required, "precision": self.precision, "scale": self.scale}


@dataclass(frozen=True)
class DeSpec:
    key: str                          # the external key (CustomerKey)
    name: str
    fields: tuple[DeField, ...]
    sendable_field: str | None = None  # sendable DEs relate this field to the subscriber key
    description: str = ""

    @property
    def primary_keys(self) -> list[str]:
        return [f.name for f in self.fields if f.primary]

    def field(self, name: str) -> DeField | None:
        return next((f for f in self.fields if f.name.lower() == name.lower()), None)


@dataclass
class DeHeld:
    """A Data Extension as Marketing Cloud describes it (Retrieve DataExtension + DataExtensionField)."""

    key: str
    name: str
    fields: list[DeField] = field(default_factory=list)


class SchemaMismatch(PermanentError, ValueError):
    """An existing Data Extension does not match the flow's declaration (never altered silently); another
    attempt cannot fix it: the run fails at once with this one line."""

    def __init__(self, key: str, field_name: str, what: str) -> None:
        super().__init__(f"Data Extension {key!r}: field {field_name!r} {what}; change the Data Extension in "
                         "Marketing Cloud (or the flow's declaration) so they agree")
        self.key = key
        self.field = field_name


def compare(spec: DeSpec, held: DeHeld) -> None:
    """Raise `SchemaMismatch` naming the first declared field that is missing or differs. Extra
    fields in Marketing Cloud are allowed (marketing may add its own columns)."""
    by_name = {f.name.lower(): f for f in held.fields}
    for want in spec.fields:
        got = by_name.get(want.name.lower())
        if got is None:
            raise SchemaMismatch(spec.key, want.name, "is missing")
        if got.type != want.type:
            raise SchemaMismatch(spec.key, want.name, f"is {got.type}, the flow declares {want.type}")
        if want.type in ("Text", "EmailAddress", "Phone") and want.length and got.length \
                and got.length < want.length:
            raise SchemaMismatch(spec.key, want.name, f"holds {got.length} characters, the flow needs {want.length}")
        if got.primary != want.primary:
            raise SchemaMismatch(spec.key, want.name, "is " + ("" if got.primary else "not ") +
                                 "a primary key, the flow declares " + ("one" if want.primary else "none"))
        if want.type == "Decimal" and (got.precision, got.scale) != (want.precision, want.scale):
            raise SchemaMismatch(spec.key, want.name, f"is Decimal({got.precision},{got.scale}), the flow "
                                 f"declares Decimal({want.precision},{want.scale})")
    extra_keys = [f.name for f in held.fields if f.primary and spec.field(f.name) is None]
    if extra_keys:
        raise SchemaMismatch(spec.key, extra_keys[0], "is a primary key the flow does not declare")

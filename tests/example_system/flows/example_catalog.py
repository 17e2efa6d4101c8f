"""Example shop → example catalog: each shop item becomes a catalog record.

This file is what `flows/<pair>.py` would be for a real pair: the pure mapping function and the
wiring of source → mapping → target. It is found as the pair `example_catalog` as a flow shipped in
a package of its own is: through the entry point `ml_connector.flows` (tests/unit/test_plugin_packages.py)
or, in a process, `flow_modules.register` (tests/example_system/launch.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import Field
from tests.example_system.sources import ItemsSource
from tests.example_system.targets import CatalogRecordsTarget

from ml_connector.core import mapping
from ml_connector.core.flow import Flow, RunContext, Stream
from ml_connector.core.ledger import Desired, Parked
from ml_connector.core.settings import SettingsModel, Text

#: A mapping-table lookup: (table, source value) -> target value or None.
Mapped = Callable[[str, str], str | None]


def item_to_record(key: str, item: dict[str, Any], *, mapped: Mapped, prefix: str = "item-") -> Desired | Parked:
    """A shop item → a catalog record {external_id, title[, category]}.

    The external id derives from the item id (the exactly-once key the target looks up). An item
    with a `group` takes its category from the mapping table `groups`; while that mapping is
    missing the item is parked. A retired item deactivates its record."""
    payload: dict[str, Any] = {"external_id": f"{prefix}{key}",
                               "title": " ".join(str(item.get("name") or "").split()).capitalize() or f"Item {key}"}
    group = str(item.get("group") or "")
    if group:
        category = mapped("groups", group)
        if category is None:
            return Parked(key, mapping.waits_for("groups", group), payload=item)
        payload["category"] = category
    return Desired(key, payload, active=not item.get("retired", False))


# Read by the configuration loader (without importing this module) to check a flow's `streams`.
STREAMS = ("items",)


class Options(SettingsModel):
    """The flow's `options`, validated when the configuration is loaded."""

    page_size: int = Field(default=100, ge=1)
    external_id_prefix: Text = "item-"


class ExampleCatalogFlow(Flow):
    pair = "example_catalog"

    def streams(self) -> dict[str, Stream]:
        if not hasattr(self, "_streams"):
            opts = Options.model_validate(dict(self.cfg.options or {}))
            prefix = opts.external_id_prefix

            def mapped(ctx: RunContext) -> Mapped:
                def get(table: str, value: str) -> str | None:
                    with ctx.runtime.db.read() as s:
                        return mapping.get(s, ctx.flow, table, value)
                return get

            items = Stream("items", ItemsSource(self.cfg.source, page_size=opts.page_size),
                           lambda ctx, key, rec: item_to_record(key, rec, mapped=mapped(ctx), prefix=prefix),
                           CatalogRecordsTarget(self.cfg.target), mapping_tables=("groups",))
            self._streams: dict[str, Stream] = {items.name: items}
            assert tuple(self._streams) == STREAMS
        return self._streams


FLOW = ExampleCatalogFlow

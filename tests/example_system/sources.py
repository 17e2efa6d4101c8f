"""What flows read from the example system (see core/flow.py `Source`).

`ItemsSource`: the shop's items, page by page in the order of their change sequence. The cursor the
engine keeps is the last change number read, so an incremental run reads only what changed since;
a full run (`sync --full`) starts from 0.
"""

from __future__ import annotations

from typing import Any

from ml_connector.core.flow import Page, RunContext, Source
from tests.example_system import ExampleClient


class ItemsSource(Source):
    def __init__(self, connection: str, *, page_size: int = 100) -> None:
        self.connection = connection
        self.page_size = page_size

    def begin(self, ctx: RunContext, cursor: dict[str, Any]) -> dict[str, Any]:
        return {"after": int(cursor.get("after", 0))}

    def read_page(self, ctx: RunContext, state: dict[str, Any]) -> Page:
        client = ctx.runtime.connection(self.connection, ExampleClient)
        items, more = client.items_page(int(state["after"]), self.page_size)
        last = int(items[-1]["seq"]) if items else int(state["after"])
        return Page([(str(i["id"]), i) for i in items], {"after": last}, done=not more)

    def finish(self, ctx: RunContext, state: dict[str, Any]) -> dict[str, Any]:
        return {"after": int(state["after"])}

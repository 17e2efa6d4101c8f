"""Scripted Ramp API answers (a handler replaying responses), for the Ramp client unit tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from ml_connector.systems.ramp.client import RampClient

Handler = Callable[[httpx.Request], httpx.Response]


def scripted(*responses: httpx.Response | Exception) -> tuple[Handler, list[httpx.Request]]:
    seen: list[httpx.Request] = []
    queue = list(responses)

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        item = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(item, Exception):
            raise item
        return item

    return handler, seen


def scripted_transport(*responses: httpx.Response | Exception) -> tuple[httpx.MockTransport, list[httpx.Request]]:
    """`scripted` as a transport, to wrap in the transport under test."""
    handler, seen = scripted(*responses)
    return httpx.MockTransport(handler), seen


def make(handler: Handler, sleeps: list[float], **kw: Any) -> RampClient:
    return RampClient("https://demo-api.ramp.com", None, transport=httpx.MockTransport(handler),
                      sleep=sleeps.append, **kw)

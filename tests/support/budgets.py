"""The rate budgets a runtime's connections use, read as the budget.low condition reads them."""

from __future__ import annotations

from typing import Any

from ml_connector.core import ratelimit


def budget_usage(rt: Any, provider: str) -> tuple[int, int]:
    """(calls in the current window, limit) of the one budget of `provider` this process uses."""
    [(used, limit)] = [(u, lim) for p, _, u, lim in ratelimit.usage(ratelimit.budgets_for(rt.db)) if p == provider]
    return used, limit

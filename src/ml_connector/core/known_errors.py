"""A known error of an external system, explained for the people who run the integration.

Systems list theirs in their registry entry (`SystemEntry.known_errors`); the console's inbox
(server/console/catalogue.py) groups failed records by the first pattern their error matches.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class KnownError:
    """A pattern (regular expression, case-insensitive) of an error text and what it means.

    `title` may use the pattern's named groups ({cls}, {number}, ...)."""

    key: str
    pattern: str
    title: str
    explanation: str
    fix: str

"""Month-end reconciliation: totals per dimension (GL account and cost center, project and cost code, ...)
on both sides of a flow for a period, and the records that explain each difference.

Each integration supplies its own comparison through its flow (`Flow.reconcile(period)` returning a
`Reconciliation`): only it knows how to read both systems' totals. This module holds what they share:
the period, the result's shape, the explanation from the platform's own state (parked, failed, changed
after sync), and the CSV and printable HTML exports.
"""

from __future__ import annotations

import csv
import html
import io
import re
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import select

from ml_connector.core.db import in_chunks
from ml_connector.core.models import OutboxRow, RecordRow

PERIOD_RE = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")


def period_bounds(period: str) -> tuple[date, date]:
    """First and last day of a `YYYY-MM` period; ValueError naming the expected form otherwise."""
    m = PERIOD_RE.match(period)
    if m is None:
        raise ValueError(f"period {period!r}: expected YYYY-MM, e.g. 2026-10")
    first = date(int(m.group(1)), int(m.group(2)), 1)
    nxt = date(first.year + (first.month == 12), first.month % 12 + 1, 1)
    return first, nxt - timedelta(days=1)


@dataclass
class Total:
    key: tuple[str, ...]  # the dimensions' values, e.g. (company code, GL account, cost center)
    source: Decimal = Decimal(0)
    target: Decimal = Decimal(0)

    @property
    def difference(self) -> Decimal:
        return self.source - self.target


@dataclass
class Explanation:
    """One record behind a difference: `kind` missing (not in the target yet), parked, failed,
    changed (changed at the source after it was synced), only_in_target, differs."""

    key: tuple[str, ...]
    record: str
    kind: str
    source: Decimal
    target: Decimal
    detail: str = ""


@dataclass
class Reconciliation:
    flow: str
    period: str
    source_name: str
    target_name: str
    dimensions: tuple[str, ...]
    currency: str = ""
    totals: dict[tuple[str, ...], Total] = field(default_factory=dict)
    explanations: list[Explanation] = field(default_factory=list)

    def add(self, key: tuple[str, ...], *, source: Decimal = Decimal(0), target: Decimal = Decimal(0)) -> None:
        t = self.totals.setdefault(key, Total(key))
        t.source += source
        t.target += target

    def differences(self) -> list[Total]:
        return [t for _, t in sorted(self.totals.items()) if t.difference]

    @property
    def ties_out(self) -> bool:
        return not self.differences()

    def to_csv(self) -> str:
        out = io.StringIO()
        w = csv.writer(out)
        w.writerow([*self.dimensions, self.source_name, self.target_name, "difference", "record", "why"])
        for key, t in sorted(self.totals.items()):
            w.writerow([*key, t.source, t.target, t.difference, "", ""])
            for e in self.explanations:
                if e.key == key:
                    w.writerow([*key, e.source, e.target, e.source - e.target, e.record,
                                f"{KINDS.get(e.kind, e.kind)}{': ' + e.detail if e.detail else ''}"])
        return out.getvalue()

    def to_html(self) -> str:
        """A printable report (one self-contained page, no script)."""
        esc = html.escape
        rows = []
        for key, t in sorted(self.totals.items()):
            cls = ' class="diff"' if t.difference else ""
            rows.append(f"<tr{cls}>" + "".join(f"<td>{esc(k)}</td>" for k in key)
                        + f'<td class="n">{t.source}</td><td class="n">{t.target}</td>'
                          f'<td class="n">{t.difference}</td></tr>')
        why = "".join(
            "<tr>" + "".join(f"<td>{esc(k)}</td>" for k in e.key) + f"<td>{esc(e.record)}</td>"
            f"<td>{esc(KINDS.get(e.kind, e.kind))}</td><td class=\"n\">{e.source}</td><td class=\"n\">{e.target}</td>"
            f"<td>{esc(e.detail)}</td></tr>" for e in self.explanations)
        dims = "".join(f'<th scope="col">{esc(d)}</th>' for d in self.dimensions)
        verdict = "The systems tie out." if self.ties_out else f"{len(self.differences())} difference(s)."
        return f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>Reconciliation {esc(self.flow)} {esc(self.period)}</title>
<style>body{{font:13px system-ui,sans-serif}}table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #999;padding:2px 6px}}.n{{text-align:right}}.diff{{background:#fde2e2}}
@media print{{.diff{{background:none;font-weight:bold}}}}</style></head><body>
<h1>Reconciliation of {esc(self.flow)}, {esc(self.period)}</h1>
<p>{esc(self.source_name)} against {esc(self.target_name)}{', ' + esc(self.currency) if self.currency else ''}.
{verdict}</p>
<table><caption>Totals</caption><thead><tr>{dims}<th scope="col">{esc(self.source_name)}</th>
<th scope="col">{esc(self.target_name)}</th><th scope="col">Difference</th></tr></thead><tbody>{''.join(rows)}
</tbody></table>
<table><caption>The records that explain the differences</caption><thead><tr>{dims}<th scope="col">Record</th>
<th scope="col">Why</th><th scope="col">{esc(self.source_name)}</th><th scope="col">{esc(self.target_name)}</th>
<th scope="col">Detail</th></tr></thead><tbody>{why}</tbody></table></body></html>
"""


KINDS = {
    "missing": "not in the target yet (not synced)",
    "parked": "parked: waits for a mapping",
    "failed": "its write failed",
    "changed": "changed at the source after it was synced",
    "only_in_target": "in the target only",
    "differs": "amounts differ",
}


def record_states(session: Any, flow: str, stream: str, keys: list[str]) -> dict[str, tuple[str, str | None]]:
    """(the newest outbox state, the ledger's content hash) per source key, for explaining differences."""
    out: dict[str, tuple[str, str | None]] = {}
    for chunk in in_chunks(keys):
        for key, state in session.execute(select(OutboxRow.source_key, OutboxRow.state).where(
                OutboxRow.flow == flow, OutboxRow.stream == stream, OutboxRow.source_key.in_(chunk))
                .order_by(OutboxRow.id)):
            out[key] = (state, None)
        for key, h in session.execute(select(RecordRow.source_key, RecordRow.content_hash).where(
                RecordRow.flow == flow, RecordRow.stream == stream, RecordRow.source_key.in_(chunk))):
            out[key] = (out.get(key, ("", None))[0], h)
    return out


def difference_kind(in_target: bool, state: str, ledger_hash: str | None, want_hash: str) -> str:
    """Why a source record's amounts differ from the target's: not in the target (because it is parked,
    failed or in doubt, or simply missing), changed at the source since it was written (the ledger's
    hash is not the hash of what the flow would write now), or the amounts differ."""
    if not in_target:
        return "parked" if state == "parked" else "failed" if state in ("failed", "uncertain") else "missing"
    return "changed" if ledger_hash and ledger_hash != want_hash else "differs"

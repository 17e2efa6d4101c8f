"""CLI: `ml-connector reconcile FLOW --period YYYY-MM`, month-end totals of both sides of a flow."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from ml_connector.cli_common import DEFAULT_CONFIG, ConfigOpt, cell_wrap, console, err, runtime


def reconcile(flow: str, period: str = typer.Option(..., "--period", help="The month, YYYY-MM (e.g. 2026-10)."),
              config: ConfigOpt = DEFAULT_CONFIG,
              csv_out: Path | None = typer.Option(None, "--csv", help="Write the totals and explanations as CSV."),
              html_out: Path | None = typer.Option(None, "--html", help="Write a printable HTML report.")) -> None:
    """Totals per account (and cost center, ...) on both sides for the period, and the records that explain
    each difference (missing, parked, failed, changed after sync). Exit 0 when the systems tie out, 1 if not."""
    from ml_connector.core.reconcile import KINDS, period_bounds

    try:
        period_bounds(period)
    except ValueError as exc:
        err.print(f"error: --period: {exc}", highlight=False, markup=False)
        raise typer.Exit(2) from None
    rt = runtime(config)
    try:
        f = rt.flow(flow)
        compare = getattr(f, "reconcile", None)
        if compare is None or not getattr(f, "reconciles", True):
            raise ValueError(f"flow {flow}: its pair offers no reconciliation")
        rec = compare(period)
    except (KeyError, ValueError) as exc:
        err.print(f"error: {exc.args[0] if exc.args else exc}", highlight=False, markup=False)
        rt.close()
        raise typer.Exit(2) from None
    rt.close()
    t = Table(*(cell_wrap(d) for d in rec.dimensions), cell_wrap(rec.source_name, justify="right"),
              cell_wrap(rec.target_name, justify="right"), cell_wrap("difference", justify="right"),
              title=f"{flow} {period}{' ' + rec.currency if rec.currency else ''}")
    for key, total in sorted(rec.totals.items()):
        t.add_row(*key, str(total.source), str(total.target), str(total.difference) if total.difference else "")
    console.print(t)
    if rec.explanations:
        why = Table(*(cell_wrap(d) for d in rec.dimensions), cell_wrap("record"), cell_wrap("why", ratio=2),
                    cell_wrap("difference", justify="right"), title="what explains the differences")
        for e in rec.explanations:
            why.add_row(*e.key, e.record, KINDS.get(e.kind, e.kind), str(e.source - e.target))
        console.print(why)
    if csv_out:
        csv_out.write_text(rec.to_csv(), encoding="utf-8")
    if html_out:
        html_out.write_text(rec.to_html(), encoding="utf-8")
    console.print("the systems tie out" if rec.ties_out else f"{len(rec.differences())} difference(s)")
    if not rec.ties_out:
        raise typer.Exit(1)


def register_commands(app: typer.Typer) -> None:
    app.command()(reconcile)

"""Reading the ECC sandbox's tables directly: rows, keys, dangling references, validity, outbound IDocs."""

from __future__ import annotations

from collections import Counter
from typing import Any

from ml_connector.systems.sap_ecc.errors import ABAPApplicationError
from ml_connector.systems.sap_ecc.idoc import (
    build_idoc_xml,
    parse_idoc_xml,
)
from ml_connector.systems.sap_ecc.sandbox.app import EccSandbox
from ml_connector.systems.sap_ecc.sandbox.data import EccData
from ml_connector.systems.sap_ecc.sandbox.functions import (
    REGISTRY,
    AbapException,
    CallContext,
    SandboxConfig,
)
from ml_connector.systems.sap_ecc.sandbox.outbound import OutboundIdocs
from ml_connector.systems.sap_ecc.sandbox.seed_logistics import (
    seed_logistics,
)
from ml_connector.systems.sap_ecc.sandbox.soap import RfcRequest

CLIENT = "100"


def rows(sb: EccSandbox, table: str) -> list[dict[str, Any]]:
    return sb.data.rows(table, CLIENT)


def keys(sb: EccSandbox, table: str, *fields: str) -> set[tuple[str, ...]]:
    return {tuple(r.get(f, "") for f in fields) for r in rows(sb, table)}


def dangling(sb: EccSandbox, table: str, fields: tuple[str, ...], target: str, target_fields: tuple[str, ...],
             *, skip_blank: bool = True) -> list[tuple[str, ...]]:
    """Values of `table`.`fields` that have no row in `target` with `target_fields` equal to them."""
    have = keys(sb, target, *target_fields)
    out = []
    for r in rows(sb, table):
        value = tuple(r.get(f, "") for f in fields)
        if skip_blank and not all(value):
            continue
        if value not in have:
            out.append(value)
    return out


def csks_valid_on(sb: EccSandbox, kokrs: str, kostl: str, day: str) -> bool:
    return any(r["KOKRS"] == kokrs and r["KOSTL"] == kostl and r["DATAB"] <= day <= r["DATBI"]
               for r in rows(sb, "CSKS"))


def parsed_outbound(out: OutboundIdocs, mestyp: str, key: str) -> Any:
    idoc = out.build(mestyp, key)
    return parse_idoc_xml(build_idoc_xml([idoc]))[0]


class DirectCaller:
    """An RfcCaller that runs the sandbox's function modules in-process."""

    def __init__(self, data: EccData, config: SandboxConfig | None = None) -> None:
        self.data = data
        self.config = config or SandboxConfig()
        self.calls: Counter[str] = Counter()

    def call(self, fm: str, params: dict[str, Any] | None = None, *, tables: Any = ()) -> dict[str, Any]:
        self.calls[fm] += 1
        module = REGISTRY.get(fm, self.config)
        if module is None:
            raise ABAPApplicationError(f"{fm} not found", key="FU_NOT_FOUND")
        req: dict[str, Any] = {}
        for k, v in (params or {}).items():
            req[k] = [{kk: str(vv) for kk, vv in r.items()} for r in v] if isinstance(v, list) else str(v)
        ctx = CallContext(RfcRequest(fm, None, req), self.data, self.config, "RFC_USER", CLIENT)
        try:
            module.handler(ctx)
        except AbapException as exc:
            raise ABAPApplicationError(exc.name, key=exc.name) from None
        return {k: ctx.out.get(k, []) for k in tables} | {k: v for k, v in ctx.out.items() if k not in tables}


def fresh_data() -> EccData:
    d = EccData(clients=(CLIENT,))
    d.seed_vendors(300, 5, client=CLIENT)
    seed_logistics(d, seed=5, client=CLIENT, purchase_orders=300, customers=150, sales_orders=300)
    return d


def all_rows(pages: Any) -> list[dict[str, str]]:
    return [r for p in pages for r in p.rows]

"""Sandbox: outbound XML IDocs through an "XML HTTP" port to a configured URL (reference §5.3).

    out = outbound_idocs(state)
    out.configure(url="http://127.0.0.1:9000/sap/idoc", user="SAPIDOC", password="...")
    state.data.update_vendor("100001", NAME1="New name")   # -> CREMAS05 queued and POSTed
    out.emit("DEBMAS", "0000200001")                          # or any message by key
    out.emit("ORDRSP", "0000004711", row={...}, items=[...])  # synthetic rows when tables are absent

Message types (as ECC sends them):
- DEBMAS (DEBMAS07): E1KNA1M from KNA1 with E1KNVVM per KNVV row (child E1KNVPM per KNVP row of
  that sales area), E1KNB1M per KNB1 row and E1KNKKM per KNKK row;
- CREMAS (CREMAS05): E1LFA1M from LFA1 with E1LFB1M per LFB1 row;
- ORDERS (ORDERS05): the outbound purchase order (EKKO + EKPO, output of ME21N/ME22N): E1EDK01
  (BELNR = EBELN, RECIPNT_NO = vendor), E1EDK14 (011 company code, 013 doc type, 014 purch. org,
  009 purch. group), E1EDK03, E1EDKA1 LF (vendor) and WE (plant), E1EDK17, items E1EDP01 with
  E1EDP20 and E1EDP19 (001 our material, 002 vendor material) or the short text in E1EDPT1/E1EDPT2;
- ORDRSP (basic type ORDERS05): the sales-order confirmation (VBAK + VBAP, output of VA01/VA02);
  ORDERS given a sales order row (VBELN, no EBELN) or a key found only in VBAK is built the same way
  (kept for callers of the first version);
- DESADV (DELVRY07; "DELVRY" is accepted as an alias): E1EDL20 from LIKP, one E1EDL24 per LIPS row.
Control records: DIRECT=1, STATUS=30, DOCNUM zero-padded to 16 digits, CREDAT/CRETIM/SERIAL,
SNDPOR SAP<SID>, SNDPRN <SID>CLNT<client>. Names with '/' are written '_-'.

Delivery: a background thread POSTs each queued IDoc with Basic auth; a non-2xx answer or a
transport error is retried with exponential backoff (backoff_base * 2^n, capped at backoff_max)
up to max_attempts, then the IDoc is kept in `failed`. Changes to vendors through EccData
(update_vendor/create_vendor/flag_vendor_for_deletion) emit CREMAS; update_customer emits DEBMAS,
update_purchase_order ORDERS, update_sales_order ORDRSP and update_delivery DESADV (create_* and
flag_customer_for_deletion are hooked too once EccData has them). Emission happens only while a URL
is configured and `auto_emit` is on.

Admin: `POST /_sandbox/idoc/outbound` {"url", "user", "password", "auto_emit", "max_attempts",
"backoff_base", "backoff_max", "content_type"}; `GET /_sandbox/idoc/outbound` (config without the
password, queue, delivered, failed); `POST /_sandbox/idoc/emit` {"mestyp": "DEBMAS", "key": "...",
optional "row", "items", "client"}.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from ..idoc import Idoc, Segment, build_idoc_xml, make_control
from . import ddic
from .app import EccSandbox
from .data import alpha_in
from .idoc_xml import idoc_state

log = logging.getLogger(__name__)

MESSAGE_TYPES: dict[str, tuple[str, str]] = {  # requested name -> (MESTYP, IDOCTYP)
    "DEBMAS": ("DEBMAS", "DEBMAS07"),
    "CREMAS": ("CREMAS", "CREMAS05"),
    "ORDERS": ("ORDERS", "ORDERS05"),
    "ORDRSP": ("ORDRSP", "ORDERS05"),
    "DESADV": ("DESADV", "DELVRY07"),
    "DELVRY": ("DESADV", "DELVRY07"),
}

# EccData mutation methods -> (message, name of the key argument). Only existing methods are hooked.
_HOOKS: dict[str, tuple[str, str]] = {
    "update_vendor": ("CREMAS", "lifnr"), "create_vendor": ("CREMAS", "lifnr"),
    "flag_vendor_for_deletion": ("CREMAS", "lifnr"),
    "update_customer": ("DEBMAS", "kunnr"), "create_customer": ("DEBMAS", "kunnr"),
    "flag_customer_for_deletion": ("DEBMAS", "kunnr"),
    "create_purchase_order": ("ORDERS", "ebeln"), "update_purchase_order": ("ORDERS", "ebeln"),
    "create_sales_order": ("ORDRSP", "vbeln"), "update_sales_order": ("ORDRSP", "vbeln"),
    "create_delivery": ("DESADV", "vbeln"), "update_delivery": ("DESADV", "vbeln"),
}


@dataclass
class OutboundItem:
    docnum: str
    mestyp: str
    key: str
    body: bytes
    attempts: int = 0
    next_at: float = 0.0
    last_error: str = ""
    delivered_at: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"docnum": self.docnum, "mestyp": self.mestyp, "key": self.key, "attempts": self.attempts,
                "last_error": self.last_error, "delivered_at": self.delivered_at}


@dataclass
class OutboundConfig:
    url: str = ""
    user: str = ""
    password: str = ""
    auto_emit: bool = True
    max_attempts: int = 8
    backoff_base: float = 0.2
    backoff_max: float = 10.0
    content_type: str = "text/xml"
    timeout: float = 10.0
    rcvprn: str = "MLCONNECT"
    rcvpor: str = "MLC_HTTP"
    extra: dict[str, Any] = field(default_factory=dict)

    def public(self) -> dict[str, Any]:
        return {"url": self.url, "user": self.user, "password_set": bool(self.password),
                "auto_emit": self.auto_emit, "max_attempts": self.max_attempts, "backoff_base": self.backoff_base,
                "backoff_max": self.backoff_max, "content_type": self.content_type, "rcvprn": self.rcvprn}


def _clean(row: dict[str, Any], fields: tuple[str, ...] | None = None) -> dict[str, str]:
    keys = fields if fields is not None else tuple(k for k in row if k != "MANDT")
    return {k: str(row[k]).strip() for k in keys if row.get(k) not in (None, "") and str(row[k]).strip()}


class OutboundIdocs:
    def __init__(self, state: EccSandbox) -> None:
        self.state = state
        self.config = OutboundConfig()
        self.queue: list[OutboundItem] = []
        self.delivered: list[OutboundItem] = []
        self.failed: list[OutboundItem] = []
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stop = False
        self._hooked: Any = None
        self._local = threading.local()
        self.hook_data()

    # -- configuration ---------------------------------------------------------------------------

    def configure(self, **kw: Any) -> dict[str, Any]:
        with self._cond:
            for key, value in kw.items():
                if key not in OutboundConfig.__dataclass_fields__ or key == "extra":
                    raise ValueError(f"unknown outbound setting {key!r}")
                current = getattr(self.config, key)
                setattr(self.config, key, type(current)(value) if current is not None else value)
            if self.config.url and not self.config.url.startswith(("http://", "https://")):
                raise ValueError("url must start with http:// or https://")
            self._cond.notify_all()
        return self.config.public()

    def hook_data(self) -> None:
        """Wrap the EccData mutation methods of this sandbox so that changes emit IDocs."""
        data = self.state.data
        if self._hooked is data:
            return
        for name, (mestyp, key_arg) in _HOOKS.items():
            method = getattr(data, name, None)
            if method is None or getattr(method, "_mlc_idoc_hook", False):
                continue
            setattr(data, name, self._wrap(method, mestyp, key_arg))
        self._hooked = data

    def _wrap(self, method: Callable[..., Any], mestyp: str, key_arg: str) -> Callable[..., Any]:
        @functools.wraps(method)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            depth = getattr(self._local, "depth", 0)
            self._local.depth = depth + 1
            try:
                result = method(*args, **kwargs)
            finally:
                self._local.depth = depth
            if depth:  # nested (flag_vendor_for_deletion calls update_vendor): the outer call emits
                return result
            key = args[0] if args else kwargs.get(key_arg)
            if key is None and isinstance(result, str):  # create_* returns the new key
                key = result
            if result is not None and key and self.config.url and self.config.auto_emit:
                try:
                    self.emit(mestyp, str(key), client=str(kwargs.get("client", self.state.client)))
                except Exception:
                    log.exception("sandbox: outbound %s for %s could not be built", mestyp, key)
            return result

        wrapper._mlc_idoc_hook = True  # type: ignore[attr-defined]
        return wrapper

    # -- building --------------------------------------------------------------------------------

    def _table_rows(self, table: str, client: str, **match: str) -> list[dict[str, Any]]:
        if ddic.table(table) is None:
            return []
        return [r for r in self.state.data.rows(table, client)
                if all(str(r.get(k, "")).strip() == v for k, v in match.items())]

    def _row(self, table: str, key: tuple[str, ...], client: str) -> dict[str, Any] | None:
        if ddic.table(table) is None:
            return None
        try:
            return self.state.data.get(table, key, client)
        except KeyError:
            return None

    def build(self, mestyp: str, key: str, *, client: str | None = None, row: dict[str, Any] | None = None,
              items: list[dict[str, Any]] | None = None, docnum: str | None = None) -> Idoc:
        name = mestyp.upper()
        if name not in MESSAGE_TYPES:
            raise ValueError(f"unsupported message type {mestyp!r}; one of {sorted(MESSAGE_TYPES)}")
        mes, idoctyp = MESSAGE_TYPES[name]
        client = client or self.state.client
        key = alpha_in(key) if key.isdigit() else key
        if mes == "CREMAS":
            segments = self._cremas(key, client, row)
        elif mes == "DEBMAS":
            segments = self._debmas(key, client, row)
        elif mes == "ORDERS" and self._is_purchase_order(key, client, row):
            segments = self._purchase_order(key, client, row, items)
        elif mes in ("ORDERS", "ORDRSP"):
            segments = self._orders(key, client, row, items)
        else:
            segments = self._delvry(key, client, row, items)
        sid = self.state.config.sid
        control = make_control(mestyp=mes, idoctyp=idoctyp, docnum=docnum or idoc_state(self.state).next_docnum(),
                               direct="1", status="30", mandt=client, docrel=self.state.config.saprl,
                               sndpor=f"SAP{sid}", sndprt="LS", sndprn=f"{sid}CLNT{client}",
                               rcvpor=self.config.rcvpor, rcvprt="LS", rcvprn=self.config.rcvprn,
                               now=datetime.now(UTC))
        return Idoc(control=control, segments=segments, root=idoctyp)

    def _cremas(self, lifnr: str, client: str, row: dict[str, Any] | None) -> list[Segment]:
        row = row or self._row("LFA1", (lifnr,), client)
        if row is None:
            raise KeyError(f"vendor {lifnr} not found")
        fields = {k: v for k, v in _clean(row).items() if k != "LIFNR"}
        head = Segment("E1LFA1M", {"MSGFN": "005", "LIFNR": lifnr, **fields})
        for b in self._table_rows("LFB1", client, LIFNR=lifnr):
            head.children.append(Segment("E1LFB1M", {"MSGFN": "005", **{k: v for k, v in _clean(b).items()
                                                                        if k != "LIFNR"}}))
        return [head]

    def _debmas(self, kunnr: str, client: str, row: dict[str, Any] | None) -> list[Segment]:
        row = row or self._row("KNA1", (kunnr,), client)
        if row is None:
            raise KeyError(f"customer {kunnr} not found (KNA1)")
        fields = {k: v for k, v in _clean(row).items() if k != "KUNNR"}
        head = Segment("E1KNA1M", {"MSGFN": "005", "KUNNR": kunnr, **fields})
        areas: dict[tuple[str, str, str], Segment] = {}
        for vv in self._table_rows("KNVV", client, KUNNR=kunnr):
            seg = Segment("E1KNVVM", {"MSGFN": "005", **_clean(vv)})
            seg.fields.pop("KUNNR", None)
            areas[(str(vv.get("VKORG", "")), str(vv.get("VTWEG", "")), str(vv.get("SPART", "")))] = seg
            head.children.append(seg)
        for vp in self._table_rows("KNVP", client, KUNNR=kunnr):
            area_key = (str(vp.get("VKORG", "")), str(vp.get("VTWEG", "")), str(vp.get("SPART", "")))
            parent = areas.get(area_key)
            if parent is None:
                parent = Segment("E1KNVVM", {"MSGFN": "005", "VKORG": area_key[0], "VTWEG": area_key[1],
                                             "SPART": area_key[2]})
                areas[area_key] = parent
                head.children.append(parent)
            pf = {k: v for k, v in _clean(vp).items() if k not in ("KUNNR", "VKORG", "VTWEG", "SPART")}
            parent.children.append(Segment("E1KNVPM", {"MSGFN": "005", **pf}))
        for b1 in self._table_rows("KNB1", client, KUNNR=kunnr):
            head.children.append(Segment("E1KNB1M", {"MSGFN": "005", **{k: v for k, v in _clean(b1).items()
                                                                        if k != "KUNNR"}}))
        for kk in self._table_rows("KNKK", client, KUNNR=kunnr):
            head.children.append(Segment("E1KNKKM", {"MSGFN": "005", **{k: v for k, v in _clean(kk).items()
                                                                        if k != "KUNNR"}}))
        return [head]

    def _is_purchase_order(self, key: str, client: str, row: dict[str, Any] | None) -> bool:
        if row is not None:
            return "EBELN" in row or ("VBELN" not in row and self._row("VBAK", (key,), client) is None)
        return self._row("EKKO", (key,), client) is not None or self._row("VBAK", (key,), client) is None

    def _purchase_order(self, ebeln: str, client: str, row: dict[str, Any] | None,
                        items: list[dict[str, Any]] | None) -> list[Segment]:
        row = row or self._row("EKKO", (ebeln,), client)
        if row is None:
            raise KeyError(f"purchase order {ebeln} not found (EKKO)")
        items = items if items is not None else self._table_rows("EKPO", client, EBELN=ebeln)
        r = _clean(row)
        k01 = {"ACTION": "000", "CURCY": r.get("WAERS", ""), "WKURS": r.get("WKURS", ""),
               "ZTERM": r.get("ZTERM", ""), "BSART": r.get("BSART", ""), "BELNR": ebeln,
               "RECIPNT_NO": r.get("LIFNR", "")}
        segs = [Segment("E1EDK01", {k: v for k, v in k01.items() if v})]
        for qualf, fld in (("011", "BUKRS"), ("013", "BSART"), ("014", "EKORG"), ("009", "EKGRP")):
            if r.get(fld):
                segs.append(Segment("E1EDK14", {"QUALF": qualf, "ORGID": r[fld]}))
        for iddat, fld in (("012", "BEDAT"),):
            if r.get(fld):
                segs.append(Segment("E1EDK03", {"IDDAT": iddat, "DATUM": r[fld]}))
        if r.get("LIFNR"):
            segs.append(Segment("E1EDKA1", {"PARVW": "LF", "PARTN": r["LIFNR"]}))
        plants = list(dict.fromkeys(str(i.get("WERKS", "")).strip() for i in items if str(i.get("WERKS", "")).strip()))
        if plants:
            segs.append(Segment("E1EDKA1", {"PARVW": "WE", "PARTN": plants[0]}))
        if r.get("INCO1"):
            segs.append(Segment("E1EDK17", {"QUALF": "001", "LKOND": r["INCO1"], "LKTEXT": r.get("INCO2", "")}))
        total = Decimal(0)
        for it in items:
            i = _clean(it)
            if i.get("LOEKZ"):
                continue
            p01 = Segment("E1EDP01", {k: v for k, v in {
                "POSEX": i.get("EBELP", ""), "ACTION": "001", "MENGE": i.get("MENGE", ""),
                "MENEE": i.get("MEINS", ""), "PMENE": i.get("BPRME", ""), "VPREI": i.get("NETPR", ""),
                "PEINH": i.get("PEINH", ""), "NETWR": i.get("NETWR", ""), "MATKL": i.get("MATKL", ""),
                "WERKS": i.get("WERKS", ""), "LGORT": i.get("LGORT", "")}.items() if v})
            with contextlib.suppress(ArithmeticError):
                total += Decimal(i.get("NETWR") or "0")
            if i.get("MENGE"):
                p01.children.append(Segment("E1EDP20", {"WMENG": i["MENGE"], "AMENG": i["MENGE"],
                                                        "EDATU": i.get("PRDAT", r.get("BEDAT", ""))}))
            if i.get("MATNR"):
                p01.children.append(Segment("E1EDP19", {"QUALF": "001", "IDTNR": i["MATNR"],
                                                        "KTEXT": i.get("TXZ01", "")}))
                if i.get("IDNLF"):
                    p01.children.append(Segment("E1EDP19", {"QUALF": "002", "IDTNR": i["IDNLF"]}))
            elif i.get("TXZ01"):
                pt1 = Segment("E1EDPT1", {"TDID": "F01", "TSSPRAS": r.get("SPRAS", "E")})
                pt1.children.append(Segment("E1EDPT2", {"TDLINE": i["TXZ01"]}))
                p01.children.append(pt1)
            segs.append(p01)
        summe = f"{total:.2f}" if items else r.get("RLWRT", "")
        if summe:
            segs.append(Segment("E1EDS01", {"SUMID": "002", "SUMME": summe, "SUNIT": r.get("WAERS", "")}))
        return segs

    def _orders(self, vbeln: str, client: str, row: dict[str, Any] | None,
                items: list[dict[str, Any]] | None) -> list[Segment]:
        row = row or self._row("VBAK", (vbeln,), client)
        if row is None:
            raise KeyError(f"sales order {vbeln} not found (VBAK)")
        items = items if items is not None else self._table_rows("VBAP", client, VBELN=vbeln)
        r = _clean(row)
        segs = [Segment("E1EDK01", {"CURCY": r.get("WAERK", ""), "BSART": r.get("AUART", ""), "BELNR": vbeln,
                                    "NTGEW": r.get("NTGEW", ""), "GEWEI": r.get("GEWEI", "")})]
        for qualf, fld in (("008", "VKORG"), ("007", "VTWEG"), ("006", "SPART")):
            if r.get(fld):
                segs.append(Segment("E1EDK14", {"QUALF": qualf, "ORGID": r[fld]}))
        for iddat, fld in (("012", "AUDAT"), ("002", "VDATU")):
            if r.get(fld):
                segs.append(Segment("E1EDK03", {"IDDAT": iddat, "DATUM": r[fld]}))
        if r.get("KUNNR"):
            segs.append(Segment("E1EDKA1", {"PARVW": "AG", "PARTN": r["KUNNR"]}))
        if r.get("BSTNK"):
            segs.append(Segment("E1EDK02", {"QUALF": "001", "BELNR": r["BSTNK"], "DATUM": r.get("BSTDK", "")}))
        for it in items:
            i = _clean(it)
            p01 = Segment("E1EDP01", {"POSEX": i.get("POSNR", ""), "MENGE": i.get("KWMENG", ""),
                                      "MENEE": i.get("VRKME", ""), "NETWR": i.get("NETWR", ""),
                                      "WERKS": i.get("WERKS", "")})
            if i.get("MATNR"):
                p01.children.append(Segment("E1EDP19", {"QUALF": "002", "IDTNR": i["MATNR"],
                                                        "KTEXT": i.get("ARKTX", "")}))
            segs.append(p01)
        if r.get("NETWR"):
            segs.append(Segment("E1EDS01", {"SUMID": "002", "SUMME": r["NETWR"], "SUNIT": r.get("WAERK", "")}))
        return segs

    def _delvry(self, vbeln: str, client: str, row: dict[str, Any] | None,
                items: list[dict[str, Any]] | None) -> list[Segment]:
        row = row or self._row("LIKP", (vbeln,), client)
        if row is None:
            raise KeyError(f"delivery {vbeln} not found (LIKP)")
        items = items if items is not None else self._table_rows("LIPS", client, VBELN=vbeln)
        r = _clean(row)
        head = Segment("E1EDL20", {"VBELN": vbeln, "VSTEL": r.get("VSTEL", ""), "VKORG": r.get("VKORG", ""),
                                   "INCO1": r.get("INCO1", ""), "NTGEW": r.get("NTGEW", ""),
                                   "BTGEW": r.get("BTGEW", ""), "GEWEI": r.get("GEWEI", "")})
        if r.get("KUNNR"):
            head.children.append(Segment("E1ADRM1", {"PARTNER_Q": "WE", "PARTNER_ID": r["KUNNR"]}))
        if r.get("WADAT"):
            head.children.append(Segment("E1EDT13", {"QUALF": "006", "NTANF": r["WADAT"]}))
        for it in items:
            i = _clean(it)
            head.children.append(Segment("E1EDL24", {k: v for k, v in {
                "POSNR": i.get("POSNR", ""), "MATNR": i.get("MATNR", ""), "MATWA": i.get("MATWA", ""),
                "ARKTX": i.get("ARKTX", ""), "MATKL": i.get("MATKL", ""), "WERKS": i.get("WERKS", ""),
                "LGORT": i.get("LGORT", ""), "LFIMG": i.get("LFIMG", ""), "VRKME": i.get("VRKME", ""),
                "LGMNG": i.get("LGMNG", ""), "MEINS": i.get("MEINS", ""), "NTGEW": i.get("NTGEW", ""),
                "BRGEW": i.get("BRGEW", ""), "GEWEI": i.get("GEWEI", ""), "PSTYV": i.get("PSTYV", ""),
                "VGBEL": i.get("VGBEL", ""), "VGPOS": i.get("VGPOS", "")}.items() if v}))
        return [head]

    # -- sending ---------------------------------------------------------------------------------

    def emit(self, mestyp: str, key: str, *, client: str | None = None, row: dict[str, Any] | None = None,
             items: list[dict[str, Any]] | None = None) -> OutboundItem:
        """Build one IDoc and queue it for delivery (delivered when a URL is configured)."""
        idoc = self.build(mestyp, key, client=client, row=row, items=items)
        item = OutboundItem(docnum=idoc.docnum, mestyp=idoc.mestyp, key=key, body=build_idoc_xml([idoc]))
        with self._cond:
            self.queue.append(item)
            self._ensure_thread()
            self._cond.notify_all()
        return item

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._stop = False
            self._thread = threading.Thread(target=self._run, name="sandbox-idoc-outbound", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(5)

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Until the queue is empty (delivered or failed); True if it emptied in time."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self.queue:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.05))
            return True

    def _run(self) -> None:
        with httpx.Client(timeout=self.config.timeout, follow_redirects=False) as http:
            while True:
                with self._cond:
                    while not self._stop:
                        now = time.monotonic()
                        due = [i for i in self.queue if i.next_at <= now] if self.config.url else []
                        if due:
                            break
                        waits = [i.next_at - now for i in self.queue] if self.config.url else []
                        self._cond.wait(max(min(waits, default=1.0), 0.01))
                    if self._stop:
                        return
                    item = due[0]
                    cfg = OutboundConfig(**{**self.config.__dict__})
                self._deliver(http, cfg, item)

    def _deliver(self, http: httpx.Client, cfg: OutboundConfig, item: OutboundItem) -> None:
        item.attempts += 1
        error = ""
        try:
            headers = {"Content-Type": f"{cfg.content_type}; charset=utf-8"}
            if cfg.user:
                resp = http.post(cfg.url, content=item.body, auth=httpx.BasicAuth(cfg.user, cfg.password),
                                 headers=headers)
            else:
                resp = http.post(cfg.url, content=item.body, headers=headers)
            if not 200 <= resp.status_code < 300:
                error = f"HTTP {resp.status_code}: {resp.text[:200]}"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
        with self._cond:
            if not error:
                item.delivered_at = datetime.now(UTC).isoformat()
                item.last_error = ""
                self.queue.remove(item)
                self.delivered.append(item)
            else:
                item.last_error = error
                if item.attempts >= cfg.max_attempts:
                    self.queue.remove(item)
                    self.failed.append(item)
                    log.warning("sandbox: outbound IDoc %s failed for good: %s", item.docnum, error)
                else:
                    item.next_at = time.monotonic() + min(cfg.backoff_base * 2 ** (item.attempts - 1),
                                                          cfg.backoff_max)
            self._cond.notify_all()

    def to_dict(self) -> dict[str, Any]:
        with self._cond:
            return {"config": self.config.public(), "queue": [i.to_dict() for i in self.queue],
                    "delivered": [i.to_dict() for i in self.delivered],
                    "failed": [i.to_dict() for i in self.failed]}


_outbound: weakref.WeakKeyDictionary[EccSandbox, OutboundIdocs] = weakref.WeakKeyDictionary()
_outbound_lock = threading.Lock()


def outbound_idocs(state: EccSandbox) -> OutboundIdocs:
    """The outbound IDoc emitter of a sandbox (created, and EccData hooked, on first use)."""
    with _outbound_lock:
        out = _outbound.get(state)
        if out is None:
            out = _outbound[state] = OutboundIdocs(state)
        out.hook_data()
        return out


def outbound_router(state: EccSandbox) -> APIRouter:
    router = APIRouter()
    out = outbound_idocs(state)

    async def json_body(request: Request) -> dict[str, Any]:
        body = await request.json()
        if not isinstance(body, dict):
            raise ValueError("expected a JSON object")
        return body

    @router.get("/_sandbox/idoc/outbound")
    async def get_outbound() -> dict[str, Any]:
        return out.to_dict()

    @router.post("/_sandbox/idoc/outbound")
    async def set_outbound(request: Request) -> Response:
        try:
            return JSONResponse(out.configure(**await json_body(request)))
        except (ValueError, TypeError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)

    @router.post("/_sandbox/idoc/emit")
    async def emit(request: Request) -> Response:
        try:
            body = await json_body(request)
            item = out.emit(str(body["mestyp"]), str(body["key"]), client=body.get("client"),
                            row=body.get("row"), items=body.get("items"))
        except KeyError as exc:
            return JSONResponse({"error": f"not found or missing: {exc}"}, status_code=404)
        except (ValueError, TypeError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse({"docnum": item.docnum, "mestyp": item.mestyp, "queued": True}, status_code=202)

    return router

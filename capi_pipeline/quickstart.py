"""Getting started: `capi-pipeline init` writes a pipeline YAML and a starter contract from a sample export;
`capi-pipeline check` sends one test event to each destination.

init reads the first ~1000 rows of a .parquet / .csv / .jsonl file and maps columns to CAPI fields first by name
(a table of usual warehouse spellings, see `NAME_TARGETS`), then, for columns still unmapped, by content:
e-mail addresses -> user_data.em, phone numbers written like phone numbers (a leading + or separators) ->
user_data.ph, ISO timestamps -> event_time, IP addresses -> client_ip_address, JSON arrays -> custom_data.contents.
A mapped user_data column whose values are (almost) all 64 lowercase hex is declared in `user_data.prehashed`.
The inference (`infer`) is pure; reading the sample and writing the files are the edges.

Nothing read from the sample is printed or written except column names: the contract holds names and types only.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import ipaddress
import json
import os
import re
import time
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from capi_pipeline.errors import ConfigurationError, DeliveryError, InputError

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "CHECK_EMAIL",
    "Inference",
    "NAME_TARGETS",
    "add_check_arguments",
    "add_init_arguments",
    "build_check_event",
    "cmd_check",
    "cmd_init",
    "infer",
    "init",
    "read_sample",
    "render_contract",
    "render_pipeline",
]

Kind = Literal["offline", "app"]
SAMPLE_ROWS = 1000
CHECK_EMAIL = "capi-pipeline-check@example.com"
CHECK_EVENT_NAME = "CapiPipelineCheck"

# CAPI path -> column spellings (after `_canon_name`), most specific first.
NAME_TARGETS: dict[str, tuple[str, ...]] = {
    "event_name": ("event_name", "event", "event_type", "conversion_type"),
    "event_time": ("event_time", "event_timestamp", "event_ts", "event_ts_ms", "timestamp", "created_at", "ts",
                   "event_date", "order_time", "order_date", "conversion_time"),
    "event_id": ("event_id", "conversion_id", "call_id"),
    "action_source": ("action_source",),
    # English first, then German, French, Spanish, Italian, Dutch, Swedish spellings (accents folded)
    "user_data.em": ("email", "e_mail", "email_address", "mail", "emailaddress", "email_addr", "e_mail_adresse",
                     "courriel", "correo", "correo_electronico"),
    "user_data.ph": ("phone", "mobile", "msisdn", "phone_number", "tel", "telephone", "mobile_phone", "cell",
                     "phonenumber", "mobile_number", "telefon", "telefonnummer", "handy", "mobil", "telefono",
                     "telefoon", "cellulare"),
    "user_data.fn": ("first_name", "fname", "given_name", "firstname", "forename", "vorname", "prenom", "nombre",
                     "voornaam", "fornamn"),
    "user_data.ln": ("last_name", "lname", "surname", "family_name", "lastname", "nachname", "apellido",
                     "apellidos", "cognome", "achternaam", "efternamn"),
    "user_data.ge": ("gender", "sex", "geschlecht", "sexe", "genero", "sesso", "geslacht", "kon"),
    "user_data.db": ("dob", "birthdate", "date_of_birth", "birth_date", "birthday", "geburtsdatum",
                     "date_de_naissance", "fecha_de_nacimiento", "data_di_nascita", "geboortedatum"),
    "user_data.ct": ("city", "town", "ort", "stadt", "ville", "ciudad", "citta", "plaats", "stad"),
    "user_data.st": ("state", "region", "province", "state_code", "bundesland", "provincia", "provincie"),
    "user_data.zp": ("zip", "zip_code", "zipcode", "postal_code", "postcode", "postalcode", "plz",
                     "postleitzahl", "code_postal", "codigo_postal", "cap", "postnummer"),
    "user_data.country": ("country", "country_code", "land", "pays", "pais", "paese"),
    "user_data.external_id": ("customer_id", "loyalty_id", "crm_id", "external_id", "user_id", "member_id"),
    "user_data.client_ip_address": ("client_ip_address", "ip", "ip_address", "client_ip"),
    "user_data.client_user_agent": ("client_user_agent", "user_agent"),
    "user_data.madid": ("madid", "idfa", "gaid", "advertising_id", "aaid"),
    "user_data.anon_id": ("anon_id", "install_id"),
    "user_data.partner_id": ("rampid", "ramp_id", "partner_id"),
    "user_data.partner_name": ("identity_partner", "partner_name"),
    "user_data.lead_id": ("lead_id",),
    "user_data.fbc": ("fbc",),
    "user_data.fbp": ("fbp",),
    "custom_data.order_id": ("order_id", "transaction_id", "order_number", "order_no", "order_name",
                             "invoice_id", "invoice_number", "receipt_id", "receipt_number", "bestellnummer",
                             "auftragsnummer", "numero_de_commande", "numero_pedido"),
    "custom_data.value": ("value", "amount", "revenue", "total", "order_total", "umsatz", "betrag", "montant",
                          "importe", "importo", "bedrag"),
    "custom_data.currency": ("currency", "currency_code", "wahrung", "waehrung", "devise", "moneda", "valuta"),
    "custom_data.contents": ("items", "contents", "line_items"),
    "custom_data.store_data.store_code": ("store_code", "store_id"),
    "app_data.advertiser_tracking_enabled": ("advertiser_tracking_enabled", "att"),
    "app_data.application_tracking_enabled": ("application_tracking_enabled",),
    "app_data.install_referrer": ("install_referrer",),
}
_ALIAS = {alias: (path, rank) for path, aliases in NAME_TARGETS.items() for rank, alias in enumerate(aliases)}
# "PostCode" -> post_code, "zipcode", "e_mail": spellings that differ only in underscores
_COMPACT = {alias.replace("_", ""): target for alias, target in sorted(_ALIAS.items(), key=lambda kv: kv[1][1],
                                                                         reverse=True)}
# keys that may take several columns (sent as an array); every other target takes the best-named column only
_MULTI = frozenset({"user_data.em", "user_data.ph", "user_data.external_id"})
_SECONDARY = re.compile(r"^(.+?)_?(alt|alternate|secondary|other|work|home|personal|\d)$")
_HASH_HINT = re.compile(r"^(?:sha256_|hashed_|hash_)?(.+?)(?:_sha256|_hashed|_hash|_sha)?$")
_EXTINFO = re.compile(r"^(?:ext|extinfo)_?(\d{1,2})$")
# user_data keys whose columns the contract tags `classification: restricted` + pii; _HASHABLE: hashed before sending
_PII_KEYS = frozenset({"em", "ph", "fn", "ln", "ge", "db", "ct", "st", "zp", "country", "external_id",
                       "client_ip_address", "client_user_agent", "madid", "anon_id", "partner_id", "fbc", "fbp"})
_HASHABLE = frozenset({"em", "ph", "fn", "ln", "ge", "db", "ct", "st", "zp", "country", "external_id"})

_EMAIL = re.compile(r"^\s*[^@\s]+@[^@\s]+\.[A-Za-z]{2,}\s*$")
_PHONE = re.compile(r"^\s*(?:\+\d[\d\s().-]{6,}\d|\(?\d{2,4}\)?[\s.-]\d{2,4}[\s.-]\d{3,4})\s*$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_ISO_TS = re.compile(r"^\s*\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}")
_DATE_IN_NAME = re.compile(r"\d{4}-\d{2}-\d{2}")
_NUMBER = re.compile(r"^\s*[+-]?\d+(?:[.,]\d+)*\s*$")
_PART_FILE = re.compile(r"^part-[0-9]+")


@dataclass
class Inference:
    """What `infer` decided: the YAML mapping, and why some columns stayed out."""

    mapping: dict[str, Any] = field(default_factory=dict)  # CAPI path -> column | [columns] | {column, parse}
    how: dict[str, str] = field(default_factory=dict)  # column -> "name" | "content: email" | ...
    prehashed: list[str] = field(default_factory=list)
    unmapped: dict[str, str] = field(default_factory=dict)  # column -> reason
    event_id: dict[str, Any] = field(default_factory=dict)
    event_time_unit: str = "auto"
    warnings: list[str] = field(default_factory=list)
    logical_types: dict[str, str] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------- reading

def read_sample(path: Path, rows: int = SAMPLE_ROWS) -> tuple[pd.DataFrame, dict[str, str]]:
    """The first `rows` rows and each column's ODCS logical type (from the file schema where it has one)."""
    import pandas as pd

    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            import pyarrow.parquet as pq

            pf = pq.ParquetFile(path)
            batch = next(pf.iter_batches(batch_size=rows), None)
            frame = batch.to_pandas() if batch is not None else pf.schema_arrow.empty_table().to_pandas()
            return frame, {f.name: _arrow_logical(f.type) for f in pf.schema_arrow}
        if suffix == ".csv":
            # extract.py reads CSV as text, so the contract must call every column a string
            frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""], nrows=rows,
                                sep=csv_delimiter(path))
            return frame, {c: "string" for c in frame.columns}
        if suffix in (".jsonl", ".ndjson", ".json"):
            frame = pd.read_json(path, lines=True, nrows=rows, dtype=False)
            return frame, {c: _pandas_logical(frame[c]) for c in frame.columns}
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot read ({type(exc).__name__})") from None
    raise ConfigurationError(f"{path}: expected a .parquet, .csv or .jsonl file")


def header_like_data(columns: Any) -> int | None:
    """The 1-based position of the first header cell that reads as a value (an e-mail, a phone number, an IP
    address, a timestamp, a number): a CSV exported without its header row."""
    for at, name in enumerate(map(str, columns), 1):
        if _EMAIL.match(name) or _PHONE.match(name) or _is_ip(name) or _ISO_TS.match(name) or _NUMBER.match(name):
            return at
    return None


def csv_delimiter(path: Path) -> str:
    """The field separator of a CSV export, from its first lines: ",", or ";" (European spreadsheets), tab or
    "|" when the sniffer finds one of those instead."""
    import csv

    try:
        with path.open(encoding="utf-8-sig", newline="") as fh:
            head = fh.read(64 * 1024)
        return csv.Sniffer().sniff(head, delimiters=",;\t|").delimiter
    except (OSError, UnicodeDecodeError, csv.Error):
        return ","


def _arrow_logical(t: Any) -> str:
    import pyarrow as pa

    if pa.types.is_boolean(t):
        return "boolean"
    if pa.types.is_integer(t):
        return "integer"
    if pa.types.is_floating(t) or pa.types.is_decimal(t):
        return "number"
    if pa.types.is_timestamp(t):
        return "timestamp"
    if pa.types.is_date(t):
        return "date"
    return "string"


def _pandas_logical(s: pd.Series) -> str:
    import pandas as pd

    if pd.api.types.is_bool_dtype(s):
        return "boolean"
    if pd.api.types.is_integer_dtype(s):
        return "integer"
    if pd.api.types.is_float_dtype(s):
        return "number"
    if pd.api.types.is_datetime64_any_dtype(s):
        return "timestamp"
    return "string"


# ---------------------------------------------------------------------------------------------- inference

def infer(frame: pd.DataFrame, kind: Kind, logical_types: Mapping[str, str] | None = None) -> Inference:
    """Map the sample's columns to CAPI paths by name, then by content. Pure."""
    inf = Inference(logical_types=dict(logical_types or {c: _pandas_logical(frame[c]) for c in frame.columns}))
    chosen: dict[str, list[tuple[int, str]]] = {}
    extinfo: dict[int, str] = {}
    leftovers: list[str] = []
    for col in frame.columns:
        name = _canon_name(str(col))
        m = _EXTINFO.match(name)
        if m and int(m.group(1)) < 16:
            extinfo[int(m.group(1))] = str(col)
            inf.how[str(col)] = "name"
            continue
        target = _target_for(name)
        if target is None:
            leftovers.append(str(col))
            continue
        chosen.setdefault(target[0], []).append((target[1], str(col)))
    for col in leftovers:
        target_path, why = _by_content(frame[col], set(chosen))
        if target_path is None:
            inf.unmapped[col] = why
            if len(frame.columns) == 1 and any(sep in col for sep in (";", "\t", "|")):
                inf.warnings.append(f"the file has one column named {col[:60]!r}: it looks separated by "
                                    "';', tabs or '|'; CSV sources must use commas (export it again with ',')")
            continue
        chosen.setdefault(target_path, []).append((99, col))
        inf.how[col] = f"content: {why}"

    for path, candidates in chosen.items():
        candidates.sort()
        cols = [c for _, c in candidates]
        if path in _MULTI:
            inf.mapping[path] = cols if len(cols) > 1 else cols[0]
        else:
            inf.mapping[path] = cols[0]
            for extra in cols[1:]:
                inf.unmapped[extra] = f"another column ({cols[0]}) already maps to {path}"
        for c in (cols if path in _MULTI else cols[:1]):
            inf.how.setdefault(c, "name")
    if "custom_data.contents" in inf.mapping:
        inf.mapping["custom_data.contents"] = {"column": inf.mapping["custom_data.contents"], "parse": "json"}
    if extinfo:
        if kind == "app":
            inf.mapping["app_data.extinfo"] = [extinfo.get(i) for i in range(16)]
        else:
            for col in extinfo.values():
                inf.unmapped[col] = "extinfo column, but this is not an app pipeline (--kind app)"
                inf.how.pop(col, None)

    _declare_prehashed(frame, inf)
    _event_time_unit(frame, inf)
    _event_id(inf)
    _kind_checks(kind, inf)
    for col in frame.columns:
        if str(col) not in inf.how and str(col) not in inf.unmapped:
            inf.unmapped[str(col)] = "no CAPI field matches its name or content"
    return inf


def _canon_name(name: str) -> str:
    name = "".join(ch for ch in unicodedata.normalize("NFKD", name) if not unicodedata.combining(ch))  # Währung
    name = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name.strip())
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


# "Billing Zip", "shipping_city", "customer_email": the same field of an export's address or person block
_PREFIX = re.compile(r"^(?:billing|shipping|bill|ship|customer|contact|buyer|client)_(.+)$")


def _target_for(name: str) -> tuple[str, int] | None:
    """(CAPI path, rank) for a canonical column name: exact, then minus a hash hint, then a secondary copy,
    then without a billing/shipping/customer prefix (ranked after any column without one)."""
    if name in _ALIAS:
        return _ALIAS[name]
    m = _PREFIX.match(name)
    if m and m.group(1) in _ALIAS and not m.group(1).startswith("name"):
        path, rank = _ALIAS[m.group(1)]
        return path, rank + (30 if name.startswith(("billing", "bill", "customer", "contact", "buyer", "client"))
                             else 40)
    if name.replace("_", "") in _COMPACT:
        path, rank = _COMPACT[name.replace("_", "")]
        return path, rank + 20
    m = _HASH_HINT.match(name)
    if m and m.group(1) != name and m.group(1) in _ALIAS and _ALIAS[m.group(1)][0].startswith("user_data."):
        return _ALIAS[m.group(1)][0], 50
    m = _SECONDARY.match(name)
    if m and m.group(1) in _ALIAS and _ALIAS[m.group(1)][0] in _MULTI:
        return _ALIAS[m.group(1)][0], 60
    return None


def _values(s: pd.Series, n: int = SAMPLE_ROWS) -> list[str]:
    vals = s.dropna()
    return [str(v) for v in vals.head(n).tolist() if str(v).strip() != ""]


def _share(values: list[str], test: Any) -> float:
    return sum(1 for v in values if test(v)) / len(values) if values else 0.0


def _is_ip(v: str) -> bool:
    try:
        ipaddress.ip_address(v.strip())
        return True
    except ValueError:
        return False


def _is_json_list(v: str) -> bool:
    v = v.strip()
    if not v.startswith("["):
        return False
    try:
        return isinstance(json.loads(v), list)
    except ValueError:
        return False


def _by_content(s: pd.Series, taken: set[str]) -> tuple[str | None, str]:
    """A target for a column whose name said nothing, from what its values look like."""
    import pandas as pd

    if not (pd.api.types.is_object_dtype(s) or pd.api.types.is_string_dtype(s)):
        return None, "no CAPI field matches its name; its values are not text"
    values = _values(s)
    if not values:
        return None, "empty in the sample"
    if _share(values, lambda v: bool(_HEX64.match(v))) >= 0.9:
        return None, ("holds SHA-256 hashes but its name does not say of what: map it to the right user_data key "
                      "and list it under user_data.prehashed")
    checks = (("user_data.em", "e-mail addresses", lambda v: bool(_EMAIL.match(v))),
              ("user_data.ph", "phone numbers", lambda v: bool(_PHONE.match(v))),
              ("event_time", "ISO timestamps", lambda v: bool(_ISO_TS.match(v))),
              ("user_data.client_ip_address", "IP addresses", _is_ip),
              ("custom_data.contents", "JSON arrays", _is_json_list))
    for path, label, test in checks:
        if _share(values, test) >= 0.8:
            if path in taken and path not in _MULTI:
                return None, f"looks like {label}, but another column already maps to {path}"
            return path, label
    return None, "no CAPI field matches its name or content"


def _declare_prehashed(frame: pd.DataFrame, inf: Inference) -> None:
    for path, spec in inf.mapping.items():
        if not path.startswith("user_data.") or path.split(".", 1)[1] not in _HASHABLE:
            continue
        for col in spec if isinstance(spec, list) else [spec]:
            values = _values(frame[col])
            if values and _share(values, lambda v: bool(_HEX64.match(v))) >= 0.9:
                inf.prehashed.append(col)
                inf.how[col] = inf.how.get(col, "name") + ", pre-hashed (64 lowercase hex)"


def _event_time_unit(frame: pd.DataFrame, inf: Inference) -> None:
    import pandas as pd

    col = inf.mapping.get("event_time")
    if not isinstance(col, str):
        return
    s = frame[col]
    if pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s):
        values = s.dropna()
        if len(values):
            inf.event_time_unit = "ms" if float(values.median()) > 1e11 else "s"
        elif _canon_name(col).endswith("_ms"):
            inf.event_time_unit = "ms"


def _event_id(inf: Inference) -> None:
    col = inf.mapping.pop("event_id", None)
    if col:
        inf.event_id = {"column": col}
        return
    keys = [inf.mapping[p] for p in ("custom_data.order_id", "user_data.lead_id")
            if isinstance(inf.mapping.get(p), str)]
    if keys:
        inf.event_id = {"keys": keys}
        return
    # Never a customer column: key values become the event_id that is sent to Meta.
    keys = [inf.mapping[p] for p in ("event_name", "event_time", "custom_data.store_data.store_code")
            if isinstance(inf.mapping.get(p), str)]
    inf.event_id = {"keys": keys or ["EDIT_ME_row_key_column"]}
    inf.warnings.append("no event_id, order_id or lead_id column: event_id.keys is a guess (" + ", ".join(
        keys or ["EDIT_ME_row_key_column"]) + "); replace it with columns that identify one conversion")


def _kind_checks(kind: Kind, inf: Inference) -> None:
    for path in ("event_name", "event_time"):
        if path not in inf.mapping:
            inf.mapping[path] = f"EDIT_ME_{path}_column"
            inf.warnings.append(f"no column found for {path}: set mapping.{path} by hand")
    if kind == "app":
        if "app_data.advertiser_tracking_enabled" not in inf.mapping:
            inf.warnings.append("app events need app_data.advertiser_tracking_enabled (0/1): no column found")
        ext = inf.mapping.get("app_data.extinfo")
        if not ext or ext[0] is None or ext[4] is None:
            inf.warnings.append("app events need app_data.extinfo with slot 0 (a2/i2) and slot 4 (OS version): "
                                "map 16 columns under mapping.app_data.extinfo")
    if not any(p.startswith("user_data.") for p in inf.mapping):
        inf.warnings.append("no customer information column found: Meta rejects events without user_data")


# ---------------------------------------------------------------------------------------------- writing

def pipeline_stem(path: Path) -> str:
    """`<stem>` of the written files: the folder above `dt=` for `.../<name>/dt=D/part-N.x`, else the file stem."""
    parts = path.parts
    if _PART_FILE.match(path.name):
        for i in range(len(parts) - 2, 0, -1):
            if parts[i].startswith("dt="):
                return _pipeline_name(parts[i - 1])
    return _pipeline_name(_DATE_IN_NAME.sub("", path.stem))


def _pipeline_name(text: str) -> str:
    name = re.sub(r"_+", "_", re.sub(r"[^a-z0-9]+", "_", text.lower())).strip("_")
    if not name or not name[0].isalpha():
        name = f"p_{name}".rstrip("_")
    return name[:63]


def source_template(sample: Path, yaml_dir: Path) -> tuple[str, bool]:
    """(source.path relative to the YAML folder, whether it was derived from a dt=YYYY-MM-DD / dated path)."""
    rel = Path(os.path.relpath(sample.resolve(), yaml_dir.resolve())).as_posix()
    parts = rel.split("/")
    dated = False
    for i, part in enumerate(parts[:-1]):
        if re.fullmatch(r"dt=\d{4}-\d{2}-\d{2}", part):
            parts[i] = "dt={date}"
            dated = True
    name = parts[-1]
    if dated and _PART_FILE.match(name):
        parts[-1] = "part-*" + "".join(Path(name).suffixes)
    elif _DATE_IN_NAME.search(name):
        parts[-1] = _DATE_IN_NAME.sub("{date}", name)
        dated = True
    if not dated:
        parts[-1:] = ["dt={date}", "*" + Path(name).suffix]
    return "/".join(parts), dated


def _q(value: Any) -> str:
    """A YAML scalar (JSON is valid YAML; `off`/`yes`/`null`-like strings stay strings)."""
    return json.dumps(value, ensure_ascii=False)


def render_pipeline(inf: Inference, *, name: str, kind: Kind, source_path: str, dated: bool, fmt: str,
                    contract: str, dataset_id: str, sample_name: str, delimiter: str = ",") -> str:
    """The pipeline YAML text, with comments saying what to review."""
    action_source = "app" if kind == "app" else "physical_store"
    lines = [
        f"# Written by `capi-pipeline init` from {sample_name} ({dt.date.today().isoformat()}).",
        "# Review it before the first run: every mapping line says how it was found; EDIT_ME marks what",
        "# could not be guessed. Check with `capi-pipeline validate THIS.yaml --date YYYY-MM-DD`, then",
        "# `capi-pipeline check THIS.yaml --test-event-code TEST123`.",
        "version: 1",
        f"name: {_q(name)}",
        'schedule: "@daily"',
        "source:",
    ]
    if dated:
        lines.append(f"  path: {_q(source_path)}   # relative to this file; {{date}} = YYYY-MM-DD")
    else:
        lines.append(f"  path: {_q(source_path)}   # EDIT: where one day's files are; {{date}} = YYYY-MM-DD "
                     "(the sample's path had no date in it)")
    lines += [
        f"  format: {fmt}",
        *([f"  delimiter: {_q(delimiter)}   # found in the sample"] if delimiter != "," else []),
        "  batch_rows: 50000",
        f"contract: {_q(contract)}   # starter contract written next to this file: tighten it",
        "destination:",
        f"  dataset_id: {_q(dataset_id)}",
        "  api_version: v25.0",
        "  endpoint: https://graph.facebook.com",
        "  token_env: META_CAPI_ACCESS_TOKEN   # the access token is read from this environment variable",
        "  connection_id: meta_capi           # Airflow connection holding the token",
        "  test_event_code: null",
        "mapping:",
    ]
    for path in sorted(inf.mapping, key=_mapping_order):
        spec = inf.mapping[path]
        cols = spec if isinstance(spec, list) else [spec.get("column")] if isinstance(spec, dict) else [spec]
        hows = sorted({inf.how.get(c, "") for c in cols if c} - {""})
        comment = f"   # {'; '.join(hows)}" if hows else ""
        if isinstance(spec, dict):
            text = "{" + ", ".join(f"{k}: {_q(v)}" for k, v in spec.items()) + "}"
        elif isinstance(spec, list):
            text = "[" + ", ".join("null" if c is None else _q(c) for c in spec) + "]"
        else:
            text = _q(spec)
        lines.append(f"  {path}: {text}{comment}")
    ev = ("{column: " + _q(inf.event_id["column"]) + "}" if "column" in inf.event_id
          else "{keys: [" + ", ".join(_q(k) for k in inf.event_id["keys"]) + "]}")
    defaults = [f"action_source: {action_source}"]
    if "custom_data.value" in inf.mapping and "custom_data.currency" not in inf.mapping:
        defaults.append("currency: USD")
    prehashed = "[" + ", ".join(_q(c) for c in inf.prehashed) + "]"
    lines += [
        f"event_time: {{unit: {inf.event_time_unit}, timezone: UTC}}   "
        "# EDIT timezone: naive timestamps are read in it (an IANA name)",
        f"event_id: {ev}   # stable ids: Meta deduplicates on event_name + event_id",
        "defaults: {" + ", ".join(defaults) + "}   # used where the mapped column is empty or absent",
        f"user_data: {{hash: true, prehashed: {prehashed}, default_country: US, dob_order: mdy}}"
        "   # EDIT default_country / dob_order",
        'ldu: {policy: "off"}   # Limited Data Use: off | all | by_state (needs user_data.st) | consent',
        "batching: {size: 1000, concurrency: 4}",
        "rules: {max_age_days: 7, physical_store_max_age_days: 62}",
        "ledger: state/ledger.sqlite",
        "output: out",
    ]
    return "\n".join(lines) + "\n"


def _mapping_order(path: str) -> tuple[int, str]:
    order = ("event_name", "event_time", "event_id", "action_source", "user_data.", "custom_data.", "app_data.")
    for i, prefix in enumerate(order):
        if path.startswith(prefix):
            return i, path
    return len(order), path


_PHYSICAL = {"string": "string", "integer": "bigint", "number": "double", "boolean": "boolean",
             "timestamp": "timestamp", "date": "date"}


def render_contract(inf: Inference, columns: list[str], *, name: str, physical_name: str) -> str:
    """A starter ODCS v3 contract: every column, its logical type, PII classification. Names and types only."""
    targets = {}
    for path, spec in inf.mapping.items():
        cols = spec if isinstance(spec, list) else [spec.get("column")] if isinstance(spec, dict) else [spec]
        for c in cols:
            if c:
                targets[c] = path
    for c in inf.event_id.get("keys", []) + ([inf.event_id["column"]] if "column" in inf.event_id else []):
        targets.setdefault(c, "event_id")
    lines = [
        "# Starter contract written by `capi-pipeline init`: column names and types from the sample, PII tagged.",
        "# Tighten it: set required: true where a column must be filled, add patterns, ranges and quality rules",
        "# (see data_contracts/*.odcs.yaml in capi-pipeline for examples).",
        "apiVersion: v3.0.2",
        "kind: DataContract",
        f"id: {_q('urn:capi-pipeline:contract:' + name)}",
        f"name: {_q(name)}",
        "version: 0.1.0",
        "status: draft",
        "description:",
        f"  purpose: {_q('Conversion events of ' + name + ' sent to Meta through the Conversions API.')}",
        "schema:",
        f"  - name: {_q(name)}",
        f"    physicalName: {_q(physical_name)}",
        "    physicalType: table",
        "    logicalType: object",
        "    properties:",
    ]
    for col in columns:
        logical = inf.logical_types.get(col, "string")
        target = targets.get(col)
        key = target.split(".", 1)[1] if target and target.startswith("user_data.") else None
        classification, tags = ("restricted", "[pii]") if key in _PII_KEYS else ("internal", "[]")
        desc = f"maps to {target}" if target else "not sent to Meta"
        if col in inf.prehashed:
            desc += " (already SHA-256 hashed)"
        lines += [
            f"      - name: {_q(col)}",
            f"        logicalType: {logical}",
            f"        physicalType: {_PHYSICAL.get(logical, 'string')}",
            "        required: false",
            "        unique: false",
            f"        classification: {classification}",
            f"        tags: {tags}",
            f"        description: {_q(desc)}",
        ]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class InitResult:
    pipeline_path: Path
    contract_path: Path
    inference: Inference
    rows_read: int


def init(sample: Path, *, kind: Kind, dataset_id: str, out_dir: Path, force: bool = False,
         rows: int = SAMPLE_ROWS) -> InitResult:
    """Read the sample, infer the mapping, write `<stem>.pipeline.yaml` and `<stem>.odcs.yaml`, load them back."""
    from capi_pipeline.config import load_pipeline

    if not sample.is_file():
        raise ConfigurationError(f"{sample}: no such file")
    if not re.fullmatch(r"\d{1,20}", dataset_id):
        raise ConfigurationError(f"--dataset-id {dataset_id!r}: must be the numeric dataset (pixel) id")
    frame, logical = read_sample(sample, rows)
    if sample.suffix.lower() == ".csv" and (at := header_like_data(frame.columns)) is not None:
        # its "names" are a customer's values: nothing of them is printed or written into the YAML
        raise InputError(f"{sample}: the first line looks like data, not a header (column {at} reads as an "
                         "e-mail, a phone number, an IP address, a time or a number): export the file with its "
                         "header row")
    inf = infer(frame, kind, logical)
    stem = pipeline_stem(sample)
    out_dir.mkdir(parents=True, exist_ok=True)
    pipeline_path = out_dir / f"{stem}.pipeline.yaml"
    contract_path = out_dir / f"{stem}.odcs.yaml"
    for p in (pipeline_path, contract_path):
        if p.exists() and not force:
            raise ConfigurationError(f"{p}: already exists (use --force to overwrite)")
    source_path, dated = source_template(sample, out_dir)
    fmt = {".parquet": "parquet", ".csv": "csv"}.get(sample.suffix.lower(), "jsonl")
    contract_path.write_text(render_contract(inf, [str(c) for c in frame.columns], name=stem,
                                             physical_name=source_path), encoding="utf-8")
    pipeline_path.write_text(render_pipeline(inf, name=stem, kind=kind, source_path=source_path, dated=dated,
                                             fmt=fmt, contract=contract_path.name, dataset_id=dataset_id,
                                             sample_name=sample.name,
                                             delimiter=csv_delimiter(sample) if fmt == "csv" else ","),
                             encoding="utf-8")
    load_pipeline(pipeline_path)  # what we wrote must be a valid pipeline: fail here, not on the first run
    _check_contract(contract_path)
    return InitResult(pipeline_path=pipeline_path, contract_path=contract_path, inference=inf, rows_read=len(frame))


def _check_contract(path: Path) -> None:
    try:
        from capi_pipeline.contracts import load_contract
    except ImportError:  # the contracts module is optional for init
        return
    load_contract(path)


# ---------------------------------------------------------------------------------------------- check

def build_check_event(cfg: Any, *, now: int) -> dict[str, Any]:
    """One synthetic event that passes Meta's rules for this pipeline's kind (no customer data in it)."""
    source = cfg.defaults.get("action_source")
    if not source:
        source = "app" if any(p.startswith("app_data.") for p in cfg.mapping) else "physical_store"
    event: dict[str, Any] = {
        "event_name": CHECK_EVENT_NAME,
        "event_time": int(now),
        "event_id": f"capi-pipeline-check-{int(now)}",
        "action_source": source,
        "user_data": {"em": [hashlib.sha256(CHECK_EMAIL.encode()).hexdigest()]},
    }
    if source == "website":
        event["event_source_url"] = "https://example.com/capi-pipeline-check"
        event["user_data"]["client_user_agent"] = "capi-pipeline-check"
    if source == "app":
        extinfo = ["a2", "com.example.capipipeline", "1.0", "1.0", "14", "capi-pipeline-check", "en_US", "UTC",
                   "", "", "", "", "", "", "", ""]
        event["app_data"] = {"advertiser_tracking_enabled": 0, "application_tracking_enabled": 0,
                             "extinfo": extinfo}
    return event


def add_init_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = ("Read a sample export (first ~1000 rows of a .parquet, .csv or .jsonl file), map its "
                          "columns to Conversions API fields by name and content, and write DIR/<stem>.pipeline.yaml "
                          "and a starter contract DIR/<stem>.odcs.yaml. Prints the columns it could not map.")
    parser.add_argument("file", type=Path, metavar="FILE")
    parser.add_argument("--kind", choices=("offline", "app"), required=True,
                        help="offline (store sales, leads) or app events")
    parser.add_argument("--dataset-id", required=True, help="the Meta dataset (pixel) id to send to")
    parser.add_argument("--out", type=Path, default=Path("."), help="folder for the two files (default: here)")
    parser.add_argument("--force", action="store_true", help="overwrite existing files")


def cmd_init(args: argparse.Namespace) -> int:
    """`capi-pipeline init`: 0 written (warnings printed); configuration/input errors raise (exit 2)."""
    result = init(args.file, kind=args.kind, dataset_id=str(args.dataset_id), out_dir=args.out,
                  force=getattr(args, "force", False))
    inf = result.inference
    print(f"read {result.rows_read} rows of {args.file.name}")
    print(f"pipeline: {result.pipeline_path}")
    print(f"contract: {result.contract_path}")
    print("mapped:")
    for path in sorted(inf.mapping, key=_mapping_order):
        spec = inf.mapping[path]
        cols = spec if isinstance(spec, list) else [spec.get("column")] if isinstance(spec, dict) else [spec]
        shown = ", ".join("-" if c is None else c for c in cols)
        print(f"  {path:<40} <- {shown}")
    if "column" in inf.event_id:
        print(f"  {'event_id':<40} <- {inf.event_id['column']}")
    else:
        print(f"  {'event_id':<40} <- keys {', '.join(inf.event_id['keys'])}")
    if inf.prehashed:
        print("declared pre-hashed: " + ", ".join(inf.prehashed))
    if inf.unmapped:
        print("not mapped:")
        for col, why in inf.unmapped.items():
            print(f"  {col}: {why}")
    for w in inf.warnings:
        print(f"warning: {w}")
    return 0


def add_check_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = ("Send ONE synthetic test event (hashed capi-pipeline-check@example.com, event "
                          f"{CHECK_EVENT_NAME}) with a test_event_code to each destination and print Meta's answer. "
                          "Test events are not dropped by Meta: they show in Events Manager > Test Events.")
    parser.add_argument("pipeline", type=Path, metavar="PIPELINE.yaml")
    parser.add_argument("--test-event-code", required=True, metavar="CODE",
                        help="from Events Manager > Test Events")
    parser.add_argument("--endpoint", help="Graph API base URL (overrides the YAML), e.g. http://127.0.0.1:8765")


def cmd_check(args: argparse.Namespace) -> int:
    """`capi-pipeline check`: 0 every destination took the event, 1 one refused it, 2 configuration error."""
    from capi_pipeline import __version__
    from capi_pipeline.client import CapiClient, ClientSettings, make_session
    from capi_pipeline.config import load_pipeline
    from capi_pipeline.pipeline import resolve_token

    cfg = load_pipeline(args.pipeline)
    if getattr(args, "endpoint", None):
        cfg = cfg.with_endpoint(args.endpoint)
    tokens = {d.dataset_id: resolve_token(d) for d in cfg.destinations}  # all missing tokens fail before sending
    event = build_check_event(cfg, now=int(time.time()))
    code = 0
    for dest in cfg.destinations:
        session = make_session(1)
        try:
            client = CapiClient(session, ClientSettings(
                endpoint=dest.endpoint, api_version=dest.api_version, dataset_id=dest.dataset_id,
                token=tokens[dest.dataset_id], timeout_s=cfg.batching.timeout_s,
                test_event_code=args.test_event_code,
                partner_agent=dest.partner_agent or f"capi-pipeline-{__version__}",
                upload_tag=dest.upload_tag, namespace_id=dest.namespace_id))
            result = client.send([event], batch_id="check")
            print(f"dataset {dest.dataset_id}: OK, events_received {result.events_received}, "
                  f"fbtrace_id {result.fbtrace_id or '-'} (action_source {event['action_source']}, "
                  f"test_event_code {args.test_event_code})")
        except DeliveryError as exc:
            code = 1
            kind = type(exc).__name__
            print(f"dataset {dest.dataset_id}: FAILED ({kind}) {exc}"
                  + (f" fbtrace_id {exc.fbtrace_id}" if exc.fbtrace_id and exc.fbtrace_id not in str(exc) else ""))
            if exc.code == 190:
                print(f"  the access token in ${dest.token_env} is missing, expired or wrong")
            elif exc.code == 10 or (exc.code is not None and 200 <= exc.code < 300):
                print(f"  the token has no permission on dataset {dest.dataset_id}")
        finally:
            session.close()
    return code

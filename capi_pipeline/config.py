"""Pipeline definitions: one YAML file -> one frozen `PipelineConfig`, resolved once at the edge.

The YAML shape is documented in README.md ("The pipeline YAML"). Relative paths are resolved against the
folder of the YAML file. Secrets never live here: the destination names where the token comes from
(`token_env`, `connection_id`), and the edge (CLI or DAG task) resolves it.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from capi_pipeline.errors import ConfigurationError

__all__ = [
    "BatchingConfig",
    "DestinationConfig",
    "EventIdConfig",
    "EventTimeConfig",
    "FieldSource",
    "LduConfig",
    "PipelineConfig",
    "RulesConfig",
    "SourceConfig",
    "UserDataConfig",
    "load_pipeline",
    "parse_pipeline",
    "SERVER_EVENT_FIELDS",
    "USER_DATA_KEYS",
    "APP_DATA_KEYS",
]

SERVER_EVENT_FIELDS = frozenset({
    "event_name", "event_time", "event_id", "action_source", "event_source_url", "opt_out",
    "referrer_url", "original_event_data", "customer_segmentation", "messaging_channel",
    "data_processing_options", "data_processing_options_country", "data_processing_options_state",
})
USER_DATA_KEYS = frozenset({
    "em", "ph", "fn", "ln", "ge", "db", "ct", "st", "zp", "country", "external_id",
    "client_ip_address", "client_user_agent", "fbc", "fbp", "subscription_id", "fb_login_id", "lead_id",
    "anon_id", "madid", "page_id", "page_scoped_user_id", "ctwa_clid", "ig_account_id", "ig_sid",
    "partner_id", "partner_name",
})
APP_DATA_KEYS = frozenset({
    "advertiser_tracking_enabled", "application_tracking_enabled", "extinfo", "campaign_ids",
    "install_referrer", "installer_package", "url_schemes", "vendor_id", "windows_attribution_id",
})
ACTION_SOURCES = frozenset({
    "email", "website", "app", "phone_call", "chat", "physical_store", "system_generated",
    "business_messaging", "other",
})
# CAPI fields whose source is a timestamp or a list of columns with positional meaning
_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
_DEFAULT_ENDPOINT = "https://graph.facebook.com"
_ENDPOINT = re.compile(r"^https?://[^/?#\s]+(/[^?#\s]*)?$")


@dataclass(frozen=True)
class FieldSource:
    """Where one CAPI field comes from: source columns, or a constant."""

    columns: tuple[str, ...] = ()
    const: Any = None
    parse: Literal["json"] | None = None
    prehashed: bool = False
    many: bool = False  # the YAML gave a list of columns: an array (user_data) or positional slots (extinfo)


@dataclass(frozen=True)
class SourceConfig:
    path: str  # template relative to the YAML folder, `{date}` = YYYY-MM-DD
    format: Literal["parquet", "csv", "jsonl"] = "parquet"
    batch_rows: int = 100_000
    max_files: int = 10_000
    delimiter: str = ","  # CSV only: "," or ";" (European exports), "\t" or "|"


@dataclass(frozen=True)
class DestinationConfig:
    dataset_id: str
    api_version: str = "v25.0"
    endpoint: str = _DEFAULT_ENDPOINT
    token_env: str = "META_CAPI_ACCESS_TOKEN"
    connection_id: str = "meta_capi"
    test_event_code: str | None = None
    partner_agent: str | None = None
    upload_tag: str | None = None
    namespace_id: str | None = None


@dataclass(frozen=True)
class EventTimeConfig:
    unit: Literal["auto", "s", "ms", "iso"] = "auto"
    timezone: str = "UTC"


@dataclass(frozen=True)
class EventIdConfig:
    column: str | None = None
    keys: tuple[str, ...] = ()


@dataclass(frozen=True)
class UserDataConfig:
    hash: bool = True
    prehashed: tuple[str, ...] = ()  # source columns declared already SHA-256 hashed
    default_country: str | None = "US"
    dob_order: Literal["mdy", "dmy"] = "mdy"
    hash_external_id: bool = True


@dataclass(frozen=True)
class LduConfig:
    policy: Literal["off", "all", "by_state", "consent"] = "off"
    consent_column: str | None = None


@dataclass(frozen=True)
class BatchingConfig:
    size: int = 1000
    concurrency: int = 4
    max_attempts: int = 8
    max_retry_seconds: float = 600.0
    timeout_s: float = 30.0


@dataclass(frozen=True)
class RulesConfig:
    max_age_days: int = 7
    physical_store_max_age_days: int = 62
    future_tolerance_s: int = 600


@dataclass(frozen=True)
class PipelineConfig:
    path: Path
    name: str
    source: SourceConfig
    contract: str
    destinations: tuple[DestinationConfig, ...]
    mapping: dict[str, FieldSource]
    schedule: str = "@daily"
    description: str = ""
    event_time: EventTimeConfig = field(default_factory=EventTimeConfig)
    event_id: EventIdConfig = field(default_factory=EventIdConfig)
    defaults: dict[str, Any] = field(default_factory=dict)
    user_data: UserDataConfig = field(default_factory=UserDataConfig)
    ldu: LduConfig = field(default_factory=LduConfig)
    batching: BatchingConfig = field(default_factory=BatchingConfig)
    rules: RulesConfig = field(default_factory=RulesConfig)
    ledger: str = "state/ledger.sqlite"
    output: str = "out"

    @property
    def base_dir(self) -> Path:
        return self.path.parent

    def resolve(self, relative: str) -> Path:
        """A path from the YAML, relative to the YAML's folder."""
        p = Path(relative).expanduser()
        return p if p.is_absolute() else self.base_dir / p

    def partition_glob(self, date: str) -> Path:
        return self.resolve(self.source.path.replace("{date}", date))

    def output_dir(self, date: str, override: Path | None = None) -> Path:
        """Where one run's report and quarantine go: `<output>/<name>/<date>/`, or `override` as given."""
        return override if override is not None else self.resolve(self.output) / self.name / date

    def ledger_location(self) -> str:
        """A SQLAlchemy URL as given, else a SQLite file path resolved against the YAML folder."""
        return self.ledger if "://" in self.ledger else str(self.resolve(self.ledger))

    def with_endpoint(self, endpoint: str) -> PipelineConfig:
        """Every destination sent to `endpoint` (`--endpoint`, a Connection's extra): checked as the YAML's is."""
        endpoint = endpoint.strip().rstrip("/")
        if not _ENDPOINT.match(endpoint):
            raise ConfigurationError("endpoint override: must be an http(s) URL without query string "
                                     "(a token goes in the Connection or token_env, never in a URL)")
        dests = tuple(dataclasses.replace(d, endpoint=endpoint) for d in self.destinations)
        return dataclasses.replace(self, destinations=dests)

    def with_test_event_code(self, code: str) -> PipelineConfig:
        dests = tuple(dataclasses.replace(d, test_event_code=code) for d in self.destinations)
        return dataclasses.replace(self, destinations=dests)


def load_pipeline(path: str | Path) -> PipelineConfig:
    """Read and validate a pipeline YAML; errors name the file and the key."""
    p = Path(path).expanduser().resolve()
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigurationError(f"{path}: cannot read pipeline file ({exc.strerror})") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigurationError(f"{p}:{where} not valid YAML") from None
    return parse_pipeline(raw, p)


def parse_pipeline(raw: Any, path: Path) -> PipelineConfig:
    """Validate an already-parsed YAML document."""
    r = _Reader(path)
    doc = r.mapping(raw, "")
    r.known(doc, "", {
        "version", "name", "description", "schedule", "source", "contract", "destination", "destinations",
        "mapping", "event_time", "event_id", "defaults", "user_data", "ldu", "batching", "rules", "ledger",
        "output",
    })
    version = doc.get("version", 1)
    if version != 1:
        r.fail("version", f"unsupported version {version!r}; this release reads version 1")
    name = r.string(doc, "name", required=True)
    if not _NAME_RE.match(name):
        r.fail("name", "must be lowercase letters, digits and underscores, starting with a letter")

    src = r.mapping(doc.get("source"), "source", required=True)
    r.known(src, "source", {"path", "format", "batch_rows", "max_files", "delimiter"})
    source = SourceConfig(
        path=r.string(src, "path", required=True, prefix="source"),
        format=r.choice(src, "format", ("parquet", "csv", "jsonl"), "parquet", prefix="source"),
        batch_rows=r.integer(src, "batch_rows", 100_000, low=1, prefix="source"),
        max_files=r.integer(src, "max_files", 10_000, low=1, prefix="source"),
        delimiter=src.get("delimiter", ","),
    )
    if source.delimiter not in (",", ";", "\t", "|"):
        r.fail("source.delimiter", 'must be one of ",", ";", "\\t" (tab) or "|"')
    if "{date}" not in source.path:
        r.fail("source.path", "must contain {date} so each run reads one daily partition")

    destinations = _destinations(r, doc)
    mapping = _mapping(r, doc)

    et = r.mapping(doc.get("event_time", {}), "event_time")
    r.known(et, "event_time", {"unit", "timezone"})
    event_time = EventTimeConfig(
        unit=r.choice(et, "unit", ("auto", "s", "ms", "iso"), "auto", prefix="event_time"),
        timezone=r.string(et, "timezone", prefix="event_time") or "UTC",
    )
    _check_timezone(r, event_time.timezone)

    eid = r.mapping(doc.get("event_id", {}), "event_id")
    r.known(eid, "event_id", {"column", "keys"})
    event_id = EventIdConfig(column=r.string(eid, "column", prefix="event_id"),
                             keys=tuple(r.string_list(eid, "keys", prefix="event_id")))
    if event_id.column and event_id.keys:
        r.fail("event_id", "give either column or keys, not both")
    if not event_id.column and not event_id.keys and "event_id" not in mapping:
        r.fail("event_id", "name the event id column, or key columns to derive a stable id from "
                           "(for example keys: [order_id]); ids are never made from the clock")

    defaults = r.mapping(doc.get("defaults", {}), "defaults")
    r.known(defaults, "defaults", {"action_source", "currency", "event_name"})
    if "action_source" in defaults and defaults["action_source"] not in ACTION_SOURCES:
        r.fail("defaults.action_source", f"must be one of {', '.join(sorted(ACTION_SOURCES))}")
    if "action_source" not in mapping and "action_source" not in defaults:
        r.fail("defaults.action_source", "required when mapping has no action_source")
    if "event_name" not in mapping and "event_name" not in defaults:
        r.fail("mapping.event_name", "required (a column, or defaults.event_name)")
    if "event_time" not in mapping:
        r.fail("mapping.event_time", "required: the column holding the time of the real action")

    ud = r.mapping(doc.get("user_data", {}), "user_data")
    r.known(ud, "user_data", {"hash", "prehashed", "default_country", "dob_order", "hash_external_id"})
    # absent: US (UserDataConfig's default); `none` or null: rows without a country get none
    country = r.string(ud, "default_country", prefix="user_data") if "default_country" in ud else "US"
    if country is not None and country.lower() == "none":
        country = None
    if country is not None and not re.fullmatch(r"[A-Za-z]{2}", country):
        r.fail("user_data.default_country", "must be an ISO-3166 alpha-2 code such as US")
    user_data = UserDataConfig(
        hash=r.boolean(ud, "hash", True, prefix="user_data"),
        prehashed=tuple(r.string_list(ud, "prehashed", prefix="user_data")),
        default_country=country.upper() if country else None,
        dob_order=r.choice(ud, "dob_order", ("mdy", "dmy"), "mdy", prefix="user_data"),
        hash_external_id=r.boolean(ud, "hash_external_id", True, prefix="user_data"),
    )
    ldu_raw = dict(r.mapping(doc.get("ldu", {}), "ldu"))
    r.known(ldu_raw, "ldu", {"policy", "consent_column"})
    if ldu_raw.get("policy") is False:  # YAML 1.1 reads a bare `off` as false
        ldu_raw["policy"] = "off"
    ldu = LduConfig(
        policy=r.choice(ldu_raw, "policy", ("off", "all", "by_state", "consent"), "off", prefix="ldu"),
        consent_column=r.string(ldu_raw, "consent_column", prefix="ldu"),
    )
    if ldu.policy == "consent" and not ldu.consent_column:
        r.fail("ldu.consent_column", "required when policy is consent")
    if ldu.policy == "by_state" and "user_data.st" not in mapping:
        r.fail("ldu.policy", "by_state needs user_data.st in the mapping")

    b = r.mapping(doc.get("batching", {}), "batching")
    r.known(b, "batching", {"size", "concurrency", "max_attempts", "max_retry_seconds", "timeout_s"})
    batching = BatchingConfig(
        size=r.integer(b, "size", 1000, low=1, high=1000, prefix="batching"),
        concurrency=r.integer(b, "concurrency", 4, low=1, high=64, prefix="batching"),
        max_attempts=r.integer(b, "max_attempts", 8, low=1, high=100, prefix="batching"),
        max_retry_seconds=float(r.number(b, "max_retry_seconds", 600.0, prefix="batching")),
        timeout_s=float(r.number(b, "timeout_s", 30.0, prefix="batching")),
    )
    ru = r.mapping(doc.get("rules", {}), "rules")
    r.known(ru, "rules", {"max_age_days", "physical_store_max_age_days", "future_tolerance_s"})
    rules = RulesConfig(
        # capi.md §1-2: an event older than 7 days (62 for physical_store, our reading) fails its whole request;
        # a future one is rejected (an hour covers any clock skew)
        max_age_days=r.integer(ru, "max_age_days", 7, low=1, high=7, prefix="rules"),
        physical_store_max_age_days=r.integer(ru, "physical_store_max_age_days", 62, low=1, high=62, prefix="rules"),
        future_tolerance_s=r.integer(ru, "future_tolerance_s", 600, low=0, high=3600, prefix="rules"),
    )
    return PipelineConfig(
        path=path,
        name=name,
        description=r.string(doc, "description") or "",
        schedule=r.string(doc, "schedule") or "@daily",
        source=source,
        contract=r.string(doc, "contract", required=True),
        destinations=destinations,
        mapping=mapping,
        event_time=event_time,
        event_id=event_id,
        defaults=dict(defaults),
        user_data=user_data,
        ldu=ldu,
        batching=batching,
        rules=rules,
        ledger=r.string(doc, "ledger") or "state/ledger.sqlite",
        output=r.string(doc, "output") or "out",
    )


def _destinations(r: _Reader, doc: dict) -> tuple[DestinationConfig, ...]:
    if "destination" in doc and "destinations" in doc:
        r.fail("destinations", "give destination or destinations, not both")
    if "destinations" in doc:
        items = doc["destinations"]
        if not isinstance(items, list) or not items:
            r.fail("destinations", "must be a non-empty list")
        raw_list = [(r.mapping(d, f"destinations[{i}]"), f"destinations[{i}]") for i, d in enumerate(items)]
    else:
        raw_list = [(r.mapping(doc.get("destination"), "destination", required=True), "destination")]
    out = []
    keys = {"dataset_id", "api_version", "endpoint", "token_env", "connection_id", "test_event_code",
            "partner_agent", "upload_tag", "namespace_id"}
    for d, where in raw_list:
        r.known(d, where, keys)
        dataset = d.get("dataset_id")
        if isinstance(dataset, int):
            dataset = str(dataset)
        if not isinstance(dataset, str) or not dataset.isdigit():
            r.fail(f"{where}.dataset_id", "must be the numeric dataset (pixel) id, quoted")
        version = r.string(d, "api_version", prefix=where) or "v25.0"
        if not re.fullmatch(r"v\d+\.\d+", version):
            r.fail(f"{where}.api_version", "must look like v25.0")
        endpoint = (r.string(d, "endpoint", prefix=where) or _DEFAULT_ENDPOINT).rstrip("/")
        if not _ENDPOINT.match(endpoint):
            r.fail(f"{where}.endpoint", "must be an http(s) URL without query string")
        out.append(DestinationConfig(
            dataset_id=dataset, api_version=version, endpoint=endpoint,
            token_env=r.string(d, "token_env", prefix=where) or "META_CAPI_ACCESS_TOKEN",
            connection_id=r.string(d, "connection_id", prefix=where) or "meta_capi",
            test_event_code=r.string(d, "test_event_code", prefix=where),
            partner_agent=r.string(d, "partner_agent", prefix=where),
            upload_tag=r.string(d, "upload_tag", prefix=where),
            namespace_id=r.string(d, "namespace_id", prefix=where),
        ))
    ids = [d.dataset_id for d in out]
    if len(set(ids)) != len(ids):
        r.fail("destinations", "each dataset_id may appear once")
    return tuple(out)


def _mapping(r: _Reader, doc: dict) -> dict[str, FieldSource]:
    raw = r.mapping(doc.get("mapping"), "mapping", required=True)
    prehashed_cols = set(r.string_list(r.mapping(doc.get("user_data", {}), "user_data"), "prehashed",
                                       prefix="user_data"))
    out: dict[str, FieldSource] = {}
    for path, spec in raw.items():
        where = f"mapping.{path}"
        if not isinstance(path, str):
            r.fail("mapping", f"keys must be CAPI field paths, got {path!r}")
        head, _, rest = path.partition(".")
        if head == "user_data":
            if rest not in USER_DATA_KEYS:
                r.fail(where, f"unknown user_data key {rest!r}")
        elif head == "app_data":
            if rest not in APP_DATA_KEYS:
                r.fail(where, f"unknown app_data key {rest!r}")
        elif head == "custom_data":
            if not rest or not all(_NAME_RE.match(part) for part in rest.split(".")):
                r.fail(where, "custom_data keys are lowercase names, nested with dots")
        elif path.startswith("data_processing_options"):
            # mapped, they would be left out or overwritten by the policy: rows the warehouse flags for LDU
            # must never go out without it
            r.fail(where, "Limited Data Use fields come from `ldu` (policy off | all | by_state | consent; "
                          "consent takes a per-row column: ldu.consent_column), not from the mapping")
        elif path not in SERVER_EVENT_FIELDS or rest:
            r.fail(where, "unknown server event field (see README: mapping)")
        out[path] = _field_source(r, where, spec, prehashed_cols)
    if "app_data.extinfo" in out:
        ext = out["app_data.extinfo"]
        if ext.const is None and len(ext.columns) != 16:
            r.fail("mapping.app_data.extinfo", "must list exactly 16 columns (use null for an empty slot)")
    return out


def _field_source(r: _Reader, where: str, spec: Any, prehashed_cols: set[str]) -> FieldSource:
    if isinstance(spec, str):
        return FieldSource(columns=(spec,), prehashed=spec in prehashed_cols)
    if isinstance(spec, list):
        cols = tuple("" if c is None else c for c in spec)
        if not cols or not all(isinstance(c, str) for c in cols):
            r.fail(where, "a list must hold column names")
        return FieldSource(columns=cols, many=True,
                           prehashed=bool(cols) and all(c in prehashed_cols for c in cols if c))
    if isinstance(spec, dict):
        r.known(spec, where, {"column", "columns", "const", "parse", "prehashed"})
        if "const" in spec:
            return FieldSource(const=spec["const"])
        if "columns" in spec:
            cols = tuple(spec["columns"])
            many = True
        else:
            col = spec.get("column")
            if not isinstance(col, str):
                r.fail(where, "needs column, columns or const")
            cols, many = (col,), False
        parse = spec.get("parse")
        if parse not in (None, "json"):
            r.fail(f"{where}.parse", "only json is supported")
        pre = bool(spec.get("prehashed", False)) or all(c in prehashed_cols for c in cols)
        return FieldSource(columns=cols, parse=parse, prehashed=pre, many=many)
    r.fail(where, "must be a column name, a list of columns, or {column|const: ...}")
    raise AssertionError  # unreachable


def _check_timezone(r: _Reader, tz: str) -> None:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        r.fail("event_time.timezone", f"unknown time zone {tz!r} (use an IANA name like America/New_York)")


class _Reader:
    """Typed access to the YAML tree; every failure names the file and the dotted key."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, key: str, message: str) -> None:
        raise ConfigurationError(f"{self.path}: {key}: {message}")

    def mapping(self, value: Any, key: str, required: bool = False) -> dict:
        if value is None:
            if required:
                self.fail(key or "(document)", "is required")
            return {}
        if not isinstance(value, dict):
            self.fail(key or "(document)", "must be a mapping")
        return value

    def known(self, d: dict, where: str, allowed: set[str]) -> None:
        extra = sorted(str(k) for k in d if k not in allowed)
        if extra:
            self.fail(where or "(document)", f"unknown key(s) {', '.join(extra)}; allowed: {', '.join(sorted(allowed))}")

    def _key(self, prefix: str, key: str) -> str:
        return f"{prefix}.{key}" if prefix else key

    def string(self, d: dict, key: str, required: bool = False, prefix: str = "") -> str | None:
        v = d.get(key)
        if v is None:
            if required:
                self.fail(self._key(prefix, key), "is required")
            return None
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            v = str(v)
        if not isinstance(v, str) or not v.strip():
            self.fail(self._key(prefix, key), "must be a non-empty string")
        return v.strip()

    def string_list(self, d: dict, key: str, prefix: str = "") -> list[str]:
        v = d.get(key, [])
        if v is None:
            return []
        if isinstance(v, str):
            v = [v]
        if not isinstance(v, list) or not all(isinstance(x, str) and x for x in v):
            self.fail(self._key(prefix, key), "must be a list of names")
        return list(v)

    def choice(self, d: dict, key: str, allowed: tuple[str, ...], default: str, prefix: str = "") -> Any:
        v = d.get(key, default)
        if v not in allowed:
            self.fail(self._key(prefix, key), f"must be one of {', '.join(allowed)}")
        return v

    def integer(self, d: dict, key: str, default: int, low: int | None = None, high: int | None = None,
                prefix: str = "") -> int:
        v = d.get(key, default)
        if isinstance(v, bool) or not isinstance(v, int):
            self.fail(self._key(prefix, key), "must be a whole number")
        if (low is not None and v < low) or (high is not None and v > high):
            bounds = f"{low if low is not None else '-inf'}..{high if high is not None else 'inf'}"
            self.fail(self._key(prefix, key), f"must be in {bounds}")
        return v

    def number(self, d: dict, key: str, default: float, prefix: str = "") -> float:
        v = d.get(key, default)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0:
            self.fail(self._key(prefix, key), "must be a positive number")
        return v

    def boolean(self, d: dict, key: str, default: bool, prefix: str = "") -> bool:
        v = d.get(key, default)
        if not isinstance(v, bool):
            self.fail(self._key(prefix, key), "must be true or false")
        return v

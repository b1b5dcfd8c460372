"""Meta's rules for one `/events` request body, as pure functions (capi.md §1-§5, §11).

`validate_request(body, now=...)` returns `None` (accept) or the first `Rejection` found; one bad event rejects
the whole request. Messages name the field, never a customer value. `Rejection.event_index` is for the sandbox's
own log only: Meta's error body does not say which event failed, so the server leaves it out.

Codes and subcodes. Meta confirms 100/2804003 (too old) and 100/2804050 (insufficient customer information);
the other 28040xx meanings are UNCONFIRMED, so these are the sandbox's own choices:

    100 (no subcode)  request shape: `data` missing / not a list / empty / over 1000 events, an event that is not an
                      object, event_name, event_time type, action_source, request-level param types
    100 / 2804001     user_data key format: hashed key not 64 lowercase hex, never-hash key not a string (or an
                      array), invalid client_ip_address, partner_id without partner_name (or the reverse), unknown key
    100 / 2804003     event_time older than 7 days (62 days for physical_store)
    100 / 2804004     event_time more than `future_tolerance_s` (default 600 s) in the future
    100 / 2804007     custom_data: Purchase without numeric value or ISO-4217 currency
    100 / 2804016     app events: app_data.advertiser_tracking_enabled / extinfo
    100 / 2804019     data_processing_options / _country / _state
    100 / 2804048     website events: event_source_url or user_data.client_user_agent missing
    100 / 2804050     user_data missing or empty, or only a baseline-invalid combination of keys
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Mapping, Set
from dataclasses import dataclass, replace
from typing import Any

__all__ = [
    "ACTION_SOURCES",
    "HASHED_KEYS",
    "ISO_4217",
    "LDU_STATES",
    "MAX_EVENTS",
    "NEVER_HASHED_KEYS",
    "Rejection",
    "ValidationRules",
    "validate_event",
    "validate_request",
]

MAX_EVENTS = 1000
DAY = 86_400

ACTION_SOURCES = frozenset({
    "email", "website", "app", "phone_call", "chat", "physical_store", "system_generated", "business_messaging",
    "other",
})
HASHED_KEYS = frozenset({
    "em", "ph", "fn", "ln", "ge", "db", "ct", "st", "zp", "country", "external_id",
    # legacy offline match keys: still hashed (capi.md §3, UNCONFIRMED for CAPI)
    "f5first", "f5last", "fi", "dobd", "dobm", "doby",
})
NEVER_HASHED_KEYS = frozenset({
    "client_ip_address", "client_user_agent", "fbc", "fbp", "subscription_id", "fb_login_id", "lead_id", "anon_id",
    "madid", "page_id", "page_scoped_user_id", "ctwa_clid", "ig_account_id", "ig_sid", "partner_id", "partner_name",
})
# Meta documents these two as integers; every other never-hash key must be a string.
_INT_OK_KEYS = frozenset({"fb_login_id", "lead_id"})
_PLAIN_STRING_KEYS = NEVER_HASHED_KEYS - {"client_ip_address"}  # any non-blank string is valid for these
# capi.md §3: an event whose only identifiers fit inside one of these sets is rejected.
BASELINE_INVALID = (
    frozenset({"ct", "country", "st", "zp", "ge", "client_user_agent"}),
    frozenset({"db", "client_user_agent"}),
    frozenset({"fn", "ge"}),
    frozenset({"ln", "ge"}),
)
_BASELINE_KEYS = frozenset().union(*BASELINE_INVALID)  # a key outside these makes any event identifiable
LDU_STATES = frozenset({0, *range(1000, 1015)})
REQUEST_STRING_PARAMS = ("test_event_code", "partner_agent", "upload_tag", "namespace_id", "upload_id",
                         "upload_source")

# Active ISO-4217 codes (test, fund and precious-metal codes left out).
ISO_4217 = frozenset("""
AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BRL BSD BTN BWP BYN BZD CAD CDF CHF CLP
CNY COP CRC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR
ILS INR IQD IRR ISK JMD JOD JPY KES KGS KHR KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT
MOP MRU MUR MVR MWK MXN MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR RON RSD RUB RWF SAR SBD
SCR SDG SEK SGD SHP SLE SLL SOS SRD SSP STN SVC SYP SZL THB TJS TMT TND TOP TRY TTD TWD TZS UAH UGX USD UYU UZS VES
VED VND VUV WST XAF XCD XCG XOF XPF YER ZAR ZMW ZWG
""".split())

_HEX64 = re.compile(r"[0-9a-f]{64}")
_HEX_DIGITS = b"0123456789abcdef"


def _only_hex(text: str) -> bool:
    """True when `text` is only lowercase hex digits (nearly three times faster than a regular expression here:
    the bytes' translate deletes them and leaves the rest)."""
    return text.isascii() and not text.encode().translate(None, _HEX_DIGITS)


@dataclass(frozen=True)
class Rejection:
    """Why a request was refused. `event_index`/`field` are for the sandbox's log, not for the error body."""

    code: int
    subcode: int | None
    title: str
    message: str
    field: str | None = None
    event_index: int | None = None
    http_status: int = 400


@dataclass(frozen=True)
class ValidationRules:
    """Tunable windows; defaults follow capi.md §2."""

    max_age_days: int = 7
    physical_store_max_age_days: int = 62
    future_tolerance_s: int = 600
    max_events: int = MAX_EVENTS


def _reject(code: int, subcode: int | None, title: str, message: str, field: str | None = None) -> Rejection:
    return Rejection(code=code, subcode=subcode, title=title, message=message, field=field)


def _is_mapping(value: Any) -> bool:
    """A JSON object: a dict nearly always (an ABC isinstance check costs several times a type check)."""
    return type(value) is dict or isinstance(value, Mapping)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    return _is_int(value) or (isinstance(value, float) and math.isfinite(value))


def _nonempty_str(value: Any) -> bool:
    return isinstance(value, str) and value.strip() != ""


def validate_request(body: Mapping[str, Any], *, now: float, rules: ValidationRules = ValidationRules()
                     ) -> Rejection | None:
    """Check a parsed request body (events already decoded to dicts where possible)."""
    for param in REQUEST_STRING_PARAMS:
        if param in body and body[param] is not None and not isinstance(body[param], str):
            return _reject(100, None, "Invalid parameter", f"Param {param} must be a string.", param)
    if "data" not in body or body["data"] is None:
        return _reject(100, None, "Missing parameter", "The parameter data is required.", "data")
    data = body["data"]
    if not isinstance(data, list):
        return _reject(100, None, "Invalid parameter", "Param data must be an array.", "data")
    if not data:
        return _reject(100, None, "Invalid parameter", "Param data must contain at least one event.", "data")
    if len(data) > rules.max_events:
        return _reject(100, None, "Too many events",
                       f"Param data must contain at most {rules.max_events} events per request.", "data")
    for index, event in enumerate(data):
        rejection = validate_event(event, now=now, rules=rules)
        if rejection is not None:
            return replace(rejection, event_index=index)
    return None


def validate_event(event: Any, *, now: float, rules: ValidationRules = ValidationRules()) -> Rejection | None:
    """First rule one server event breaks, or None."""
    if not _is_mapping(event):
        return _reject(100, None, "Invalid parameter", "Each element of data must be a JSON object.", "data")
    for check in (_check_event_name, _check_action_source, _check_event_time, _check_user_data,
                  _check_custom_data, _check_website, _check_app, _check_ldu):
        rejection = check(event, now, rules)
        if rejection is not None:
            return rejection
    return None


def _check_event_name(event: Mapping[str, Any], now: float, rules: ValidationRules) -> Rejection | None:
    if not _nonempty_str(event.get("event_name")):
        return _reject(100, None, "Missing event_name", "event_name is required and must be a non-empty string.",
                       "event_name")
    return None


def _check_action_source(event: Mapping[str, Any], now: float, rules: ValidationRules) -> Rejection | None:
    source = event.get("action_source")
    if source is None:
        return _reject(100, None, "Missing action_source", "action_source is required.", "action_source")
    if not isinstance(source, str) or source not in ACTION_SOURCES:  # a list or an object is not hashable
        return _reject(100, None, "Invalid action_source",
                       "action_source must be one of: " + ", ".join(sorted(ACTION_SOURCES)) + ".", "action_source")
    return None


def _check_event_time(event: Mapping[str, Any], now: float, rules: ValidationRules) -> Rejection | None:
    event_time = event.get("event_time")
    if event_time is None:
        return _reject(100, None, "Missing event_time", "event_time is required.", "event_time")
    if not _is_int(event_time):
        return _reject(100, None, "Invalid event_time", "event_time must be an integer Unix time in seconds.",
                       "event_time")
    days = rules.physical_store_max_age_days if event.get("action_source") == "physical_store" \
        else rules.max_age_days
    if event_time < now - days * DAY:
        return _reject(100, 2804003, "Event Timestamp Too Old",
                       f"event_time is more than {days} days in the past.", "event_time")
    if event_time > now + rules.future_tolerance_s:
        return _reject(100, 2804004, "Event Timestamp In The Future",
                       "event_time is in the future; send it when the action has happened.", "event_time")
    return None


def _check_user_data(event: Mapping[str, Any], now: float, rules: ValidationRules) -> Rejection | None:
    user_data = event.get("user_data")
    if user_data is None:
        return _reject(100, 2804050, "Insufficient customer information", "user_data is required.", "user_data")
    if not _is_mapping(user_data):
        return _reject(100, 2804050, "Insufficient customer information", "user_data must be an object.",
                       "user_data")
    present: Set[str]
    if _plainly_valid_keys(user_data):
        present = user_data.keys()  # every value a well-formed hash (or a list of them) or a non-blank string
    else:  # the first bad key, in order, as Meta's message names it
        for key, value in user_data.items():
            rejection = _check_user_data_key(key, value)
            if rejection is not None:
                return rejection
        present = {key for key, value in user_data.items() if value is not None and value != "" and value != []}
    if ("partner_id" in present) != ("partner_name" in present):
        return _reject(100, 2804001, "Invalid customer information parameter",
                       "user_data.partner_id and user_data.partner_name must be sent together.", "user_data.partner_id")
    if not present:
        return _reject(100, 2804050, "Insufficient customer information",
                       "user_data must contain at least one customer information parameter.", "user_data")
    if present <= _BASELINE_KEYS and any(present <= combo for combo in BASELINE_INVALID):
        return _reject(100, 2804050, "Insufficient customer information",
                       "user_data only contains a combination of parameters that cannot identify a person: "
                       + ",".join(sorted(present)) + ".", "user_data")
    return None


def _plainly_valid_keys(user_data: Mapping[str, Any]) -> bool:
    """True when every key is a hashed key with well-formed hashes or a never-hashed key with a plain string (not
    an IP address): the common case, decided with one hex check over all the hashes per event instead of one per
    value. False means "look closer" (`_check_user_data_key`), not "invalid"."""
    hashes: list[str] = []
    for key, value in user_data.items():
        if key in HASHED_KEYS:
            if type(value) is str and len(value) == 64:
                hashes.append(value)
            elif type(value) is list and value and all(type(v) is str and len(v) == 64 for v in value):
                hashes.extend(value)
            else:
                return False
        elif key not in _PLAIN_STRING_KEYS or type(value) is not str or not value.strip():
            return False
    return not hashes or _only_hex("".join(hashes))


def _check_user_data_key(key: str, value: Any) -> Rejection | None:
    if key in HASHED_KEYS and type(value) is str and len(value) == 64 and _HEX64.fullmatch(value):
        return None  # the common case first: one well-formed hash
    field = f"user_data.{key}"
    if key in HASHED_KEYS:
        values = value if isinstance(value, list) else [value]
        if not values or not all(isinstance(v, str) and _HEX64.fullmatch(v) for v in values):
            return _reject(100, 2804001, "Invalid customer information parameter",
                           f"{field} must be a SHA-256 hash (64 lowercase hex characters) or an array of them.", field)
        return None
    if key in NEVER_HASHED_KEYS:
        if isinstance(value, list):
            return _reject(100, 2804001, "Invalid customer information parameter",
                           f"{field} must be a single value, not an array.", field)
        ok = _nonempty_str(value) or (key in _INT_OK_KEYS and _is_int(value))
        if not ok:
            return _reject(100, 2804001, "Invalid customer information parameter",
                           f"{field} must be a non-empty string and must not be hashed.", field)
        if key == "client_ip_address":
            try:
                ipaddress.ip_address(value)
            except ValueError:
                return _reject(100, 2804001, "Invalid customer information parameter",
                               f"{field} must be a valid IPv4 or IPv6 address.", field)
        return None
    return _reject(100, 2804001, "Invalid customer information parameter",
                   f"{field} is not a known customer information parameter.", field)


def _check_custom_data(event: Mapping[str, Any], now: float, rules: ValidationRules) -> Rejection | None:
    custom = event.get("custom_data")
    if custom is not None and not _is_mapping(custom):
        return _reject(100, 2804007, "Invalid custom_data", "custom_data must be an object.", "custom_data")
    if event.get("event_name") != "Purchase":
        return None
    custom = custom or {}
    if not _is_number(custom.get("value")):
        return _reject(100, 2804007, "Missing value for Purchase",
                       "custom_data.value is required for Purchase events and must be a number.", "custom_data.value")
    currency = custom.get("currency")
    if not (isinstance(currency, str) and len(currency) == 3 and currency.upper() in ISO_4217):
        return _reject(100, 2804007, "Invalid currency for Purchase",
                       "custom_data.currency is required for Purchase events and must be an ISO-4217 code.",
                       "custom_data.currency")
    return None


def _check_website(event: Mapping[str, Any], now: float, rules: ValidationRules) -> Rejection | None:
    if event.get("action_source") != "website":
        return None
    if not _nonempty_str(event.get("event_source_url")):
        return _reject(100, 2804048, "Missing event_source_url",
                       "event_source_url is required for website events.", "event_source_url")
    if not _nonempty_str(event["user_data"].get("client_user_agent")):
        return _reject(100, 2804048, "Missing client_user_agent",
                       "user_data.client_user_agent is required for website events.", "user_data.client_user_agent")
    return None


def _check_app(event: Mapping[str, Any], now: float, rules: ValidationRules) -> Rejection | None:
    if event.get("action_source") != "app":
        return None
    app = event.get("app_data")
    if not _is_mapping(app):
        return _reject(100, 2804016, "Missing app_data", "app_data is required for app events.", "app_data")
    ate = app.get("advertiser_tracking_enabled")
    if ate not in (0, 1) or isinstance(ate, float):
        return _reject(100, 2804016, "Invalid app_data",
                       "app_data.advertiser_tracking_enabled is required and must be 0 or 1.",
                       "app_data.advertiser_tracking_enabled")
    ate_app = app.get("application_tracking_enabled")
    if ate_app is not None and (ate_app not in (0, 1) or isinstance(ate_app, float)):
        return _reject(100, 2804016, "Invalid app_data", "app_data.application_tracking_enabled must be 0 or 1.",
                       "app_data.application_tracking_enabled")
    extinfo = app.get("extinfo")
    if not isinstance(extinfo, list) or len(extinfo) != 16:
        return _reject(100, 2804016, "Invalid app_data",
                       "app_data.extinfo is required and must be an array of exactly 16 values.", "app_data.extinfo")
    if not all(v is None or isinstance(v, str) or _is_int(v) for v in extinfo):
        return _reject(100, 2804016, "Invalid app_data", "app_data.extinfo values must be strings.",
                       "app_data.extinfo")
    if extinfo[0] not in ("a2", "i2"):
        return _reject(100, 2804016, "Invalid app_data", "app_data.extinfo[0] must be 'a2' (Android) or 'i2' (iOS).",
                       "app_data.extinfo")
    if not _nonempty_str(extinfo[4]):
        return _reject(100, 2804016, "Invalid app_data", "app_data.extinfo[4] (OS version) is required.",
                       "app_data.extinfo")
    return None


def _check_ldu(event: Mapping[str, Any], now: float, rules: ValidationRules) -> Rejection | None:
    def bad(message: str, field: str) -> Rejection:
        return _reject(100, 2804019, "Invalid data processing options", message, field)

    options = event.get("data_processing_options")
    country = event.get("data_processing_options_country")
    state = event.get("data_processing_options_state")
    if options is None or options == []:
        if country is not None or state is not None:
            return bad("data_processing_options_country/state are only allowed with data_processing_options "
                       "['LDU'].", "data_processing_options_country")
        return None
    if options != ["LDU"]:
        return bad("data_processing_options must be [] or ['LDU'].", "data_processing_options")
    if country is not None and (not _is_int(country) or country not in (0, 1)):
        return bad("data_processing_options_country must be 0 or 1.", "data_processing_options_country")
    if state is not None and (not _is_int(state) or state not in LDU_STATES):
        return bad("data_processing_options_state must be 0 or a state code 1000-1014.",
                   "data_processing_options_state")
    if country == 1 and state is None:
        return bad("data_processing_options_state is required when data_processing_options_country is 1.",
                   "data_processing_options_state")
    return None

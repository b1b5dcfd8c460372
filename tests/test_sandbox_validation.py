"""Golden table for capi_pipeline.sandbox.validation: one event (or request) in, accept or (code, subcode) out."""

from __future__ import annotations

import copy
import hashlib
from typing import Any

import pytest

from capi_pipeline.sandbox.validation import ValidationRules, validate_event, validate_request

NOW = 1_800_000_000
DAY = 86_400
DROP = object()


def h(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


BASE: dict[str, dict[str, Any]] = {
    "store": {
        "event_name": "Purchase", "event_time": NOW - 3600, "action_source": "physical_store", "event_id": "S1-1",
        "user_data": {"em": [h("a@example.com")], "ph": h("16505551212"), "country": h("us")},
        "custom_data": {"value": 12.5, "currency": "USD", "order_id": "S1-1"},
    },
    "lead": {
        "event_name": "Lead", "event_time": NOW - 60, "action_source": "phone_call",
        "user_data": {"lead_id": "123456789", "ph": h("16505551212")},
    },
    "web": {
        "event_name": "ViewContent", "event_time": NOW - 60, "action_source": "website",
        "event_source_url": "https://shop.example.com/p/1",
        "user_data": {"client_user_agent": "Mozilla/5.0", "client_ip_address": "2001:db8::1", "fbp": "fb.1.1.2"},
    },
    "app": {
        "event_name": "MobileAppInstall", "event_time": NOW - 60, "action_source": "app", "event_id": "e1",
        "user_data": {"madid": "38400000-8cf0-11bd-b23e-10b96e40000d", "client_ip_address": "10.0.0.1"},
        "app_data": {"advertiser_tracking_enabled": 1, "application_tracking_enabled": 0,
                     "extinfo": ["a2", "com.example", "1.0", "1.0.1", "14", "Pixel", "en_US", "PDT", "", "1080",
                                 "1920", "2.0", "8", "64", "32", "America/New_York"]},
    },
}


def make(base: str, **changes: Any) -> dict[str, Any]:
    """BASE[base] with dotted-path changes (`user_data__em=...` sets user_data.em; DROP deletes)."""
    event = copy.deepcopy(BASE[base])
    for dotted, value in changes.items():
        *parents, leaf = dotted.split("__")
        node = event
        for part in parents:
            node = node.setdefault(part, {})
        if value is DROP:
            node.pop(leaf, None)
        else:
            node[leaf] = value
    return event


OK = None
CASES: list[tuple[str, dict[str, Any], tuple[int, int | None] | None]] = [
    # accepted shapes
    ("store purchase", make("store"), OK),
    ("phone lead with integer lead_id", make("lead", user_data__lead_id=123456789), OK),
    ("website event", make("web"), OK),
    ("app install", make("app"), OK),
    ("app ATE as bool", make("app", app_data__advertiser_tracking_enabled=True), OK),
    ("currency lower case", make("store", custom_data__currency="eur"), OK),
    ("integer value", make("store", custom_data__value=10), OK),
    ("physical_store 61 days old", make("store", event_time=NOW - 61 * DAY), OK),
    ("future within tolerance", make("lead", event_time=NOW + 300), OK),
    ("LDU geolocate", make("lead", data_processing_options=["LDU"], data_processing_options_country=0,
                           data_processing_options_state=0), OK),
    ("LDU California", make("lead", data_processing_options=["LDU"], data_processing_options_country=1,
                            data_processing_options_state=1000), OK),
    ("LDU explicitly off", make("lead", data_processing_options=[]), OK),
    ("partner pair", make("lead", user_data__partner_id="XY123", user_data__partner_name="liveramp"), OK),
    ("fn+ln is enough", make("lead", user_data={"fn": h("ann"), "ln": h("lee")}), OK),
    # event shape
    ("event not an object", "not-an-event", (100, None)),  # type: ignore[list-item]
    ("missing event_name", make("store", event_name=DROP), (100, None)),
    ("empty event_name", make("store", event_name=" "), (100, None)),
    ("missing action_source", make("store", action_source=DROP), (100, None)),
    ("unknown action_source", make("store", action_source="store"), (100, None)),
    ("action_source an array", make("store", action_source=["website"]), (100, None)),
    ("action_source an object", make("store", action_source={}), (100, None)),
    # event_time
    ("missing event_time", make("store", event_time=DROP), (100, None)),
    ("float event_time", make("store", event_time=float(NOW - 60)), (100, None)),
    ("string event_time", make("store", event_time=str(NOW - 60)), (100, None)),
    ("bool event_time", make("store", event_time=True), (100, None)),
    ("8 days old, phone_call", make("lead", event_time=NOW - 8 * DAY), (100, 2804003)),
    ("63 days old, physical_store", make("store", event_time=NOW - 63 * DAY), (100, 2804003)),
    ("milliseconds look like the future", make("lead", event_time=NOW * 1000), (100, 2804004)),
    ("11 minutes ahead", make("lead", event_time=NOW + 660), (100, 2804004)),
    # user_data
    ("missing user_data", make("store", user_data=DROP), (100, 2804050)),
    ("user_data not an object", make("store", user_data=["x"]), (100, 2804050)),
    ("empty user_data", make("store", user_data={}), (100, 2804050)),
    ("raw email", make("store", user_data__em="a@example.com"), (100, 2804001)),
    ("upper-case hash", make("store", user_data__em=h("a").upper()), (100, 2804001)),
    ("md5-length hash", make("store", user_data__ph="0" * 32), (100, 2804001)),
    ("array with one raw value", make("store", user_data__em=[h("a"), "b@example.com"]), (100, 2804001)),
    ("empty hashed array", make("store", user_data__em=[]), (100, 2804001)),
    ("hashed external_id must be hex", make("store", user_data__external_id="loyal-1"), (100, 2804001)),
    ("ip array", make("web", user_data__client_ip_address=["10.0.0.1"]), (100, 2804001)),
    ("invalid ip", make("web", user_data__client_ip_address="10.0.0.999"), (100, 2804001)),
    ("madid as number", make("app", user_data__madid=12), (100, 2804001)),
    ("partner_id alone", make("lead", user_data__partner_id="XY123"), (100, 2804001)),
    ("partner_name alone", make("lead", user_data__partner_name="liveramp"), (100, 2804001)),
    ("unknown user_data key", make("lead", user_data__email=h("x")), (100, 2804001)),
    ("only geo keys", make("store", user_data={"ct": h("nyc"), "st": h("ny"), "zp": h("10001"),
                                                "country": h("us")}), (100, 2804050)),
    ("geo + user agent", make("store", user_data={"zp": h("10001"), "client_user_agent": "UA"}), (100, 2804050)),
    ("db + user agent", make("store", user_data={"db": h("19900101"), "client_user_agent": "UA"}), (100, 2804050)),
    ("fn + ge", make("store", user_data={"fn": h("ann"), "ge": h("f")}), (100, 2804050)),
    ("ln alone", make("store", user_data={"ln": h("lee")}), (100, 2804050)),
    # custom_data
    ("Purchase without value", make("store", custom_data__value=DROP), (100, 2804007)),
    ("Purchase value as string", make("store", custom_data__value="12.50"), (100, 2804007)),
    ("Purchase without currency", make("store", custom_data__currency=DROP), (100, 2804007)),
    ("unknown currency", make("store", custom_data__currency="XYZ"), (100, 2804007)),
    ("4-letter currency", make("store", custom_data__currency="USDT"), (100, 2804007)),
    ("Purchase without custom_data", make("store", custom_data=DROP), (100, 2804007)),
    # website
    ("website without url", make("web", event_source_url=DROP), (100, 2804048)),
    ("website without user agent", make("web", user_data__client_user_agent=DROP), (100, 2804048)),
    # app
    ("app without app_data", make("app", app_data=DROP), (100, 2804016)),
    ("app without ATE", make("app", app_data__advertiser_tracking_enabled=DROP), (100, 2804016)),
    ("app ATE 2", make("app", app_data__advertiser_tracking_enabled=2), (100, 2804016)),
    ("app ATE string", make("app", app_data__advertiser_tracking_enabled="1"), (100, 2804016)),
    ("extinfo 15 slots", make("app", app_data__extinfo=["a2"] + [""] * 14), (100, 2804016)),
    ("extinfo slot 0 empty", make("app", app_data__extinfo=[""] + ["x"] * 15), (100, 2804016)),
    ("extinfo slot 0 wrong", make("app", app_data__extinfo=["android"] + ["x"] * 15), (100, 2804016)),
    ("extinfo slot 4 empty", make("app", app_data__extinfo=["i2", "a", "b", "c", ""] + ["x"] * 11), (100, 2804016)),
    # LDU
    ("dpo lower case", make("lead", data_processing_options=["ldu"]), (100, 2804019)),
    ("dpo as string", make("lead", data_processing_options="LDU"), (100, 2804019)),
    ("country without LDU", make("lead", data_processing_options_country=1), (100, 2804019)),
    ("state with empty dpo", make("lead", data_processing_options=[], data_processing_options_state=1000),
     (100, 2804019)),
    ("LDU country 2", make("lead", data_processing_options=["LDU"], data_processing_options_country=2,
                           data_processing_options_state=0), (100, 2804019)),
    ("LDU state 999", make("lead", data_processing_options=["LDU"], data_processing_options_country=1,
                           data_processing_options_state=999), (100, 2804019)),
    ("LDU country 1 without state", make("lead", data_processing_options=["LDU"],
                                         data_processing_options_country=1), (100, 2804019)),
]


@pytest.mark.parametrize(("event", "expected"), [(e, x) for _, e, x in CASES], ids=[name for name, _, _ in CASES])
def test_event_rules(event: Any, expected: tuple[int, int | None] | None) -> None:
    rejection = validate_event(event, now=NOW)
    got = None if rejection is None else (rejection.code, rejection.subcode)
    assert got == expected, rejection


@pytest.mark.parametrize(("body", "expected"), [
    ({}, (100, None)),
    ({"data": None}, (100, None)),
    ({"data": "[]"}, (100, None)),
    ({"data": []}, (100, None)),
    ({"data": [make("lead")] * 1000}, None),
    ({"data": [make("lead")] * 1001}, (100, None)),
    ({"data": [make("lead")], "test_event_code": 123}, (100, None)),
    ({"data": [make("lead")], "test_event_code": "TEST1", "partner_agent": "capi-pipeline-0.1"}, None),
], ids=["no data", "null data", "data string", "empty data", "1000 events", "1001 events", "bad test code",
        "request params"])
def test_request_rules(body: dict[str, Any], expected: tuple[int, int | None] | None) -> None:
    rejection = validate_request(body, now=NOW)
    assert (None if rejection is None else (rejection.code, rejection.subcode)) == expected


def test_first_bad_event_rejects_request_and_is_located_internally() -> None:
    body = {"data": [make("lead"), make("lead"), make("store", user_data={}), make("lead", event_time=0)]}
    rejection = validate_request(body, now=NOW)
    assert rejection is not None
    assert (rejection.code, rejection.subcode, rejection.event_index, rejection.field) == (100, 2804050, 2,
                                                                                         "user_data")


def test_messages_never_contain_customer_values() -> None:
    rejection = validate_event(make("store", user_data__em="ann.lee@example.com"), now=NOW)
    assert rejection is not None and "example.com" not in rejection.message


def test_windows_are_configurable() -> None:
    rules = ValidationRules(max_age_days=1, physical_store_max_age_days=2, future_tolerance_s=0)
    assert validate_event(make("lead", event_time=NOW - 2 * DAY), now=NOW, rules=rules).subcode == 2804003
    assert validate_event(make("store", event_time=NOW - DAY - 60), now=NOW, rules=rules) is None
    assert validate_event(make("lead", event_time=NOW + 1), now=NOW, rules=rules).subcode == 2804004


def _user_data_rule_by_rule(user_data: dict[str, Any]) -> Any:
    """user_data's rules as first written: each key in order, then the presence rules (the reference)."""
    from capi_pipeline.sandbox import validation as v

    for key, value in user_data.items():
        rejection = v._check_user_data_key(key, value)
        if rejection is not None:
            return rejection
    present = {key for key, value in user_data.items() if value not in (None, "", [])}
    if ("partner_id" in present) != ("partner_name" in present):
        return v._reject(100, 2804001, "Invalid customer information parameter",
                         "user_data.partner_id and user_data.partner_name must be sent together.",
                         "user_data.partner_id")
    if not present:
        return v._reject(100, 2804050, "Insufficient customer information",
                         "user_data must contain at least one customer information parameter.", "user_data")
    if any(present <= combo for combo in v.BASELINE_INVALID):
        return v._reject(100, 2804050, "Insufficient customer information",
                         "user_data only contains a combination of parameters that cannot identify a person: "
                         + ",".join(sorted(present)) + ".", "user_data")
    return None


def test_the_one_pass_key_check_answers_as_the_rule_by_rule_check() -> None:
    # user_data checks its hashes with one match per event and takes every key as present when all are plainly
    # valid; any doubt falls back to the ordered, per-key check: the answer (and the field it names) must be the
    # one the rules checked one by one give
    import itertools
    import random

    from capi_pipeline.sandbox import validation as v

    good = hashlib.sha256(b"x").hexdigest()
    values = [good, good.upper(), good[:63], [good, good], [good, "zz"], [], "", "  ", None, 7, "10.0.0.1",
              "not-an-ip", "Mozilla/5.0", ["a"], "\u00a0", "g" * 64, "\u0663" * 64, good[:63] + "\x00"]
    keys = ["em", "ph", "ct", "ge", "db", "client_ip_address", "client_user_agent", "lead_id", "partner_id",
            "partner_name", "nonsense"]
    rng = random.Random(3)
    cases = [{}] + [dict(zip(ks, vs)) for size in (1, 2, 3) for ks in itertools.permutations(keys, size)
                    for vs in [rng.choices(values, k=size) for _ in range(3)]]
    for user_data in cases:
        got = v._check_user_data({"user_data": user_data}, 0, ValidationRules())
        assert got == _user_data_rule_by_rule(user_data), user_data

"""mapping.py: source rows -> canonical CAPI-named columns; event_time parsing; stable event ids."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import json
import math

import numpy as np
import orjson
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from capi_pipeline.config import parse_pipeline
from capi_pipeline.mapping import _parse_json, event_key_texts, parse_event_time, to_canonical, user_data_columns

T = int(dt.datetime(2026, 11, 22, 14, 3, 11, tzinfo=dt.timezone.utc).timestamp())


@pytest.mark.parametrize("raw, unit, tz, expected", [
    ("2026-11-22T14:03:11Z", "auto", "UTC", T),
    ("2026-11-22T14:03:11+00:00", "auto", "America/New_York", T),
    ("2026-11-22T09:03:11-05:00", "auto", "UTC", T),
    ("2026-11-22 09:03:11", "auto", "America/New_York", T),          # naive: read in the configured zone
    ("2026-11-22 14:03:11", "auto", "UTC", T),
    ("2026-11-22T14:03:11.250Z", "auto", "UTC", T),
    (str(T), "auto", "UTC", T),
    (str(T * 1000), "auto", "UTC", T),                                # auto: > 10^11 means milliseconds
    (str(T * 1000), "ms", "UTC", T),
    (str(T), "s", "UTC", T),
    ("not a date", "auto", "UTC", None),
    ("now", "auto", "UTC", None),                                     # pandas reads these as the clock's time
    ("today", "auto", "UTC", None),
    ("TBD", "auto", "UTC", None),
    ("", "auto", "UTC", None),
    (None, "auto", "UTC", None),
    ("2026-13-45T00:00:00Z", "auto", "UTC", None),
    ("-5", "auto", "UTC", None),
    ("2026-11-22T19:03:11+05", "auto", "UTC", T),                     # an offset of hours only
    ("2026-11-22T19:33:11+0530", "auto", "UTC", T),
    ("2026-11-22T14:03:11z", "auto", "UTC", T),
    (f"{T}.4", "auto", "UTC", T),                                     # decimal seconds as text, like a number
    ("2026-11-01 01:30:00", "auto", "America/New_York", 1793511000),  # the repeated hour: its first pass (EDT)
    ("2026-11-01T01:30:00", "auto", "America/New_York", 1793511000),
    ("2026-11-01 01:30", "auto", "America/New_York", 1793511000),
    ("2026-03-08 02:30:00", "auto", "America/New_York", 1772953200),  # the skipped hour moves on to 03:00 EDT
    ("22.11.2026 15:03:11", "auto", "Europe/Berlin", T),              # dotted: day.month.year, as in Europe
    ("22.11.2026 15:03:11+01:00", "auto", "UTC", T),
    ("22.11.2026 9:03", "auto", "America/New_York", T - 11),
    ("31.11.2026 10:00", "auto", "UTC", None),
])
def test_parse_event_time_strings(raw, unit, tz, expected) -> None:
    got = parse_event_time(pd.Series([raw], dtype=object), unit, tz).iloc[0]
    assert (None if pd.isna(got) else int(got)) == expected


def test_parse_event_time_never_raises_on_mixed_zones() -> None:
    """pandas cannot read naive and zoned texts, or offsets it was not told of, as one column: each text then
    stands alone (a crash here stopped the whole run)."""
    raw = pd.Series(["2026-11-22T19:03:11+05", "2026-11-22 09:03:11", "2026-11-22T14:03:11Z", "garbage 7",
                     "2026-11-22 09:03:11.5-05", "2026-11-22"], dtype=object)
    got = parse_event_time(raw, "auto", "America/New_York").tolist()
    assert got[:3] == [T, T, T] and pd.isna(got[3]) and got[4] in (T, T + 1)
    assert got[5] == T - (14 * 3600 + 3 * 60 + 11) + 5 * 3600  # a date alone: midnight in the pipeline's zone


def test_parse_event_time_typed_columns() -> None:
    ints = pd.Series([T * 1000, None], dtype="Int64")
    assert parse_event_time(ints, "ms", "UTC").tolist()[0] == T
    assert pd.isna(parse_event_time(ints, "ms", "UTC").iloc[1])
    naive = pd.Series(pd.to_datetime(["2026-11-22 09:03:11"]))
    assert parse_event_time(naive, "auto", "America/New_York").iloc[0] == T
    aware = pd.Series(pd.to_datetime(["2026-11-22 14:03:11"]).tz_localize("UTC"))
    assert parse_event_time(aware, "auto", "Asia/Tokyo").iloc[0] == T


def _cfg(tmp_path: Path, **extra) -> object:
    doc = {
        "name": "m", "source": {"path": "d/dt={date}/*.csv", "format": "csv"}, "contract": "c.odcs.yaml",
        "destination": {"dataset_id": "1"},
        "mapping": {"event_name": "ev", "event_time": "ts", "user_data.em": ["email", "email2"],
                    "user_data.ph": "phone", "custom_data.value": "value", "custom_data.currency": "cur",
                    "custom_data.contents": {"column": "items", "parse": "json"},
                    "custom_data.store_data.store_code": "store",
                    "app_data.advertiser_tracking_enabled": "ate",
                    "app_data.extinfo": [f"x{i}" if i in (0, 4) else None for i in range(16)],
                    "opt_out": {"const": False}},
        "event_id": {"keys": ["order_id", "line"]},
        "defaults": {"action_source": "physical_store", "currency": "USD"},
    }
    doc.update(extra)
    return parse_pipeline(doc, tmp_path / "p.yaml")


def test_string_fields_stay_strings_and_array_fields_arrays(tmp_path: Path) -> None:
    """capi.md §4: order_id and store_code are strings (an integer warehouse column too: order_id is the offline
    dedup key); content_ids is an array even when one column is mapped to it."""
    mapping = {"event_name": "ev", "event_time": "ts", "user_data.em": "email", "custom_data.order_id": "oid",
               "custom_data.store_data.store_code": "store", "custom_data.content_ids": "sku",
               "custom_data.num_items": "n", "custom_data.my_count": "n"}
    cfg = _cfg(tmp_path, mapping=mapping)
    frame = pd.DataFrame({"ev": ["Purchase"] * 2, "ts": ["2026-11-22T14:03:11Z"] * 2, "email": ["a@b.co"] * 2,
                          "oid": pd.Series([1001, 1002], dtype="int64"), "store": pd.Series([511, None], dtype="Int64"),
                          "sku": ["S1", None], "n": [3, 4], "order_id": ["x", "y"], "line": [1, 2]})
    canon = to_canonical(frame, cfg, file="f.csv", first_row=1)
    assert canon["custom_data.order_id"].tolist() == ["1001", "1002"]
    assert canon["custom_data.store_data.store_code"].tolist() == ["511", None]
    assert canon["custom_data.content_ids"].tolist() == [["S1"], None]
    assert canon["custom_data.num_items"].tolist() == [3, 4] and canon["custom_data.my_count"].tolist() == [3, 4]


@pytest.mark.parametrize("text, kept, counted", [
    ('[{"id": "A", "quantity": 1}]', True, False), ('[{"quantity": 1, "id": "B"}, {"id": "C"}]', True, False),
    ('[{"id": 123, "quantity": "2", "item_price": "9.99"}]', True, False), ('["A", "B"]', False, True),
    ('[{"sku": "X", "qty": 1}]', False, True), ('[{"id": "A"}, {"qty": 1}]', False, True), ("[]", False, False),
    (" [ ] ", False, False), ("{bad", False, True), ('{"id": "A"}', False, True), ('[{"id": "A", "x": [1]}]', True, False),
])
def test_contents_must_be_objects_with_an_id(text: str, kept: bool, counted: bool) -> None:
    """capi.md §4: contents is an array of objects with id (the flat ones stay their text: one RE2 check)."""
    for values in (pd.Series([text, None], dtype=object), pd.Series([text, None], dtype="str")):
        parsed, dropped = _parse_json(values, contents=True)
        assert (parsed.iloc[0] is not None) == kept and bool(dropped[0]) == counted and parsed.iloc[1] is None


def test_contents_of_every_shape_in_one_column_keep_their_rows() -> None:
    cases = [("[{\"id\": \"A\", \"quantity\": 1}]", True), ("[{\"sku\": \"X\"}]", False), ("{bad", False),
             ("[{\"id\": \"A\", \"x\": [1]}]", True), ("[]", False), ("[{\"id\": 7}, {\"id\": 8}]", True),
             ("[\"A\"]", False), (None, False)] * 3
    for dtype in (object, "str"):
        parsed, _ = _parse_json(pd.Series([t for t, _ in cases], dtype=dtype), contents=True)
        assert [v is not None for v in parsed] == [k for _, k in cases]
        assert [orjson.loads(orjson.dumps(v)) for v in parsed if v is not None] == \
            [orjson.loads(t) for t, k in cases if k]


def test_to_canonical(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path)
    frame = pd.DataFrame({
        "ev": ["Purchase", " Lead "], "ts": ["2026-11-22T14:03:11Z", "bad"],
        "email": [" A@B.com ", None], "email2": ["c@d.com", None], "phone": [None, "12"],
        "value": ["10.5", None], "cur": [None, "eur"], "items": ['[{"id": "s1", "quantity": 2}]', "{bad"],
        "store": ["ST1", None], "ate": ["1", None], "x0": ["a2", "i2"], "x4": ["14", None],
        "order_id": ["O1", None], "line": [2, None],
    })
    canon = to_canonical(frame, cfg, file="f.csv", first_row=11)
    assert canon["_row"].tolist() == [11, 12]
    assert canon["_file"].tolist() == ["f.csv", "f.csv"]
    assert canon["event_name"].tolist() == ["Purchase", "Lead"]
    assert canon["event_time"].iloc[0] == T and pd.isna(canon["event_time"].iloc[1])
    assert canon["event_id"].tolist() == ["O1:2", None]
    assert canon["action_source"].tolist() == ["physical_store", "physical_store"]
    assert canon["custom_data.currency"].tolist() == ["USD", "eur"]
    assert canon["custom_data.value"].iloc[0] == 10.5 and np.isnan(canon["custom_data.value"].iloc[1])
    assert [_wire(v) for v in canon["custom_data.contents"]] == [[{"id": "s1", "quantity": 2}], None]
    assert canon["app_data.advertiser_tracking_enabled"].tolist()[0] == 1
    ext = canon["app_data.extinfo"].iloc[1]
    assert len(ext) == 16 and ext[0] == "i2" and ext[4] == "" and ext[1] == ""
    # raw, only trimmed (normalize.py's job), and kept as Arrow-backed text for it
    assert canon["user_data.em"].astype(object).where(canon["user_data.em"].notna(), None).tolist() == [
        "A@B.com", None]
    assert canon["user_data.em#2"].dtype == "str" and canon["user_data.em#2"].isna().tolist() == [False, True]
    assert canon["user_data.em#2"].iloc[0] == "c@d.com"
    assert canon["opt_out"].tolist() == [False, False]
    assert user_data_columns(canon) == [("user_data.em", "em"), ("user_data.em#2", "em"), ("user_data.ph", "ph")]


def test_event_id_from_column_and_empty_frame(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, event_id={"column": "eid"})
    frame = pd.DataFrame({c: pd.Series([], dtype=object) for c in
                          ["ev", "ts", "email", "email2", "phone", "value", "cur", "items", "store", "ate", "x0",
                           "x4", "eid"]})
    assert len(to_canonical(frame, cfg, file="f", first_row=1)) == 0
    frame = pd.DataFrame({"ev": ["A"], "ts": [T], "email": [None], "email2": [None], "phone": [None],
                          "value": [1.0], "cur": ["usd"], "items": [None], "store": [None], "ate": [0],
                          "x0": ["a2"], "x4": ["13"], "eid": [12345]})
    assert to_canonical(frame, cfg, file="f", first_row=1)["event_id"].tolist() == ["12345"]


@pytest.mark.parametrize("phone, kind", [
    (pd.Series([" +1 (415) 555-0100 ", None, "", "  "], dtype=object), "str"),  # text: Arrow-backed
    (pd.Series([" +1 (415) 555-0100 ", None, "", "  "], dtype="str"), "str"),
    (pd.Series([14155550100, None, 4155550100, None], dtype="Int64"), "str"),  # integers: their decimal text
    (pd.Series([14155550100.0, np.nan, 4155550100.0, np.nan]), "object"),  # floats: the per-cell path
    (pd.Series(["+1 415 555 0100", None, 4155550100, " "], dtype=object), "object"),  # mixed cells
])
def test_user_data_columns_normalize_alike_in_either_form(tmp_path: Path, phone: pd.Series, kind: str) -> None:
    """Arrow-backed or object, a user_data column normalizes to the same values as its plain Python cells."""
    from capi_pipeline.normalize import NormalizeOptions, RawField, normalize_user_data

    cfg = _cfg(tmp_path)
    frame = pd.DataFrame({"ev": ["Purchase"] * 4, "ts": [T] * 4, "email": [" A@B.com ", None, "x@y.org", " "],
                          "email2": [None] * 4, "phone": phone, "value": [1.0] * 4, "cur": ["usd"] * 4,
                          "items": [None] * 4, "store": [None] * 4, "ate": [None] * 4, "x0": [None] * 4,
                          "x4": [None] * 4, "order_id": ["a", "b", "c", "d"], "line": [1, 2, 3, 4]})
    canon = to_canonical(frame, cfg, file="f", first_row=1)
    assert str(canon["user_data.ph"].dtype) == kind and canon["user_data.em"].dtype == "str"
    options = NormalizeOptions(default_country="US")
    fields = [RawField(key=key, values=canon[col], prehashed=False) for col, key in user_data_columns(canon)]
    plain = [RawField(key=f.key, values=pd.Series(f.values.astype(object).where(f.values.notna(), None).tolist(),
                                                  dtype=object), prehashed=False) for f in fields]
    got, want = normalize_user_data(fields, options), normalize_user_data(plain, options)
    assert {k: v.tolist() for k, v in got.values.items()} == {k: v.tolist() for k, v in want.values.items()}
    assert got.drops == want.drops and got.row_rejection.tolist() == want.row_rejection.tolist()
    assert got.values["ph"].notna().tolist()[0] and got.values["em"].notna().tolist() == [True, False, True, False]


def test_list_cells_are_several_values_of_one_key(tmp_path: Path) -> None:
    """A parquet list<string> column mapped to a user_data key: each cell's values become one deduplicated array
    (README: "a list cell"), never the text of the list."""
    import hashlib

    import pyarrow as pa
    import pyarrow.parquet as pq

    from capi_pipeline.extract import read_chunks
    from capi_pipeline.normalize import NormalizeOptions, RawField, normalize_user_data

    emails = pa.array([[" A@B.com ", "c@d.org", "a@b.com"], None, ["x@y.org", None, " "], [], ["e@f.net"]],
                      type=pa.list_(pa.string()))
    n = len(emails)
    table = pa.table({"ev": ["Purchase"] * n, "ts": [T] * n, "email": emails, "email2": [None, None, "x@y.org",
                                                                                          None, None],
                      "phone": pa.nulls(n, pa.string()), "value": [1.0] * n, "cur": ["usd"] * n,
                      "items": pa.nulls(n, pa.string()), "store": pa.nulls(n, pa.string()),
                      "ate": pa.nulls(n, pa.string()), "x0": pa.nulls(n, pa.string()),
                      "x4": pa.nulls(n, pa.string()), "order_id": list("abcde"), "line": [1, 2, 3, 4, 5]})
    pq.write_table(table, tmp_path / "part-0.parquet")
    (chunk,) = read_chunks(tmp_path / "part-0.parquet", "parquet", 100)
    canon = to_canonical(chunk.frame, _cfg(tmp_path), file="f", first_row=1)
    assert canon["user_data.em"].tolist() == [["A@B.com", "c@d.org", "a@b.com"], None, ["x@y.org"], None,
                                              ["e@f.net"]]
    ud = normalize_user_data([RawField(k, canon[c]) for c, k in user_data_columns(canon)], NormalizeOptions())

    def h(v: str) -> str:
        return hashlib.sha256(v.encode()).hexdigest()

    assert ud.values["em"].tolist() == [[h("a@b.com"), h("c@d.org")], None, h("x@y.org"), None, h("e@f.net")]
    assert not ud.drops
    # object cells as JSON lines or pandas give them: tuples, arrays, nested containers (left out), NaN
    frame = chunk.frame.assign(email=pd.Series([("a@b.com",), np.array([" c@d.org ", np.nan], dtype=object),
                                                [["x@y.org"], {"e": 1}], "e@f.net", np.nan], dtype=object))
    canon = to_canonical(frame, _cfg(tmp_path), file="f", first_row=1)
    assert canon["user_data.em"].tolist() == [["a@b.com"], ["c@d.org"], None, "e@f.net", None]


# --- JSON cells (`parse: json`) ----------------------------------------------------------------------------------

def _wire(value: object) -> object:
    """What Meta receives for a canonical value: the JSON orjson writes for it (a Fragment as it is), read back."""
    return orjson.loads(orjson.dumps(value))


def _reference(text: str) -> object:
    """`json.loads` (None when invalid, or when orjson cannot write it), as it goes on the wire."""
    try:
        return _wire(json.loads(text))
    except (ValueError, TypeError):
        return None


def _cell(text: str) -> object:
    return _parse_json(pd.Series([text, None], dtype="str"))[0].iloc[0]


@pytest.mark.parametrize("text, kept_as_text", [
    ('[{"id": "SKU-1", "quantity": 2, "item_price": 9.99}]', True),
    ('[{"id":"SKU-1","quantity":2},{"id":"SKU-2","quantity":1,"item_price":13.80}]', True),
    (' [ { "id" : "é ü 東京", "n" : -0.5e+10, "t": true, "f": false, "z": null } ] ', True),
    ("[]", True),
    ("[{}]", True),
    ('[{"q": 123456789012345678}]', True),               # 18 digits: every reader agrees
    ('[{"q": 1234567890123456789}]', False),             # 19 digits: read by `json`, which keeps the int
    ('[{"q": 12345678901234567890}]', False),            # beyond 64 bits: no JSON writer here takes it: dropped
    ('["\\udc00"]', False),                              # a lone surrogate: dropped likewise
    ('[{"id": "a\\"b"}]', False),                        # escapes: parsed, then written by orjson
    ('[{"id": "\\u00e9"}]', False),
    ('[{"a": [1, 2]}]', False),                          # nested: parsed
    ('{"id": "x"}', False),                              # not an array
    ("[1, 2]", False),
    ('[{"a": NaN}]', False),                             # `json` reads it; the wire gets null
    ('[{"a": 1e999}]', False),
    ('[{"a": 1,}]', False),                              # invalid: dropped
    ('[{"a": "x\ty"}]', False),                          # a raw tab inside a string: invalid
    ('[{"a": 01}]', False),
    ("[{a: 1}]", False),
    ("not json", False),
])
def test_json_cells_go_on_the_wire_as_json_loads_reads_them(text: str, kept_as_text: bool) -> None:
    value = _cell(text)
    assert isinstance(value, orjson.Fragment) == kept_as_text
    wire = _wire(value)
    expected = _reference(text)
    assert wire == expected or (isinstance(expected, list) and any(
        isinstance(v, float) and math.isnan(v) for item in expected for v in item.values()))


_json_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12)
_json_value = st.one_of(_json_text, st.integers(-10**18 + 1, 10**18 - 1),
                        st.floats(allow_nan=False, allow_infinity=False, width=64), st.booleans(), st.none())
_items = st.lists(st.dictionaries(_json_text, _json_value, max_size=4), max_size=4)
_space = st.sampled_from(["", " ", "\n", "\t ", "\r\n"])


@settings(max_examples=300, deadline=None)
@given(_items, _space, st.booleans())
def test_json_arrays_of_flat_objects_read_alike_either_way(items: list, space: str, spaced: bool) -> None:
    # the whitespace goes between tokens only (a replace() over the text also hit ", " inside a key)
    text = json.dumps(items, ensure_ascii=False, separators=("," + space, ": ") if spaced else (",", ":"))
    text = space + text + space
    assert _wire(_cell(text)) == _wire(json.loads(text))


@settings(max_examples=300, deadline=None)
@given(st.one_of(_json_text, _items.map(json.dumps)), st.integers(0, 40), st.sampled_from(['"', "\\", ",", "]",
                                                                                          "}", "{", "\x01", " ", "e"]))
def test_a_json_cell_kept_as_text_is_always_valid_json(base: str, at: int, char: str) -> None:
    text = base[:at] + char + base[at:]  # mostly broken JSON: never sent as written
    value = _cell(text)
    if isinstance(value, orjson.Fragment):
        assert orjson.loads(text) == json.loads(text)
    assert _wire(value) == _reference(text) or _reference(text) is None and value is None


def test_json_text_that_cannot_be_sent_is_marked(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path)
    frame = pd.DataFrame({
        "ev": ["Purchase"] * 5, "ts": ["2026-11-22T14:03:11Z"] * 5, "email": [None] * 5, "email2": [None] * 5,
        "phone": [None] * 5, "value": [1.0] * 5, "cur": ["USD"] * 5, "store": ["s"] * 5, "ate": [None] * 5,
        "x0": ["i2"] * 5, "x4": ["17"] * 5, "order_id": list("abcde"), "line": ["1"] * 5,
        "items": ['[{"id": "s1", "quantity": 2}]', '[{"id": "s1",}]', None, "   ", '[{"id": "\\u00e9"}]'],
    })
    canon = to_canonical(frame, cfg, file="f.csv", first_row=1)
    assert canon["_dropped:invalid_json:custom_data.contents"].tolist() == [False, True, False, False, False]
    assert [_wire(v) for v in canon["custom_data.contents"]] == [[{"id": "s1", "quantity": 2}], None, None,
                                                                 None, [{"id": "é"}]]


@pytest.mark.parametrize("cells, dropped", [
    (['[{"a": 1}]', "[1,]", None, "   ", "NaN", '"x"'], [False, True, False, False, True, False]),  # text
    (['[{"a": 1}]', "[1,]", None, "   ", "NaN", 5], [False, True, False, False, True, False]),  # mixed objects
    ([[{"a": 1}], "[1,]", None, "[]"], [False, True, False, False]),  # a list cell: unhashable, kept as given
])
def test_parse_json_tells_which_texts_it_dropped(cells: list, dropped: list) -> None:
    values, lost = _parse_json(pd.Series(cells, dtype="str" if all(isinstance(c, str) or c is None
                                                                  for c in cells) else object))
    assert lost.tolist() == dropped
    assert [v is None or v != v for v, gone in zip(values, lost) if gone] == [True] * sum(dropped)


def test_extinfo_const_slots_are_strings(tmp_path: Path) -> None:
    """capi.md §5: extinfo is 16 strings; a YAML const of numbers (the OS version 17.1, a screen width) too."""
    ext = ["i2", "com.example", "1.0", "1.0 (1)", 17.1, "iPhone15,2", "en_US", "UTC", "carrier", 390, 844, 3, 2,
           256, 128, "America/New_York"]
    mapping = {"event_name": "ev", "event_time": "ts", "user_data.em": "email", "app_data.extinfo": {"const": ext}}
    cfg = _cfg(tmp_path, mapping=mapping)
    frame = pd.DataFrame({"ev": ["Purchase"], "ts": ["2026-11-22T14:03:11Z"], "email": ["a@b.co"],
                          "order_id": ["x"], "line": [1]})
    slots = to_canonical(frame, cfg, file="f.csv", first_row=1)["app_data.extinfo"].iloc[0]
    assert slots[4] == "17.1" and slots[9] == "390" and all(isinstance(v, str) for v in slots) and len(slots) == 16


def test_enum_fields_keep_only_meta_values(tmp_path: Path) -> None:
    """capi.md §2/§4: customer_segmentation, content_type, delivery_category, messaging_channel take a fixed list;
    another value is left out of the event and counted, the row is kept."""
    mapping = {"event_name": "ev", "event_time": "ts", "user_data.em": "email", "customer_segmentation": "seg",
               "custom_data.content_type": "ct"}
    cfg = _cfg(tmp_path, mapping=mapping)
    frame = pd.DataFrame({"ev": ["Purchase"] * 3, "ts": ["2026-11-22T14:03:11Z"] * 3, "email": ["a@b.co"] * 3,
                          "seg": ["New_Customer_To_Business", "bogus_segment", None],
                          "ct": ["product", "Product_Group", "sku"], "order_id": list("abc"), "line": [1, 2, 3]})
    canon = to_canonical(frame, cfg, file="f.csv", first_row=1)
    assert canon["customer_segmentation"].tolist() == ["new_customer_to_business", None, None]
    assert canon["_dropped:not_in_enum:customer_segmentation"].tolist() == [False, True, False]
    assert canon["custom_data.content_type"].tolist() == ["product", "product_group", None]
    assert canon["_dropped:not_in_enum:custom_data.content_type"].tolist() == [False, False, True]


def test_fields_as_capi_md_types_them(tmp_path: Path) -> None:
    """capi.md: url_schemes is an array (§5); customer_segmentation's list holds inside custom_data too (§2);
    anon_id is for app events only (§3); original_event_data is {event_name, event_time (seconds), order_id,
    event_id} (§2). What cannot be sent is left out of its event and counted; the row is kept."""
    mapping = {"event_name": "ev", "event_time": "ts", "user_data.em": "email", "user_data.anon_id": "anon",
               "action_source": "src", "app_data.url_schemes": "schemes", "custom_data.customer_segmentation": "seg",
               "original_event_data": {"column": "orig", "parse": "json"}}
    cfg = _cfg(tmp_path, mapping=mapping)
    frame = pd.DataFrame({
        "ev": ["Purchase"] * 5, "ts": ["2026-11-22T14:03:11Z"] * 5, "email": ["a@b.co"] * 5,
        "anon": ["XZ1", "XZ2", None, "XZ4", "XZ5"], "src": ["app", "physical_store", "app", "website", None],
        "schemes": ["fb123://", None, "fb1://", None, None], "seg": ["Existing_Customer_To_Business", "bogus", None,
                                                                     None, None],
        "orig": ['{"event_name": "Lead", "event_time": 1764000000, "order_id": 77}',
                 '{"event_name": "Lead", "event_time": "2026-12-01T10:00:00Z"}', '{"event_time": "1764000000"}',
                 '{"event_name": "Lead", "surprise": 1}', '["Lead"]'],
        "order_id": list("abcde"), "line": [1, 2, 3, 4, 5]})
    canon = to_canonical(frame, cfg, file="f.csv", first_row=1)
    assert canon["app_data.url_schemes"].tolist() == [["fb123://"], None, ["fb1://"], None, None]
    assert canon["custom_data.customer_segmentation"].tolist() == ["existing_customer_to_business", None, None,
                                                                   None, None]
    assert canon["_dropped:not_in_enum:custom_data.customer_segmentation"].tolist() == [False, True] + [False] * 3
    assert [v if isinstance(v, str) else None for v in canon["user_data.anon_id"]] == ["XZ1"] + [None] * 4
    assert canon["_dropped:app_events_only:user_data.anon_id"].tolist() == [False, True, False, True, True]
    assert canon["original_event_data"].tolist() == [
        {"event_name": "Lead", "event_time": 1764000000, "order_id": "77"}, None, {"event_time": 1764000000},
        None, None]
    assert canon["_dropped:invalid_json:original_event_data"].tolist() == [False, True, False, True, True]


def test_text_that_is_no_number_is_counted_when_left_out(tmp_path: Path) -> None:
    """custom_data.value '12,50' or 'abc' on a Lead: the event goes without a value, and the report counts it
    (custom_data.value:invalid_number); a Purchase without a number is quarantined by the rules instead."""
    mapping = {"event_name": "ev", "event_time": "ts", "user_data.em": "email", "custom_data.value": "v"}
    cfg = _cfg(tmp_path, mapping=mapping)
    frame = pd.DataFrame({"ev": ["Lead"] * 4, "ts": ["2026-11-22T14:03:11Z"] * 4, "email": ["a@b.co"] * 4,
                          "v": ["12,50", "abc", "12.5", None], "order_id": list("abcd"), "line": [1, 2, 3, 4]})
    canon = to_canonical(frame, cfg, file="f.csv", first_row=1)
    assert canon["custom_data.value"].tolist()[2] == 12.5
    assert canon["_dropped:invalid_number:custom_data.value"].tolist() == [True, True, False, False]


@pytest.mark.parametrize("variant", ["keys", "column", "mapped", "int_ids", "default_name", "default_only"])
def test_event_key_texts_hash_like_the_canonical_frame(tmp_path: Path, variant: str) -> None:
    """The pool's duplicate check (`event_key_texts` -> `rules.key_hashes`, no Python objects) decides exactly
    as `SeenEvents.mark` on the canonical frame: same keyed rows, same hashes."""
    from capi_pipeline.rules import SeenEvents, key_hashes

    mapping = {"event_name": "ev", "event_time": "ts", "user_data.em": "email"}
    extra: dict = {"event_id": {"keys": ["order_id", "line"]}}
    if variant == "column":
        extra = {"event_id": {"column": "order_id"}}
    elif variant in ("mapped", "int_ids"):
        mapping["event_id"] = "line" if variant == "int_ids" else "order_id"
        extra = {}
    elif variant == "default_name":
        extra["defaults"] = {"event_name": " Lead ", "action_source": "physical_store"}
    elif variant == "default_only":  # no event_name column: the default everywhere
        del mapping["event_name"]
        extra["defaults"] = {"event_name": "Purchase", "action_source": "physical_store"}
    cfg = _cfg(tmp_path, mapping=mapping, **extra)
    names = [" Purchase", "Purchase", None, "", "Lead", "\x1cPurchase", "Purchase"] * 3
    ids = ["o1", " o1 ", "o2", "o3", None, "o1", ""] + ["o1", "o4", "o4", " ", "x", "o2", "o1"] * 2
    frame = pd.DataFrame({"ev": pd.Series(names, dtype="str"), "ts": ["2026-11-22T14:03:11Z"] * 21,
                          "email": ["a@b.co"] * 21, "order_id": pd.Series(ids, dtype=object),
                          "line": pd.Series(range(21), dtype="int64") % 4})
    canon = to_canonical(frame, cfg, file="f.csv", first_row=1)
    expected_pos, expected = SeenEvents.hashes(canon)
    pos, h = key_hashes(*event_key_texts(frame, cfg))
    assert pos.tolist() == expected_pos.tolist() and h.tolist() == expected.tolist()
    assert SeenEvents().mark_hashes(h).any()  # the rows do repeat keys


def test_defaults_fill_only_missing_cells_as_trimmed_text(tmp_path: Path) -> None:
    mapping = {"event_name": "ev", "event_time": "ts", "user_data.em": "email", "custom_data.currency": "cur",
               "action_source": "act"}
    cfg = _cfg(tmp_path, mapping=mapping, defaults={"action_source": "physical_store", "currency": " USD "})
    frame = pd.DataFrame({"ev": ["Purchase"] * 4, "ts": ["2026-11-22T14:03:11Z"] * 4, "email": ["a@b.co"] * 4,
                          "act": [" website ", None, "  ", "app"], "cur": ["eur", None, "", " gbp "],
                          "order_id": ["1", "2", "3", "4"], "line": [1, 1, 1, 1]})
    canon = to_canonical(frame, cfg, file="f.csv", first_row=1)
    assert canon["action_source"].tolist() == ["website", "physical_store", "physical_store", "app"]
    assert canon["custom_data.currency"].tolist() == ["eur", "USD", "USD", "gbp"]  # the default trimmed too

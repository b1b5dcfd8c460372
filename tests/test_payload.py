"""payload.py: canonical rows -> CAPI event dicts, nulls left out, Limited Data Use per policy."""

from __future__ import annotations

import orjson
import pandas as pd
import pytest

from capi_pipeline.payload import (
    LDU_STATE_CODES,
    EventBlock,
    JsonArray,
    OutboundEvent,
    block_size,
    build_events,
)


def _canon(n: int = 3) -> pd.DataFrame:
    return pd.DataFrame({
        "_file": ["f"] * n, "_row": list(range(1, n + 1)),
        "event_name": ["Purchase", "Lead", "Purchase"][:n], "event_time": pd.array([100, 200, 300][:n], "Int64"),
        "event_id": ["a", "b", "c"][:n], "action_source": ["physical_store"] * n,
        "custom_data.value": [9.5, float("nan"), 3.0][:n], "custom_data.currency": ["usd", None, "EUR"][:n],
        "custom_data.store_data.store_code": ["S1", None, "S3"][:n],
        "app_data.extinfo": [["a2"] + [""] * 15] * n,
    })


def test_events_shape() -> None:
    ud = {"em": pd.Series(["h1", None, ["h2", "h3"]]), "country": pd.Series(["hc", "hc", None])}
    built = build_events(_canon(), ud)
    assert [e.event_id for e in built.events] == ["a", "b", "c"]
    first, second, third = (e.body for e in built.events)
    assert first == {"event_name": "Purchase", "event_time": 100, "event_id": "a",
                     "action_source": "physical_store", "user_data": {"em": "h1", "country": "hc"},
                     "custom_data": {"value": 9.5, "currency": "USD", "store_data": {"store_code": "S1"}},
                     "app_data": {"extinfo": ["a2"] + [""] * 15}}
    assert "custom_data" not in second and second["user_data"] == {"country": "hc"}
    assert third["user_data"] == {"em": ["h2", "h3"]}
    assert isinstance(first["event_time"], int)
    assert "data_processing_options" not in first  # policy off: nothing sent


@pytest.mark.parametrize("policy, states, consent, expected", [
    ("all", None, None, [(["LDU"], 0, 0)] * 3),
    ("by_state", ["ca", "ny", None], None, [(["LDU"], 1, 1000), ([], None, None), ([], None, None)]),
    ("by_state", ["tx", "co", "ri"], None, [(["LDU"], 1, 1005), (["LDU"], 1, 1001), (["LDU"], 1, 1013)]),
    ("consent", ["ca", "ny", "ca"], [True, True, False], [(["LDU"], 1, 1000), (["LDU"], 0, 0), ([], None, None)]),
])
def test_ldu(policy, states, consent, expected) -> None:
    built = build_events(_canon(), {"em": pd.Series(["h"] * 3)}, ldu_policy=policy,
                         ldu_states=pd.Series(states) if states else None,
                         ldu_consent=pd.Series(consent) if consent else None)
    got = [(e.body["data_processing_options"], e.body.get("data_processing_options_country"),
            e.body.get("data_processing_options_state")) for e in built.events]
    assert got == expected
    assert sum(built.ldu_by_state.values()) == 3


def test_state_codes_cover_capi_reference() -> None:
    assert LDU_STATE_CODES["ca"] == 1000 and LDU_STATE_CODES["ri"] == 1013 and len(LDU_STATE_CODES) == 14


def test_empty() -> None:
    events = build_events(_canon().iloc[0:0], {}).events
    assert len(events) == 0 and list(events.blocks()) == [] and list(events) == []


# ---------------------------------------------------------------------------------------------- blocks

@pytest.mark.parametrize("batch_size, expected", [(1000, 125), (999, 124), (500, 62), (16, 2), (8, 1), (5, 1), (1, 1)])
def test_block_size(batch_size: int, expected: int) -> None:
    assert block_size(batch_size) == expected
    assert batch_size // expected * expected <= batch_size


def _events(n: int) -> list[OutboundEvent]:
    return [OutboundEvent(f"E{i % 2}", f"id{i}", "f.parquet", i + 1,
                          {"event_name": f"E{i % 2}", "event_id": f"id{i}", "user_data": {"em": "é" * (i % 3)},
                           "custom_data": {"value": i / 3, "contents": [{"id": "x", "quantity": i}]}})
            for i in range(n)]


def test_blocks_cut_a_chunk_in_order() -> None:
    """A chunk's events in blocks of `block`: each block one JSON array, exactly orjson's of its dicts."""
    canon = pd.concat([_canon()] * 3, ignore_index=True)
    canon["event_id"] = [f"id{i}" for i in range(9)]
    canon["_row"] = range(2, 11)
    ud = {"em": pd.Series([None, "h1", ["h2", "h3"]] * 3)}
    whole = build_events(canon, ud, block=1000).events
    chunk = build_events(canon, ud, block=4).events
    got = list(chunk.blocks())
    assert [b.size for b in got] == [4, 4, 1] and len(chunk) == 9 and len(chunk.ends) == 3
    assert got[0].keys() == [("Purchase", "id0"), ("Lead", "id1"), ("Purchase", "id2"), ("Purchase", "id3")]
    assert got[2].files == ["f"] and got[2].rows == [10]
    bodies = [e.body for e in whole]
    assert [bytes(b.bodies.data) for b in got] == [orjson.dumps(bodies[a:a + 4]) for a in (0, 4, 8)]
    assert list(chunk) == list(whole) and [e.event_id for e in chunk] == list(canon["event_id"])
    assert EventBlock.of([]).size == 0


def test_json_array_joins_to_what_orjson_writes_for_the_dicts() -> None:
    events = _events(10)
    parts = [JsonArray(orjson.dumps([e.body for e in events[a:b]]), b - a) for a, b in ((0, 4), (4, 4), (4, 10))]
    buffer = memoryview(b"".join(p.data for p in parts))  # views into one buffer, as a worker's chunk arrives
    views, start = [], 0
    for p in parts:
        views.append(JsonArray(buffer[start:start + len(p.data)], p.count))
        start += len(p.data)
    joined = JsonArray.join(views)
    assert joined.data == orjson.dumps([e.body for e in events]) and len(joined) == 10
    assert orjson.dumps({"data": joined.fragment()}) == orjson.dumps({"data": [e.body for e in events]})
    assert joined[3] == events[3].body and list(views[2]) == [e.body for e in events[4:]]
    assert JsonArray.join([views[1]]).data == b"[]" and JsonArray.join([]).count == 0
    block = EventBlock(["E0"], ["id0"], ["f.parquet"], [1], views[0])
    assert block.size == 1 and block.events()[0].body == events[0].body  # a block knows its events, not its bytes


def test_presence_from_normalize_builds_the_same_events() -> None:
    """normalize's own presence masks (no second search for missing cells) give the same events and counts."""
    from capi_pipeline.normalize import NormalizeOptions, RawField, normalize_user_data

    raw = {"em": [" A@B.com ", None, "bad", "c@d.org"], "ph": [None, "+44 20 7946 0958", "12", None],
           "fn": ["Zoë", "", None, "Al"], "partner_id": ["r1", None, "r3", None], "partner_name": ["liveramp", None,
                                                                                                   None, None]}
    ud = normalize_user_data([RawField(k, pd.Series(v, dtype=object)) for k, v in raw.items()],
                             NormalizeOptions(default_country="US"))
    for key, s in ud.values.items():
        assert ud.present[key].tolist() == s.notna().tolist(), key
    canon = _canon(3).iloc[[0, 1, 2, 0]].reset_index(drop=True)
    with_masks = build_events(canon, ud.values, user_data_present=ud.present)
    without = build_events(canon, ud.values)
    assert [e.body for e in with_masks.events] == [e.body for e in without.events]
    assert {k: v.tolist() for k, v in with_masks.present.items()} == {k: v.tolist() for k, v in without.present.items()}
    assert "partner_id" not in list(with_masks.events)[2].body["user_data"]  # a lonely partner id is dropped


@pytest.mark.parametrize("ids", [["a", "b\x00c", "d"], ["x", "y"], [], ["only"], ["a", 5]])
def test_an_event_chunk_pickles_its_ids_back_exactly(ids: list) -> None:
    import pickle

    from capi_pipeline.payload import EventChunk

    chunk = EventChunk(names=["n"] * len(ids), ids=ids, files=["f"] * len(ids), rows=list(range(len(ids))),
                       blob=bytearray(b"[]"), ends=[2], block=125)
    for protocol in (4, 5):
        assert pickle.loads(pickle.dumps(chunk, protocol=protocol)).ids == ids

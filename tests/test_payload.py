"""payload.py: canonical rows -> CAPI event dicts, nulls left out, Limited Data Use per policy."""

from __future__ import annotations

import pandas as pd
import pytest

from capi_pipeline.payload import LDU_STATE_CODES, build_events


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
    assert build_events(_canon().iloc[0:0], {}).events == []


# --------------------------------------------------------------------------------------------------- build_json

_NASTY = ['say "hi"', "back\\slash", "tab\there", "nl\nx", "\x00nul", "\x1f", "é ü 日本", "\u2028", "🙂", "", "/"]


def _same_objects(canon: pd.DataFrame, ud: dict, **ldu) -> None:
    """build_json's texts parse to exactly the dicts build_events builds (values and their JSON types)."""
    import json

    from capi_pipeline.payload import build_json

    events = build_events(canon, ud, **ldu)
    texts = build_json(canon, ud, **ldu)
    assert len(texts.json) == len(events.events)
    for text, event in zip(texts.json.to_pylist(), events.events):
        got = json.loads(text)
        assert got == event.body
        assert json.dumps(got, sort_keys=True) == json.dumps(event.body, sort_keys=True)  # 1 vs 1.0 differ here
    assert texts.ldu_by_state == events.ldu_by_state
    assert {k: v.tolist() for k, v in texts.present.items()} == {k: v.tolist() for k, v in events.present.items()}
    blob, offsets = texts.blob()
    assert [blob[a:b].decode() for a, b in zip(offsets, offsets[1:])] == texts.json.to_pylist()


def test_build_json_matches_build_events() -> None:
    ud = {"em": pd.Series(["h1", None, ["h2", "h3"]]), "country": pd.Series(["hc", "hc", None])}
    _same_objects(_canon(), ud)


@pytest.mark.parametrize("policy, states, consent", [
    ("all", None, None), ("by_state", ["ca", "ny", None], None), ("consent", ["ca", "ny", "ca"], [True, True, False]),
])
def test_build_json_ldu(policy, states, consent) -> None:
    _same_objects(_canon(), {"em": pd.Series(["h"] * 3)}, ldu_policy=policy,
                  ldu_states=pd.Series(states) if states else None, ldu_consent=pd.Series(consent) if consent else None)


def test_build_json_escapes_like_json() -> None:
    n = len(_NASTY)
    canon = pd.DataFrame({
        "_file": ["f"] * n, "_row": list(range(1, n + 1)), "event_name": _NASTY, "event_id": _NASTY[::-1],
        "event_time": pd.array(range(n), "Int64"), "action_source": ["website"] * n,
        "event_source_url": [None if i % 3 == 0 else v for i, v in enumerate(_NASTY)],
        "opt_out": [True, False, None] * (n // 3) + [None] * (n % 3),
        "custom_data.value": [0.1 + 0.2, 1e16, 12.0, float("nan"), -0.0, 5e-324, 1.5, 2.0, 3.0, 4.0, 7.25],
        "custom_data.num_items": pd.array([1, None] * (n // 2) + [3] * (n % 2), "Int64"),
        "custom_data.contents": [[{"id": v, "quantity": 1}] if i % 2 else None for i, v in enumerate(_NASTY)],
        "custom_data.store_data.store_code": [None, "S1"] * (n // 2) + ["S\"3"] * (n % 2),
        "custom_data.store_data.zone": ["z"] + [None] * (n - 1),
    })
    ud = {"em": pd.Series([v if i % 2 else [v, "x"] for i, v in enumerate(_NASTY)]),
          "fbp": pd.Series([None] * n, dtype=object)}
    _same_objects(canon, ud)


def test_build_json_empty_and_required() -> None:
    from capi_pipeline.payload import build_json

    assert len(build_json(_canon().iloc[0:0], {}).json) == 0
    with pytest.raises(KeyError):
        build_json(_canon().drop(columns=["event_id"]), {})

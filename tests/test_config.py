"""config.py: the pipeline YAML is validated on load and errors name the file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from capi_pipeline.config import load_pipeline, parse_pipeline
from capi_pipeline.errors import ConfigurationError

BASE = {
    "version": 1,
    "name": "shop_sales",
    "source": {"path": "data/dt={date}/*.parquet", "format": "parquet"},
    "contract": "builtin:offline_conversions",
    "destination": {"dataset_id": "123456"},
    "mapping": {"event_name": "event_name", "event_time": "ts", "user_data.em": ["email", "email2"],
                "custom_data.value": "value", "app_data.extinfo": [f"e{i}" for i in range(16)],
                "custom_data.store_data.store_code": "store"},
    "event_id": {"keys": ["order_id"]},
    "defaults": {"action_source": "physical_store"},
}


def _with(**changes):
    doc = yaml.safe_load(yaml.safe_dump(BASE))
    for dotted, value in changes.items():
        node = doc
        parts = dotted.split("__")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        if value is _DELETE:
            node.pop(parts[-1], None)
        else:
            node[parts[-1]] = value
    return doc


_DELETE = object()


def test_defaults_and_paths(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(BASE))
    cfg = load_pipeline(path)
    assert cfg.name == "shop_sales"
    assert cfg.schedule == "@daily"
    assert cfg.destinations[0].api_version == "v25.0"
    assert cfg.destinations[0].endpoint == "https://graph.facebook.com"
    assert cfg.partition_glob("2026-11-22") == tmp_path / "data/dt=2026-11-22/*.parquet"
    assert cfg.output_dir("2026-11-22") == tmp_path / "out" / "shop_sales" / "2026-11-22"
    assert cfg.ledger_location() == str(tmp_path / "state/ledger.sqlite")
    assert cfg.mapping["user_data.em"].columns == ("email", "email2")
    assert cfg.mapping["user_data.em"].many
    assert cfg.user_data.default_country == "US" and cfg.user_data.hash  # no user_data block: the defaults


@pytest.mark.parametrize("given, expected", [("gb", "GB"), ("none", None), ("None", None), (None, None)])
def test_default_country(given, expected, tmp_path: Path) -> None:
    cfg = parse_pipeline(_with(user_data={"default_country": given}), tmp_path / "p.yaml")
    assert cfg.user_data.default_country == expected
    assert cfg.with_endpoint("http://127.0.0.1:9/").destinations[0].endpoint == "http://127.0.0.1:9"


@pytest.mark.parametrize("changes, key", [
    ({"name": "Bad Name"}, "name"),
    ({"source__path": "data/*.parquet"}, "source.path"),
    ({"source__format": "xlsx"}, "source.format"),
    ({"source__delimiter": ":"}, "source.delimiter"),
    ({"destination__dataset_id": "abc"}, "destination.dataset_id"),
    ({"destination__api_version": "25"}, "destination.api_version"),
    ({"destination__endpoint": "http://x/?access_token=1"}, "destination.endpoint"),
    ({"mapping__user_data.email": "email"}, "mapping.user_data.email"),
    ({"mapping__app_data.extinfo": ["a", "b"]}, "mapping.app_data.extinfo"),
    ({"mapping__data_processing_options": "dpo"}, "mapping.data_processing_options"),  # LDU comes from `ldu`
    ({"mapping__data_processing_options_state": "s"}, "mapping.data_processing_options_state"),
    ({"mapping__event_time": _DELETE}, "mapping.event_time"),
    ({"event_id": {}}, "event_id"),
    ({"defaults__action_source": "web"}, "defaults.action_source"),
    ({"batching": {"size": 5000}}, "batching.size"),
    ({"ldu": {"policy": "consent"}}, "ldu.consent_column"),
    ({"ldu": {"policy": "by_state"}}, "ldu.policy"),
    ({"event_time": {"timezone": "Mars/Base"}}, "event_time.timezone"),
    ({"user_data": {"default_country": "USA"}}, "user_data.default_country"),
    ({"rules": {"max_age_days": 30}}, "rules.max_age_days"),  # Meta fails the whole request
    ({"rules": {"physical_store_max_age_days": 90}}, "rules.physical_store_max_age_days"),
    ({"rules": {"future_tolerance_s": 86400}}, "rules.future_tolerance_s"),
    ({"surprise": 1}, "(document)"),
    ({"version": 2}, "version"),
])
def test_errors_name_the_key(changes: dict, key: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError) as err:
        parse_pipeline(_with(**changes), tmp_path / "p.yaml")
    assert f": {key}:" in str(err.value)
    assert "p.yaml" in str(err.value)


def test_several_destinations(tmp_path: Path) -> None:
    doc = _with(destination=_DELETE, destinations=[{"dataset_id": "1"}, {"dataset_id": "2", "api_version": "v26.0"}])
    cfg = parse_pipeline(doc, tmp_path / "p.yaml")
    assert [d.dataset_id for d in cfg.destinations] == ["1", "2"]
    with pytest.raises(ConfigurationError, match="once"):
        parse_pipeline(_with(destination=_DELETE, destinations=[{"dataset_id": "1"}, {"dataset_id": "1"}]),
                       tmp_path / "p.yaml")


def test_unreadable_and_invalid_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="cannot read"):
        load_pipeline(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(ConfigurationError, match="not valid YAML"):
        load_pipeline(bad)


def test_prehashed_columns_are_marked(tmp_path: Path) -> None:
    doc = _with(user_data={"prehashed": ["email2"]})
    cfg = parse_pipeline(doc, tmp_path / "p.yaml")
    assert cfg.user_data.prehashed == ("email2",)
    assert not cfg.mapping["user_data.em"].prehashed  # only one of its two columns is pre-hashed


@pytest.mark.parametrize("endpoint", ["http://h/?access_token=1", "ftp://x", "notaurl", "http://h/a b"])
def test_an_endpoint_override_is_checked_like_the_yaml(endpoint: str, tmp_path: Path) -> None:
    """`run --endpoint` and a Connection's extra go through the same check as destination.endpoint: a token in
    a query string, or no http(s) URL at all, is exit 2 before anything is sent."""
    cfg = parse_pipeline(_with(), tmp_path / "p.yaml")
    with pytest.raises(ConfigurationError, match="endpoint override"):
        cfg.with_endpoint(endpoint)
    assert cfg.with_endpoint("http://127.0.0.1:8765/").destinations[0].endpoint == "http://127.0.0.1:8765"

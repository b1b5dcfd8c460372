"""capi_pipeline.contracts: ODCS loading, table-level violations, the real GX path on tiny frames, Data Docs."""

from __future__ import annotations

import contextlib
import copy
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from capi_pipeline.contracts import (
    BUILTIN_DIR,
    Contract,
    ContractResult,
    ContractValidator,
    load_contract,
    resolve_contract_path,
)
from capi_pipeline.errors import ConfigurationError, ContractViolation, InputError
from capi_pipeline.extract import read_chunks

FIXTURES = Path(__file__).parent / "fixtures" / "contracts"
BUILTINS = ("offline_conversions", "app_events", "website_events")
QUARANTINE_KEYS = {"file", "row", "event_name", "event_id", "rule", "field", "message"}


@pytest.fixture(scope="module")
def validators() -> dict[str, ContractValidator]:
    """One validator per builtin contract: GX suites are built once, as in the pipeline."""
    return {name: ContractValidator(load_contract(BUILTIN_DIR / f"{name}.odcs.yaml")) for name in BUILTINS}


# --------------------------------------------------------------------------------------------------- loading
@pytest.mark.parametrize("name", BUILTINS)
def test_builtin_contracts_load(name: str) -> None:
    contract = load_contract(resolve_contract_path(f"builtin:{name}", Path("/nonexistent")))
    assert isinstance(contract, Contract)
    assert contract.name == name
    assert contract.checks and contract.unique
    assert "email" in contract.pii_columns
    assert "event_name" not in contract.pii_columns
    assert all(c.rule and c.expectation.startswith("expect_") for c in contract.checks)


def test_offline_contract_keys_and_columns() -> None:
    contract = load_contract(BUILTIN_DIR / "offline_conversions.odcs.yaml")
    assert contract.unique == (("event_name", "order_id"), ("event_name", "lead_id"))
    assert contract.id_columns == ("order_id", "lead_id")
    assert contract.column_names[:3] == ("order_id", "lead_id", "event_name")
    assert contract.column("value").logical_type == "number"
    assert contract.column("currency").pattern == "^[A-Za-z]{3}$"
    # unconditional not-null checks come before conditional ones, formats after
    rules = [c.rule for c in contract.checks]
    assert rules.index("missing_value") < rules.index("purchase_missing_order_id") < rules.index("invalid_pattern")


def test_app_contract_columns_match_sample_schema() -> None:
    contract = load_contract(BUILTIN_DIR / "app_events.odcs.yaml")
    expected = (["event_id", "event_name", "event_ts_ms", "advertiser_tracking_enabled",
                 "application_tracking_enabled"] + [f"ext_{i:02d}" for i in range(16)]
                + ["madid", "anon_id", "client_ip_address", "email", "phone", "country", "value", "currency",
                   "install_referrer"])
    assert list(contract.column_names) == expected
    assert contract.unique == (("event_name", "event_id"),)
    assert contract.column("ext_00").allowed == ("a2", "i2")


def test_resolve_relative_path(tmp_path: Path) -> None:
    src = BUILTIN_DIR / "app_events.odcs.yaml"
    (tmp_path / "data_contracts").mkdir()
    target = tmp_path / "data_contracts" / "mine.odcs.yaml"
    target.write_text(src.read_text())
    assert resolve_contract_path("data_contracts/mine.odcs.yaml", tmp_path) == target


@pytest.mark.parametrize("ref", ["builtin:nope", "builtin:../etc", "missing/contract.odcs.yaml"])
def test_resolve_errors(ref: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError):
        resolve_contract_path(ref, tmp_path)


def _base() -> dict:
    return {
        "apiVersion": "v3.0.2", "kind": "DataContract", "id": "urn:test", "name": "t", "version": "1.0.0",
        "status": "active",
        "schema": [{"name": "t", "properties": [
            {"name": "event_id", "logicalType": "string", "required": True},
            {"name": "event_name", "logicalType": "string", "required": True},
            {"name": "value", "logicalType": "number", "logicalTypeOptions": {"minimum": 0}},
        ], "quality": [{"metric": "duplicateValues", "mustBe": 0,
                        "arguments": {"properties": ["event_name", "event_id"]}}]}],
    }


def _set(path: str, value: object):
    def mutate(doc: dict) -> None:
        keys = path.split("/")
        node = doc
        for k in keys[:-1]:
            node = node[int(k)] if isinstance(node, list) else node[k]
        last = keys[-1]
        if value is _DELETE:
            del node[last]
        elif isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value
    return mutate


_DELETE = object()
P = "schema/0/properties"

LOAD_ERRORS = [
    # (mutation, text the message must contain)
    (_set("apiVersion", "v2.2.0"), "apiVersion"),
    (_set("kind", "DataProduct"), "kind"),
    (_set("id", _DELETE), "id: is required"),
    (_set("name", "Bad Name"), "name"),
    (_set("schema", []), "schema"),
    (_set(f"{P}/0/logicalType", "varchar"), "properties[0].logicalType"),
    (_set(f"{P}/0/name", _DELETE), "properties[0].name"),
    (_set(f"{P}/1/name", "event_id"), "listed twice"),
    (_set(f"{P}/0/required", "yes"), "properties[0].required"),
    (_set(f"{P}/0/logicalTypeOptions", {"pattern": "([a-z"}), "logicalTypeOptions.pattern"),
    (_set(f"{P}/2/logicalTypeOptions", {"pattern": "^x$"}), "needs a string column"),
    (_set(f"{P}/2/logicalTypeOptions", {"minimum": 5, "maximum": 1}), "greater than maximum"),
    (_set(f"{P}/2/logicalTypeOptions", {"precision": 2}), "logicalTypeOptions.precision"),
    (_set(f"{P}/0/quality", [{"metric": "nullValues", "mustBeLessThan": 5}]), "mustBe"),
    (_set(f"{P}/0/quality", [{"metric": "rowCount", "mustBe": 0}]), "metric"),
    (_set(f"{P}/0/quality", [{"type": "sql", "query": "select 1"}]), "quality[0].type"),
    (_set(f"{P}/0/quality", [{"type": "custom", "engine": "soda", "implementation": "x"}]), "engine"),
    (_set(f"{P}/0/quality", [{"type": "custom", "engine": "greatExpectations",
                              "implementation": {"type": "drop table"}}]), "implementation.type"),
    (_set("schema/0/quality/0/arguments/properties", ["event_name", "nope"]), "'nope'"),
    (_set(f"{P}/0/quality", [{"metric": "invalidValues", "mustBe": 0, "arguments": {}}]), "validValues"),
    # a typo of a key would silently drop its check: not an ODCS property key, with the likely one
    (_set(f"{P}/0/requred", True), "properties[0].requred: is not an ODCS v3 property key (did you mean 'required'?)"),
    (_set(f"{P}/0/logicalTypeOption", {"pattern": "^x$"}), "did you mean 'logicalTypeOptions'?"),
    (_set(f"{P}/0/mostly null.", None), "properties[0].mostly null.: is not an ODCS v3 property key"),
]


@pytest.mark.parametrize(("mutate", "needle"), LOAD_ERRORS)
def test_load_errors_name_file_and_key(mutate, needle: str, tmp_path: Path) -> None:
    doc = copy.deepcopy(_base())
    mutate(doc)
    path = tmp_path / "broken.odcs.yaml"
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigurationError) as err:
        load_contract(path)
    assert str(path) in str(err.value)
    assert needle in str(err.value)


def test_load_base_contract_is_valid(tmp_path: Path) -> None:
    path = tmp_path / "ok.odcs.yaml"
    path.write_text(yaml.safe_dump(_base()))
    contract = load_contract(path)
    assert contract.unique == (("event_name", "event_id"),)


def test_load_invalid_yaml(tmp_path: Path) -> None:
    path = tmp_path / "bad.odcs.yaml"
    path.write_text("apiVersion: v3.0.2\nschema: [\n")
    with pytest.raises(ConfigurationError, match="not valid YAML"):
        load_contract(path)


def test_unknown_gx_expectation_is_a_configuration_error(tmp_path: Path) -> None:
    doc = _base()
    doc["schema"][0]["properties"][0]["quality"] = [{"type": "custom", "engine": "greatExpectations",
                                                     "implementation": {"type": "expect_the_unexpected"}}]
    path = tmp_path / "c.odcs.yaml"
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigurationError, match="expect_the_unexpected"):
        ContractValidator(load_contract(path))


def test_import_is_cheap() -> None:
    code = "import sys, capi_pipeline.contracts; assert 'great_expectations' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[1])


def test_gx_imports_without_scipy_stats_and_altair_until_they_are_used() -> None:
    code = """
import sys
from capi_pipeline.contracts import BUILTIN_DIR, ContractValidator, load_contract
ContractValidator(load_contract(BUILTIN_DIR / "offline_conversions.odcs.yaml"))
deferred = [n for n in ("scipy.stats", "altair") if type(sys.modules[n]).__name__ == "_DeferredModule"]
import great_expectations as gx
from great_expectations.expectations.core import expect_column_kl_divergence_to_be_less_than as kl
assert round(float(kl.stats.entropy([0.5, 0.5], [0.9, 0.1])), 4) == 0.5108  # the real scipy.stats, on first use
assert type(sys.modules["scipy.stats"]).__name__ == "module" and sys.modules["scipy.stats"].entropy
assert kl.alt.Chart is sys.modules["altair"].Chart and type(sys.modules["altair"]).__name__ == "module"
print(",".join(deferred))
"""
    out = subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[1],
                         capture_output=True, text=True).stdout
    assert out.strip() == "scipy.stats,altair"


def test_deferred_module_imports_on_first_read_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from capi_pipeline import contracts

    (tmp_path / "capi_probe_pkg").mkdir()
    (tmp_path / "capi_probe_pkg" / "__init__.py").write_text("")
    (tmp_path / "capi_probe_pkg" / "heavy.py").write_text(
        "import builtins\nbuiltins.capi_probe_loads = getattr(builtins, 'capi_probe_loads', 0) + 1\nVALUE = 42\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import builtins

    for name in ("capi_probe_pkg", "capi_probe_pkg.heavy"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    proxy = contracts._DeferredModule("capi_probe_pkg.heavy")
    monkeypatch.setitem(sys.modules, "capi_probe_pkg.heavy", proxy)
    import capi_probe_pkg.heavy as heavy  # noqa: E402 - importing a deferred module is not a use
    from capi_probe_pkg import heavy as same

    assert heavy is proxy is same and getattr(builtins, "capi_probe_loads", 0) == 0
    assert heavy.VALUE == 42 and builtins.capi_probe_loads == 1
    assert sys.modules["capi_probe_pkg.heavy"] is not proxy  # the real module took its place
    assert heavy.VALUE == 42 and sys.modules["capi_probe_pkg.heavy"].VALUE == 42 and builtins.capi_probe_loads == 1
    with pytest.raises(AttributeError):
        heavy.MISSING
    del builtins.capi_probe_loads


# --------------------------------------------------------------------------------------------------- fixtures
def _scenarios() -> list[tuple[str, dict]]:
    out = []
    for folder in sorted(p for p in FIXTURES.iterdir() if p.is_dir()):
        for case in json.loads((folder / "expected.json").read_text()):
            out.append(pytest.param(folder.name, case, id=f"{folder.name}/{case['file']}"))
    return out


@pytest.mark.parametrize(("scenario", "case"), _scenarios())
def test_fixture_scenarios(scenario: str, case: dict, validators: dict[str, ContractValidator]) -> None:
    path = FIXTURES / scenario / case["file"]
    if case["outcome"] == "unreadable":  # extract.py stops before the contract sees a row
        with pytest.raises(InputError) as err:
            list(read_chunks(path, "parquet", 1000, name=case["file"]))
        assert case["file"] in str(err.value)
        return
    frame = pd.read_parquet(path)
    validator = validators[case["contract"]]
    if case["outcome"] == "violation":
        with pytest.raises(ContractViolation) as err:
            validator.check_table(frame, file=str(path))
        assert err.value.rule == case["rule"]
        assert err.value.column == case["column"]
        assert str(path) in str(err.value) and case["column"] in str(err.value)
        return
    validator.check_table(frame, file=str(path))
    result = validator.validate(frame, file=str(path), first_row=1)
    assert isinstance(result, ContractResult)
    assert len(result.valid) == len(frame)
    got = {str(r["row"]): r["rule"] for r in result.rejections}
    assert got == case.get("rejected", {})
    assert int((~result.valid).sum()) == len(result.rejections) == sum(result.counts.values())


RUNTIME_CONFIGURATIONS = (None, {}, {"result_format": "COMPLETE"}, {"catch_exceptions": False, "result_format": {
    "result_format": "COMPLETE", "partial_unexpected_count": 0, "include_unexpected_rows": False}})


def test_gx_kwargs_read_configuration_once_with_gx_values(validators: dict[str, ContractValidator]) -> None:
    import great_expectations as gx

    from capi_pipeline import contracts

    # a GX upgrade fails here: compare its code with contracts._lighter_gx_calls' replacements first
    assert gx.__version__.startswith(contracts._GX_CODE_OF)
    originals = {k: v for k, v in contracts._GX_ORIGINALS.items() if k.startswith("_get_")}
    assert set(originals) == {"_get_domain_kwargs", "_get_success_kwargs", "_get_runtime_kwargs"}
    # the contracts' expectations, and some with non-default runtime and success kwargs
    expectations = [e for validator in validators.values() for e in validator._suite.expectations] + [
        gx.expectations.ExpectColumnValuesToNotBeNull(column="a", result_format="COMPLETE", catch_exceptions=True,
                                                      mostly=0.5),
        gx.expectations.ExpectColumnValuesToBeBetween(column="v", min_value=1, strict_min=True, mostly=0.9,
                                                      result_format={"result_format": "BASIC"}),
        gx.expectations.ExpectColumnValueLengthsToBeBetween(column="s", min_value=2, max_value=5,
                                                            catch_exceptions=False),
    ]
    compared = 0
    for expectation in expectations:
        fresh = expectation.configuration.to_domain_obj()  # what GX's validator works on
        for name, gx_method in originals.items():
            if name == "_get_runtime_kwargs":
                for runtime in RUNTIME_CONFIGURATIONS:
                    assert getattr(fresh, name)(runtime) == gx_method(fresh, runtime), (name, runtime)
                    compared += 1
            else:
                assert getattr(fresh, name)() == gx_method(fresh), name
                compared += 1
    assert compared > 100


class _Text(str):
    pass


def test_gx_json_conversion_answers_as_gx(validators: dict[str, ContractValidator]) -> None:
    import enum

    import great_expectations.core.id_dict as id_dict
    import great_expectations.util as gx_util
    import great_expectations.validator.metric_configuration as metric_configuration

    from capi_pipeline import contracts

    gx_convert = contracts._GX_ORIGINALS["convert_to_json_serializable"]
    fast = gx_util.convert_to_json_serializable
    assert fast is not gx_convert  # replaced where GX calls it: itself (recursion), ids of metric configurations
    assert id_dict.convert_to_json_serializable is fast is metric_configuration.convert_to_json_serializable

    class Color(str, enum.Enum):
        RED = "red"

    values = [None, "", "text", _Text("sub"), Color.RED, 0, 1.5, float("nan"), True, np.int64(3), np.float64(0.25),
              np.bool_(True), [None, "a", np.int32(2)], ("x", None), {"column": "c", "row_condition": None,
              "nested": {"k": None, 1: "v"}}, pd.Timestamp("2026-01-02"), {"result_format": {"result_format": "X"}}]
    for value in values:
        got, want = fast(copy.deepcopy(value)), gx_convert(copy.deepcopy(value))
        assert json.dumps(got, sort_keys=True) == json.dumps(want, sort_keys=True), value
        assert type(got) is type(want), value


def test_wrong_type_messages_carry_no_values(validators: dict[str, ContractValidator]) -> None:
    frame = pd.read_parquet(FIXTURES / "wrong_type" / "offline.parquet")
    with pytest.raises(ContractViolation) as err:
        validators["offline_conversions"].check_table(frame, file="x.parquet")
    assert "abc" not in str(err.value) and "n/a" not in str(err.value)


# --------------------------------------------------------------------------------------------------- GX path
def _offline(n: int = 4, **cols: object) -> pd.DataFrame:
    frame = pd.read_parquet(FIXTURES / "good" / "offline.parquet").iloc[:n].reset_index(drop=True)
    for k, v in cols.items():
        frame[k] = v
    return frame


ROW_CASES = [
    # (column, bad value on row 2, expected rule, expected field)
    ("event_name", None, "missing_value", "event_name"),
    ("event_name", "   ", "missing_value", "event_name"),
    ("event_name", "purchase", "value_not_allowed", "event_name"),
    ("event_time", None, "missing_value", "event_time"),
    ("order_id", None, "purchase_missing_order_id", "order_id"),
    ("action_source", "online", "value_not_allowed", "action_source"),
    ("currency", "US$", "invalid_pattern", "currency"),
    ("value", -1.0, "out_of_range", "value"),
    ("lead_id", "12ab", "invalid_pattern", "lead_id"),
    ("items", "{not a list", "invalid_json", "items"),
    ("store_code", "S" * 65, "invalid_length", "store_code"),
    ("identity_partner", "Live Ramp", "invalid_pattern", "identity_partner"),
]


def test_offline_row_rules(validators: dict[str, ContractValidator]) -> None:
    """The golden table in ONE GX call (row 1 clean, then one row per case): GX's cost is mostly per call."""
    base = pd.read_parquet(FIXTURES / "good" / "offline.parquet").iloc[[0]]
    frame = pd.concat([base] * (len(ROW_CASES) + 1), ignore_index=True)
    frame["order_id"] = [f"S1-x-{i}" for i in range(len(frame))]
    for i, (column, bad, _, _) in enumerate(ROW_CASES, start=1):
        frame.loc[i, column] = bad
    validator = validators["offline_conversions"]
    validator.check_table(frame, file="f.parquet")
    result = validator.validate(frame, file="f.parquet", first_row=101)
    assert result.valid.tolist() == [True] + [False] * len(ROW_CASES)
    got = [(r["row"], r["rule"], r["field"]) for r in result.rejections]
    assert got == [(101 + i, rule, field) for i, (_, _, rule, field) in enumerate(ROW_CASES, start=1)]
    for rej, (_, bad, _, _) in zip(result.rejections, ROW_CASES):
        assert set(rej) == QUARANTINE_KEYS and rej["file"] == "f.parquet"
        if isinstance(bad, str) and bad.strip():
            assert bad not in rej["message"]
    assert sum(result.counts.values()) == len(ROW_CASES)
    assert result.counts["invalid_pattern"] == 3 and result.counts["missing_value"] == 3
    assert result.expectations_run == len(validator.contract.checks)


def test_lighter_gx_call_scope_gives_gx_results(validators: dict[str, ContractValidator],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from great_expectations.execution_engine.pandas_execution_engine import PandasExecutionEngine

    from capi_pipeline import contracts

    good = pd.read_parquet(FIXTURES / "good" / "offline.parquet")
    frame = pd.concat([good] * 3, ignore_index=True)
    frame["order_id"] = [f"S1-x-{i}" for i in range(len(frame))]
    frame.loc[frame.index % 7 == 0, "order_id"] = None  # Purchase rows without an order id
    frame.loc[frame.index % 5 == 0, ["lead_id", "email"]] = None  # Lead rows without lead id or email
    queries: list[str] = []
    query = pd.DataFrame.query

    def counted(self: pd.DataFrame, expr: str, **kwargs: Any) -> Any:
        queries.append(expr)
        return query(self, expr, **kwargs)

    monkeypatch.setattr(pd.DataFrame, "query", counted)
    widths: list[int] = []  # columns of the frames column metrics get (unexpected index lists included)
    compute_domain = PandasExecutionEngine.get_compute_domain

    def measured(self: Any, domain_kwargs: dict, domain_type: Any, accessor_keys: Any = None) -> Any:
        data, compute, accessor = compute_domain(self, domain_kwargs, domain_type, accessor_keys)
        if "column" in accessor:
            widths.append(len(data.columns))
        return data, compute, accessor

    records = PandasExecutionEngine.get_domain_records

    def measured_records(self: Any, domain_kwargs: dict) -> Any:
        data = records(self, domain_kwargs)
        if "column" in domain_kwargs:
            widths.append(len(data.columns))
        return data

    monkeypatch.setattr(PandasExecutionEngine, "get_compute_domain", measured)
    monkeypatch.setattr(PandasExecutionEngine, "get_domain_records", measured_records)
    validator = validators["offline_conversions"]
    kept = validator.validate(frame, file="f.parquet", first_row=2)
    kept_queries, kept_widths = list(queries), set(widths)
    queries.clear()
    widths.clear()
    # GX's own way: each metric filters the whole frame by its row condition, column metrics get every column
    monkeypatch.setattr(contracts, "_our_gx_call", contextlib.nullcontext)
    plain = validator.validate(frame, file="f.parquet", first_row=2)
    assert len(kept_queries) == len(set(kept_queries)) == 3 and len(queries) >= 4 * len(kept_queries)
    assert set(queries) == set(kept_queries)
    assert kept_widths == {1} and set(widths) == {len(validator._columns_used)} and len(validator._columns_used) > 5
    assert kept.counts == plain.counts and kept.failures == plain.failures and kept.rejections == plain.rejections
    assert kept.valid.tolist() == plain.valid.tolist() and "purchase_missing_order_id" in kept.counts


def test_lighter_gx_call_scope_leaves_other_domains_whole(validators: dict[str, ContractValidator],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Column pairs, column lists, tables, column aggregates and row conditions on another column: the same GX
    results inside and outside our call scope."""
    import great_expectations as gx
    from great_expectations.expectations.row_conditions import deserialize_row_condition

    from capi_pipeline import contracts

    frame = pd.DataFrame({"a": [1.0, 2.0, 3.0, None, 5.0, 6.0] * 40, "b": [1.0, 2.0, 0.0, 4.0, None, 6.0] * 40,
                          "s": pd.array(["x", "y", "x", "z", None, "y"] * 40, dtype="str")})
    b_over_1 = deserialize_row_condition({"type": "comparison", "column": {"name": "b"}, "operator": ">",
                                          "parameter": 1})
    expectations = [
        gx.expectations.ExpectColumnPairValuesToBeEqual(column_A="a", column_B="b"),
        gx.expectations.ExpectCompoundColumnsToBeUnique(column_list=["a", "s"]),
        gx.expectations.ExpectTableRowCountToBeBetween(min_value=1, max_value=10_000),
        gx.expectations.ExpectTableColumnsToMatchSet(column_set=["a", "b", "s"]),
        gx.expectations.ExpectColumnMeanToBeBetween(column="a", min_value=0, max_value=3),
        gx.expectations.ExpectColumnValuesToBeInSet(column="s", value_set=["x", "y"], row_condition=b_over_1),
        gx.expectations.ExpectColumnValuesToNotBeNull(column="a", row_condition=b_over_1),
    ]
    validator = validators["website_events"]
    suite = validator._context.suites.add(gx.ExpectationSuite(name="other_domains", expectations=expectations))
    monkeypatch.setattr(validator, "_suite", suite)

    def outcome(result: Any) -> list[Any]:
        return [(r.expectation_config.type, r.success, r.result.get("observed_value"),
                 r.result.get("unexpected_count"), r.result.get("unexpected_index_list")) for r in result.results]

    kept = outcome(validator._run_gx(frame, file="f.parquet"))
    monkeypatch.setattr(contracts, "_our_gx_call", contextlib.nullcontext)
    assert kept == outcome(validator._run_gx(frame, file="f.parquet"))
    assert [success for _, success, *_ in kept] == [False, False, True, True, False, False, False]


def test_condition_keys_tell_conditions_apart() -> None:
    from capi_pipeline.contracts import _condition_key

    purchase = {"type": "comparison", "column": {"name": "event_name"}, "operator": "==", "parameter": "Purchase"}
    assert _condition_key(purchase, None) == _condition_key(dict(reversed(purchase.items())), None)
    keys = [_condition_key(purchase, None), _condition_key({**purchase, "parameter": "Lead"}, None),
            _condition_key({**purchase, "parameter": 1}, None), _condition_key({**purchase, "parameter": 1.0}, None),
            _condition_key({**purchase, "parameter": True}, None), _condition_key('event_name == "Purchase"', None),
            _condition_key('event_name == "Purchase"', "pandas"), _condition_key(purchase, "pandas")]
    assert None not in keys and len(set(keys)) == len(keys)
    assert _condition_key({"parameter": object()}, None) is None and _condition_key(("a",), None) is None


def test_lead_needs_lead_id_and_some_id(validators: dict[str, ContractValidator]) -> None:
    frame = pd.read_parquet(FIXTURES / "good" / "offline.parquet").iloc[6:9].reset_index(drop=True)
    frame.loc[0, "lead_id"] = None
    frame.loc[1, ["lead_id", "event_name"]] = [None, "Other"]
    result = validators["offline_conversions"].validate(frame, file="f", first_row=1)
    assert [(r["row"], r["rule"]) for r in result.rejections] == [(1, "missing_order_or_lead_id"),
                                                                   (2, "missing_order_or_lead_id")]
    assert result.failures["lead_missing_lead_id"] == 1


def test_text_numbers_are_coerced_and_bad_ones_rejected(validators: dict[str, ContractValidator]) -> None:
    frame = _offline(value=pd.Series(["10.5", "abc", None, " 3 "], dtype="str"))
    validator = validators["offline_conversions"]
    validator.check_table(frame, file="f.csv")  # some numbers parse: a row problem, not a table problem
    result = validator.validate(frame, file="f.csv", first_row=1)
    assert [(r["row"], r["rule"], r["field"]) for r in result.rejections] == [(2, "invalid_number", "value")]
    assert "abc" not in result.rejections[0]["message"]


def test_app_row_rules(validators: dict[str, ContractValidator]) -> None:
    frame = pd.read_parquet(FIXTURES / "good" / "app.parquet")
    frame.loc[0, "ext_00"] = "w1"
    frame.loc[1, "advertiser_tracking_enabled"] = 2
    frame.loc[2, "event_ts_ms"] = 1_700_000_000  # seconds, not milliseconds
    frame.loc[3, "event_id"] = None
    frame.loc[4, "advertiser_tracking_enabled"] = None  # a Meta rule, not a contract rule
    validator = validators["app_events"]
    validator.check_table(frame, file="a")
    result = validator.validate(frame, file="a", first_row=1)
    got = [(r["row"], r["rule"], r["field"]) for r in result.rejections]
    assert got == [(1, "value_not_allowed", "ext_00"), (2, "out_of_range", "advertiser_tracking_enabled"),
                   (3, "out_of_range", "event_ts_ms"), (4, "missing_value", "event_id")]
    assert result.valid.tolist() == [False, False, False, False, True, True]
    assert result.rejections[0]["event_id"] == "app-0" and result.rejections[3]["event_id"] is None


def test_app_nullable_int_columns(validators: dict[str, ContractValidator]) -> None:
    frame = pd.read_parquet(FIXTURES / "good" / "app.parquet", dtype_backend="numpy_nullable")
    frame["event_ts_ms"] = frame["event_ts_ms"].astype("Int64")
    frame.loc[0, "event_ts_ms"] = pd.NA
    validator = validators["app_events"]
    validator.check_table(frame, file="a")
    assert validator.validate(frame, file="a", first_row=1).valid.all()


def test_fractional_integer_column_is_a_violation(validators: dict[str, ContractValidator]) -> None:
    frame = pd.read_parquet(FIXTURES / "good" / "app.parquet")
    frame["advertiser_tracking_enabled"] = [0.5, 1, 0, 1, 1, 0]
    with pytest.raises(ContractViolation) as err:
        validators["app_events"].check_table(frame, file="a")
    assert (err.value.rule, err.value.column) == ("wrong_type", "advertiser_tracking_enabled")


def test_website_contract_on_tiny_frame(validators: dict[str, ContractValidator]) -> None:
    validator = validators["website_events"]
    frame = pd.DataFrame({c: pd.Series([None] * 3, dtype="str") for c in validator.contract.column_names})
    frame["event_id"] = ["w1", "w2", "w1"]
    frame["event_name"] = "PageView"
    frame["event_time"] = 1_795_390_000
    frame["event_source_url"] = ["https://shop.example.com/p/1", "ftp://x", "https://shop.example.com/"]
    frame["client_user_agent"] = "Mozilla/5.0"
    frame["fbp"] = ["fb.1.1700000000000.123", None, "fb.1.x.y"]
    frame["value"] = np.nan
    validator.check_table(frame, file="w")
    result = validator.validate(frame, file="w", first_row=1)
    assert [(r["row"], r["rule"], r["field"]) for r in result.rejections] == [
        (2, "invalid_pattern", "event_source_url"), (3, "invalid_pattern", "fbp")]


def test_duplicates_only_among_valid_rows(validators: dict[str, ContractValidator]) -> None:
    frame = _offline(3)
    frame.loc[1, "order_id"] = frame.loc[0, "order_id"]
    frame.loc[2, "order_id"] = frame.loc[0, "order_id"]
    frame.loc[0, "currency"] = "$$$"  # the first copy is bad: the second becomes the kept one
    result = validators["offline_conversions"].validate(frame, file="f", first_row=1)
    assert [(r["row"], r["rule"]) for r in result.rejections] == [(1, "invalid_pattern"), (3, "duplicate_event_id")]
    assert result.valid.tolist() == [False, True, False]


def test_several_chunks_in_one_call_equal_one_call_each(validators: dict[str, ContractValidator]) -> None:
    """`chunk_sizes`: one GX call over consecutive chunks, duplicates still looked for inside each chunk."""
    frame = _offline(6)
    frame.loc[1, "order_id"] = frame.loc[0, "order_id"]  # a duplicate inside chunk 1 (rows 1-3)
    frame.loc[3, "order_id"] = frame.loc[0, "order_id"]  # same key in chunk 2 (rows 4-6): not a duplicate there
    frame.loc[4, "currency"] = "$$$"
    v = validators["offline_conversions"]
    together = v.validate(frame, file="f", first_row=1, chunk_sizes=[3, 3])
    parts = [v.validate(frame.iloc[:3].reset_index(drop=True), file="f", first_row=1),
             v.validate(frame.iloc[3:].reset_index(drop=True), file="f", first_row=4)]
    assert together.rejections == parts[0].rejections + parts[1].rejections
    assert [(r["row"], r["rule"]) for r in together.rejections] == [(2, "duplicate_event_id"), (5, "invalid_pattern")]
    assert together.valid.tolist() == parts[0].valid.tolist() + parts[1].valid.tolist()
    assert together.counts == {"duplicate_event_id": 1, "invalid_pattern": 1}


def test_empty_chunk(validators: dict[str, ContractValidator]) -> None:
    frame = _offline().iloc[:0]
    validators["offline_conversions"].check_table(frame, file="e")
    result = validators["offline_conversions"].validate(frame, file="e", first_row=1)
    assert len(result.valid) == 0 and result.rejections == [] and result.counts == {}


def test_non_range_index_maps_to_positions(validators: dict[str, ContractValidator]) -> None:
    frame = _offline()
    frame.index = [40, 30, 20, 10]
    frame.loc[20, "event_name"] = "Nope"
    result = validators["offline_conversions"].validate(frame, file="f", first_row=11)
    assert [r["row"] for r in result.rejections] == [13]


def test_validate_100k_rows(validators: dict[str, ContractValidator]) -> None:
    n = 100_000
    base = pd.read_parquet(FIXTURES / "good" / "offline.parquet")
    frame = base.iloc[np.arange(n) % len(base)].reset_index(drop=True)
    frame["order_id"] = frame["order_id"].where(frame["order_id"].isna(),
                                                pd.Series([f"S1-x-{i}" for i in range(n)], dtype="str"))
    frame["lead_id"] = frame["lead_id"].where(frame["lead_id"].isna(), pd.Series([str(10**15 + i) for i in range(n)]))
    frame.loc[::1000, "currency"] = "1x"
    validator = validators["offline_conversions"]
    start = time.perf_counter()
    validator.check_table(frame, file="big.parquet")
    result = validator.validate(frame, file="big.parquet", first_row=1)
    elapsed = time.perf_counter() - start
    print(f"\ncontract validation of {n} rows: {elapsed:.2f} s")
    assert result.counts == {"invalid_pattern": 100}
    assert result.valid.sum() == n - 100


# --------------------------------------------------------------------------------------------------- data docs
def test_data_docs_hold_no_values(tmp_path: Path) -> None:
    validator = ContractValidator(load_contract(BUILTIN_DIR / "offline_conversions.odcs.yaml"))
    assert validator.build_data_docs(tmp_path) is None  # nothing validated yet
    frame = _offline(value=[1.0, -777.25, 3.0, 4.0])
    frame["email"] = "sentinel.person@example.com"
    frame["event_name"] = ["Purchase", "Purchase", "SentinelEventName", "Purchase"]
    frame["currency"] = ["usd", "usd", "usd", "QQQQ"]
    frame["order_id"] = ["ORD-SENTINEL-1", "ORD-SENTINEL-2", "ORD-SENTINEL-3", "ORD-SENTINEL-1"]
    result = validator.validate(frame, file="part-00000.parquet", first_row=1)
    assert not result.valid[1:].any()
    index = validator.build_data_docs(tmp_path)
    assert index == (tmp_path / "gx_data_docs" / "index.html").resolve()
    files = [p for p in (tmp_path / "gx_data_docs").rglob("*") if p.is_file()]
    pages = [p for p in files if p.suffix == ".html"]
    assert len(pages) >= 3  # index, suite, one validation
    text = "\n".join(p.read_text(errors="ignore") for p in files if p.suffix in (".html", ".json", ".js"))
    assert "offline_conversions" in text
    for secret in ("sentinel", "SENTINEL", "777.25", "QQQQ", "SentinelEventName", "example.com"):
        assert secret not in text, secret
    # a second build adds the new validations
    validator.validate(frame, file="part-00001.parquet", first_row=1)
    validator.build_data_docs(tmp_path)
    assert len(list((tmp_path / "gx_data_docs").rglob("*.html"))) == len(pages) + 1

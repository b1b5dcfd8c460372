"""ODCS v3 data contracts: load `data_contracts/*.odcs.yaml`, build one GX suite, validate chunks of source rows.

What a contract says and how it is enforced:

* table level, `ContractValidator.check_table` -> `ContractViolation` (nothing of the partition is sent):
  every listed column exists (`missing_column`); integer / number / boolean columns hold that type
  (`wrong_type`: a float column with fractions for an integer, a text column with no number in it, ...).
* row level, `ContractValidator.validate` -> quarantine records, ONE Great Expectations call per chunk:
  `required` -> not null (`missing_value`), `logicalTypeOptions.pattern` (`invalid_pattern`),
  `minimum`/`maximum` (`out_of_range`), `minLength`/`maxLength` (`invalid_length`), library metric
  `invalidValues` with `validValues` (`value_not_allowed`) or `pattern`, `nullValues` (`missing_value`), custom
  `engine: greatExpectations` blocks (rule = the block's `name`), text cells of numeric columns that are not
  numbers (`invalid_number`, checked before GX) and schema-level `duplicateValues` over `properties`
  (`duplicate_event_id`: the 2nd+ occurrence inside the chunk; keys with a null part are not compared).
  A row gets one rejection, for the first check it fails in this order: invalid_number, unconditional
  not-null checks, conditional (row_condition) not-null checks, all other checks in contract order,
  duplicate_event_id last; `counts` count those, `failures` count every failing row per rule.

Only `mustBe: 0` library metrics are supported: the contract is a per-row gate, not a tolerance.
Blank strings count as null. Messages name file, row, column and rule, never a value.
`import capi_pipeline.contracts` stays cheap: Great Expectations is imported by `ContractValidator`.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import difflib
import importlib
import importlib.util
import logging
import os
import re
import sys
import threading
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
import yaml

from capi_pipeline.errors import ConfigurationError, ContractViolation

__all__ = [
    "Check",
    "ColumnRule",
    "Contract",
    "ContractResult",
    "ContractValidator",
    "load_contract",
    "resolve_contract_path",
]

REPO_DIR = Path(__file__).resolve().parents[1]
# In a checkout the contracts live at the top level; a wheel carries them inside the package (pyproject).
BUILTIN_DIR = next((d for d in (REPO_DIR / "data_contracts", Path(__file__).parent / "data_contracts") if d.is_dir()),
                   REPO_DIR / "data_contracts")

LOGICAL_TYPES = frozenset({"string", "integer", "number", "boolean", "date", "timestamp", "time", "object", "array"})
NUMERIC_TYPES = frozenset({"integer", "number"})
PII_CLASSES = frozenset({"pii", "restricted", "confidential", "sensitive"})
_NAME_RE = re.compile(r"^[a-z0-9_]+$")
_RULE_RE = re.compile(r"^[a-z][a-z0-9_]*$")
_GX_TYPE_RE = re.compile(r"^expect_[a-z0-9_]+$")
_OPTION_KEYS = frozenset({"pattern", "minimum", "maximum", "minLength", "maxLength", "format",
                          "exclusiveMinimum", "exclusiveMaximum"})
# Result keys that are counts; everything else in a GX result (unexpected_list, partial lists) can hold values.
_SAFE_RESULT_KEYS = frozenset({"element_count", "unexpected_count", "unexpected_percent", "missing_count",
                               "missing_percent", "unexpected_percent_total", "unexpected_percent_nonmissing"})
_DOCS_KEEP = 1000  # validations kept for Data Docs; older chunks drop out, counts stay in the run report


# --------------------------------------------------------------------------------------------------- model
@dataclass(frozen=True)
class Check:
    """One row-level check: a rule name from the report vocabulary and the GX expectation enforcing it."""

    rule: str
    field: str | None
    expectation: str  # GX snake_case type, e.g. expect_column_values_to_not_be_null
    kwargs: tuple[tuple[str, Any], ...]
    message: str


@dataclass(frozen=True)
class ColumnRule:
    """One `schema[0].properties[]` entry."""

    name: str
    logical_type: str
    physical_type: str | None = None
    required: bool = False
    unique: bool = False
    classification: str | None = None
    pii: bool = False
    pattern: str | None = None
    minimum: float | None = None
    maximum: float | None = None
    min_length: int | None = None
    max_length: int | None = None
    allowed: tuple[Any, ...] | None = None
    description: str = ""


@dataclass(frozen=True)
class Contract:
    """A loaded contract; `checks` are in the order rejections are attributed."""

    name: str
    path: Path
    id: str
    version: str
    status: str
    columns: tuple[ColumnRule, ...]
    unique: tuple[tuple[str, ...], ...]
    checks: tuple[Check, ...]

    def column(self, name: str) -> ColumnRule:
        for col in self.columns:
            if col.name == name:
                return col
        raise KeyError(name)

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @property
    def pii_columns(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns if c.pii)

    @property
    def id_columns(self) -> tuple[str, ...]:
        """Columns that carry the event id (the unique keys without event_name), in key order."""
        out: list[str] = []
        for key in self.unique:
            out += [c for c in key if c != "event_name" and c not in out]
        return tuple(out)


@dataclass
class ContractResult:
    """Row-level outcome for one chunk."""

    valid: np.ndarray  # bool, one per row
    rejections: list[dict[str, Any]]  # quarantine records
    counts: dict[str, int]  # rule -> rows rejected for it (first failing check)
    expectations_run: int
    failures: dict[str, int] = field(default_factory=dict)  # rule -> rows failing it at all


# --------------------------------------------------------------------------------------------------- loading
def resolve_contract_path(ref: str, base_dir: Path) -> Path:
    """`builtin:<name>` -> `<repo>/data_contracts/<name>.odcs.yaml`; anything else is relative to `base_dir`."""
    if ref.startswith("builtin:"):
        name = ref.removeprefix("builtin:")
        if not _NAME_RE.match(name):
            raise ConfigurationError(f"contract {ref!r}: builtin names are [a-z0-9_]+")
        path = BUILTIN_DIR / f"{name}.odcs.yaml"
        if not path.is_file():
            known = sorted(p.name.removesuffix(".odcs.yaml") for p in BUILTIN_DIR.glob("*.odcs.yaml"))
            raise ConfigurationError(f"contract {ref!r}: no builtin contract of that name (known: {', '.join(known)})")
        return path
    path = Path(ref).expanduser()
    if not path.is_absolute():
        path = Path(base_dir) / path
    if not path.is_file():
        raise ConfigurationError(f"contract {ref!r}: file {path} does not exist")
    return path


def load_contract(path: Path) -> Contract:
    """Parse and check an ODCS v3 contract; problems raise ConfigurationError naming the file and key."""
    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigurationError(f"{path}: cannot read contract ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigurationError(f"{path}: not valid YAML{where}") from None
    return _Loader(path).contract(doc)


# ODCS v3 schema property keys (the standard's SchemaProperty; extensions go under customProperties)
_PROPERTY_KEYS = frozenset({
    "id", "name", "physicalName", "physicalType", "logicalType", "logicalTypeOptions", "description",
    "businessName", "authoritativeDefinitions", "tags", "customProperties", "primaryKey", "primaryKeyPosition",
    "required", "unique", "partitioned", "partitionKeyPosition", "classification", "encryptedName",
    "transformSourceObjects", "transformLogic", "transformDescription", "examples", "criticalDataElement",
    "quality", "items", "properties"})


class _Loader:
    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, key: str, problem: str) -> ConfigurationError:
        return ConfigurationError(f"{self.path}: {key}: {problem}")

    def get(self, obj: dict, key: str, where: str, kind: type | tuple[type, ...], *, required: bool = False,
            default: Any = None) -> Any:
        if key not in obj or obj[key] is None:
            if required:
                raise self.fail(f"{where}{key}", "is required")
            return default
        value = obj[key]
        if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
            raise self.fail(f"{where}{key}", f"must be {_kind_name(kind)}")
        if not isinstance(value, kind):
            raise self.fail(f"{where}{key}", f"must be {_kind_name(kind)}")
        return value

    def contract(self, doc: Any) -> Contract:
        if not isinstance(doc, dict):
            raise self.fail("(top level)", "must be a mapping")
        api = str(self.get(doc, "apiVersion", "", str, required=True))
        if not re.match(r"^v3\.\d+\.\d+$", api):
            raise self.fail("apiVersion", f"{api!r} is not an ODCS v3 version (v3.x.y)")
        if self.get(doc, "kind", "", str, required=True) != "DataContract":
            raise self.fail("kind", "must be DataContract")
        cid = self.get(doc, "id", "", str, required=True)
        name = self.get(doc, "name", "", str, required=True)
        if not _NAME_RE.match(name):
            raise self.fail("name", "must be [a-z0-9_]+")
        version = str(self.get(doc, "version", "", (str, int, float), required=True))
        status = self.get(doc, "status", "", str, required=True)
        schema = self.get(doc, "schema", "", list, required=True)
        if len(schema) != 1:
            raise self.fail("schema", f"must hold exactly one object (the table), found {len(schema)}")
        obj = schema[0]
        if not isinstance(obj, dict):
            raise self.fail("schema[0]", "must be a mapping")
        props = self.get(obj, "properties", "schema[0].", list, required=True)
        if not props:
            raise self.fail("schema[0].properties", "must list at least one column")

        columns: list[ColumnRule] = []
        first: list[Check] = []  # completeness first: a missing id explains more than a bad format (_priority)
        later: list[Check] = []
        for i, prop in enumerate(props):
            where = f"schema[0].properties[{i}]."
            col, col_first, col_later = self.column(prop, where)
            if any(c.name == col.name for c in columns):
                raise self.fail(f"{where}name", f"column {col.name!r} is listed twice")
            columns.append(col)
            first += col_first
            later += col_later
        names = {c.name for c in columns}

        unique: list[tuple[str, ...]] = [(c.name,) for c in columns if c.unique]
        for j, q in enumerate(self.get(obj, "quality", "schema[0].", list, default=[])):
            qwhere = f"schema[0].quality[{j}]."
            kind = self.quality_kind(q, qwhere)
            if kind == "text":
                continue
            if kind == "custom":
                first_or_later = self.custom(q, qwhere, None)
                later.append(first_or_later)
                continue
            metric = q.get("metric", q.get("rule"))
            if metric != "duplicateValues":
                raise self.fail(f"{qwhere}metric", f"{metric!r} is not supported at schema level (duplicateValues)")
            self.must_be_zero(q, qwhere)
            args = self.get(q, "arguments", qwhere, dict, required=True)
            key = self.get(args, "properties", f"{qwhere}arguments.", list, required=True)
            if not key or not all(isinstance(k, str) for k in key):
                raise self.fail(f"{qwhere}arguments.properties", "must list column names")
            for k in key:
                if k not in names:
                    raise self.fail(f"{qwhere}arguments.properties", f"{k!r} is not a column of the contract")
            if tuple(key) not in unique:
                unique.append(tuple(key))

        checks = tuple(sorted(first + later, key=_priority))
        for c in checks:
            for ref in _referenced_columns(c):
                if ref not in names:
                    raise self.fail(f"check {c.rule}", f"refers to {ref!r}, which is not a column of the contract")
        return Contract(name=name, path=self.path, id=cid, version=version, status=status,
                        columns=tuple(columns), unique=tuple(unique), checks=checks)

    def column(self, prop: Any, where: str) -> tuple[ColumnRule, list[Check], list[Check]]:
        if not isinstance(prop, dict):
            raise self.fail(where.rstrip("."), "must be a mapping")
        for key in prop:  # a typo ("requred") would otherwise drop its check without a word
            if key not in _PROPERTY_KEYS:
                close = difflib.get_close_matches(str(key), sorted(_PROPERTY_KEYS), n=1)
                raise self.fail(f"{where}{key}", "is not an ODCS v3 property key"
                                + (f" (did you mean {close[0]!r}?)" if close else ""))
        name = self.get(prop, "name", where, str, required=True)
        logical = self.get(prop, "logicalType", where, str, required=True)
        if logical not in LOGICAL_TYPES:
            raise self.fail(f"{where}logicalType", f"{logical!r} is not one of {', '.join(sorted(LOGICAL_TYPES))}")
        physical = self.get(prop, "physicalType", where, str)
        required = self.get(prop, "required", where, bool, default=False)
        unique = self.get(prop, "unique", where, bool, default=False)
        classification = self.get(prop, "classification", where, str)
        tags = self.get(prop, "tags", where, list, default=[])
        pii = (classification or "").lower() in PII_CLASSES or any(str(t).lower() == "pii" for t in tags)
        opts = self.get(prop, "logicalTypeOptions", where, dict, default={})
        for key in opts:
            if key not in _OPTION_KEYS:
                raise self.fail(f"{where}logicalTypeOptions.{key}", "is not supported")
        owhere = f"{where}logicalTypeOptions."
        pattern = self.get(opts, "pattern", owhere, str)
        if pattern is not None:
            if logical in NUMERIC_TYPES or logical == "boolean":
                raise self.fail(f"{owhere}pattern", f"needs a string column, {name!r} is {logical}")
            self.regex(pattern, f"{owhere}pattern")
        minimum = self.get(opts, "minimum", owhere, (int, float))
        maximum = self.get(opts, "maximum", owhere, (int, float))
        if (minimum is not None or maximum is not None) and logical not in NUMERIC_TYPES:
            raise self.fail(f"{owhere}minimum", f"needs a numeric column, {name!r} is {logical}")
        if minimum is not None and maximum is not None and minimum > maximum:
            raise self.fail(f"{owhere}minimum", "is greater than maximum")
        min_len = self.get(opts, "minLength", owhere, int)
        max_len = self.get(opts, "maxLength", owhere, int)
        if (min_len is not None and min_len < 0) or (max_len is not None and max_len < 0):
            raise self.fail(f"{owhere}maxLength", "must be >= 0")

        first: list[Check] = []
        later: list[Check] = []
        if required:
            first.append(_not_null(name))
        if pattern is not None:
            later.append(Check("invalid_pattern", name, "expect_column_values_to_match_regex",
                               (("column", name), ("regex", pattern)), f"{name} does not match the contract pattern"))
        if min_len is not None or max_len is not None:
            later.append(Check("invalid_length", name, "expect_column_value_lengths_to_be_between",
                               (("column", name), ("min_value", min_len), ("max_value", max_len)),
                               f"{name} length is outside the contract range ({_range_text(min_len, max_len)})"))
        if minimum is not None or maximum is not None:
            later.append(Check("out_of_range", name, "expect_column_values_to_be_between",
                               (("column", name), ("min_value", minimum), ("max_value", maximum)),
                               f"{name} is outside the contract range ({_range_text(minimum, maximum)})"))

        allowed: tuple[Any, ...] | None = None
        for j, q in enumerate(self.get(prop, "quality", where, list, default=[])):
            qwhere = f"{where}quality[{j}]."
            kind = self.quality_kind(q, qwhere)
            if kind == "text":
                continue
            if kind == "custom":
                check = self.custom(q, qwhere, name)
                (first if check.expectation == "expect_column_values_to_not_be_null" else later).append(check)
                continue
            metric = q.get("metric", q.get("rule"))
            self.must_be_zero(q, qwhere)
            rule = self.rule_name(q, qwhere)
            desc = q.get("description")
            if metric == "nullValues":
                if not required:
                    first.append(_not_null(name, rule=rule or "missing_value", message=desc))
            elif metric == "duplicateValues":
                unique = True
            elif metric == "invalidValues":
                args = self.get(q, "arguments", qwhere, dict, required=True)
                values = self.get(args, "validValues", f"{qwhere}arguments.", list)
                apattern = self.get(args, "pattern", f"{qwhere}arguments.", str)
                if values is None and apattern is None:
                    raise self.fail(f"{qwhere}arguments", "needs validValues or pattern")
                if values is not None:
                    if not values:
                        raise self.fail(f"{qwhere}arguments.validValues", "must not be empty")
                    allowed = tuple(values)
                    later.append(Check(rule or "value_not_allowed", name, "expect_column_values_to_be_in_set",
                                       (("column", name), ("value_set", list(values))),
                                       desc or f"{name} is not one of the {len(values)} allowed values"))
                if apattern is not None:
                    self.regex(apattern, f"{qwhere}arguments.pattern")
                    later.append(Check(rule or "invalid_pattern", name, "expect_column_values_to_match_regex",
                                       (("column", name), ("regex", apattern)),
                                       desc or f"{name} does not match the contract pattern"))
            else:
                raise self.fail(f"{qwhere}metric", f"{metric!r} is not supported at property level "
                                                   "(nullValues, invalidValues, duplicateValues)")
        col = ColumnRule(name=name, logical_type=logical, physical_type=physical, required=required, unique=unique,
                         classification=classification, pii=pii, pattern=pattern, minimum=minimum, maximum=maximum,
                         min_length=min_len, max_length=max_len, allowed=allowed,
                         description=str(prop.get("description") or ""))
        return col, first, later

    def quality_kind(self, q: Any, where: str) -> str:
        if not isinstance(q, dict):
            raise self.fail(where.rstrip("."), "must be a mapping")
        kind = q.get("type", "library")
        if kind == "library" and "metric" not in q and "rule" not in q:
            raise self.fail(f"{where}metric", "is required for library rules")
        if kind not in ("library", "text", "custom"):
            raise self.fail(f"{where}type", f"{kind!r} is not supported (library, text, custom)")
        return kind

    def must_be_zero(self, q: dict, where: str) -> None:
        ops = [k for k in q if k.startswith("mustBe") or k.startswith("mustNotBe")]
        if ops != ["mustBe"] or q["mustBe"] != 0 or isinstance(q["mustBe"], bool):
            raise self.fail(f"{where}mustBe", "only `mustBe: 0` is supported (the contract rejects rows)")
        if q.get("unit", "rows") != "rows":
            raise self.fail(f"{where}unit", "only rows is supported")

    def rule_name(self, q: dict, where: str) -> str | None:
        rule = self.get(q, "name", where, str)
        if rule is not None and not _RULE_RE.match(rule):
            raise self.fail(f"{where}name", "rule names are snake_case ([a-z][a-z0-9_]*)")
        return rule

    def custom(self, q: dict, where: str, column: str | None) -> Check:
        engine = q.get("engine")
        if engine not in ("greatExpectations", "great-expectations", "great_expectations"):
            raise self.fail(f"{where}engine", f"{engine!r} is not supported (greatExpectations)")
        impl = q.get("implementation")
        if isinstance(impl, str):
            try:
                impl = yaml.safe_load(impl)
            except yaml.YAMLError:
                raise self.fail(f"{where}implementation", "is not valid YAML") from None
        if not isinstance(impl, dict):
            raise self.fail(f"{where}implementation", "must be a mapping with type and kwargs")
        gx_type = self.get(impl, "type", f"{where}implementation.", str, required=True)
        if not _GX_TYPE_RE.match(gx_type):
            raise self.fail(f"{where}implementation.type", f"{gx_type!r} is not a GX expectation type")
        kwargs = dict(self.get(impl, "kwargs", f"{where}implementation.", dict, default={}))
        if column is not None:
            kwargs.setdefault("column", column)
        for bad in ("result_format", "catch_exceptions", "condition_parser"):
            if bad in kwargs:
                raise self.fail(f"{where}implementation.kwargs.{bad}", "is set by the pipeline")
        rc = kwargs.get("row_condition")
        if rc is not None and not isinstance(rc, dict):
            raise self.fail(f"{where}implementation.kwargs.row_condition",
                            "must be a GX condition mapping ({type: comparison|nullity|and|or, ...})")
        rule = self.rule_name(q, where) or gx_type.removeprefix("expect_")
        field_name = kwargs.get("column") if isinstance(kwargs.get("column"), str) else column
        message = q.get("description") or f"{field_name or 'row'} failed {gx_type}"
        return Check(rule, field_name, gx_type, tuple(kwargs.items()), str(message))

    def regex(self, pattern: str, key: str) -> None:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise self.fail(key, f"invalid regular expression ({exc.msg})") from None


def _range_text(low: float | None, high: float | None) -> str:
    if low is not None and high is not None:
        return f"{low:g} to {high:g}"
    return f">= {low:g}" if low is not None else f"<= {high:g}"


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    names = {str: "a string", int: "an integer", float: "a number", bool: "true or false", list: "a list",
             dict: "a mapping"}
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def _priority(check: Check) -> int:
    """Unconditional not-null checks first, conditional ones next, formats last (stable within each group)."""
    if check.expectation != "expect_column_values_to_not_be_null":
        return 2
    return 1 if any(k == "row_condition" for k, _ in check.kwargs) else 0


def _not_null(column: str, *, rule: str = "missing_value", message: str | None = None) -> Check:
    return Check(rule, column, "expect_column_values_to_not_be_null", (("column", column),),
                 message or f"{column} is required")


def _referenced_columns(check: Check) -> set[str]:
    """Columns a check reads: its column kwargs and the columns of its row_condition."""
    out: set[str] = set()
    for key, value in check.kwargs:
        if key in ("column", "column_A", "column_B") and isinstance(value, str):
            out.add(value)
        elif key == "column_list" and isinstance(value, list):
            out.update(v for v in value if isinstance(v, str))
        elif key == "row_condition":
            stack = [value]
            while stack:
                node = stack.pop()
                if isinstance(node, dict):
                    col = node.get("column")
                    if isinstance(col, dict) and isinstance(col.get("name"), str):
                        out.add(col["name"])
                    stack += [v for v in node.values() if isinstance(v, (dict, list))]
                elif isinstance(node, list):
                    stack += node
    return out


# --------------------------------------------------------------------------------------------------- validation
def _is_stringish(s: pd.Series) -> bool:
    return s.dtype == object or pd.api.types.is_string_dtype(s.dtype)


def _blank(s: pd.Series) -> np.ndarray:
    """Null or empty/whitespace-only text."""
    miss = s.isna().to_numpy(dtype=bool)
    if not _is_stringish(s) or len(s) == 0:
        return miss
    txt = s if pd.api.types.is_string_dtype(s.dtype) and s.dtype != object else s.astype("str")
    empty = (txt.eq("") | txt.str.isspace()).fillna(False).to_numpy(dtype=bool)
    return miss | empty


class ContractValidator:
    """Runs one contract over chunks of a partition with a single, reused Great Expectations suite."""

    def __init__(self, contract: Contract) -> None:
        os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
        logging.getLogger("great_expectations").setLevel(logging.WARNING)
        _defer_gx_only_imports()
        import great_expectations as gx
        from great_expectations.data_context.types.base import ProgressBarsConfig
        from great_expectations.expectations.row_conditions import deserialize_row_condition

        # GX sets this child logger to INFO itself; it announces every ephemeral docs folder
        logging.getLogger("great_expectations.data_context.types.base").setLevel(logging.WARNING)

        _lighter_gx_calls(gx.__version__)
        self.contract = contract
        self._context = gx.get_context(mode="ephemeral")
        self._context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
        asset = self._context.data_sources.add_pandas("capi_pipeline").add_dataframe_asset(contract.name)
        self._batch_definition = asset.add_batch_definition_whole_dataframe("chunk")

        expectations = []
        for check in contract.checks:
            cls_name = "".join(part.capitalize() for part in check.expectation.split("_"))
            cls = getattr(gx.expectations, cls_name, None)
            if cls is None:
                raise ConfigurationError(f"{contract.path}: check {check.rule}: GX has no expectation "
                                         f"{check.expectation!r}")
            kwargs = {k: v for k, v in check.kwargs if v is not None}
            try:
                if "row_condition" in kwargs:
                    kwargs["row_condition"] = deserialize_row_condition(kwargs["row_condition"])
                expectations.append(cls(**kwargs))
            except Exception as exc:  # pydantic / GX validation: the contract is wrong, not the data
                raise ConfigurationError(f"{contract.path}: check {check.rule} ({check.expectation}): invalid "
                                         f"arguments ({type(exc).__name__})") from None
        suite = gx.ExpectationSuite(name=contract.name, expectations=expectations)
        self._suite = self._context.suites.add(suite)
        # GX assigns ids when the suite is stored; results carry them back, so map id -> position in the contract.
        self._position = {e.id: i for i, e in enumerate(self._suite.expectations)}
        self._rules = tuple(dict.fromkeys(c.rule for c in contract.checks))
        self._docs: list[tuple[str, int, int, Any]] = []
        self._docs_stored = 0
        self._docs_sites: dict[Path, str] = {}
        self._columns_used = self._used_columns()

    def _used_columns(self) -> tuple[str, ...]:
        used: set[str] = set()
        for check in self.contract.checks:
            used |= _referenced_columns(check)
        for key in self.contract.unique:
            used.update(key)
        if "event_name" in self.contract.column_names:
            used.add("event_name")
        used.update(self.contract.id_columns)
        return tuple(c for c in self.contract.column_names if c in used)

    # ---------------------------------------------------------------------------------------------- table level
    def check_table(self, frame: pd.DataFrame, *, file: str) -> None:
        """Raise ContractViolation when a column is missing or holds the wrong physical type."""
        missing = [c for c in self.contract.column_names if c not in frame.columns]
        if missing:
            raise ContractViolation(
                f"{file}: column {missing[0]!r} required by contract {self.contract.name} is missing"
                + (f" (missing columns: {', '.join(missing)})" if len(missing) > 1 else ""),
                file=file, column=missing[0], rule="missing_column")
        for col in self.contract.columns:
            problem = _type_problem(frame[col.name], col)
            if problem:
                raise ContractViolation(
                    f"{file}: column {col.name!r} must be {col.logical_type}"
                    f"{f' ({col.physical_type})' if col.physical_type else ''} but {problem}",
                    file=file, column=col.name, rule="wrong_type")

    # ---------------------------------------------------------------------------------------------- row level
    def validate(self, frame: pd.DataFrame, *, file: str, first_row: int,
                 chunk_sizes: list[int] | None = None) -> ContractResult:
        """Row-level checks of one chunk (one GX call); `first_row` is the 1-based row number of frame's row 0.

        `chunk_sizes` (summing to len(frame)): the frame is several consecutive chunks of one file validated in
        one GX call (GX's cost is mostly per call); the result is the same as validating each chunk on its own
        and concatenating, uniqueness included (duplicates are still looked for inside each chunk only).
        """
        absent = [c for c in self._columns_used if c not in frame.columns]
        if absent:
            self.check_table(frame, file=file)  # raises missing_column
        n = len(frame)
        if n == 0:
            return ContractResult(np.ones(0, dtype=bool), [], {}, 0, {})
        frame = frame.reset_index(drop=True)
        checks = self.contract.checks
        first_fail = np.full(n, -1, dtype=np.int32)  # index into `rules`, -1 = passed
        rules = list(self._rules)
        rule_index = {r: i for i, r in enumerate(rules)}
        failures: dict[str, int] = {}
        fields: dict[int, tuple[str | None, str]] = {}

        data: dict[str, pd.Series] = {}
        for name in self._columns_used:
            col = self.contract.column(name)
            raw = frame[name]
            if col.logical_type in NUMERIC_TYPES or col.logical_type == "boolean":
                num, bad = _to_number(raw, integer=col.logical_type == "integer",
                                      boolean=col.logical_type == "boolean")
                data[name] = num
                if bad.any():
                    rule = "invalid_number"
                    if rule not in rule_index:
                        rule_index[rule] = len(rules)
                        rules.append(rule)
                    k = rule_index[rule]
                    failures[rule] = failures.get(rule, 0) + int(bad.sum())
                    sel = bad & (first_fail < 0)
                    first_fail[sel] = k
                    # a row can fail several columns: remember per-row which column for the message
                    for pos in np.flatnonzero(sel):
                        fields[int(pos)] = (name, f"{name} is not a valid {col.logical_type}")
            elif col.logical_type in ("object", "array"):
                data[name] = raw
            else:
                # GX string checks need real text: object columns can hold ints or bytes (CSV / JSON lines)
                txt = raw if pd.api.types.is_string_dtype(raw.dtype) and raw.dtype != object else raw.astype("str")
                blank = _blank(txt)
                if blank.any():
                    txt = txt.mask(blank)
                data[name] = txt
        gx_frame = pd.DataFrame(data, index=frame.index)

        result = self._run_gx(gx_frame, file=file)
        pos_of = self._position
        by_check: list[np.ndarray | None] = [None] * len(checks)
        for r in result.results:
            i = pos_of.get(r.expectation_config.id)
            if i is None:
                continue
            check = checks[i]
            if r.exception_info and r.exception_info.get("raised_exception"):
                raise ContractViolation(
                    f"{file}: rows {first_row}-{first_row + n - 1}: GX could not evaluate {check.rule} on "
                    f"{check.field} ({check.expectation})", file=file, column=check.field, rule=check.rule)
            idx = r.result.get("unexpected_index_list") or []
            by_check[i] = np.asarray(idx, dtype=np.int64) if idx else np.zeros(0, dtype=np.int64)
            # drop anything that can hold values before the result is kept for Data Docs
            r.result = {k: v for k, v in r.result.items() if k in _SAFE_RESULT_KEYS}
            r.exception_info = {"raised_exception": False, "exception_message": None, "exception_traceback": None}
        check_rule_pos: list[int] = []
        for i, check in enumerate(checks):
            k = rule_index[check.rule]
            check_rule_pos.append(k)
            idx = by_check[i]
            if idx is None or len(idx) == 0:
                continue
            failures[check.rule] = failures.get(check.rule, 0) + int(len(np.unique(idx)))
            sel = idx[first_fail[idx] < 0]
            first_fail[sel] = k
            for pos in sel:
                fields[int(pos)] = (check.field, check.message)

        # uniqueness inside the chunk, among rows that passed everything else: a bad first copy must not
        # shadow a good second one
        dup_rule = "duplicate_event_id"
        for key in self.contract.unique:
            ok = first_fail < 0
            if not ok.any():
                break
            sub = gx_frame.loc[ok, list(key)]
            complete = sub.notna().all(axis=1).to_numpy()
            if chunk_sizes is not None and len(chunk_sizes) > 1:
                # one GX call over several chunks: a key repeats only when it repeats inside one chunk
                chunk_of = np.repeat(np.arange(len(chunk_sizes)), chunk_sizes)
                sub = sub.assign(_capi_chunk=chunk_of[ok])
            dup_local = sub.duplicated(keep="first").to_numpy() & complete
            if not dup_local.any():
                continue
            if dup_rule not in rule_index:
                rule_index[dup_rule] = len(rules)
                rules.append(dup_rule)
            positions = np.flatnonzero(ok)[dup_local]
            first_fail[positions] = rule_index[dup_rule]
            failures[dup_rule] = failures.get(dup_rule, 0) + len(positions)
            id_col = key[-1]
            msg = f"second occurrence of ({', '.join(key)}) in this file chunk; the first is kept"
            for pos in positions:
                fields[int(pos)] = (id_col, msg)

        valid = first_fail < 0
        rejected = np.flatnonzero(~valid)
        counts: dict[str, int] = {}
        if len(rejected):
            for k, c in zip(*np.unique(first_fail[rejected], return_counts=True)):
                counts[rules[int(k)]] = int(c)
        rejections = self._records(frame, rejected, first_fail, rules, fields, file=file, first_row=first_row)
        self._keep_for_docs(result, file, first_row, n)
        return ContractResult(valid=valid, rejections=rejections, counts=counts,
                              expectations_run=len(checks), failures=failures)

    def _run_gx(self, gx_frame: pd.DataFrame, *, file: str) -> Any:
        # GX's own V1 validator on the batch definition: the batch is built once (`get_batch(...).validate(...)`
        # built it twice), and without GX's data fingerprint (an md5 over `hash_pandas_object` of the whole
        # frame, a quarter of the call on Arrow strings) that `_keep_for_docs` throws away anyway
        from great_expectations.validator.v1_validator import Validator as V1Validator

        validator = V1Validator(batch_definition=self._batch_definition, batch_parameters={"dataframe": gx_frame},
                                result_format={
                                    "result_format": "COMPLETE",
                                    "partial_unexpected_count": 0,
                                    "include_unexpected_rows": False,
                                    "return_unexpected_index_query": False,
                                })
        with _without_gx_fingerprint(), _our_gx_call():
            return validator.validate_expectation_suite(self._suite)

    def _records(self, frame: pd.DataFrame, rejected: np.ndarray, first_fail: np.ndarray, rules: list[str],
                 fields: dict[int, tuple[str | None, str]], *, file: str, first_row: int) -> list[dict[str, Any]]:
        if not len(rejected):
            return []
        names = _text_at(frame, "event_name", rejected)
        ids: list[str | None] = [None] * len(rejected)
        for col in self.contract.id_columns:
            vals = _text_at(frame, col, rejected)
            ids = [a if a is not None else b for a, b in zip(ids, vals)]
        out = []
        for j, pos in enumerate(rejected):
            fld, msg = fields.get(int(pos), (None, "failed a contract check"))
            out.append({"file": file, "row": int(first_row + pos), "event_name": names[j], "event_id": ids[j],
                        "rule": rules[int(first_fail[pos])], "field": fld, "message": msg})
        return out

    # ---------------------------------------------------------------------------------------------- data docs
    def _keep_for_docs(self, result: Any, file: str, first_row: int, n: int) -> None:
        for key in ("batch_spec", "batch_markers"):  # batch_markers holds a fingerprint of the data
            result.meta.pop(key, None)
        result.meta["capi_pipeline"] = {"file": file, "rows": f"{first_row}-{first_row + n - 1}"}
        self._docs.append((file, first_row, n, result))
        if len(self._docs) > _DOCS_KEEP:
            drop = len(self._docs) - _DOCS_KEEP
            self._docs = self._docs[drop:]
            self._docs_stored = max(0, self._docs_stored - drop)

    def build_data_docs(self, out_dir: Path) -> Path | None:
        """Write GX Data Docs for the validations so far under out_dir/gx_data_docs/; None if nothing ran.

        Only counts reach the docs: unexpected values and partial lists were removed from every result.
        """
        if not self._docs:
            return None
        from great_expectations.core.run_identifier import RunIdentifier
        from great_expectations.data_context.types.resource_identifiers import (
            ExpectationSuiteIdentifier,
            ValidationResultIdentifier,
        )

        site_dir = (Path(out_dir) / "gx_data_docs").resolve()
        site = self._docs_sites.get(site_dir)
        if site is None:
            site = f"capi_pipeline_{len(self._docs_sites)}"
            self._context.add_data_docs_site(site, {
                "class_name": "SiteBuilder",
                "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(site_dir)},
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            })
            self._docs_sites[site_dir] = site
        suite_id = ExpectationSuiteIdentifier(name=self.contract.name)
        store = self._context.validation_results_store
        now = _dt.datetime.now(_dt.timezone.utc)
        for file, first_row, n, result in self._docs[self._docs_stored:]:
            # the tail of the path: part-00000 files of different dt= folders must not overwrite each other
            run_name = re.sub(r"[^A-Za-z0-9._=-]+", "_", "/".join(Path(file).parts[-2:]))[-120:] or "chunk"
            key = ValidationResultIdentifier(
                expectation_suite_identifier=suite_id,
                run_id=RunIdentifier(run_name=run_name, run_time=now),
                batch_identifier=f"rows-{first_row}-{first_row + n - 1}")
            store.set(key, result)
        self._docs_stored = len(self._docs)
        self._context.build_data_docs(site_names=[site])
        index = site_dir / "index.html"
        return index if index.is_file() else None


# Imported by GX at import time for expectations a contract does not use (KL divergence, KS tests: `from scipy
# import stats`, `import altair as alt`): half of `import great_expectations` (~1 of ~2.2 s, in every pass-1
# worker while the whole pipeline waits for it).
_GX_ONLY_IMPORTS = ("scipy.stats", "altair")


class _DeferredModule(types.ModuleType):
    """Stands in `sys.modules` for a module nobody has used yet; the first attribute read imports the real one
    (which then replaces it there) and answers from it. `import x` and `from x import y` do not read attributes
    of `x` (Python 3.11's `importlib.util.LazyLoader` modules load on import: the import reads `__spec__`)."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.__spec__ = None  # read by `import` itself (a module still initializing?): not a use

    def __getattr__(self, attr: str) -> Any:
        name = self.__name__
        with _deferred_lock:
            if sys.modules.get(name) is self:
                del sys.modules[name]
            real = importlib.import_module(name)
        self.__dict__.update(real.__dict__)  # later reads are plain attribute reads
        return getattr(real, attr)


_deferred_lock = threading.RLock()  # reentrant: a real import may read another deferred module


def _defer_gx_only_imports() -> None:
    """Let `import great_expectations` skip `_GX_ONLY_IMPORTS` until something reads from them (once per process;
    a module already imported, or not installed, is left alone)."""
    with _deferred_lock:
        for name in _GX_ONLY_IMPORTS:
            if name in sys.modules or importlib.util.find_spec(name.split(".")[0]) is None:
                continue
            sys.modules[name] = _DeferredModule(name)


# GX versions whose code `_lighter_gx_calls` repeats (tests/test_contracts.py fails on any other version).
_GX_CODE_OF = ("1.24.",)
_GX_ORIGINALS: dict[str, Any] = {}  # GX's own functions, once replaced (tests compare both)


def _lighter_gx_calls(version: str) -> None:
    """Three of GX's repeated costs per validation call, made cheaper with the same results; once per process,
    only for the GX versions whose code the replacements repeat or whose behaviour they rely on (`_GX_CODE_OF`)."""
    if _GX_ORIGINALS or not version.startswith(_GX_CODE_OF):
        return
    _configuration_once_per_call()
    _none_first_in_json_conversion()
    _row_filter_once_per_call()
    _column_domain_alone()


def _configuration_once_per_call() -> None:
    """Make GX build an expectation's `configuration` once per kwargs lookup, not once per key.

    GX's `_get_domain_kwargs`, `_get_success_kwargs` and `_get_runtime_kwargs` read `self.configuration.kwargs`
    inside their loops over the expectation's keys, and `configuration` is a property that rebuilds an
    `ExpectationConfiguration` (a pydantic `dict()` of the expectation) on every access: ~2,000 rebuilds per GX
    call for our 15 expectations, a quarter of a 50,000-row call. The replacements are GX's code with that
    property read once per method call; nothing mutates the expectation in between, so the values are the same.
    """
    from great_expectations.expectations.expectation import Expectation, parse_result_format

    def default(self: Any, key: str) -> Any:  # GX's `_get_success_kwarg` when `key` is not in the kwargs
        field = self.__fields__.get(key)
        if field is not None:
            return None if field.required else field.default
        logging.getLogger(Expectation.__module__).warning(
            f'_get_success_kwarg called with key "{key}", but it is not a known field of {type(self).__name__}')
        return None

    def domain(self: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        return {key: kwargs.get(key, self._get_default_value(key)) for key in self.domain_keys}

    def success(self: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        success_kwargs = {key: kwargs.get(key, self._get_default_value(key)) for key in self.success_keys}
        success_kwargs.update(domain(self, kwargs))
        return success_kwargs

    def _get_domain_kwargs(self: Any) -> dict[str, Any]:
        return domain(self, self.configuration.kwargs)

    def _get_success_kwargs(self: Any) -> dict[str, Any]:
        return success(self, self.configuration.kwargs)

    def _get_runtime_kwargs(self: Any, runtime_configuration: dict | None = None) -> dict[str, Any]:
        runtime_configuration = runtime_configuration or {}
        kwargs = self.configuration.kwargs
        runtime_kwargs = {key: runtime_configuration.get(key, kwargs[key] if key in kwargs else default(self, key))
                          for key in self.runtime_keys}
        runtime_kwargs.update(success(self, kwargs))
        runtime_kwargs["result_format"] = parse_result_format(runtime_kwargs["result_format"])
        return runtime_kwargs

    for method in (_get_domain_kwargs, _get_success_kwargs, _get_runtime_kwargs):
        _GX_ORIGINALS[method.__name__] = getattr(Expectation, method.__name__)
        setattr(Expectation, method.__name__, method)


def _none_first_in_json_conversion() -> None:
    """GX's `convert_to_json_serializable` with None and plain str answered first, as GX answers them.

    GX ids every metric configuration by converting its kwargs to JSON (~900 times per call, a quarter of a
    12,500-row call); None, the commonest value there (no row condition, no batch id), is tested last, after
    ~20 isinstance and 4 `np.issubdtype` checks. Replaced wherever GX's modules imported it by name.
    """
    import great_expectations.util as gx_util

    original = gx_util.convert_to_json_serializable
    _GX_ORIGINALS["convert_to_json_serializable"] = original

    def convert_to_json_serializable(data: Any) -> Any:
        if data is None or type(data) is str:
            return data
        return original(data)

    convert_to_json_serializable.__doc__ = original.__doc__
    for name, module in list(sys.modules.items()):
        if name.startswith("great_expectations") and getattr(module, "convert_to_json_serializable",
                                                             None) is original:
            module.convert_to_json_serializable = convert_to_json_serializable


def _row_filter_once_per_call() -> None:
    """Make GX's pandas engine filter a batch by one row condition once per validation call, not once per metric.

    Every metric of an expectation with a `row_condition` asks `_apply_row_condition_filter` for its rows, and
    each answer is a `DataFrame.query` over the batch: a take of every column (~15 per call for the offline
    contract's 3 conditions). Inside `_our_gx_call` (our calls) the first answer for a (batch frame,
    condition) pair is kept and handed out again; GX's metrics read the frame they get and do not change it.
    Conditions that are not a dict or a string are filtered by GX every time, as outside our calls.
    """
    from great_expectations.execution_engine.pandas_execution_engine import PandasExecutionEngine

    original = PandasExecutionEngine._apply_row_condition_filter
    _GX_ORIGINALS["_apply_row_condition_filter"] = original

    def _apply_row_condition_filter(self: Any, data: pd.DataFrame, row_condition: Any,
                                    domain_kwargs: dict) -> pd.DataFrame:
        kept = getattr(_call_scope, "kept", None)
        key = None if kept is None else _condition_key(row_condition, domain_kwargs.get("condition_parser"))
        if key is None:
            return original(self, data, row_condition, domain_kwargs)
        hit = kept.get((id(data), key))
        if hit is not None and hit[0] is data:  # the frame itself is held: its id is not reused meanwhile
            return hit[1]
        rows = original(self, data, row_condition, domain_kwargs)
        kept[(id(data), key)] = (data, rows)
        return rows

    _apply_row_condition_filter.__doc__ = original.__doc__
    PandasExecutionEngine._apply_row_condition_filter = _apply_row_condition_filter


def _column_domain_alone() -> None:
    """Make GX's pandas engine hand a column metric a frame of its column alone, inside our calls.

    `get_domain_records` answers every domain with the whole batch frame (its rows filtered), and GX's column
    metrics then drop the column's nulls with `df[df[column].notnull()]` and pick their unexpected rows with
    `df[mask]`: a take of every column of the batch, several times per expectation, for one column's values.
    Inside `_our_gx_call`, records asked for with a `column` (the column-domain metrics, directly or through
    `get_compute_domain`) hold just that column (the same arrays, no copy). Other domains get the whole frame, as
    do rows asked for by `get_compute_domain` for a non-column domain. (Whole unexpected rows, the only use of
    other columns, are never asked for: `_run_gx` sets `include_unexpected_rows` off and contracts cannot set
    a result format.)
    """
    from great_expectations.core.metric_domain_types import MetricDomainTypes
    from great_expectations.execution_engine.pandas_execution_engine import PandasExecutionEngine

    records, compute_domain = PandasExecutionEngine.get_domain_records, PandasExecutionEngine.get_compute_domain
    _GX_ORIGINALS["get_domain_records"] = records
    _GX_ORIGINALS["get_compute_domain"] = compute_domain

    def get_domain_records(self: Any, domain_kwargs: dict) -> pd.DataFrame:
        data = records(self, domain_kwargs)
        column = domain_kwargs.get("column")
        if getattr(_call_scope, "kept", None) is not None and not getattr(_call_scope, "whole", 0) \
                and isinstance(column, str) and data.columns.is_unique and column in data.columns:
            data = data[[column]]
        return data

    def get_compute_domain(self: Any, domain_kwargs: dict, domain_type: Any,
                           accessor_keys: Any = None) -> tuple[pd.DataFrame, dict, dict]:
        if getattr(domain_type, "value", domain_type) == MetricDomainTypes.COLUMN.value:
            return compute_domain(self, domain_kwargs, domain_type, accessor_keys)
        _call_scope.whole = getattr(_call_scope, "whole", 0) + 1
        try:
            return compute_domain(self, domain_kwargs, domain_type, accessor_keys)
        finally:
            _call_scope.whole -= 1

    get_domain_records.__doc__ = records.__doc__
    get_compute_domain.__doc__ = compute_domain.__doc__
    PandasExecutionEngine.get_domain_records = get_domain_records
    PandasExecutionEngine.get_compute_domain = get_compute_domain


def _condition_key(row_condition: Any, parser: Any) -> bytes | None:
    """A row condition as bytes that compare equal exactly when the conditions do (dict or str only)."""
    try:
        if isinstance(row_condition, dict):
            return b"d" + orjson.dumps([row_condition, parser], option=orjson.OPT_SORT_KEYS)
        if isinstance(row_condition, str):
            return b"s" + orjson.dumps([row_condition, parser])
    except TypeError:  # orjson.JSONEncodeError (a TypeError): a value it cannot write, no key, GX filters as usual
        pass
    return None


# Per thread: .kept, inside `_our_gx_call`: {(id(frame), condition key): (frame, filtered frame)}; .whole, the depth
# of `get_compute_domain` calls for a non-column domain under way (their records keep every column).
_call_scope = threading.local()


@contextlib.contextmanager
def _our_gx_call() -> Any:
    """One GX call of ours in this thread: row-condition filters kept for its duration
    (`_row_filter_once_per_call`), column metrics handed their column alone (`_column_domain_alone`)."""
    outer = getattr(_call_scope, "kept", None)
    _call_scope.kept = {}
    try:
        yield
    finally:
        _call_scope.kept = outer


_fingerprint_lock = threading.Lock()
_fingerprint_off = 0
_fingerprint_saved: Any = None


@contextlib.contextmanager
def _without_gx_fingerprint() -> Any:
    """GX's pandas engine skips `pandas_data_fingerprint` for frames at or above `HASH_THRESHOLD` bytes; set it
    below zero while our validations run (re-entrant across threads; restored when the last one ends)."""
    global _fingerprint_off, _fingerprint_saved
    try:
        from great_expectations.execution_engine import pandas_execution_engine as engine
    except ImportError:  # a GX without that module: keep its default behaviour
        yield
        return
    if not hasattr(engine, "HASH_THRESHOLD"):
        yield
        return
    with _fingerprint_lock:
        if _fingerprint_off == 0:
            _fingerprint_saved = engine.HASH_THRESHOLD
            engine.HASH_THRESHOLD = -1
        _fingerprint_off += 1
    try:
        yield
    finally:
        with _fingerprint_lock:
            _fingerprint_off -= 1
            if _fingerprint_off == 0:
                engine.HASH_THRESHOLD = _fingerprint_saved


def _text_at(frame: pd.DataFrame, col: str, positions: np.ndarray) -> list[str | None]:
    if col not in frame.columns:
        return [None] * len(positions)
    vals = frame[col].iloc[positions].tolist()
    out: list[str | None] = []
    for v in vals:
        if v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NA:
            out.append(None)
        else:
            s = str(v).strip()
            out.append(s or None)
    return out


def _to_number(raw: pd.Series, *, integer: bool, boolean: bool = False) -> tuple[pd.Series, np.ndarray]:
    """Float64 view of a numeric column and a mask of present values that are not numbers (or not integers)."""
    if pd.api.types.is_bool_dtype(raw.dtype):
        return raw.astype("float64"), np.zeros(len(raw), dtype=bool)
    if pd.api.types.is_numeric_dtype(raw.dtype):
        num = raw.astype("float64")
    else:
        present = ~_blank(raw)
        src = raw
        if boolean:
            src = raw.astype("str").str.strip().str.lower().replace({"true": "1", "false": "0"})
        num = pd.to_numeric(src.where(present), errors="coerce").astype("float64")
        bad = present & num.isna().to_numpy(dtype=bool)
        num = num.mask(bad)
        if integer or boolean:
            frac = _fractional(num)
            bad |= frac
            num = num.mask(frac)
        return num, bad
    bad = np.zeros(len(raw), dtype=bool)
    if integer or boolean:
        bad = _fractional(num)
        num = num.mask(bad)
    return num, bad


def _fractional(num: pd.Series) -> np.ndarray:
    arr = num.to_numpy(dtype="float64", na_value=np.nan)
    with np.errstate(invalid="ignore"):
        return np.isfinite(arr) & (np.floor(arr) != arr) | np.isinf(arr)


def _type_problem(s: pd.Series, col: ColumnRule) -> str | None:
    """Why a column cannot be the contract's type (None when it can); never quotes a value."""
    logical = col.logical_type
    if logical not in NUMERIC_TYPES and logical != "boolean":
        return None
    dtype = s.dtype
    if pd.api.types.is_datetime64_any_dtype(dtype) or isinstance(dtype, pd.PeriodDtype):
        return f"it holds {dtype}"
    if pd.api.types.is_bool_dtype(dtype):
        return None if logical == "boolean" else f"it holds {dtype}"
    if pd.api.types.is_numeric_dtype(dtype):
        if logical in ("integer", "boolean") and pd.api.types.is_float_dtype(dtype):
            if _fractional(s).any():
                return "it holds fractional numbers"
        return None
    # text / object column (CSV, JSON lines, all-null parquet): wrong when no present value is a number
    present = s[~_blank(s)]
    if present.empty:
        return None
    sample = present.iloc[:1000]
    if logical == "boolean":
        sample = sample.astype("str").str.strip().str.lower().replace({"true": "1", "false": "0"})
    parsed = pd.to_numeric(sample, errors="coerce")
    if parsed.notna().any():
        return None
    return f"it holds {dtype} values that are not numbers"

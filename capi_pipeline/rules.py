"""Meta's per-row pre-send rules, applied to the canonical frame (CAPI-named columns; capi.md §2, §4, §5, §11).

Pure and vectorized: data in, masks and quarantine records out. Each row gets at most one rejection, for the first
rule it fails in this fixed order (the rule names are the report's vocabulary):

    missing_event_name                      event_name null or blank
    missing_event_id                        event_id null or blank (needed for dedup and exactly-once delivery)
    missing_event_time                      event_time <NA> (missing or unparseable in the source)
    invalid_action_source                   action_source not in Meta's enum
    event_too_old                           older than max_age_days (physical_store: physical_store_max_age_days)
    event_in_future                         later than now + future_tolerance_s
    purchase_missing_value                  Purchase without a finite custom_data.value >= 0
    purchase_missing_currency               Purchase without custom_data.currency
    unknown_currency                        custom_data.currency present but not ISO-4217 (case-insensitive)
    invalid_value                           custom_data.value present but not a finite number (inf, nan text)
    app_missing_advertiser_tracking_enabled app event without app_data.advertiser_tracking_enabled 0/1
    app_invalid_application_tracking_enabled app event whose app_data.application_tracking_enabled is not 0/1
    app_invalid_extinfo                     app event whose extinfo is not 16 slots, slot 0 a2/i2, slot 4 set
    website_missing_user_agent              website event without user_data.client_user_agent
    website_missing_event_source_url        website event without event_source_url
    partner_pair_incomplete                 user_data.partner_id without user_data.partner_name or the reverse
    duplicate_event_id                      (event_name, event_id) already seen in this partition (SeenEvents)

`counts` count rows by the rule that rejected them (they sum to the rejections); `failures` count every row that
fails a rule, so one row can appear under several. Messages name the field and the limit, never a customer value.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from capi_pipeline.columns import PY_SPACE, TRIMMED_TEXT, non_empty

__all__ = [
    "ACTION_SOURCES",
    "ISO_4217",
    "KnownDuplicates",
    "RULE_ORDER",
    "RuleResult",
    "RuleSettings",
    "SeenEvents",
    "check_rows",
    "duplicate_mask",
]

# capi.md §2
ACTION_SOURCES = frozenset({"email", "website", "app", "phone_call", "chat", "physical_store", "system_generated",
                            "business_messaging", "other"})

# ISO 4217 codes of circulating currencies (list as amended to 2025: XCG replaces ANG, ZWG replaces ZWL, SLE
# replaces SLL, VED/VES both current). Fund codes (BOV, CHE, CHW, CLF, COU, MXV, USN, UYI, UYW), precious metals
# and test codes (XAU, XDR, XTS, XXX, ...) are left out: they are not what a customer pays in.
ISO_4217: frozenset[str] = frozenset("""
AED AFN ALL AMD AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BRL BSD BTN BWP BYN BZD CAD CDF CHF CLP
CNY COP CRC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD GNF GTQ GYD HKD HNL HTG HUF
IDR ILS INR IQD IRR ISK JMD JOD JPY KES KGS KHR KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL MGA MKD
MMK MNT MOP MRU MUR MVR MWK MXN MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR RON RSD RUB
RWF SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT TND TOP TRY TTD TWD TZS UAH UGX USD
UYU UZS VED VES VND VUV WST XAF XCD XCG XOF XPF YER ZAR ZMW ZWG
""".split())

RULE_ORDER: tuple[str, ...] = (
    "missing_event_name",
    "missing_event_id",
    "missing_event_time",
    "invalid_action_source",
    "event_too_old",
    "event_in_future",
    "purchase_missing_value",
    "purchase_missing_currency",
    "unknown_currency",
    "invalid_value",
    "app_missing_advertiser_tracking_enabled",
    "app_invalid_application_tracking_enabled",
    "app_invalid_extinfo",
    "website_missing_user_agent",
    "website_missing_event_source_url",
    "partner_pair_incomplete",
    "duplicate_event_id",
)

_DAY = 86_400
_EXTINFO_VERSIONS = frozenset({"a2", "i2"})


@dataclass(frozen=True)
class RuleSettings:
    """Limits Meta does not pin down exactly (capi.md §2: 7 d, 62 d for physical_store; future tolerance)."""

    max_age_days: int = 7
    physical_store_max_age_days: int = 62
    future_tolerance_s: int = 600


@dataclass
class RuleResult:
    valid: np.ndarray  # bool, one per row
    rejections: list[dict[str, Any]]  # quarantine records
    counts: dict[str, int]  # rule -> rows rejected for it
    failures: dict[str, int] = field(default_factory=dict)  # rule -> rows failing it at all


# --------------------------------------------------------------------------------------------------- helpers
def _col(canon: pd.DataFrame, name: str) -> pd.Series | None:
    return canon[name] if name in canon.columns else None


def _missing(canon: pd.DataFrame, name: str) -> np.ndarray:
    """Null, empty or whitespace-only; an absent column is missing everywhere."""
    s = _col(canon, name)
    if s is None:
        return np.ones(len(canon), dtype=bool)
    miss = s.isna().to_numpy(dtype=bool)
    if s.dtype == object or pd.api.types.is_string_dtype(s.dtype):
        txt = s.astype("str")
        miss = miss | (txt.str.strip() == "").fillna(True).to_numpy(dtype=bool)
    return miss


def _text(canon: pd.DataFrame, name: str) -> pd.Series:
    s = _col(canon, name)
    if s is None:
        return pd.Series([pd.NA] * len(canon), index=canon.index, dtype="str")
    return s.astype("str").str.strip()


def _number(canon: pd.DataFrame, name: str) -> np.ndarray:
    """float64 array, NaN where missing or not a number."""
    s = _col(canon, name)
    if s is None:
        return np.full(len(canon), np.nan)
    if not pd.api.types.is_numeric_dtype(s.dtype) or pd.api.types.is_bool_dtype(s.dtype):
        s = pd.to_numeric(s.astype("str") if s.dtype == object else s, errors="coerce")
    return s.astype("float64").to_numpy(dtype="float64", na_value=np.nan)


def _is(canon: pd.DataFrame, name: str, value: str) -> np.ndarray:
    s = _col(canon, name)
    if s is None:
        return np.zeros(len(canon), dtype=bool)
    return s.eq(value).fillna(False).to_numpy(dtype=bool)


def _extinfo_ok(v: Any) -> bool:
    if isinstance(v, np.ndarray):
        v = v.tolist()
    if not isinstance(v, (list, tuple)) or len(v) != 16:
        return False
    version, os_version = v[0], v[4]
    return (isinstance(version, str) and version.strip() in _EXTINFO_VERSIONS
            and isinstance(os_version, str) and os_version.strip() != "")


# --------------------------------------------------------------------------------------------------- rules
def check_rows(canon: pd.DataFrame, *, now: int, settings: RuleSettings = RuleSettings(),
               seen: SeenEvents | None = None) -> RuleResult:
    """Apply Meta's rules to a canonical chunk; with `seen`, duplicates across chunks are rejected too.

    `now` is Unix seconds. Only rows that pass every other rule are remembered by `seen`, so a bad first copy
    does not shadow a good later one.
    """
    n = len(canon)
    rules = RULE_ORDER
    masks: dict[str, np.ndarray] = {}
    fields: dict[str, str] = {}
    texts: dict[str, pd.Series] = {}

    trimmed = canon.attrs.get(TRIMMED_TEXT, ())

    def clean(name: str) -> pd.Series | None:
        """The column as it is when mapping vouches for it (`TRIMMED_TEXT`: str or None, trimmed, never blank)."""
        s = _col(canon, name)
        return s if name in trimmed and s is not None and s.dtype == object else None

    def text(name: str) -> pd.Series:
        if name not in texts:
            s = clean(name)
            texts[name] = _text(canon, name) if s is None else s
        return texts[name]

    def missing(name: str) -> np.ndarray:
        """`_missing`, reusing the trimmed text `text` made: a text column is converted once, not twice."""
        s = _col(canon, name)
        if s is None or not (s.dtype == object or pd.api.types.is_string_dtype(s.dtype)):
            return _missing(canon, name)
        if clean(name) is not None:
            return s.isna().to_numpy(dtype=bool)
        return s.isna().to_numpy(dtype=bool) | (text(name) == "").fillna(True).to_numpy(dtype=bool)

    event_name = text("event_name")
    masks["missing_event_name"] = missing("event_name")
    fields["missing_event_name"] = "event_name"
    masks["missing_event_id"] = missing("event_id")
    fields["missing_event_id"] = "event_id"

    t = _number(canon, "event_time")
    has_time = np.isfinite(t)
    masks["missing_event_time"] = ~has_time
    fields["missing_event_time"] = "event_time"

    source = text("action_source")
    masks["invalid_action_source"] = ~source.isin(sorted(ACTION_SOURCES)).to_numpy(dtype=bool)
    fields["invalid_action_source"] = "action_source"
    store = source.eq("physical_store").fillna(False).to_numpy(dtype=bool)

    limit_days = np.where(store, settings.physical_store_max_age_days, settings.max_age_days)
    with np.errstate(invalid="ignore"):
        age = np.where(has_time, now - t, 0.0)
    masks["event_too_old"] = has_time & (age > limit_days * _DAY)
    fields["event_too_old"] = "event_time"
    masks["event_in_future"] = has_time & (-age > settings.future_tolerance_s)
    fields["event_in_future"] = "event_time"

    purchase = event_name.eq("Purchase").fillna(False).to_numpy(dtype=bool)
    value = _number(canon, "custom_data.value")
    with np.errstate(invalid="ignore"):
        good_value = np.isfinite(value) & (value >= 0)
    masks["purchase_missing_value"] = purchase & ~good_value
    fields["purchase_missing_value"] = "custom_data.value"
    no_currency = missing("custom_data.currency")
    masks["purchase_missing_currency"] = purchase & no_currency
    fields["purchase_missing_currency"] = "custom_data.currency"
    currency = text("custom_data.currency").str.upper()
    masks["unknown_currency"] = ~no_currency & ~currency.isin(sorted(ISO_4217)).to_numpy(dtype=bool)
    fields["unknown_currency"] = "custom_data.currency"
    # orjson writes inf as null: a value that is there must be a number Meta can read
    masks["invalid_value"] = ~np.isnan(value) & ~np.isfinite(value)
    fields["invalid_value"] = "custom_data.value"

    app = source.eq("app").fillna(False).to_numpy(dtype=bool)
    ate = _number(canon, "app_data.advertiser_tracking_enabled")
    masks["app_missing_advertiser_tracking_enabled"] = app & ~np.isin(ate, (0.0, 1.0))
    fields["app_missing_advertiser_tracking_enabled"] = "app_data.advertiser_tracking_enabled"
    if "app_data.application_tracking_enabled" in canon.columns:
        aps = _number(canon, "app_data.application_tracking_enabled")
        masks["app_invalid_application_tracking_enabled"] = app & ~np.isnan(aps) & ~np.isin(aps, (0.0, 1.0))
    else:
        masks["app_invalid_application_tracking_enabled"] = np.zeros(n, dtype=bool)
    fields["app_invalid_application_tracking_enabled"] = "app_data.application_tracking_enabled"
    bad_ext = np.zeros(n, dtype=bool)
    ext = _col(canon, "app_data.extinfo")
    if app.any():
        if ext is None:
            bad_ext = app.copy()
        else:
            pos = np.flatnonzero(app)
            vals = ext.iloc[pos].tolist()
            bad_ext[pos] = [not _extinfo_ok(v) for v in vals]
    masks["app_invalid_extinfo"] = bad_ext
    fields["app_invalid_extinfo"] = "app_data.extinfo"

    web = source.eq("website").fillna(False).to_numpy(dtype=bool)
    masks["website_missing_user_agent"] = web & missing("user_data.client_user_agent")
    fields["website_missing_user_agent"] = "user_data.client_user_agent"
    masks["website_missing_event_source_url"] = web & missing("event_source_url")
    fields["website_missing_event_source_url"] = "event_source_url"

    partner_field = np.full(n, "", dtype=object)
    if "user_data.partner_id" in canon.columns or "user_data.partner_name" in canon.columns:
        no_id = missing("user_data.partner_id")
        no_name = missing("user_data.partner_name")
        masks["partner_pair_incomplete"] = no_id ^ no_name
        partner_field[no_name & ~no_id] = "user_data.partner_name"
        partner_field[no_id & ~no_name] = "user_data.partner_id"
    else:
        masks["partner_pair_incomplete"] = np.zeros(n, dtype=bool)
    fields["partner_pair_incomplete"] = "user_data.partner_id"

    first_fail = np.full(n, -1, dtype=np.int16)
    failures: dict[str, int] = {}
    for k, rule in enumerate(rules[:-1]):
        m = masks[rule]
        hits = int(m.sum())
        if hits:
            failures[rule] = hits
            first_fail[m & (first_fail < 0)] = k
    if seen is not None:
        ok = first_fail < 0
        dup = np.zeros(n, dtype=bool)
        if ok.any():
            dup[ok] = seen.mark(canon.iloc[np.flatnonzero(ok)])
        if dup.any():
            failures["duplicate_event_id"] = int(dup.sum())
            first_fail[dup] = len(rules) - 1

    valid = first_fail < 0
    rejected = np.flatnonzero(~valid)
    counts: dict[str, int] = {}
    if len(rejected):
        for k, c in zip(*np.unique(first_fail[rejected], return_counts=True)):
            counts[rules[int(k)]] = int(c)
    rejections = _records(canon, rejected, first_fail, fields, partner_field, age, limit_days, source, settings)
    return RuleResult(valid=valid, rejections=rejections, counts=counts, failures=failures)


def _message(rule: str, age_s: float, limit_days: int, source: Any, settings: RuleSettings) -> str:
    if rule == "event_too_old":
        days = int(age_s // _DAY)
        who = "physical_store" if source == "physical_store" else "this action_source"
        return f"event_time is {days} days old; {who} allows {limit_days}"
    if rule == "event_in_future":
        return f"event_time is {int(-age_s)} s in the future; the tolerance is {settings.future_tolerance_s} s"
    return _MESSAGES[rule]


_MESSAGES = {
    "missing_event_name": "event_name is missing",
    "missing_event_id": "event_id is missing",
    "missing_event_time": "event_time is missing or could not be parsed",
    "invalid_action_source": "action_source is missing or not one of Meta's action sources",
    "purchase_missing_value": "Purchase needs custom_data.value as a finite number >= 0",
    "purchase_missing_currency": "Purchase needs custom_data.currency",
    "unknown_currency": "custom_data.currency is not an ISO-4217 currency code",
    "invalid_value": "custom_data.value is not a finite number",
    "app_missing_advertiser_tracking_enabled": "app events need app_data.advertiser_tracking_enabled 0 or 1",
    "app_invalid_application_tracking_enabled": "app_data.application_tracking_enabled must be 0 or 1",
    "app_invalid_extinfo": "app_data.extinfo needs 16 slots, slot 0 a2 or i2 and slot 4 the OS version",
    "website_missing_user_agent": "website events need user_data.client_user_agent",
    "website_missing_event_source_url": "website events need event_source_url",
    "partner_pair_incomplete": "user_data.partner_id and user_data.partner_name must be sent together",
    "duplicate_event_id": "event_name + event_id was already seen in this partition; the first is kept",
}


def _records(canon: pd.DataFrame, rejected: np.ndarray, first_fail: np.ndarray, fields: dict[str, str],
             partner_field: np.ndarray, age: np.ndarray, limit_days: np.ndarray, source: pd.Series,
             settings: RuleSettings) -> list[dict[str, Any]]:
    if not len(rejected):
        return []
    files = _values(canon, "_file", rejected)
    rows = _values(canon, "_row", rejected)
    names = _values(canon, "event_name", rejected)
    ids = _values(canon, "event_id", rejected)
    sources = source.iloc[rejected].tolist()
    out = []
    for j, (fail, partner, age_s, limit) in enumerate(zip(first_fail[rejected].tolist(),
                                                          partner_field[rejected].tolist(),
                                                          age[rejected].astype(float).tolist(),
                                                          limit_days[rejected].astype(int).tolist())):
        rule = RULE_ORDER[fail]
        fld = fields.get(rule, "event_id")
        if rule == "partner_pair_incomplete" and partner:
            fld = partner
        row = rows[j]
        out.append({"file": None if files[j] is None else str(files[j]),
                    "row": None if row is None else int(row),
                    "event_name": names[j], "event_id": ids[j], "rule": rule, "field": fld,
                    "message": _message(rule, age_s, limit, sources[j], settings)})
    return out


def _values(canon: pd.DataFrame, name: str, positions: np.ndarray) -> list[Any]:
    if name not in canon.columns:
        return [None] * len(positions)
    col = canon[name]
    if col.dtype.kind in "iu":  # _row
        return col.to_numpy()[positions].tolist()
    out = []
    for v in col.iloc[positions].tolist():
        if v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v)):
            out.append(None)
        elif isinstance(v, str):
            out.append(v.strip() or None)
        else:
            out.append(v)
    return out


# --------------------------------------------------------------------------------------------------- dedup
class SeenEvents:
    """Remembers (event_name, event_id) across the chunks of one partition.

    Keys are kept as 64-bit hashes (8 bytes per event; a Python set of ints would take ~60) in a few sorted
    blocks, merged LSM-style: each chunk's new keys become a block, and a block is merged into the one before it
    while that one is at most `_MERGE_RATIO` times larger and the result stays within `_MAX_BLOCK` keys. So a chunk
    never copies all the keys seen so far (the one-sorted-array version copied ~80 MB per chunk at 10 million),
    a merge copies at most `_MAX_BLOCK` keys, and a lookup is one binary search per block (a few dozen blocks at
    10 million). A false duplicate needs a 64-bit collision (~3e-6 for 10 million events in one partition).
    """

    _MAX_BLOCK = 1 << 21  # keys per block at most (16 MiB)
    _MERGE_RATIO = 2

    def __init__(self) -> None:
        self._blocks: list[np.ndarray] = []  # each sorted, unique, disjoint from the others
        self._count = 0

    def __len__(self) -> int:
        return self._count

    @property
    def _seen(self) -> np.ndarray:
        """All remembered hashes as one sorted array (a copy: for tests and debugging only)."""
        if not self._blocks:
            return np.zeros(0, dtype=np.uint64)
        return np.sort(np.concatenate(self._blocks))

    def mark(self, canon: pd.DataFrame) -> np.ndarray:
        """Bool per row: True for the 2nd+ occurrence (in this chunk or an earlier one); remembers the rest.

        Rows without event_name or event_id are never duplicates and are not remembered.
        """
        pos, h = self.hashes(canon)
        dup = np.zeros(len(canon), dtype=bool)
        if len(pos):
            dup[pos] = self.mark_hashes(h)
        return dup

    @staticmethod
    def hashes(canon: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """(positions of the keyed rows, their 64-bit key hashes): the half of `mark` that needs no state."""
        fast = _key_hashes(canon)
        if fast is not None:
            return fast
        keyed = ~(_missing(canon, "event_name") | _missing(canon, "event_id"))
        if not keyed.any():
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.uint64)
        pos = np.flatnonzero(keyed)
        names = _text(canon, "event_name").iloc[pos]
        ids = _text(canon, "event_id").iloc[pos]
        keys = (names + "\x1f" + ids).to_numpy(dtype=object)
        return pos, pd.util.hash_array(keys, categorize=False)

    def mark_hashes(self, h: np.ndarray) -> np.ndarray:
        """Bool per hash: seen in an earlier call or earlier in `h`; remembers the new ones."""
        h = np.asarray(h, dtype=np.uint64)
        if not len(h):
            return np.zeros(0, dtype=bool)
        order = np.argsort(h, kind="stable")
        hs = h[order]  # sorted: equal hashes in their order in `h`, so each run's first is the first occurrence
        found = np.zeros(len(h), dtype=bool)
        found[1:] = hs[1:] == hs[:-1]
        for block in self._blocks:  # sorted queries: each binary search starts where the last one ended
            at = np.searchsorted(block, hs)
            at[at == len(block)] = 0
            found |= block[at] == hs
        fresh = hs[~found]  # sorted and unique
        if len(fresh):
            self._add(fresh)
        is_dup = np.empty(len(h), dtype=bool)
        is_dup[order] = found
        return is_dup

    def _add(self, fresh: np.ndarray) -> None:
        blocks = self._blocks
        blocks.append(fresh)
        self._count += len(fresh)
        while len(blocks) > 1:
            a, b = blocks[-2], blocks[-1]
            if len(a) > self._MERGE_RATIO * len(b) or len(a) + len(b) > self._MAX_BLOCK:
                break
            merged = np.concatenate((a, b))
            merged.sort(kind="stable")  # two sorted runs: timsort merges them in O(n)
            blocks[-2:] = [merged]
            del a, b, merged


def _key_hashes(canon: pd.DataFrame) -> tuple[np.ndarray, np.ndarray] | None:
    """`SeenEvents.hashes` in Arrow for the usual case, both columns text (str or missing): the same positions
    and hashes (trimmed as `str.strip()` does); None for any other column type."""
    arrays = []
    for name in ("event_name", "event_id"):
        s = _col(canon, name)
        if s is None or s.dtype != object or \
                pd.api.types.infer_dtype(s.to_numpy(), skipna=True) not in ("string", "empty"):
            return None
        arrays.append(pa.array(s.to_numpy(), type=pa.string(), from_pandas=True))
    return key_hashes(*arrays)


def key_hashes(names: pa.Array, ids: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(positions of the keyed rows, their 64-bit key hashes) of Arrow texts (null: missing), each trimmed as
    `str.strip()` does: what `SeenEvents.hashes` gives for a frame of these columns."""
    names, ids = (non_empty(pc.utf8_trim(a.cast(pa.large_string()), PY_SPACE)) for a in (names, ids))
    keys = pc.binary_join_element_wise(names, ids, pa.scalar("\x1f", pa.large_string()))  # null: either missing
    pos = np.flatnonzero(pc.is_valid(keys).to_numpy(zero_copy_only=False))
    if not len(pos):
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.uint64)
    keyed = keys.drop_null().to_numpy(zero_copy_only=False)
    return pos, pd.util.hash_array(keyed, categorize=False)


class KnownDuplicates:
    """`SeenEvents.mark` answered from a mask `duplicate_mask` decided before the chunk was mapped (in the main
    process, for a worker's chunk)."""

    def __init__(self, dup: np.ndarray) -> None:
        self.dup = dup

    def mark(self, canon: pd.DataFrame) -> np.ndarray:
        if len(canon) != len(self.dup):
            raise ValueError(f"duplicate mask for {len(self.dup)} rows, chunk has {len(canon)}")
        return self.dup


def duplicate_mask(cfg: Any, seen: SeenEvents, first_row: int, data: Any, rejected: set[int]) -> np.ndarray:
    """The duplicate mask of a pass-2 chunk's rows (an Arrow batch or a frame) without pass 1's rejections
    (`rejected`: the rows `transform_chunk` leaves out), from only its key columns. Called in chunk order; `seen`
    remembers the keys of every row, the contract's rejections included: the first occurrence of a key wins even
    when the contract rejected it, as it does when a rule does (a later corrected copy is a duplicate)."""
    from capi_pipeline import extract, mapping

    cols = mapping.key_source_columns(cfg)
    if hasattr(data, "num_rows"):
        names = set(data.schema.names)
        data = data.select([c for c in cols if c in names])
    else:
        data = data[[c for c in cols if c in data.columns]]
    frame = extract.to_frame(data)
    pos, h = key_hashes(*mapping.event_key_texts(frame, cfg))  # what seen.mark(canon) hashes, kept in Arrow
    dup = np.zeros(len(frame), dtype=bool)
    if len(pos):
        dup[pos] = seen.mark_hashes(h)
    keep = extract.kept_rows(first_row, len(frame), rejected)
    return dup if keep is None else dup[keep]

"""Column-at-a-time plumbing for `normalize.py`: each field factorized once, rules run on its DISTINCT texts.

A field becomes a `Column`: per entry (one per row, or per list item) the code of its distinct text, and the
distinct texts (trimmed, non-empty) as Python objects and as an Arrow array (`Texts`). Rules are Python `re`/`str`
functions; `each` runs a rule's vectorized twin (pyarrow string kernels, RE2) on the ASCII texts and the Python rule
on the others, so results are the Python rule's. For RE2, Python's `\\s` on ASCII is spelled out (`WS`): RE2's `\\s`
lacks \\v and \\x1c-\\x1f. `Units` pairs texts with the row's country for ph/st/zp; `combine` maps unit results back
to rows; SHA-256 runs once per distinct normalized value.
"""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from capi_pipeline.hashing import sha256_hex_list

try:  # pandas' hash table keyed by UTF-8 bytes: about twice as fast as the generic object one pd.factorize uses
    from pandas._libs import hashtable as _hashtable
    from pandas._libs import lib as _pdlib
except ImportError:  # pragma: no cover - pandas internals moved
    _hashtable = _pdlib = None

__all__ = ["PY_SPACE", "SPACE_CLASS", "TRIMMED_TEXT", "WS", "Column", "Part", "Regions", "Texts", "Units",
           "as_text", "ascii_alnum", "ascii_letters", "column", "combine", "each", "factorize", "keep_if",
           "non_empty", "row_reasons", "sha256_distinct"]

PY_SPACE = ("\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008"
            "\u2009\u200a\u2028\u2029\u202f\u205f\u3000")  # str.isspace(), i.e. what \s and str.strip() mean


SPACE_CLASS = "[" + "".join(f"\\x{{{ord(c):x}}}" for c in PY_SPACE) + "]"


WS = r" \t\n\r\f\v\x1c-\x1f"  # PY_SPACE within ASCII, for RE2 character classes
# A canonical frame's `attrs[TRIMMED_TEXT]`: columns whose cells are already str (trimmed, never blank) or None,
# as `mapping.to_canonical` makes event_name, event_id and action_source; `rules` reads them as they are.
TRIMMED_TEXT = "capi_trimmed_text"


@dataclass
class Texts:
    """Distinct texts (trimmed, non-empty) as Arrow, with their ASCII flags, and as Python objects (`py`), made
    only when a rule asks: most rules read the Arrow texts, and a str object per distinct email or phone would
    be made for nothing (`some` converts a few)."""
    _py: np.ndarray | None
    arrow: pa.Array
    ascii: np.ndarray

    @classmethod
    def of(cls, py: np.ndarray | None, arrow: pa.Array | None = None) -> Texts:
        arrow = pa.array(py, type=pa.string()) if arrow is None else arrow
        return cls(py, arrow, pc.string_is_ascii(arrow).to_numpy(zero_copy_only=False))

    @property
    def py(self) -> np.ndarray:
        if self._py is None:
            self._py = self.arrow.to_numpy(zero_copy_only=False)
        return self._py

    def some(self, idx: np.ndarray) -> np.ndarray:
        """`py[idx]`, without making the others."""
        if self._py is not None:
            return self._py[idx]
        return self.arrow.take(pa.array(idx, type=pa.int64())).to_numpy(zero_copy_only=False)

    def __len__(self) -> int:
        return len(self.arrow)

    def take(self, idx: np.ndarray) -> Texts:
        return Texts(None if self._py is None else self._py[idx], self.arrow.take(pa.array(idx, type=pa.int64())),
                     self.ascii[idx])


def as_text(v: Any) -> str | None:
    """A raw cell as trimmed text; None for missing/empty. Integral floats lose the ".0" Excel gave them."""
    if v is None or v is pd.NA or v is pd.NaT:
        return None
    if isinstance(v, str):
        return v.strip() or None
    if isinstance(v, (float, np.floating)):
        if v != v:
            return None
        return str(int(v)) if float(v).is_integer() else repr(float(v))
    if isinstance(v, (bool, np.bool_)):
        return str(v)
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (_dt.date, np.datetime64)):
        ts = pd.Timestamp(v)
        return None if ts is pd.NaT else ts.strftime("%Y-%m-%d")
    return str(v).strip() or None


@dataclass
class Column:
    """One field in long form: entry row positions (None: one entry per row, in row order), the code of each
    entry's distinct text (-1: missing) and the distinct texts."""
    pos: np.ndarray | None
    codes: np.ndarray
    texts: Texts

    def rows(self, n: int) -> np.ndarray:
        return np.arange(n) if self.pos is None else self.pos


def factorize(values: pd.Series | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """pd.factorize(values, use_na_sentinel=True) as (codes, uniques as an object array): the same codes and
    uniques (first-appearance order, missing -1); object arrays of str (and missing) go through pandas' string
    hash table."""
    if _hashtable is not None and values.dtype == object and len(values):
        arr = values.to_numpy(dtype=object, copy=False) if isinstance(values, pd.Series) else values
        if _pdlib.is_string_array(arr, skipna=True):  # non-null values all str: the string table's NA are ours
            try:
                uniques, codes = _hashtable.StringHashTable(len(arr)).factorize(arr, na_sentinel=-1)
            except Exception:  # pragma: no cover - a string the table cannot read: the generic path
                pass
            else:
                return np.asarray(codes, dtype=np.int64), np.asarray(uniques, dtype=object)
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    return np.asarray(codes, dtype=np.int64), np.asarray(uniques, dtype=object)


def column(values: pd.Series, *, explode: bool = True) -> Column:
    """Factorize a field once; only its distinct values are ever turned into text. List cells (several values
    for one row) become one entry per item when `explode`."""
    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        values = values.dt.strftime("%Y-%m-%d")
    if isinstance(values.dtype, pd.StringDtype) and values.dtype.storage == "pyarrow":
        return _arrow_column(values)
    try:
        codes, texts = factorize(values)
    except TypeError:  # unhashable cells: lists
        codes, texts = None, None
    kind = "mixed" if texts is None else pd.api.types.infer_dtype(texts, skipna=False)
    arrow = pa.array(texts, type=pa.string()) if kind == "string" else None
    if arrow is not None and explode and (cells := _json_list_cells(arrow, codes)) is not None:
        return column(pd.Series(cells, index=values.index, dtype=object))
    if kind != "string" and explode and (texts is None or any(isinstance(v, (list, tuple, np.ndarray))
                                                              for v in texts)):
        pos, items = explode_cells(values.to_numpy(dtype=object))
        long = column(items, explode=False)
        return Column(pos, long.codes, long.texts)
    if texts is None:  # unhashable cells, not exploded: each cell is its own text
        texts, codes = values.to_numpy(dtype=object).copy(), np.arange(len(values))
    if arrow is not None:
        edge = np.flatnonzero(pc.binary_length(pc.utf8_trim(arrow, PY_SPACE)).to_numpy() !=
                              pc.binary_length(arrow).to_numpy())
        if edge.size:
            texts, arrow = texts.copy(), None
            texts[edge] = [v.strip() or None for v in texts[edge]]
            missing = edge[pd.isna(texts[edge])]
        else:
            missing = edge
    else:
        texts = np.array([as_text(v) for v in texts] + [None], dtype=object)[:-1]
        missing = np.flatnonzero(pd.isna(texts))
    if missing.size:
        keep = np.ones(len(texts), dtype=bool)
        keep[missing] = False
        remap = np.full(len(texts) + 1, -1, dtype=np.int64)
        remap[np.flatnonzero(keep)] = np.arange(int(keep.sum()))
        codes, texts, arrow = remap[codes], texts[keep], None
    return Column(None, np.asarray(codes, dtype=np.int64), Texts.of(texts, arrow))


def _arrow_column(values: pd.Series) -> Column:
    """`column` of an Arrow-backed text column (what mapping makes of user_data columns), factorized by Arrow:
    the distinct texts stay Arrow for the vectorized rules and become Python objects once, for the per-text
    ones (pandas' factorize would make the objects first, then Arrow again). ~1/3 less time per column."""
    arrow = pa.array(values.array)
    if isinstance(arrow, pa.ChunkedArray):
        arrow = arrow.combine_chunks()
    encoded = pc.dictionary_encode(arrow.cast(pa.string()))
    distinct = encoded.dictionary
    if len(distinct) and pc.any(pc.not_equal(pc.binary_length(pc.utf8_trim(distinct, PY_SPACE)),
                                             pc.binary_length(distinct))).as_py():
        # untrimmed or blank texts (not from mapping): the general path trims them
        return column(pd.Series(values.to_numpy(dtype=object), index=values.index, dtype=object))
    codes = pc.fill_null(encoded.indices, -1).to_numpy(zero_copy_only=False).astype(np.int64)
    if (cells := _json_list_cells(distinct, codes)) is not None:
        return column(pd.Series(cells, index=values.index, dtype=object))
    return Column(None, codes, Texts.of(None, distinct))


_SCALARS = (str, int, float)


def _json_list_cells(arrow: pa.Array, codes: np.ndarray) -> np.ndarray | None:
    """The cells again (`codes` into the distinct texts `arrow`), each text that is a JSON array of scalars
    (`["a@x.com", "b@y.com"]`: several values in one CSV cell) as that list; None when no text is one (the usual
    case, found by one Arrow test, without making a Python object of any text)."""
    bracket = np.flatnonzero(pc.fill_null(pc.starts_with(pc.utf8_ltrim(arrow, PY_SPACE), "["), False)
                             .to_numpy(zero_copy_only=False))
    lists: dict[int, list[Any]] = {}
    for i, text in zip(bracket.tolist(), arrow.take(pa.array(bracket, type=pa.int64())).to_pylist()):
        try:
            value = json.loads(text)
        except ValueError:
            continue
        if isinstance(value, list) and all(isinstance(v, _SCALARS) and not isinstance(v, bool) for v in value):
            lists[i] = value
    if not lists:
        return None
    distinct = np.append(arrow.to_numpy(zero_copy_only=False).astype(object), None)
    for i, value in lists.items():
        distinct[i] = value
    return distinct[codes]


def explode_cells(cells: np.ndarray) -> tuple[np.ndarray, pd.Series]:
    """Long form of list cells: each item its own entry, tagged with its row position."""
    items: list[Any] = []
    where: list[int] = []
    for p, v in enumerate(cells.tolist()):
        for item in (list(v) if isinstance(v, (list, tuple, np.ndarray)) else [v]):
            items.append(item)
            where.append(p)
    return np.asarray(where, dtype=np.int64), pd.Series(items, dtype=object)


def each(t: Texts, ascii_rule: Callable[[pa.Array], pa.Array | np.ndarray] | None, rule: Callable[[str], str | None]
          ) -> np.ndarray:
    """`rule` on every distinct text: ASCII texts through its vectorized twin `ascii_rule` (null = dropped)."""
    out = np.full(len(t), None, dtype=object)
    rest = np.arange(len(t))
    if ascii_rule is not None:
        a = np.flatnonzero(t.ascii)
        if a.size:
            got = ascii_rule(t.arrow if a.size == len(t) else t.arrow.take(pa.array(a)))
            out[a] = got if isinstance(got, np.ndarray) else got.to_numpy(zero_copy_only=False)
        rest = np.flatnonzero(~t.ascii)
    if rest.size:
        out[rest] = np.array([rule(v) for v in t.some(rest)] + [None], dtype=object)[:-1]
    return out


def keep_if(values: pa.Array, mask: pa.Array) -> pa.Array:
    return pc.if_else(mask, values, pa.scalar(None, pa.string()))


def non_empty(values: pa.Array) -> pa.Array:
    return keep_if(values, pc.greater(pc.binary_length(values), 0))


def ascii_letters(a: pa.Array) -> pa.Array:
    return non_empty(pc.replace_substring_regex(pc.ascii_lower(a), "[^a-z]+", ""))


def ascii_alnum(a: pa.Array) -> pa.Array:
    return non_empty(pc.replace_substring_regex(pc.ascii_lower(a), "[^a-z0-9]+", ""))


@dataclass
class Regions:
    """Each row's normalized alpha-2 country (None: unknown) as codes into `names`."""
    codes: np.ndarray
    names: np.ndarray

    @classmethod
    def of(cls, per_row: np.ndarray) -> Regions:
        codes, names = pd.factorize(per_row, use_na_sentinel=False)
        return cls(np.asarray(codes, dtype=np.int64), np.array([None if pd.isna(r) else r for r in names] + [None],
                                                               dtype=object)[:-1])


@dataclass
class Units:
    """What a key's rule runs on: distinct texts, or for ph/st/zp distinct (text, row country) pairs."""
    of_entry: np.ndarray  # unit code per entry (-1: missing)
    text_of: np.ndarray  # the distinct text behind each unit
    texts: Texts
    regions: np.ndarray | None

    @classmethod
    def of(cls, col: Column, regions: Regions | None, n: int) -> Units:
        if regions is None:
            return cls(col.codes, np.arange(len(col.texts)), col.texts, None)
        width = len(regions.names)
        present = col.codes >= 0
        pair = col.codes[present] * width + regions.codes[col.rows(n)[present]]
        unit = np.full(len(col.codes), -1, dtype=np.int64)
        unit[present], uniq = pd.factorize(pair)
        uniq = np.asarray(uniq, dtype=np.int64)
        return cls(unit, uniq // width, col.texts.take(uniq // width), regions.names[uniq % width])

    def counts(self) -> np.ndarray:
        return np.bincount(self.of_entry[self.of_entry >= 0], minlength=len(self.text_of))


@dataclass
class Part:
    """One field, done: per entry its row and unit; per unit the value as sent, and whether (and why) the unit's
    value was dropped."""
    key: str
    pos: np.ndarray | None
    unit: np.ndarray
    out: np.ndarray
    dropped: np.ndarray
    reason: str


def sha256_distinct(values: np.ndarray, *, dedupe: bool = True) -> np.ndarray:
    """SHA-256 hex of each value, each distinct value hashed once. `dedupe=False` hashes every value as it comes:
    the same digests, cheaper when the values are (nearly) all distinct already (emails, phones, ids)."""
    if not dedupe:
        out = np.empty(len(values), dtype=object)
        out[:] = sha256_hex_list(values.tolist())
        return out
    codes, uniq = factorize(values)
    return np.asarray(sha256_hex_list(uniq.tolist()) + [None], dtype=object)[codes]


def combine(parts: list[Part], n: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row: None, the single value, or a deduplicated list (stable order) when a row has several; and
    whether the row has a value."""
    if all(p.pos is None for p in parts):
        cols = [np.append(p.out, None)[p.unit] for p in parts]
        have = [np.append(pd.notna(p.out), False)[p.unit] for p in parts]
        out, present = cols[0], have[0]
        if len(cols) > 1:
            out, present = out.copy(), present.copy()
            for c, h in zip(cols[1:], have[1:]):
                fill = h & ~present
                out[fill] = c[fill]
                present |= h
            for r in np.flatnonzero(np.sum(have, axis=0) >= 2).tolist():
                items: list[Any] = []
                for c in cols:
                    if c[r] is not None and c[r] not in items:
                        items.append(c[r])
                out[r] = items[0] if len(items) == 1 else items
        return out, present
    out_l: list[Any] = [None] * n
    for p in parts:
        for row, v in zip(p.pos if p.pos is not None else range(n), np.append(p.out, None)[p.unit].tolist()):
            if v is None:
                continue
            cur = out_l[row]
            if cur is None:
                out_l[row] = v
            elif isinstance(cur, list):
                if v not in cur:
                    cur.append(v)
            elif cur != v:
                out_l[row] = [cur, v]
    out = np.empty(n, dtype=object)
    out[:] = out_l
    return out, pd.notna(out)


def row_reasons(parts: list[Part], flags: list[tuple[np.ndarray, str]], n: int, index: pd.Index) -> pd.Series:
    """Per row, the "key:reason" of each value dropped (parts), then of each row flagged (`flags`: (rows, reason))."""
    grouped: dict[int, list[str]] = {}
    listed = [(p.pos if p.pos is not None else np.arange(n), np.append(p.dropped, False)[p.unit],
               f"{p.key}:{p.reason}") for p in parts]
    listed += [(np.arange(n), mask, why) for mask, why in flags]
    for rows, bad, why in listed:
        for r in rows[bad].tolist():
            lst = grouped.setdefault(r, [])
            if why not in lst:
                lst.append(why)
    out = np.empty(n, dtype=object)
    out[:] = [()] * n
    for r, lst in grouped.items():
        out[r] = tuple(lst)
    return pd.Series(out, index=index, dtype=object)


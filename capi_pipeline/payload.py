"""Canonical rows + normalized user_data -> CAPI server events as JSON, with Limited Data Use flags.

Pure. One event per canonical row, fields in Meta's order of the server-event page; nulls are left out, never sent
as null. Decisions (README "Choices"): currency is sent upper-case (ISO-4217 spelling); `value` as a JSON number;
`advertiser_tracking_enabled` as 0/1; `extinfo` as 16 strings with "" for gaps; LDU per capi.md §2:

    off       nothing sent (Meta reads a missing field as LDU off)
    all       ["LDU"], country 0, state 0 (Meta geolocates)
    by_state  a row whose US state is covered -> ["LDU"], 1, that state's code; every other row -> [] (explicit off)
    consent   a row whose consent column is true -> LDU (state code when covered, else 0/0); others -> []

A chunk's events come out as an `EventChunk`: their ids as parallel lists, their bodies as JSON, one array per block
of `block_size(batch size)` consecutive events, all in one buffer. They travel to the uploader in `EventBlock`s (a
block's ids and its `JsonArray`); a request is made of whole blocks, so where requests begin does not depend on
how many processes built them.

Speed: columns become Python lists once (missing values -> None, column-wise); the per-row work is one loop
generated for the chunk's shape (which fields exist, which can be null) and cached, so a row costs only its dict
inserts — no per-field lookups, no generic "skip the nulls" loop. Each block's dicts become JSON (one `orjson`
call) as soon as the block is built and are freed while they are still in the CPU's cache: a chunk's event dicts
never all exist at once, and the loop's memory is the same few pages block after block.
"""

from __future__ import annotations

import copyreg
import pickle
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import islice
from typing import Any, NamedTuple

import numpy as np
import orjson
import pandas as pd

__all__ = ["BLOCKS_PER_REQUEST", "EventBlock", "EventChunk", "JsonArray", "LDU_STATE_CODES", "OutboundEvent",
           "Payloads", "block_size", "build_events", "request_data"]

LDU_STATE_CODES: dict[str, int] = {
    "ca": 1000, "co": 1001, "ct": 1002, "fl": 1003, "or": 1004, "tx": 1005, "mt": 1006, "de": 1007,
    "ne": 1008, "nh": 1009, "nj": 1010, "mn": 1011, "md": 1012, "ri": 1013,
}
_SERVER_FIELDS = ("event_name", "event_time", "event_id", "action_source", "event_source_url", "opt_out",
                  "referrer_url", "messaging_channel", "original_event_data", "customer_segmentation")
_LDU_KEYS = ("data_processing_options", "data_processing_options_country", "data_processing_options_state")


class OutboundEvent(NamedTuple):
    """One event ready for Meta, with the ids that trace it back to its source row.

    A NamedTuple (immutable, fields by name) rather than a dataclass: a run builds millions and a tuple is
    created in C.
    """

    event_name: str
    event_id: str
    file: str
    row: int
    body: dict[str, Any]

    @property
    def key(self) -> tuple[str, str]:
        """Meta's deduplication key, and the ledger's."""
        return (self.event_name, self.event_id)


BLOCKS_PER_REQUEST = 8


def block_size(batch_size: int) -> int:
    """Events per `EventBlock` for requests of `batch_size` events: a full request is `BLOCKS_PER_REQUEST`
    blocks (8 x 125 = Meta's 1,000). Small enough that a chunk's short last block leaves a request at most one
    block short; large enough that orjson's per-call cost (one call per block, in the worker) vanishes."""
    return max(1, batch_size // BLOCKS_PER_REQUEST)


class JsonArray(Sequence):
    """Event bodies serialized once as one JSON array (`[{...},...]`), decoded only when a caller needs dicts.

    `data` is bytes or a memoryview into a chunk's buffer (no copy until a request is assembled).
    """

    __slots__ = ("count", "data")

    def __init__(self, data: bytes | memoryview, count: int) -> None:
        self.data, self.count = data, count

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, i: Any) -> Any:
        return self.decoded()[i]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.decoded())

    def decoded(self) -> list[dict[str, Any]]:
        return orjson.loads(self.data)

    @staticmethod
    def join(parts: Sequence[JsonArray]) -> JsonArray:
        """One array of all the parts' events, in order (one copy of the bytes)."""
        pieces: list[Any] = [b"["]
        for p in parts:
            if p.count:
                if len(pieces) > 1:
                    pieces.append(b",")
                pieces.append(memoryview(p.data)[1:-1])
        pieces.append(b"]")
        return JsonArray(b"".join(pieces), sum(p.count for p in parts))

    def fragment(self) -> orjson.Fragment:
        """The array for `orjson.dumps` to write as it is."""
        return orjson.Fragment(self.data if isinstance(self.data, bytes) else bytes(self.data))


class EventBlock(NamedTuple):
    """Consecutive events of one source chunk (at most `block_size`), as parallel lists: the unit the uploader
    packs into requests. `bodies`: event dicts, or the same serialized once (`JsonArray`)."""

    names: list[str]
    ids: list[str]
    files: list[str]
    rows: list[int]
    bodies: list[dict[str, Any]] | JsonArray

    @property
    def size(self) -> int:
        return len(self.names)

    def keys(self) -> list[tuple[str, str]]:
        """(event_name, event_id) per event: Meta's deduplication keys, and the ledger's."""
        return list(zip(self.names, self.ids))

    def events(self) -> list[OutboundEvent]:
        """One `OutboundEvent` per event (bodies decoded): for the rare paths that need events one by one."""
        return list(map(OutboundEvent, self.names, self.ids, self.files, self.rows, self.bodies))

    @staticmethod
    def of(events: Sequence[OutboundEvent]) -> EventBlock:
        """A block of these events, in order (bodies as they are)."""
        if not events:
            return EventBlock([], [], [], [], [])
        names, ids, files, rows, bodies = map(list, zip(*events))
        return EventBlock(names, ids, files, rows, bodies)


def request_data(request: Sequence[EventBlock]) -> list[dict[str, Any]] | JsonArray:
    """A request's `data` from its blocks: their JSON arrays joined when every block has one, else the dicts."""
    if all(isinstance(b.bodies, JsonArray) for b in request):
        return JsonArray.join([b.bodies for b in request])  # type: ignore[misc]
    return [body for b in request for body in b.bodies]


@dataclass
class EventChunk:
    """One chunk's events, built: their ids as parallel lists, and their bodies as one buffer of consecutive JSON
    arrays, one per block of `block` events (block j's array ends at `ends[j]`). What a worker process hands
    back, and what the uploader takes as `EventBlock`s."""

    names: list[str]
    ids: list[str]
    files: list[str]
    rows: list[int]
    blob: bytes | bytearray
    ends: list[int]
    block: int

    def __len__(self) -> int:
        return len(self.names)

    def __reduce_ex__(self, protocol: Any) -> tuple[Any, ...]:
        """Pickled with protocol 5 (`workers._send_message`), the JSON goes out of band as it is: no copy of it
        on either side, and the receiver gets the bytearray it read it into. The event ids travel as one text
        (a list of ~25k distinct str costs pickle ~1 ms each way; the joined text 0.1 ms, the split 0.5)."""
        state = dict(self.__dict__)
        if protocol >= 5:
            state["blob"] = pickle.PickleBuffer(self.blob)
        try:
            joined = _ID_SEPARATOR.join(self.ids)
        except TypeError:  # not all str: as a list
            joined = None
        if joined is not None and joined.count(_ID_SEPARATOR) == max(len(self.ids) - 1, 0):
            state["ids"] = (joined, len(self.ids))  # (no id holds the separator: it splits back into the same)
        return copyreg.__newobj__, (EventChunk,), state

    def __setstate__(self, state: dict[str, Any]) -> None:
        ids = state["ids"]
        if isinstance(ids, tuple):
            joined, n = ids
            state["ids"] = joined.split(_ID_SEPARATOR) if n else []
        self.__dict__.update(state)

    def blocks(self) -> Iterator[EventBlock]:
        """The events as `EventBlock`s, bodies still JSON (views into `blob`, no copy)."""
        view = memoryview(self.blob)
        start, n = 0, len(self.names)
        for j, end in enumerate(self.ends):
            a, b = j * self.block, min((j + 1) * self.block, n)
            yield EventBlock(self.names[a:b], self.ids[a:b], self.files[a:b], self.rows[a:b],
                             JsonArray(view[start:end], b - a))
            start = end

    def __iter__(self) -> Iterator[OutboundEvent]:
        """Each event with its body decoded: for tests and the rare callers that need dicts."""
        for block in self.blocks():
            yield from block.events()


_ID_SEPARATOR = "\x00"


@dataclass
class Payloads:
    events: EventChunk
    ldu_by_state: Counter = field(default_factory=Counter)  # "ca" / "geolocated" / "off" -> events
    present: dict[str, np.ndarray] = field(default_factory=dict)  # user_data key -> sent on each event (bool)


# (target, key path, nullable) per column, in the order the builder receives them; target is "b" (the body),
# "u" (user_data), "c" (custom_data), "a" (app_data) or "l" (LDU fields, written into the body).
_Spec = tuple[tuple[str, tuple[str, ...], bool], ...]


def build_events(canon: pd.DataFrame, user_data: Mapping[str, pd.Series], *, ldu_policy: str = "off",
                 ldu_states: pd.Series | None = None, ldu_consent: pd.Series | None = None,
                 user_data_present: Mapping[str, np.ndarray] | None = None,
                 block: int = block_size(1000)) -> Payloads:
    """Build the events of `canon` (index-aligned with every `user_data` Series and the LDU inputs) as JSON
    arrays of `block` events (`block_size` of the batch size; Meta's full batch of 1,000 by default).

    `user_data_present`: per key, which rows have a value (None everywhere else), as normalize knows it; the
    missing cells are then not searched for again.
    """
    n = len(canon)
    if n == 0:
        return Payloads(events=EventChunk([], [], [], [], b"", [], block))
    spec: list[tuple[str, tuple[str, ...], bool]] = []
    cols: list[list[Any]] = []

    def add(target: str, path: tuple[str, ...], values: list[Any], nullable: bool) -> None:
        spec.append((target, path, nullable))
        cols.append(values)

    for name in _SERVER_FIELDS:
        if name in canon.columns:
            values, missing = _values(canon[name])
            add("b", (name,), values, missing is not None)
    present: dict[str, np.ndarray] = {}
    known = user_data_present or {}
    for key, s in user_data.items():
        aligned = s.index.equals(canon.index)
        if aligned and key in known and s.dtype == object:
            present[key] = have = np.asarray(known[key], dtype=bool)
            values, missing = s.to_numpy(dtype=object).tolist(), None if have.all() else ~have
        else:
            values, missing = _values(s if aligned else s.reindex(canon.index))
            present[key] = np.ones(n, dtype=bool) if missing is None else ~missing
        add("u", (key,), values, missing is not None)
    for prefix, target in (("custom_data.", "c"), ("app_data.", "a")):
        for col in canon.columns:
            if col.startswith(prefix):
                values, missing = _values(canon[col])
                if col == "custom_data.currency":
                    values = _upper(values)
                add(target, tuple(col[len(prefix):].split(".")), values, missing is not None)
    ldu, ldu_counts = _ldu(n, ldu_policy, ldu_states, ldu_consent, canon.index)
    for key, (values, nullable) in zip(_LDU_KEYS, ldu or ()):
        add("l", (key,), values, nullable)

    names = {path[0]: i for i, (target, path, _) in enumerate(spec) if target == "b"}
    for required in ("event_name", "event_id"):
        # rules.check_rows rejects such rows first; an event without its dedup key must never be built
        if required not in names or spec[names[required]][2]:
            raise KeyError(required)
    blob, ends = _builder(tuple(spec))(cols, n, block)
    events = EventChunk(cols[names["event_name"]], cols[names["event_id"]], _shared(canon["_file"]),
                        canon["_row"].tolist(), blob, ends, block)
    return Payloads(events=events, ldu_by_state=ldu_counts, present=present)


def _values(s: pd.Series) -> tuple[list[Any], np.ndarray | None]:
    """Column -> (Python list with JSON-ready scalars and None for missing values, the missing mask or None
    when nothing is missing)."""
    if s.dtype.kind == "f":
        arr = s.to_numpy(dtype=float, na_value=np.nan)
        missing = np.isnan(arr)
        if not missing.any():
            return arr.tolist(), None
        obj = arr.astype(object)
    elif isinstance(s.dtype, pd.Int64Dtype) or s.dtype.kind in "iu":
        missing = s.isna().to_numpy(dtype=bool)
        obj = s.to_numpy(dtype=object, na_value=None)  # Python ints
        if not missing.any():
            return obj.tolist(), None
    else:
        obj = s.to_numpy(dtype=object)
        missing = pd.isna(obj)
        if not missing.any():
            return obj.tolist(), None
        obj = obj.copy()
    obj[missing] = None
    return obj.tolist(), missing


def _shared(files: pd.Series) -> list[Any]:
    """The file of each event: a chunk's events come from one file, so one str object repeated (written once when
    a worker pickles the chunk back)."""
    values = files.to_numpy(dtype=object)
    if len(values) and (values == values[0]).all():
        return [values[0]] * len(values)
    return values.tolist()


def _upper(values: list[Any]) -> list[Any]:
    """Currency codes upper-cased, once per distinct value."""
    try:
        distinct = {v: v.upper() for v in set(values) if isinstance(v, str)}
    except TypeError:  # unhashable cells: nothing to upper-case there
        return [v.upper() if isinstance(v, str) else v for v in values]
    return list(map(distinct.get, values, values))


_BUILDERS: dict[_Spec, Callable[..., tuple[bytearray, list[int]]]] = {}


def _builder(spec: _Spec) -> Callable[..., tuple[bytearray, list[int]]]:
    """The row loop for one shape of chunk, compiled once and cached (shapes repeat chunk after chunk)."""
    build = _BUILDERS.get(spec)
    if build is None:
        if len(_BUILDERS) > 256:  # configs x nullability patterns: a handful in practice
            _BUILDERS.clear()
        build = _BUILDERS[spec] = _compile(spec)
    return build


def _compile(spec: _Spec) -> Callable[..., tuple[bytearray, list[int]]]:
    """Generate `build(cols, n, block) -> (JSON arrays of `block` bodies in one buffer, where each ends)`; keys
    are written with repr(), so no config text becomes code."""
    v = [f"v{i}" for i in range(len(spec))]
    row = "    " * 3
    body: list[str] = []
    # Body fields that are never null and come before any that may be: one presized dict literal.
    lead = 0
    while lead < len(spec) and spec[lead][0] == "b" and not spec[lead][2]:
        lead += 1
    body.append(row + "b = {" + ", ".join(f"{spec[i][1][0]!r}: {v[i]}" for i in range(lead)) + "}")
    body.extend(_puts("b", spec, v, range(lead, len(spec)), "b", row))
    for target, key in (("u", "user_data"), ("c", "custom_data"), ("a", "app_data")):
        at = [i for i, s in enumerate(spec) if s[0] == target]
        if target == "u":
            body.append(row + "u = {}")
            body.extend(_puts("u", spec, v, at, "u", row))
            body.append(row + "b['user_data'] = u")
        elif at:
            body.append(row + f"{target} = {{}}")
            body.extend(_puts(target, spec, v, at, target, row))
            body.append(row + f"if {target}:")
            body.append(row + f"    b[{key!r}] = {target}")
    body.extend(_puts("l", spec, v, [i for i, s in enumerate(spec) if s[0] == "l"], "b", row))
    body.append(row + "append(b)")
    src = "\n".join([
        "def build(cols, n, block):",
        "    blob, ends = bytearray(), []",
        "    each_row = zip(*cols)",
        "    for _ in range(0, n, block):",
        "        bodies = []",
        "        append = bodies.append",
        f"        for {', '.join(v)} in islice(each_row, block):",
        *body,
        "        blob += dumps(bodies)",
        "        ends.append(len(blob))",
        "    return blob, ends",
    ])
    namespace: dict[str, Any] = {"islice": islice, "dumps": orjson.dumps}
    exec(compile(src, "<payload.build_events>", "exec"), namespace)  # noqa: S102 (our generated code only)
    return namespace["build"]


def _puts(target: str, spec: _Spec, v: list[str], at: Any, into: str, indent: str) -> list[str]:
    """Lines writing spec entries `at` of `target` into dict `into`; nulls skipped, nested paths via setdefault."""
    lines = []
    at = [i for i in at if spec[i][0] == target]
    parents = Counter(spec[i][1][0] for i in at)
    for i in at:
        path, nullable = spec[i][1], spec[i][2]
        if len(path) == 2 and parents[path[0]] == 1:  # the only field under its parent: one literal
            put = f"{into}[{path[0]!r}] = {{{path[1]!r}: {v[i]}}}"
        else:
            node = into + "".join(f".setdefault({p!r}, {{}})" for p in path[:-1])
            put = f"{node}[{path[-1]!r}] = {v[i]}"
        lines.append(indent + (f"if {v[i]} is not None: {put}" if nullable else put))
    return lines


def _ldu(n: int, policy: str, states: pd.Series | None, consent: pd.Series | None, index: pd.Index
         ) -> tuple[list[tuple[list[Any], bool]] | None, Counter]:
    """The three LDU fields as columns (None: field absent on that row), and events per state / outcome."""
    counts: Counter = Counter()
    if policy == "off":
        return None, counts
    ldu_on, ldu_off = ["LDU"], []  # one list each, shared by the chunk's events (never mutated)
    if policy == "all":
        counts["geolocated"] = n
        return [([ldu_on] * n, False), ([0] * n, False), ([0] * n, False)], counts
    st = states.reindex(index).to_numpy(dtype=object) if states is not None else np.full(n, None, dtype=object)
    codes, distinct = pd.factorize(st, use_na_sentinel=True)
    state_code = np.array([LDU_STATE_CODES.get(s, -1) if isinstance(s, str) else -1 for s in distinct] + [-1],
                          dtype=np.int64)
    row_code = state_code[codes]  # codes -1 (missing) pick the trailing -1
    covered = row_code >= 0
    # outcome per row: 0 off, 1 geolocated (consent without a covered state), 2 covered state
    outcome = np.where(covered, 2, 0)
    if policy == "consent":
        wants = consent.reindex(index).tolist() if consent is not None else [True] * n
        want = np.fromiter((w is True for w in wants), dtype=bool, count=n)
        outcome = np.where(want, np.where(covered, 2, 1), 0)
    per_row = outcome.tolist()
    options = list(map((ldu_off, ldu_on, ldu_on).__getitem__, per_row))
    country = list(map((None, 0, 1).__getitem__, per_row))
    state = np.full(n, None, dtype=object)
    state[outcome == 1] = 0
    state[outcome == 2] = row_code[outcome == 2].astype(object)
    _count_ldu(counts, outcome, codes, distinct)
    off = outcome == 0
    return [(options, False), (country, bool(off.any())), (state.tolist(), bool(off.any()))], counts


def _count_ldu(counts: Counter, outcome: np.ndarray, codes: np.ndarray, distinct: Any) -> None:
    """Counts keyed by state ("ca"), "geolocated" or "off", inserted in order of first occurrence."""
    label = np.where(outcome == 2, codes, np.where(outcome == 1, -2, -3))
    uniq, first, n = np.unique(label, return_index=True, return_counts=True)
    for k in np.argsort(first, kind="stable"):
        code = int(uniq[k])
        name = "geolocated" if code == -2 else "off" if code == -3 else distinct[code]
        counts[name] += int(n[k])

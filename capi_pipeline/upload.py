"""Batching, concurrency, retries and isolating bad events: events in, `DeliveryResult` out.

    blocks or events (lazy) ─> requests of whole blocks ─> ledger: skip already `sent` ─> batch (stable id)
        worker:  mark_sending ─> send ─┬─ ok ───────────> mark_sent
                                        ├─ transient ────> backoff (full jitter) and retry, then mark_failed
                                        ├─ throttled ────> halve the run's concurrency, honour hints, retry
                                        ├─ invalid ──────> mark_failed(split), bisect: halves become batches
                                        └─ terminal ─────> mark_failed, stop everything, raise

The input is `payload.EventBlock`s (what the pipeline streams: a request is whole blocks, at most
`batch_size` events, their JSON arrays joined without decoding them) or single events (gathered into requests of
exactly `batch_size`). Only the rare paths (a key twice in one request, events an earlier run already sent, a
bisection) handle events one by one. The input is consumed lazily and at most `2 * concurrency` batches exist at
once, so the transform upstream overlaps with the uploads and memory stays flat. Batch ids come from the scope
and the batch's event keys (sha256, 16 hex), never the clock or the attempt, so a re-run of the same events
forms the same ids; the halves of a bisected batch are `<id>.0` and `<id>.1`.
"""

from __future__ import annotations

import hashlib
import logging
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, Protocol

from capi_pipeline.client import InvalidEventsError, SendResult
from capi_pipeline.errors import DeliveryError, TerminalUploadError, ThrottledError, TransientUploadError
from capi_pipeline.ledger import Key, Ledger
from capi_pipeline.payload import EventBlock, OutboundEvent, request_data

__all__ = [
    "BatchFailure",
    "DeliveryResult",
    "EventBlock",
    "OutboundEvent",
    "ProgressInfo",
    "RejectedEvent",
    "UploadSettings",
    "batch_id_for",
    "deliver",
    "pack_requests",
]

log = logging.getLogger("capi_pipeline.upload")
MAX_TRACE_IDS = 50
# this many events rejected one by one and none delivered: the request itself is wrong (an option, the mapping),
# and bisecting on would cost two requests per event
REJECTION_BREAKER = 20


class Sender(Protocol):
    settings: Any

    def send(self, events: Sequence[dict], *, batch_id: str) -> SendResult: ...


@dataclass(frozen=True)
class UploadSettings:
    batch_size: int = 1000
    concurrency: int = 4
    max_attempts: int = 8
    max_retry_seconds: float = 600.0
    backoff_base_s: float = 0.5
    backoff_max_s: float = 60.0
    progress_every_s: float = 10.0


@dataclass
class BatchFailure:
    batch_id: str
    code: int | None
    subcode: int | None
    fbtrace_id: str | None
    message: str
    events: int


@dataclass
class RejectedEvent:
    """One event Meta refused on its own (isolated by bisection): goes to quarantine."""

    file: str
    row: int
    event_name: str
    event_id: str
    code: int | None
    subcode: int | None
    fbtrace_id: str | None
    message: str
    field: str | None = None  # what Meta blamed (blame_field_specs or a known subcode), None when unknown


@dataclass
class DeliveryResult:
    batches: int = 0
    events_sent: int = 0  # events handed to the API (after the ledger skipped the already-sent ones)
    events_delivered: int = 0
    events_failed: int = 0  # retries exhausted (their batches are in `failures`; ledger state failed)
    events_rejected: int = 0
    events_skipped_already_sent: int = 0
    events_resent: int = 0  # in flight when an earlier run died, or already sent and `force`d
    requests: int = 0
    retries: int = 0
    throttled: int = 0
    bisections: int = 0
    failures: list[BatchFailure] = field(default_factory=list)
    rejected: list[RejectedEvent] = field(default_factory=list)
    fbtrace_ids: list[str] = field(default_factory=list)  # a capped sample
    min_concurrency: int = 0  # lowest concurrency the throttle limiter went down to


@dataclass(frozen=True)
class ProgressInfo:
    events_seen: int
    events_delivered: int
    events_failed: int
    events_rejected: int
    events_skipped: int
    batches_done: int
    batches_submitted: int
    elapsed_s: float
    rate_eps: float  # delivered events per second so far


@dataclass(frozen=True)
class _Batch:
    batch_id: str
    blocks: tuple[EventBlock, ...]
    keys: list[Key]  # (event_name, event_id) per event, in order
    # keys an earlier run delivered, resent by `force`: left out of the ledger's record of this batch, so they stay
    # delivered whatever becomes of it (a failed or killed forced resend must not make the next run send them).
    # A batch of only such keys is not recorded at all: its id is the id of the batch that delivered them.
    delivered: frozenset[Key] = frozenset()
    # keys an earlier run failed to deliver (Meta refused them, or retries ran out): their refusal again is no
    # sign that the whole run is misconfigured (`REJECTION_BREAKER` counts the others)
    retried: frozenset[Key] = frozenset()

    @property
    def size(self) -> int:
        return len(self.keys)

    @property
    def recorded(self) -> bool:
        return len(self.delivered) < len(self.keys)

    def ledger_keys(self) -> list[Key]:
        return [k for k in self.keys if k not in self.delivered] if self.delivered else self.keys

    def bodies(self) -> Sequence[Any]:
        return request_data(self.blocks)

    def events(self) -> list[OutboundEvent]:
        return [e for b in self.blocks for e in b.events()]


def batch_id_for(scope: str, dataset_id: str, keys: Iterable[Key]) -> str:
    """sha256 over scope, dataset and every event key, 16 hex: same events, same id, on every run."""
    digest = hashlib.sha256(f"{scope}\x1f{dataset_id}".encode())
    parts = [f"\x1e{name}\x1f{event_id}" for name, event_id in keys]
    # one update over the joined text hashes the same bytes as one update per key, in a fraction of the time
    digest.update("".join(parts).encode())
    digest.update(f"\x1d{len(parts)}".encode())
    return digest.hexdigest()[:16]


class _Limiter:
    """How many requests may be in flight: halved on throttling, +1 after a run of successes (AIMD)."""

    def __init__(self, maximum: int) -> None:
        self.maximum = maximum
        self.limit = maximum
        self.lowest = maximum
        self.in_use = 0
        self._epoch = 0  # bumped on every cut, so one burst of throttles cuts only once
        self._successes = 0
        self._cond = threading.Condition()

    def acquire(self) -> int:
        with self._cond:
            while self.in_use >= self.limit:
                self._cond.wait()
            self.in_use += 1
            return self._epoch

    def release(self) -> None:
        with self._cond:
            self.in_use -= 1
            self._cond.notify_all()

    def throttled(self, epoch: int) -> None:
        with self._cond:
            self._successes = 0
            if epoch == self._epoch and self.limit > 1:
                self.limit = max(1, self.limit // 2)
                self.lowest = min(self.lowest, self.limit)
                self._epoch += 1
                log.warning("throttled by Meta: concurrency lowered to %d", self.limit)

    def succeeded(self) -> None:
        with self._cond:
            if self.limit >= self.maximum:
                return
            self._successes += 1
            if self._successes >= 4 * self.limit:
                self.limit += 1
                self._successes = 0
                self._cond.notify_all()
                log.info("concurrency recovering: %d", self.limit)


class _Stop(Exception):
    """A terminal error elsewhere stopped the run before this batch was sent."""


class _Run:
    """The shared state of one `deliver` call; workers run `process` for one batch each."""

    def __init__(self, client: Sender, settings: UploadSettings, ledger: Ledger | None, dataset_id: str,
                 sleep: Callable[[float], None]) -> None:
        self.client = client
        self.settings = settings
        self.ledger = ledger
        self.dataset_id = dataset_id
        self.sleep = sleep
        self.limiter = _Limiter(max(1, settings.concurrency))
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.result = DeliveryResult(min_concurrency=self.limiter.maximum)
        self.new_rejections = 0  # events Meta refused one by one that no earlier run had failed to deliver
        self.rng = random.Random()  # jitter only; ids never depend on it

    # -- counters (workers share the result)

    def _add(self, **counts: int) -> None:
        with self.lock:
            for name, n in counts.items():
                setattr(self.result, name, getattr(self.result, name) + n)

    def _trace(self, fbtrace_id: str | None) -> None:
        if fbtrace_id:
            with self.lock:
                if len(self.result.fbtrace_ids) < MAX_TRACE_IDS:
                    self.result.fbtrace_ids.append(fbtrace_id)

    # -- one batch

    def start(self, batch: _Batch) -> None:
        """A batch the queue hands out: counted as sent (a batch cancelled before it starts is not), then
        processed; the halves of a bisection are processed without being counted again."""
        if self.stop.is_set():
            raise _Stop()
        self._add(events_sent=batch.size)
        self.process(batch)

    def process(self, batch: _Batch) -> None:
        """Deliver one batch, bisecting it if Meta calls it invalid; raises TerminalUploadError."""
        if self.stop.is_set():
            self._add(events_failed=batch.size)  # counted as sent by `start`: not delivered
            raise _Stop()
        bodies = batch.bodies()
        if (ledger := self._ledger_of(batch)) is not None:
            ledger.mark_sending(batch.batch_id, self.dataset_id, batch.ledger_keys())
        try:
            sent = self._send_with_retries(batch, bodies)
        except InvalidEventsError as exc:
            self._invalid(batch, exc)
            return
        except TerminalUploadError as exc:
            self._mark_failed(batch, f"terminal: {exc}")
            raise
        except _Stop:
            # never sent, or sent before the stop and unanswered: leave no doubt, resend it next run
            self._mark_failed(batch, "stopped: terminal error elsewhere in the run")
            self._add(events_failed=batch.size)
            raise
        except DeliveryError as exc:
            self._mark_failed(batch, f"gave up: {exc}")
            self._add(events_failed=batch.size)
            with self.lock:
                self.result.failures.append(BatchFailure(batch.batch_id, exc.code, exc.subcode, exc.fbtrace_id,
                                                         str(exc), batch.size))
            log.error("batch %s: %d events not delivered after retries: %s", batch.batch_id,
                      batch.size, exc)
            return
        if (ledger := self._ledger_of(batch)) is not None:
            ledger.mark_sent(batch.batch_id, sent.fbtrace_id)
        self._add(events_delivered=batch.size)
        self._trace(sent.fbtrace_id)

    def _ledger_of(self, batch: _Batch) -> Ledger | None:
        """The ledger, when this batch is recorded in it (`_Batch.recorded`)."""
        return self.ledger if batch.recorded else None

    def _mark_failed(self, batch: _Batch, reason: str) -> None:
        if (ledger := self._ledger_of(batch)) is not None:
            ledger.mark_failed(batch.batch_id, reason)

    def _invalid(self, batch: _Batch, exc: InvalidEventsError) -> None:
        self._trace(exc.fbtrace_id)
        events = batch.events()
        if len(events) == 1:
            event = events[0]
            self._mark_failed(batch, f"rejected: code {exc.code}/{exc.subcode}")
            self._add(events_rejected=1)
            with self.lock:
                self.new_rejections += event.key not in batch.retried
                self.result.rejected.append(RejectedEvent(
                    file=event.file, row=event.row, event_name=event.event_name, event_id=event.event_id,
                    code=exc.code, subcode=exc.subcode, fbtrace_id=exc.fbtrace_id, message=_meta_text(exc),
                    field=getattr(exc, "blame", None)))
                systemic = self.new_rejections >= REJECTION_BREAKER and self.result.events_delivered == 0
            if systemic:
                self.stop.set()
                raise TerminalUploadError(
                    f"Meta rejected the first {REJECTION_BREAKER} events one by one and accepted none "
                    f"(code {exc.code}/{exc.subcode}): check the request options and the mapping",
                    code=exc.code, subcode=exc.subcode, fbtrace_id=exc.fbtrace_id, batch_id=batch.batch_id,
                    http_status=exc.http_status)
            return
        self._mark_failed(batch, f"split: code {exc.code}/{exc.subcode}, bisecting")
        self._add(bisections=1)
        middle = len(events) // 2
        # halves run in this worker, one after the other: bisection never needs a free pool slot
        halves = (("0", events[:middle], batch.keys[:middle]), ("1", events[middle:], batch.keys[middle:]))
        for suffix, part, keys in halves:
            self.process(_Batch(f"{batch.batch_id}.{suffix}", (EventBlock.of(part),), keys, batch.delivered,
                                batch.retried))

    def _send_with_retries(self, batch: _Batch, bodies: Sequence[Any]) -> SendResult:
        started = time.monotonic()
        attempt = 0
        while True:
            if self.stop.is_set():
                raise _Stop()
            attempt += 1
            epoch = self.limiter.acquire()
            try:
                if self.stop.is_set():
                    raise _Stop()
                self._add(requests=1)
                sent = self.client.send(bodies, batch_id=batch.batch_id)
            except ThrottledError as exc:
                self._add(throttled=1)
                self.limiter.throttled(epoch)
                error: TransientUploadError = exc
            except TransientUploadError as exc:
                error = exc
            except TerminalUploadError:
                self.stop.set()
                raise
            else:
                self.limiter.succeeded()
                return sent
            finally:
                self.limiter.release()
            delay = self._delay(attempt, error)
            elapsed = time.monotonic() - started
            if attempt >= self.settings.max_attempts or elapsed + delay > self.settings.max_retry_seconds:
                raise error
            log.info("batch %s: attempt %d failed (%s); retrying in %.1fs", batch.batch_id, attempt,
                     _short(error), delay)
            self._add(retries=1)
            self._pause(delay)

    def _delay(self, attempt: int, error: TransientUploadError) -> float:
        """Full jitter, exponential in the attempt; never less than a wait Meta asked for."""
        s = self.settings
        ceiling = min(s.backoff_max_s, s.backoff_base_s * (2 ** (attempt - 1)))
        delay = self.rng.uniform(0, ceiling)
        hint = getattr(error, "retry_after_s", None)
        return max(delay, float(hint)) if hint else delay

    def _pause(self, delay: float) -> None:
        if self.sleep is time.sleep:
            self.stop.wait(delay)  # a terminal error elsewhere cuts the wait short
        else:
            self.sleep(delay)


def _meta_text(exc: DeliveryError) -> str:
    """Meta's (already scrubbed) words without our `batch ...: HTTP 400 code 100/...:` prefix."""
    text = str(exc)
    _, sep, rest = text.partition(": HTTP ")
    if sep:
        _, sep2, words = rest.partition(": ")
        if sep2:
            return words
    return text


def _short(exc: DeliveryError) -> str:
    parts = [type(exc).__name__]
    if exc.http_status:
        parts.append(f"HTTP {exc.http_status}")
    if exc.code is not None:
        parts.append(f"code {exc.code}" + (f"/{exc.subcode}" if exc.subcode else ""))
    if not exc.http_status and exc.code is None:  # no answer: the client's own words (a timeout, a refused
        parts.append(str(exc).split(": ", 1)[-1])  # connection), which never name the URL
    return " ".join(parts)


def pack_requests(items: Iterable[OutboundEvent | EventBlock], size: int) -> Iterator[list[EventBlock]]:
    """Each request's blocks: whole blocks in order while they fit in `size` events; single events are gathered
    into blocks, `size` events a request; a block longer than `size` is cut (decoding it: rare)."""
    request: list[EventBlock] = []
    count = 0
    loose: list[OutboundEvent] = []
    for item in items:
        if not isinstance(item, EventBlock):
            loose.append(item)
            if count + len(loose) >= size:
                request.append(EventBlock.of(loose))
                yield request
                request, count, loose = [], 0, []
            continue
        if loose:
            request.append(EventBlock.of(loose))
            count += len(loose)
            loose = []
        if item.size > size:
            events = item.events()
            pieces = [EventBlock.of(events[i:i + size]) for i in range(0, len(events), size)]
        else:
            pieces = [item] if item.size else []
        for piece in pieces:
            if count + piece.size > size:
                yield request
                request, count = [], 0
            request.append(piece)
            count += piece.size
            if count == size:
                yield request
                request, count = [], 0
    if loose:
        request.append(EventBlock.of(loose))
    if request:
        yield request


def deliver(events: Iterable[OutboundEvent | EventBlock], *, client: Any, settings: UploadSettings,
            ledger: Ledger | None,
            scope: str, force: bool = False, progress: Callable[[ProgressInfo], None] | None = None,
            sleep: Callable[[float], None] = time.sleep) -> DeliveryResult:
    """Deliver `events` exactly once (with a ledger) and return the counts.

    `events`: `payload.EventBlock`s, or single events (any object with `event_name`, `event_id`, `file`, `row`
    and `body`, as `payload.OutboundEvent`), or both.

    Raises TerminalUploadError after recording the ledger state; the partial result is on its `.result`.
    A dry-run client (`client.dry_run`) never writes the ledger.
    """
    if settings.batch_size < 1 or settings.batch_size > 1000:
        raise ValueError("batch_size must be within 1..1000 (Meta's per-request cap)")
    dataset_id = client.settings.dataset_id
    writer = None if getattr(client, "dry_run", False) else ledger
    run = _Run(client, settings, writer, dataset_id, sleep)
    result = run.result
    in_flight_before: set[Key] = ledger.in_flight(dataset_id) if ledger is not None else set()
    if in_flight_before:
        log.warning("%d events were in flight when an earlier run stopped: resending them", len(in_flight_before))
    max_pending = 2 * max(1, settings.concurrency)
    started = time.monotonic()
    last_log = started
    seen = batches_done = 0
    terminal: TerminalUploadError | None = None

    def report(final: bool = False) -> None:
        nonlocal last_log
        elapsed = time.monotonic() - started
        info = ProgressInfo(events_seen=seen, events_delivered=result.events_delivered,
                            events_failed=result.events_failed, events_rejected=result.events_rejected,
                            events_skipped=result.events_skipped_already_sent, batches_done=batches_done,
                            batches_submitted=result.batches, elapsed_s=elapsed,
                            rate_eps=result.events_delivered / elapsed if elapsed > 0 else 0.0)
        if progress is not None:
            progress(info)
        now = time.monotonic()
        if final or now - last_log >= settings.progress_every_s:
            last_log = now
            log.info("%s: %d events read, %d delivered, %d failed, %d rejected, %d skipped (already sent); "
                     "%d/%d batches, %.0f events/s", scope, info.events_seen, info.events_delivered,
                     info.events_failed, info.events_rejected, info.events_skipped, info.batches_done,
                     info.batches_submitted, info.rate_eps)

    def collect(done: Iterable[Future[None]]) -> None:
        nonlocal batches_done, terminal
        for future in done:
            batches_done += 1
            exc = future.exception() if not future.cancelled() else None
            if isinstance(exc, TerminalUploadError):
                terminal = terminal or exc
            elif exc is not None and not isinstance(exc, _Stop):
                run.stop.set()
                raise exc
            report()

    pending: set[Future[None]] = set()
    failure: BaseException | None = None
    with ThreadPoolExecutor(max_workers=max(1, settings.concurrency), thread_name_prefix="capi-upload") as pool:
        try:
            for request in pack_requests(events, settings.batch_size):
                seen += sum(b.size for b in request)
                batch = _select(request, ledger, dataset_id, force, in_flight_before, result, scope)
                if batch is not None:
                    result.batches += 1
                    pending.add(pool.submit(run.start, batch))
                done = {f for f in pending if f.done()}
                pending -= done
                collect(done)
                while len(pending) >= max_pending and terminal is None:
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    collect(done)
                if terminal is not None:
                    break
            if terminal is not None:
                _cancel(pending)  # queued batches never start: no retry storm after a terminal answer
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                collect(done)
        except BaseException as exc:  # Ctrl-C, a worker process lost, the ledger locked...: stop, then report
            run.stop.set()
            _cancel(pending)
            failure = exc
    result.min_concurrency = run.limiter.lowest
    if failure is not None:  # the batches in flight are done (the pool waited): what was delivered is known
        failure.result = result  # type: ignore[attr-defined]
        raise failure
    report(final=True)
    if terminal is not None:
        terminal.result = result  # type: ignore[attr-defined]
        log.error("%s: stopped on a terminal error: %s", scope, terminal)
        raise terminal
    return result


def _cancel(pending: set[Future[None]]) -> None:
    for future in pending:
        future.cancel()


def _select(request: list[EventBlock], ledger: Ledger | None, dataset_id: str, force: bool,
            in_flight_before: set[Key], result: DeliveryResult, scope: str) -> _Batch | None:
    """The request's events that still need sending (one per key), as a batch; None if nothing is left."""
    keys = [key for b in request for key in b.keys()]
    distinct = set(keys)
    once = len(distinct) == len(keys)
    states = ledger.states(dataset_id, keys if once else list(dict.fromkeys(keys))) if ledger is not None else {}
    already = {key for key, state in states.items() if state == "sent"}
    failed = frozenset(key for key, state in states.items() if state == "failed")
    if once and (force or not already):  # the common case: every event goes, the blocks as they are
        result.events_resent += len(already) + len((distinct & in_flight_before) - already)
        return _Batch(batch_id_for(scope, dataset_id, keys), tuple(request), keys, frozenset(already), failed)
    # one key twice, or events an earlier run sent: event by event
    unique: dict[Key, OutboundEvent] = {}
    for event in (e for b in request for e in b.events()):
        unique.setdefault((event.event_name, event.event_id), event)  # one key twice in a request is one event for Meta anyway
    selected: list[OutboundEvent] = []
    for key, event in unique.items():
        if key in already:
            if not force:
                result.events_skipped_already_sent += 1
                continue
            result.events_resent += 1
        elif key in in_flight_before:
            result.events_resent += 1
        selected.append(event)
    if not selected:
        return None
    keys = [(e.event_name, e.event_id) for e in selected]
    return _Batch(batch_id_for(scope, dataset_id, keys), (EventBlock.of(selected),), keys,
                  frozenset(k for k in keys if k in already), failed)

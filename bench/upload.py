"""Upload throughput against the local sandbox: our uploader vs Meta's SDK `BatchProcessor`.

    python bench/upload.py [--events 100000] [--latency-ms 50] [--concurrency 8] [--sdk-batch-sizes 50,1000]

The same N events (our transform of a generated offline sample, built once, outside every timing) go to a
sandbox running in a child process with `--latency-ms` added to every request, each uploader into its own
dataset id so the sandbox's counts prove that all N arrived:

  ours  `upload.deliver` + `client.CapiClient` (requests, keep-alive pool), batches of 1,000, `--concurrency`
        threads, no ledger (`ledger=None`: the exactly-once ledger is measured by the e2e bench).
  SDK   facebook-business 26 `BatchProcessor(batch_size, concurrent_requests=4).process_events(...)` with
        `EventRequestAsync` (aiohttp), first with its defaults (batch_size=50), then with 1,000. Our event dicts
        are turned into SDK objects before the clock starts (values already hashed: the SDK passes 64-hex
        through). The SDK cannot carry partner_id / partner_name, so the N events are drawn from those without.

The SDK only talks to `FacebookSession.GRAPH` + `FacebookAdsApi.API_VERSION` (class attributes: the URL is built
from them in `EventRequestAsync.create_event`), so the bench points those at the sandbox. The SDK puts the
access token in the POST body (form field `access_token`); the bench uses a throwaway token.
Last line: ratio of events/s, ours vs the SDK with its default settings.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from typing import Any

import orjson

import _common as c

THROWAWAY_TOKEN = "bench-throwaway-token-not-a-secret"
DATASET_OURS = "900000000000001"
DATASET_SDK = "900000000000050"  # + batch size


def build_events(n: int, seed: int, work: Any) -> list[Any]:
    """N of our outbound events, none with partner_id (the SDK has no field for it), the same for everyone."""
    import transform

    from capi_pipeline.pipeline import normalize_options, rule_settings_for, transform_chunk
    from capi_pipeline.report import RunStats
    from capi_pipeline.rules import SeenEvents

    cfg, chunks, _ = transform._load(int(n * 1.35) + 200, seed, work)
    stats = RunStats(pipeline=cfg.name, date="bench")
    settings = rule_settings_for(cfg)
    seen = SeenEvents()
    options = normalize_options(cfg)
    now = int(time.time())
    out: list[Any] = []
    for chunk in chunks:
        for e in transform_chunk(cfg, chunk, set(), stats, None, options=options, rule_settings=settings,
                                 seen=seen, now=now):  # bodies decoded from the chunk's JSON (outside timing)
            if "partner_id" in e.body["user_data"]:
                continue  # the SDK cannot carry it; some of these events would become baseline-invalid without
            out.append(e)
            if len(out) == n:
                return out
    raise SystemExit(f"only {len(out)} events could be built; raise the sample size")


# ---------------------------------------------------------------------------------------------- ours

def upload_ours(events: list[Any], url: str, concurrency: int) -> tuple[float, Any]:
    from capi_pipeline import upload
    from capi_pipeline.client import CapiClient, ClientSettings, Secret, make_session

    session = make_session(concurrency)
    client = CapiClient(session, ClientSettings(endpoint=url, api_version="v25.0", dataset_id=DATASET_OURS,
                                                token=Secret(THROWAWAY_TOKEN), partner_agent="capi-pipeline-bench"))
    settings = upload.UploadSettings(batch_size=1000, concurrency=concurrency)
    try:
        with c.timed() as t:
            result = upload.deliver(events, client=client, settings=settings, ledger=None, scope="bench/upload")
    finally:
        session.close()
    return t.seconds, result


# ---------------------------------------------------------------------------------------------- the SDK

_GENDER_BY_HASH = {hashlib.sha256(b"m").hexdigest(): "MALE", hashlib.sha256(b"f").hexdigest(): "FEMALE"}


def _as_list(v: Any) -> list[str] | None:
    if v is None:
        return None
    return list(v) if isinstance(v, list) else [v]


def to_sdk_event(body: dict[str, Any], sdk: Any) -> Any:
    """Our event dict -> the SDK's Event carrying the same values (partner_id/partner_name it cannot carry)."""
    ud_in = body.get("user_data", {})
    gender = _GENDER_BY_HASH.get(ud_in["ge"]) if isinstance(ud_in.get("ge"), str) else None
    ud = sdk.UserData(
        emails=_as_list(ud_in.get("em")), phones=_as_list(ud_in.get("ph")),
        first_names=_as_list(ud_in.get("fn")), last_names=_as_list(ud_in.get("ln")),
        genders=[getattr(sdk.Gender, gender)] if gender else None,
        dates_of_birth=_as_list(ud_in.get("db")), cities=_as_list(ud_in.get("ct")),
        states=_as_list(ud_in.get("st")), zip_codes=_as_list(ud_in.get("zp")),
        country_codes=_as_list(ud_in.get("country")), external_ids=_as_list(ud_in.get("external_id")),
        lead_id=ud_in.get("lead_id"), client_ip_address=ud_in.get("client_ip_address"),
        madid=ud_in.get("madid"), anon_id=ud_in.get("anon_id"))
    custom = None
    cd = body.get("custom_data")
    if cd:
        extra = {k: v for k, v in cd.items() if k not in ("value", "currency", "order_id", "contents")}
        contents = [sdk.Content(product_id=i.get("id"), quantity=i.get("quantity"), item_price=i.get("item_price"))
                    for i in cd.get("contents") or []] or None
        custom = sdk.CustomData(value=cd.get("value"), currency=cd.get("currency"), order_id=cd.get("order_id"),
                                contents=contents, custom_properties=extra)
    kwargs: dict[str, Any] = {}
    for key in ("data_processing_options", "data_processing_options_country", "data_processing_options_state"):
        if key in body:
            kwargs[key] = body[key]
    return sdk.Event(event_name=body["event_name"], event_time=body["event_time"], event_id=body.get("event_id"),
                     user_data=ud, custom_data=custom, action_source=sdk.ActionSource(body["action_source"]),
                     **kwargs)


def _sdk() -> Any:
    import types

    from facebook_business.adobjects.serverside.action_source import ActionSource
    from facebook_business.adobjects.serverside.batch_processor import BatchProcessor
    from facebook_business.adobjects.serverside.content import Content
    from facebook_business.adobjects.serverside.custom_data import CustomData
    from facebook_business.adobjects.serverside.event import Event
    from facebook_business.adobjects.serverside.event_request_async import EventRequestAsync
    from facebook_business.adobjects.serverside.gender import Gender
    from facebook_business.adobjects.serverside.user_data import UserData
    from facebook_business.api import FacebookAdsApi
    from facebook_business.session import FacebookSession

    return types.SimpleNamespace(ActionSource=ActionSource, BatchProcessor=BatchProcessor, Content=Content,
                                 CustomData=CustomData, Event=Event, EventRequestAsync=EventRequestAsync,
                                 Gender=Gender, UserData=UserData, FacebookAdsApi=FacebookAdsApi,
                                 FacebookSession=FacebookSession)


def point_sdk_at(url: str, sdk: Any) -> None:
    """The SDK reads its base URL and version from class attributes; there is no per-call setting."""
    sdk.FacebookAdsApi.init(access_token=THROWAWAY_TOKEN, api_version="v25.0", crash_log=False)
    sdk.FacebookSession.GRAPH = url
    sdk.FacebookAdsApi.API_VERSION = "v25.0"


def upload_sdk(sdk_events: list[Any], dataset_id: str, batch_size: int, sdk: Any) -> float:
    processor = sdk.BatchProcessor(batch_size=batch_size, concurrent_requests=4)
    template = sdk.EventRequestAsync(pixel_id=dataset_id, events=[])
    with c.timed() as t:
        processor.process_events(template, sdk_events)
    return t.seconds


# ---------------------------------------------------------------------------------------------- main

def _check(sb: c.SandboxProcess, dataset_id: str, n: int, who: str) -> str:
    got = sb.dataset(dataset_id)
    unique = got.get("unique_events", 0)
    status = "all arrived" if unique == n else f"MISSING {n - unique:,}"
    return (f"sandbox dataset {dataset_id}: {got.get('requests', 0):,} requests, "
            f"{got.get('events_received', 0):,} events received, {unique:,} unique of {n:,} ({status})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--latency-ms", type=float, default=50)
    parser.add_argument("--concurrency", type=int, default=8,
                        help="our uploader's threads (default 8; see bench/README.md)")
    parser.add_argument("--sdk-batch-sizes", default="50,1000",
                        help="BatchProcessor batch sizes to run, comma separated; the first is the ratio's base")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--workdir")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sdk_batch_sizes.split(",") if s.strip()]

    n = args.events
    print(f"upload bench: {n:,} events, sandbox latency {args.latency_ms:g} ms per request, {c.cpu_info()}",
          flush=True)
    with c.timed() as t:
        events = build_events(n, args.seed, c.workdir(args.workdir, "upload"))
        sdk = _sdk()
        # our bodies may hold JSON cells kept as their text (orjson.Fragment, e.g. contents): read back as dicts
        sdk_events = [to_sdk_event(orjson.loads(orjson.dumps(e.body)), sdk) for e in events]
    print(f"  {len(events):,} events built (ours and SDK objects) in {t.seconds:.1f}s", flush=True)

    with c.SandboxProcess(latency_ms=args.latency_ms) as sb:
        seconds, result = upload_ours(events, sb.url, args.concurrency)
        ours_rate = n / seconds
        print(f"  ours: batch 1000, {args.concurrency} threads: {seconds:.2f}s, {ours_rate:,.0f} events/s, "
              f"{result.requests:,} requests, {result.retries} retries, {result.events_failed} failed", flush=True)
        print(f"    {_check(sb, DATASET_OURS, n, 'ours')}", flush=True)

        point_sdk_at(sb.url, sdk)
        sdk_rates: list[float] = []
        for size in sizes:
            dataset_id = str(int(DATASET_SDK) - 50 + size)
            seconds = upload_sdk(sdk_events, dataset_id, size, sdk)
            sdk_rates.append(n / seconds)
            print(f"  SDK BatchProcessor(batch_size={size}, concurrent_requests=4): {seconds:.2f}s, "
                  f"{n / seconds:,.0f} events/s", flush=True)
            print(f"    {_check(sb, dataset_id, n, 'sdk')}", flush=True)
    for size, r in zip(sizes[1:], sdk_rates[1:]):
        print(f"  (vs BatchProcessor batch_size={size}: {ours_rate / r:.1f}x)")
    c.print_ratio("upload speed-up vs facebook-business BatchProcessor", ours_rate, sdk_rates[0])
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""report.json -> one self-contained report.html: inline CSS and SVG, no script, no network, no external assets.

The input is the dict `RunStats.to_dict()` returns (report.json), so the page can be re-rendered from a stored
report (`quality.add_meta_scores` does). It holds counts and ids only; every string that reaches the page goes
through `html.escape`. The markup is XHTML-valid (void elements closed, numeric entities only) so tests can parse
it with an XML parser.
"""

from __future__ import annotations

import html
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from capi_pipeline.report import atomic_write_text

__all__ = ["render_html", "status_of", "write_html"]

_GREEN, _AMBER, _RED = "#1e8e3e", "#d98a00", "#c5221f"
_BLUE, _GREY, _TEAL = "#1a73e8", "#9aa0a6", "#12857a"
_TILES = (("rows_read", "rows read"), ("rows_rejected", "rows rejected"), ("rows_valid", "rows valid"),
          ("events_delivered", "events delivered"), ("events_failed", "events failed"))
_DELIVERY_COUNTS = ("batches", "requests", "events_sent", "events_delivered", "events_failed", "events_rejected",
                    "events_skipped_already_sent", "events_resent", "retries", "throttled", "bisections")
_FAILURE_KEYS = ("batch_id", "events", "code", "subcode", "http_status", "fbtrace_id", "message")

_CSS = """
body{font:14px/1.45 -apple-system,'Segoe UI',Roboto,Helvetica,Arial,sans-serif;color:#202124;background:#f6f7f9;
margin:0}
main{max-width:1080px;margin:0 auto;padding:24px}
header{background:#fff;border-radius:10px;padding:20px 24px;border-left:8px solid var(--status);
box-shadow:0 1px 3px rgba(0,0,0,.08)}
h1{margin:0 0 4px;font-size:22px}
h2{font-size:17px;margin:0 0 12px}
h3{font-size:14px;margin:16px 0 6px;color:#5f6368}
.meta{color:#5f6368}
.badge{display:inline-block;padding:2px 10px;border-radius:12px;color:#fff;background:var(--status);
font-weight:600;font-size:12px;vertical-align:middle;margin-left:8px}
.tiles{display:flex;flex-wrap:wrap;gap:12px;margin:18px 0 4px}
.tile{flex:1 1 150px;background:#f1f3f4;border-radius:8px;padding:12px 14px}
.tile .n{font-size:28px;font-weight:700;font-variant-numeric:tabular-nums}
.tile .l{color:#5f6368;font-size:12px;text-transform:uppercase;letter-spacing:.04em}
.tile.bad .n{color:#c5221f}.tile.warn .n{color:#b06f00}.tile.good .n{color:#1e8e3e}
section{background:#fff;border-radius:10px;padding:18px 24px;margin-top:16px;box-shadow:0 1px 3px rgba(0,0,0,.08)}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(460px,1fr));gap:16px}
table{border-collapse:collapse;width:100%;font-variant-numeric:tabular-nums}
th,td{text-align:left;padding:4px 8px;border-bottom:1px solid #eceff1;vertical-align:top}
th{color:#5f6368;font-weight:600;font-size:12px}
td.num,th.num{text-align:right}
.empty{color:#80868b;font-style:italic}
.links a{margin-right:18px}
code{font:12px ui-monospace,Menlo,Consolas,monospace;background:#f1f3f4;padding:1px 4px;border-radius:3px}
section svg{max-width:100%;height:auto}
svg text{font:12px -apple-system,'Segoe UI',Roboto,Helvetica,Arial,sans-serif;fill:#3c4043}
.legend span{display:inline-block;width:10px;height:10px;border-radius:2px;margin:0 4px 0 12px}
footer{color:#80868b;font-size:12px;margin:18px 0}
"""


def write_html(report: Mapping[str, Any], out_dir: Path) -> Path:
    """Render `report` (report.json's dict) to `out_dir/report.html`, atomically."""
    path = Path(out_dir) / "report.html"
    atomic_write_text(path, render_html(report, base_dir=Path(out_dir)))
    return path


def status_of(report: Mapping[str, Any]) -> tuple[str, str, str]:
    """(level, colour, sentence): red when events failed, amber when rows were rejected, else green."""
    failed = _int(report.get("events_failed"))
    # rows_rejected already counts the events Meta refused (rule meta_rejected): not added twice
    rejected = max(_int(report.get("rows_rejected")), _int(report.get("events_rejected_by_meta")))
    if failed or report.get("errors"):
        return "failed", _RED, f"{failed:,} events were not delivered"
    if rejected:
        return "rejections", _AMBER, f"{rejected:,} rows were rejected; every valid row was handled"
    if report.get("mode") == "validate":
        return "ok", _GREEN, "every row passed validation"
    if report.get("mode") == "dry-run":
        return "ok", _GREEN, "dry run: every valid row's request body was written, nothing was sent"
    return "ok", _GREEN, "every valid row was delivered"


def render_html(report: Mapping[str, Any], *, base_dir: Path | None = None) -> str:
    """The page as a string; `base_dir` (the report's folder) makes the quarantine and Data Docs links relative."""
    level, colour, sentence = status_of(report)
    title = f"{_s(report.get('pipeline'))} {_s(report.get('date'))}"
    parts = [
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8" />',
        '<meta name="viewport" content="width=device-width, initial-scale=1" />',
        f"<title>capi-pipeline report: {_e(title)}</title><style>{_CSS}</style></head>",
        f'<body style="--status:{colour}"><main>',
        _header(report, level, sentence, base_dir),
        _section("Rejected rows", _rejections(report)),
        _section("Customer information", _customer_information(report)),
        _section("Events", _events(report)),
        _section("Delivery", _delivery(report)),
        _section("Predicted match quality", _match_quality(report)),
        _section("Timing", _timing(report)),
        _errors(report),
        f"<footer>capi-pipeline report schema {_e(report.get('schema_version'))}. Counts and ids only: no "
        "customer value is ever written to this report.</footer>",
        "</main></body></html>\n",
    ]
    return "".join(parts)


# ---------------------------------------------------------------------------------------------- sections

def _header(report: Mapping[str, Any], level: str, sentence: str, base_dir: Path | None) -> str:
    badge = {"ok": "OK", "rejections": "ROWS REJECTED", "failed": "DELIVERY FAILED"}[level]
    timing = report.get("timing") or {}
    tiles = []
    for key, label in _TILES:
        n = _int(report.get(key))
        if key == "events_delivered" and report.get("mode") == "dry-run":
            label = "events written (dry run, not sent)"
        cls = ""
        if key == "events_failed":
            cls = " bad" if n else " good"
        elif key == "rows_rejected" and n:
            cls = " warn"
        tiles.append(f'<div class="tile{cls}"><div class="n">{n:,}</div><div class="l">{_e(label)}</div></div>')
    extra = []
    sent = "written (dry run)" if report.get("mode") == "dry-run" else "sent"
    for key, label in (("events_sent", sent), ("events_rejected_by_meta", "rejected by Meta"),
                       ("events_skipped_already_sent", "skipped (already sent)"), ("events_resent", "resent")):
        if _int(report.get(key)):
            extra.append(f"{_e(label)} <b>{_int(report.get(key)):,}</b>")
    links = []
    q = _relative(report.get("quarantine_file"), base_dir)
    if q:
        links.append(f'<a href="{_e(q)}">quarantine.csv</a> (one line per rejected row: file, row, rule) ')
    docs = _relative(report.get("data_docs"), base_dir)
    if docs:
        links.append(f'<a href="{_e(docs)}">Great Expectations Data Docs</a>')
    files = report.get("files") or []
    return (
        f"<header><h1>{_e(report.get('pipeline'))} <span class=\"meta\">{_e(report.get('date'))}</span>"
        f'<span class="badge">{badge}</span></h1>'
        f'<div class="meta">mode <b>{_e(report.get("mode"))}</b> &#183; {_e(sentence)} &#183; '
        f"{len(files):,} file(s) &#183; started {_e(timing.get('started_at'))} &#183; "
        f"{_num(timing.get('duration_seconds'))} s</div>"
        f'<div class="tiles">{"".join(tiles)}</div>'
        + (f'<div class="meta">{" &#183; ".join(extra)}</div>' if extra else "")
        + (f'<p class="links">{"".join(links)}</p>' if links else "")
        + "</header>"
    )


def _rejections(report: Mapping[str, Any]) -> str:
    rejected = report.get("rejected") or {}
    by_rule = _pairs(rejected.get("by_rule"))
    by_stage = _pairs(rejected.get("by_stage"))
    if not by_rule:
        return '<p class="empty">No row was rejected.</p>'
    return (f'<div class="grid"><div><h3>by rule</h3>{_hbars(by_rule, _AMBER)}</div>'
            f'<div><h3>by stage</h3>{_hbars(by_stage, _GREY)}</div></div>')


def _customer_information(report: Mapping[str, Any]) -> str:
    ci = report.get("customer_information") or {}
    before = ci.get("coverage_before") or {}
    after = ci.get("coverage_after") or {}
    keys = sorted(set(before) | set(after), key=lambda k: (-_share(after.get(k)), k))
    out = []
    if keys:
        rows = [(k, _share(before.get(k)), _share(after.get(k))) for k in keys]
        out.append('<h3>share of rows with a value, per user_data key: read (rows that passed contract and rules) vs '
                   'sent after normalization</h3>'
                   f'<p class="legend"><span style="background:{_GREY}"></span>read'
                   f'<span style="background:{_BLUE}"></span>sent</p>' + _paired_bars(rows))
    else:
        out.append('<p class="empty">No customer information was read.</p>')
    dropped = _pairs(ci.get("fields_dropped"))
    hashed = _pairs(ci.get("hashed"))
    pre = _pairs(ci.get("prehashed"))
    out.append('<div class="grid"><div><h3>values dropped, by key and reason</h3>'
               + (_hbars(dropped, _RED) if dropped else '<p class="empty">none</p>') + "</div>")
    hp_keys = sorted({k for k, n in hashed if n} | {k for k, n in pre if n})  # never-hashed keys count 0
    if hp_keys:
        h, p = dict(hashed), dict(pre)
        stacked = _stacked_bars([(k, [(h.get(k, 0), _BLUE), (p.get(k, 0), _TEAL)]) for k in hp_keys])
        out.append('<div><h3>hashed here vs received pre-hashed</h3>'
                   f'<p class="legend"><span style="background:{_BLUE}"></span>hashed here'
                   f'<span style="background:{_TEAL}"></span>pre-hashed</p>{stacked}</div>')
    else:
        out.append('<div><h3>hashed here vs received pre-hashed</h3><p class="empty">none</p></div>')
    out.append("</div>")
    return "".join(out)


def _events(report: Mapping[str, Any]) -> str:
    events = report.get("events") or {}
    by_name = _pairs(events.get("by_event_name"))
    ldu = _pairs(report.get("limited_data_use"))
    dropped = _pairs(events.get("values_dropped"))
    ages = [(label, _int(n)) for label, n in (report.get("event_age_hours") or {}).items()]
    out = ['<div class="grid">',
           f"<div><h3>events built: {_int(events.get('built')):,}, by event name</h3>"
           + (_hbars(by_name, _BLUE) if by_name else '<p class="empty">none</p>') + "</div>",
           "<div><h3>event age at send time (hours)</h3>"
           + (_columns(ages, _BLUE) if any(n for _, n in ages) else '<p class="empty">none</p>') + "</div>",
           "<div><h3>Limited Data Use, by state</h3>"
           + (_hbars(ldu, _GREY) if ldu else '<p class="empty">no event flagged</p>') + "</div>",
           "<div><h3>values left out of their events, by field and reason</h3>"
           + (_hbars(dropped, _RED) if dropped else '<p class="empty">none</p>') + "</div>",
           "</div>"]
    return "".join(out)


def _delivery(report: Mapping[str, Any]) -> str:
    delivery = report.get("delivery") or {}
    if not delivery:
        return '<p class="empty">Nothing was sent (validate mode or an empty partition).</p>'
    head = "".join(f'<th class="num">{_e(k.replace("_", " "))}</th>' for k in _DELIVERY_COUNTS)
    rows = []
    for ds, d in delivery.items():
        cells = "".join(f'<td class="num">{_int(d.get(k)):,}</td>' for k in _DELIVERY_COUNTS)
        rows.append(f"<tr><td><code>{_e(ds)}</code></td>{cells}</tr>")
    out = [f'<div style="overflow-x:auto"><table><tr><th>dataset</th>{head}</tr>{"".join(rows)}</table></div>']
    chart = [(ds, [(_int(d.get("events_delivered")), _GREEN), (_int(d.get("events_skipped_already_sent")), _GREY),
                   (_int(d.get("events_rejected")), _AMBER), (_int(d.get("events_failed")), _RED)])
             for ds, d in delivery.items()]
    out.append(f'<p class="legend"><span style="background:{_GREEN}"></span>delivered'
               f'<span style="background:{_GREY}"></span>skipped (already sent)'
               f'<span style="background:{_AMBER}"></span>rejected by Meta'
               f'<span style="background:{_RED}"></span>failed</p>{_stacked_bars(chart)}')
    for ds, d in delivery.items():
        failures = [f for f in d.get("failures") or [] if isinstance(f, Mapping)]
        if failures:
            keys = [k for k in _FAILURE_KEYS if any(f.get(k) is not None for f in failures)]
            head = "".join(f"<th>{_e(k)}</th>" for k in keys)
            body = "".join("<tr>" + "".join(f"<td>{_e(f.get(k))}</td>" for k in keys) + "</tr>"
                           for f in failures)
            out.append(f"<h3>failures for dataset {_e(ds)}</h3><table><tr>{head}</tr>{body}</table>")
        traces = [t for t in d.get("fbtrace_ids") or [] if t]
        if traces:
            out.append(f"<h3>fbtrace_ids for dataset {_e(ds)} (quote them to Meta support)</h3><p>"
                       + " ".join(f"<code>{_e(t)}</code>" for t in traces) + "</p>")
    return "".join(out)


def _match_quality(report: Mapping[str, Any]) -> str:
    mq = report.get("match_quality") or {}
    predicted = mq.get("predicted") or {}
    meta = _meta_by_dataset(mq.get("meta"))
    by_event = predicted.get("by_event") or {}
    names = sorted(set(by_event) | {n for scores in meta.values() for n in scores})
    if not names:
        return '<p class="empty">No events were built, so there is nothing to score.</p>'
    meta_heads = "".join(f'<th class="num">Meta score{(" " + _e(ds)) if ds else ""}</th>' for ds in meta)
    rows = []
    for name in names:
        p = by_event.get(name) or {}
        score = p.get("score")
        coverage = p.get("coverage") or {}
        cov = ", ".join(f"{_e(k)} {_pct(v)}" for k, v in sorted(coverage.items(), key=lambda kv: -_float(kv[1])))
        metas = "".join(f'<td class="num">{_num(scores.get(name))}</td>' for scores in meta.values())
        rows.append(f"<tr><td>{_e(name)}</td><td class=\"num\">{_int(p.get('events')):,}</td>"
                    f"<td>{_score_bar(score)}</td>{metas}<td>{cov or '-'}</td></tr>")
    overall = predicted.get("overall")
    out = [f"<p>Estimated score, 0 to 10, from which keys the sent events carry"
           f"{' (overall ' + _num(overall) + ')' if overall is not None else ''}. Meta computes the real Event "
           "Match Quality for website events only; offline events get Meta's offline composite score. "
           "Fetch them after a run with <code>capi-pipeline quality</code>.</p>",
           f'<table><tr><th>event name</th><th class="num">events</th><th>predicted</th>{meta_heads}'
           f"<th>coverage per key</th></tr>{''.join(rows)}</table>"]
    if predicted.get("formula"):
        out.append(f'<h3>formula</h3><p class="meta">{_e(predicted["formula"])}</p>')
    fetched = (mq.get("meta") or {}).get("fetched_at") if isinstance(mq.get("meta"), Mapping) else None
    if fetched:
        out.append(f'<p class="meta">Meta scores fetched {_e(fetched)}.</p>')
    return "".join(out)


def _timing(report: Mapping[str, Any]) -> str:
    timing = report.get("timing") or {}
    stages = timing.get("stages") or {}
    head = (f"<p>{_e(timing.get('started_at'))} to {_e(timing.get('finished_at'))}: "
            f"{_num(timing.get('duration_seconds'))} s, {_num(timing.get('rows_per_second'))} rows/s overall.</p>")
    if not stages:
        return head
    rows = "".join(f"<tr><td>{_e(name)}</td><td class=\"num\">{_num(s.get('seconds'))}</td>"
                   f"<td class=\"num\">{_num(s.get('rows_per_second'))}</td></tr>"
                   for name, s in stages.items())
    bars = _hbars([(name, _float(s.get("seconds"))) for name, s in stages.items()], _TEAL, fmt="{:.2f} s")
    return (f'{head}<div class="grid"><div><table><tr><th>stage</th><th class="num">seconds</th>'
            f'<th class="num">rows/s</th></tr>{rows}</table></div><div>{bars}</div></div>')


def _errors(report: Mapping[str, Any]) -> str:
    errors = report.get("errors") or []
    if not errors:
        return ""
    items = "".join(f"<li>{_e(e)}</li>" for e in errors)
    return _section("Errors", f"<ul>{items}</ul>")


def _section(title: str, body: str) -> str:
    return f"<section><h2>{_e(title)}</h2>{body}</section>"


# ---------------------------------------------------------------------------------------------- SVG charts

_LABEL_W, _BAR_W, _ROW_H = 210, 300, 22


def _hbars(items: Iterable[tuple[str, float]], colour: str, fmt: str = "{:,.0f}") -> str:
    items = list(items)
    top = max((v for _, v in items), default=0) or 1
    rows = []
    for i, (label, value) in enumerate(items):
        y = i * _ROW_H
        w = max(value / top * _BAR_W, 1 if value else 0)
        rows.append(f'<text x="{_LABEL_W - 6}" y="{y + 15}" text-anchor="end">{_e(_clip(label))}</text>'
                    f'<rect x="{_LABEL_W}" y="{y + 3}" width="{w:.1f}" height="{_ROW_H - 6}" rx="2" '
                    f'fill="{colour}"><title>{_e(label)}: {_e(fmt.format(value))}</title></rect>'
                    f'<text x="{_LABEL_W + w + 6:.1f}" y="{y + 15}">{_e(fmt.format(value))}</text>')
    return _svg(len(items) * _ROW_H, "".join(rows))


def _paired_bars(rows: list[tuple[str, float, float]]) -> str:
    """Two thin bars per key (read, sent), shares 0..1."""
    h = 28
    out = []
    for i, (key, before, after) in enumerate(rows):
        y = i * h
        out.append(f'<text x="{_LABEL_W - 6}" y="{y + 17}" text-anchor="end">{_e(key)}</text>'
                   f'<rect x="{_LABEL_W}" y="{y + 3}" width="{before * _BAR_W:.1f}" height="10" fill="{_GREY}">'
                   f"<title>{_e(key)} read {_pct(before)}</title></rect>"
                   f'<rect x="{_LABEL_W}" y="{y + 14}" width="{after * _BAR_W:.1f}" height="10" fill="{_BLUE}">'
                   f"<title>{_e(key)} sent {_pct(after)}</title></rect>"
                   f'<text x="{_LABEL_W + _BAR_W + 8}" y="{y + 17}">{_pct(before)} &#8594; {_pct(after)}</text>')
    return _svg(len(rows) * h, "".join(out))


def _stacked_bars(rows: list[tuple[str, list[tuple[int, str]]]]) -> str:
    top = max((sum(v for v, _ in parts) for _, parts in rows), default=0) or 1
    out = []
    for i, (label, parts) in enumerate(rows):
        y, x = i * _ROW_H, float(_LABEL_W)
        out.append(f'<text x="{_LABEL_W - 6}" y="{y + 15}" text-anchor="end">{_e(_clip(label))}</text>')
        for value, colour in parts:
            if value:
                w = value / top * _BAR_W
                out.append(f'<rect x="{x:.1f}" y="{y + 3}" width="{w:.1f}" height="{_ROW_H - 6}" fill="{colour}">'
                           f"<title>{value:,}</title></rect>")
                x += w
        total = sum(v for v, _ in parts)
        out.append(f'<text x="{x + 6:.1f}" y="{y + 15}">'
                   f'{" / ".join(f"{v:,}" for v, _ in parts if v) or "0"} (of {total:,})</text>')
    return _svg(len(rows) * _ROW_H, "".join(out))


def _columns(items: list[tuple[str, int]], colour: str) -> str:
    """A vertical histogram."""
    height, col_w = 120, 52
    top = max((v for _, v in items), default=0) or 1
    out = []
    for i, (label, value) in enumerate(items):
        h = value / top * height
        x = 10 + i * col_w
        out.append(f'<rect x="{x}" y="{20 + height - h:.1f}" width="{col_w - 10}" height="{h:.1f}" rx="2" '
                   f'fill="{colour}"><title>{_e(label)}: {value:,}</title></rect>'
                   f'<text x="{x + (col_w - 10) / 2:.0f}" y="{14 + height - h:.1f}" text-anchor="middle">'
                   f"{value:,}</text>"
                   f'<text x="{x + (col_w - 10) / 2:.0f}" y="{height + 36}" text-anchor="middle">{_e(label)}</text>')
    width = 20 + len(items) * col_w
    return (f'<svg width="{width}" height="{height + 44}" viewBox="0 0 {width} {height + 44}" '
            f'role="img">{"".join(out)}</svg>')


def _score_bar(score: Any) -> str:
    if score is None:
        return "-"
    s = max(0.0, min(10.0, _float(score)))
    colour = _GREEN if s >= 6 else _AMBER if s >= 4 else _RED
    return (f'<svg width="170" height="16" viewBox="0 0 170 16" role="img">'
            f'<rect x="0" y="3" width="120" height="10" rx="3" fill="#eceff1" />'
            f'<rect x="0" y="3" width="{s * 12:.1f}" height="10" rx="3" fill="{colour}" />'
            f'<text x="128" y="13">{s:.1f}</text></svg>')


def _svg(height: int, body: str) -> str:
    width = _LABEL_W + _BAR_W + 150
    return (f'<svg width="{width}" height="{max(height, 1)}" '
            f'viewBox="0 0 {width} {max(height, 1)}" role="img">{body}</svg>')


# ---------------------------------------------------------------------------------------------- helpers

def _meta_by_dataset(meta: Any) -> dict[str, dict[str, float]]:
    """Meta's score per event name, per dataset, from `match_quality.meta` (see quality.add_meta_scores)."""
    if not isinstance(meta, Mapping):
        return {}
    datasets = meta.get("datasets")
    if not isinstance(datasets, Mapping):
        if "web" in meta or "offline" in meta:  # one dataset's summary
            datasets = {"": meta}
        else:  # {dataset_id: summary}
            datasets = {k: v for k, v in meta.items() if isinstance(v, Mapping)}
    out: dict[str, dict[str, float]] = {}
    for ds, summary in datasets.items():
        scores: dict[str, float] = {}
        if isinstance(summary, Mapping):
            for name, entry in (summary.get("offline") or {}).items():
                if isinstance(entry, Mapping) and entry.get("score") is not None:
                    scores[name] = entry["score"]
            for name, entry in (summary.get("web") or {}).items():
                if isinstance(entry, Mapping) and entry.get("composite_score") is not None:
                    scores[name] = entry["composite_score"]
        out[str(ds)] = scores
    return out


def _relative(target: Any, base_dir: Path | None) -> str | None:
    if not target or not isinstance(target, str):
        return None
    if "://" in target:
        return None  # only local files are linked: the page must work offline
    if base_dir is not None and os.path.isabs(target):
        try:
            return Path(os.path.relpath(target, base_dir)).as_posix()
        except ValueError:  # another drive on Windows
            return Path(target).as_posix()
    return Path(target).as_posix()


def _pairs(d: Any) -> list[tuple[str, int]]:
    if not isinstance(d, Mapping):
        return []
    return sorted(((str(k), _int(v)) for k, v in d.items()), key=lambda kv: (-kv[1], kv[0]))


def _share(entry: Any) -> float:
    if isinstance(entry, Mapping):
        return _float(entry.get("share"))
    return _float(entry)


def _int(v: Any) -> int:
    try:
        return int(v or 0)
    except (TypeError, ValueError):
        return 0


def _float(v: Any) -> float:
    try:
        return float(v or 0)
    except (TypeError, ValueError):
        return 0.0


def _num(v: Any) -> str:
    if v is None:
        return "-"
    f = _float(v)
    return f"{f:,.0f}" if f >= 1000 else f"{f:,.2f}".rstrip("0").rstrip(".") if f != int(f) else f"{int(f):,}"


def _pct(v: Any) -> str:
    return f"{_float(v) * 100:.0f}%"


def _clip(label: str, n: int = 32) -> str:
    return label if len(label) <= n else label[: n - 1] + "\u2026"


def _s(v: Any) -> str:
    return "" if v is None else str(v)


def _e(v: Any) -> str:
    return html.escape(_s(v), quote=True)

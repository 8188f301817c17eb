#!/usr/bin/env python3
"""End-to-end check of the attribution pipeline against the independent reference.

1. generates a population (generate.py) and computes what the rules give (reference.py);
2. POSTs the events to <collector>/v1/import in send order, ≤200 per request, one at a time,
   and checks every answer is 2xx with `accepted` equal to the batch size;
3. waits (bounded) until ClickHouse holds every event and the credit rows stop changing;
4. compares, credit by credit: conversion_credits, the conversion fields of events, sessions,
   the event-scoped classification, the session source of conversions, the source-of-sale
   report under each model and the lifecycle report; prints a summary and the first mismatches
   and exits 1 on any mismatch (2 when the run itself could not be done).

ClickHouse is queried over its HTTP interface (POST /?database=…&user=…, FORMAT JSONEachRow);
the queries work on ClickHouse 18.16 (no window functions).

Usage:
    python3 check.py --collector http://127.0.0.1:8080 --clickhouse http://127.0.0.1:8123 \
        --database DB [--user default --password ''] [--seed N] [--people N] [--now T] \
        [--report-bin PATH] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter, defaultdict
from datetime import datetime, timezone

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import generate  # noqa: E402
import reference  # noqa: E402
from reference import MODELS  # noqa: E402

SITE_ID = "default"
BATCH_SIZE = 200
WEIGHT_TOLERANCE = 1e-6
REVENUE_TOLERANCE = 0.01
DAYS_TOLERANCE = 1e-9
POLL_INTERVAL_S = 1.0
REPORTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "schemas", "clickhouse", "reports")


class RunError(Exception):
    """The run could not be carried out (collector refused events, ClickHouse unreachable, timeout)."""


# ---------------------------------------------------------------------------------------------
# Mismatches
# ---------------------------------------------------------------------------------------------


class Mismatches:
    """Collects mismatches by category; keeps every one (the report prints the first ones)."""

    def __init__(self):
        self.items = []  # (category, key, detail)
        self.compared = Counter()  # category group -> number of things compared

    def add(self, category, key, detail):
        self.items.append((category, key, detail))

    def count(self, group, n=1):
        self.compared[group] += n

    def categories(self):
        return Counter(c for c, _, _ in self.items)

    def __len__(self):
        return len(self.items)

    def __bool__(self):
        return bool(self.items)


def _differs(got, want, tolerance=None):
    if tolerance is not None:
        return got is None or want is None or abs(float(got) - float(want)) > tolerance
    return got != want


# ---------------------------------------------------------------------------------------------
# Normalising ClickHouse JSONEachRow values (64-bit integers come quoted, Nullable as null)
# ---------------------------------------------------------------------------------------------


def as_int(v):
    return None if v is None else int(v)


def as_float(v):
    return None if v is None else float(v)


def as_opt_str(v):
    """Nullable / optional strings: null and '' both mean 'none'."""
    return None if v in (None, "") else str(v)


def as_bool(v):
    return bool(int(v)) if v is not None else None


# ---------------------------------------------------------------------------------------------
# Comparisons. Each takes the reference Result and rows shaped as the SQL below returns them.
# ---------------------------------------------------------------------------------------------

EVENT_FIELDS = ("channel", "source", "medium", "campaign", "content", "social_network")
SESSION_FIELDS = ("channel", "source", "medium", "campaign", "content", "social_network")


def index_rows(rows, key, mm, category):
    out = {}
    for r in rows:
        k = key(r)
        if k in out:
            mm.add(category, k, "more than one row after FINAL")
        out[k] = r
    return out


def compare_events(res, rows, mm):
    """Every event: present once, same type/device/time, event-scoped classification, touch and
    bot flags (clicks), is_late."""
    got = index_rows(rows, lambda r: str(r["event_id"]).lower(), mm, "events.duplicate")
    late = set(res.late_event_ids)
    for eid, e in res.events.items():
        mm.count("events")
        r = got.get(eid)
        if r is None:
            mm.add("events.missing", eid, f"{e.type} of {e.anonymous_id} not in events")
            continue
        for f, g, w in (("event_type", r.get("event_type"), e.type),
                        ("anonymous_id", r.get("anonymous_id"), e.anonymous_id),
                        ("event_time_ms", as_int(r.get("event_time_ms")), e.time)):
            if g != w:
                mm.add("events." + f, eid, f"got {g!r}, want {w!r}")
        for f in EVENT_FIELDS:
            g, w = as_opt_str(r.get(f)), getattr(e.cls, f)
            if g != w:
                mm.add("events." + f, eid, f"{e.type}: got {g!r}, want {w!r}")
        if e.type == "click":
            touch = as_bool(r.get("opens_touch")) and not as_bool(r.get("is_bot"))
            if touch != e.is_touch:
                mm.add("events.touch", eid, f"opens_touch={r.get('opens_touch')} is_bot={r.get('is_bot')}, want touch={e.is_touch}")
            for f in ("is_internal", "is_bot"):
                if as_bool(r.get(f)) != getattr(e.cls, f):
                    mm.add("events." + f, eid, f"got {r.get(f)}, want {int(getattr(e.cls, f))}")
        if as_int(r.get("is_late")) != (1 if eid in late else 0):
            mm.add("events.is_late", eid, f"got {r.get('is_late')}, want {1 if eid in late else 0}")
    for eid in got.keys() - res.events.keys():
        mm.add("events.unexpected", eid, "in ClickHouse, not generated (is the database fresh?)")


def compare_conversions(res, rows, mm):
    """Per conversion: identity_id, touches_to_conversion, days_to_conversion, purchase_count,
    lifecycle_stage and the session-scoped classification."""
    got = {str(r["event_id"]).lower(): r for r in rows}
    for cid, c in res.conversions.items():
        r = got.get(cid)
        if r is None:
            continue  # reported by compare_events
        mm.count("conversions")
        want = {
            "identity_id": c.identity_id,
            "touches_to_conversion": c.touches_to_conversion,
            "purchase_count": c.purchase_count,
            "lifecycle_stage": c.lifecycle_stage,
        }
        have = {
            "identity_id": r.get("identity_id"),
            "touches_to_conversion": as_int(r.get("touches_to_conversion")),
            "purchase_count": as_int(r.get("purchase_count")),
            "lifecycle_stage": r.get("lifecycle_stage"),
        }
        for f in want:
            if have[f] != want[f]:
                mm.add("conversions." + f, cid, f"{c.event.type}: got {have[f]!r}, want {want[f]!r}")
        days = as_float(r.get("days_to_conversion"))
        if _differs(days, c.days_to_conversion, DAYS_TOLERANCE):
            mm.add("conversions.days_to_conversion", cid, f"got {days!r}, want {c.days_to_conversion!r}")
        scope = res.session_scope(cid)
        for f in SESSION_FIELDS:
            g, w = as_opt_str(r.get("session_" + f)), getattr(scope, f)
            if g != w:
                mm.add("conversions.session_" + f, cid, f"got {g!r}, want {w!r}")


def session_exemptions(res, send_order):
    """Clicks and identifies the rules let keep the session they were written with: those sent
    before a late event of their device that precedes them in event time (section 8: only
    conversion rows are rewritten)."""
    if send_order is None:
        return set()
    pos = {str(eid).lower(): i for i, eid in enumerate(send_order)}
    exempt = set()
    for lid in res.out_of_order_ids:
        late = res.events[lid]
        for e in res.devices[late.anonymous_id]:
            if not e.is_conversion and e.time > late.time and pos[e.id] < pos[lid]:
                exempt.add(e.id)
    return exempt


def compare_sessions(res, rows, mm, send_order=None):
    """Per device, the partition of its events into sessions (session ids only group)."""
    exempt = session_exemptions(res, send_order)
    got = defaultdict(lambda: defaultdict(set))
    session_of = {}
    for r in rows:
        eid = str(r["event_id"]).lower()
        if eid in res.events and eid not in exempt:
            got[r["anonymous_id"]][r["session_id"]].add(eid)
            session_of[eid] = r["session_id"]

    def in_order(s):
        return sorted(s, key=lambda e: res.events[e].key)

    for anon, sessions in res.sessions.items():
        mm.count("devices (sessions)")
        want = {frozenset(e for e in s if e in session_of) for s in sessions}
        want.discard(frozenset())
        have = {frozenset(s) for s in got.get(anon, {}).values()}
        for s in sorted(want - have, key=lambda s: res.events[in_order(s)[0]].key):
            mm.add("sessions.partition", anon, f"want one session of {in_order(s)}; ClickHouse has them in "
                   f"{sorted({session_of[e] for e in s})}")
        for s in sorted(have - want, key=lambda s: res.events[in_order(s)[0]].key):
            mm.add("sessions.partition", anon, f"ClickHouse session {session_of[next(iter(s))]} holds {in_order(s)}")
    return exempt


def compare_credits(res, rows, mm):
    """conversion_credits FINAL, rows with retracted = 0: every (conversion, model) has exactly
    the reference's touches, weight ± 1e-6, revenue_credit ± 0.01, the touch's classification
    and the conversion's identity."""
    got = defaultdict(dict)
    for r in rows:
        key = (str(r["conversion_event_id"]).lower(), r["model"], str(r["touch_event_id"]).lower())
        if as_int(r.get("retracted")):
            if _differs(as_float(r.get("weight")), 0.0, WEIGHT_TOLERANCE):
                mm.add("credits.retracted_weight", key, f"retracted row with weight {r.get('weight')}")
            continue
        if key[2] in got[key[:2]]:
            mm.add("credits.duplicate", key, "more than one live row after FINAL")
        got[key[:2]][key[2]] = r
    for cid, conv in res.conversions.items():
        for m in MODELS:
            mm.count("credit sets")
            have = got.get((cid, m), {})
            want = {c.touch_id: c for c in conv.credits[m]}
            if not have:
                mm.add("credits.missing_conversion", (cid, m), f"no live credit rows; want {len(want)}")
                continue
            for tid, c in want.items():
                r = have.get(tid)
                key = (cid, m, tid)
                if r is None:
                    mm.add("credits.missing", key, f"want weight {float(c.weight):.6f} ({c.cls.source})")
                    continue
                if _differs(as_float(r.get("weight")), c.weight, WEIGHT_TOLERANCE):
                    mm.add("credits.weight", key, f"got {r.get('weight')}, want {float(c.weight):.9f}")
                if _differs(as_float(r.get("revenue_credit")), c.revenue_credit, REVENUE_TOLERANCE):
                    mm.add("credits.revenue_credit", key, f"got {r.get('revenue_credit')}, want {float(c.revenue_credit):.4f}")
                for f in ("channel", "source", "social_network"):
                    if f in r and as_opt_str(r.get(f)) != getattr(c.cls, f):
                        mm.add("credits." + f, key, f"got {r.get(f)!r}, want {getattr(c.cls, f)!r}")
                if "identity_id" in r and r["identity_id"] != conv.identity_id:
                    mm.add("credits.identity_id", key, f"got {r['identity_id']!r}, want {conv.identity_id!r}")
            for tid in have.keys() - want.keys():
                mm.add("credits.extra", (cid, m, tid), f"weight {have[tid].get('weight')}, not a credited touch")
    for cid, m in got.keys() - {(c, m) for c in res.conversions for m in MODELS}:
        mm.add("credits.unexpected_conversion", (cid, m), "credit rows for a conversion the reference does not have")


def compare_source_of_sale(res, got_by_model, mm):
    """got_by_model: {model: [row]} with channel, source, social_network, sales,
    micro_conversions, revenue_minor. Sales and micro-conversions are compared with the
    report's 2-decimal rounding allowed, revenue_minor within half a minor unit of the exact
    sum (any correct rounding of it)."""
    for m in MODELS:
        want = res.source_of_sale(m)
        have = {}
        for r in got_by_model.get(m, []):
            k = (r["channel"], r["source"], as_opt_str(r.get("social_network")) or "")
            have[k] = r
        for k, w in want.items():
            mm.count("source-of-sale rows")
            r = have.get(k)
            if r is None:
                mm.add("source_of_sale.missing", (m,) + k, f"want sales {float(w['sales']):.4f} micro {float(w['micro_conversions']):.4f}")
                continue
            for f, exact, tol in (("sales", w["sales"], 0.005 + 1e-6),
                                  ("micro_conversions", w["micro_conversions"], 0.005 + 1e-6),
                                  ("revenue_minor", w["revenue"], 0.5 + 1e-6)):
                if _differs(as_float(r.get(f)), exact, tol):
                    mm.add("source_of_sale." + f, (m,) + k, f"got {r.get(f)}, want {float(exact):.4f}")
        for k in have.keys() - want.keys():
            r = have[k]
            if all(abs(as_float(r.get(f)) or 0.0) < 1e-9 for f in ("sales", "micro_conversions", "revenue_minor")):
                continue  # an all-zero row (left by retracted credits): no number is wrong
            mm.add("source_of_sale.extra", (m,) + k, f"sales {r.get('sales')} micro {r.get('micro_conversions')} revenue {r.get('revenue_minor')}")


def compare_lifecycle(res, rows, mm, definition="rules"):
    """rows: first_touch_network, visitors, customers, clients, repeat_clients."""
    want = res.lifecycle(definition)
    have = {r["first_touch_network"]: r for r in rows}
    fields = ("visitors", "customers", "clients", "repeat_clients")
    for net, w in want.items():
        mm.count("lifecycle rows")
        r = have.get(net)
        if r is None:
            mm.add("lifecycle.missing", net, f"want {w}")
            continue
        for f in fields:
            if as_int(r.get(f)) != w[f]:
                mm.add("lifecycle." + f, net, f"got {r.get(f)}, want {w[f]}")
    for net in have.keys() - want.keys():
        mm.add("lifecycle.extra", net, f"{ {f: have[net].get(f) for f in fields} }")


# ---------------------------------------------------------------------------------------------
# ClickHouse over HTTP
# ---------------------------------------------------------------------------------------------


class ClickHouse:
    def __init__(self, url, database, user="default", password="", timeout=60):
        self.url = url.rstrip("/")
        self.database = database
        self.user = user
        self.password = password
        self.timeout = timeout

    def query(self, sql):
        """Run a SELECT; returns its rows as dicts."""
        params = urllib.parse.urlencode({"database": self.database, "user": self.user, "password": self.password})
        body = (sql.strip().rstrip(";") + "\nFORMAT JSONEachRow").encode()
        req = urllib.request.Request(f"{self.url}/?{params}", data=body, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                text = resp.read().decode()
        except urllib.error.HTTPError as e:
            raise RunError(f"ClickHouse {e.code}: {e.read().decode(errors='replace')[:2000]}\nquery: {sql[:500]}") from None
        except urllib.error.URLError as e:
            raise RunError(f"ClickHouse unreachable at {self.url}: {e.reason}") from None
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def scalar(self, sql):
        rows = self.query(sql)
        return int(next(iter(rows[0].values()))) if rows else 0


SITE_FILTER = f"site_id = '{SITE_ID}'"

EVENTS_SQL = f"""/* check:events */
SELECT toString(event_id) AS event_id, toString(event_type) AS event_type, anonymous_id, user_id, identity_id,
    session_id, event_time_ms, is_late, opens_touch, is_internal, is_bot,
    channel, source, medium, campaign, content, social_network,
    session_channel, session_source, session_medium, session_campaign, session_content, session_social_network,
    touches_to_conversion, days_to_conversion, toString(lifecycle_stage) AS lifecycle_stage, purchase_count, revenue
FROM events FINAL
WHERE {SITE_FILTER}"""

CREDITS_SQL = f"""/* check:credits */
SELECT toString(conversion_event_id) AS conversion_event_id, toString(model) AS model, toString(touch_event_id) AS touch_event_id,
    weight, revenue_credit, retracted, channel, source, social_network, identity_id
FROM conversion_credits FINAL
WHERE {SITE_FILTER}"""

COUNT_EVENTS_SQL = f"/* check:count_events */ SELECT count(DISTINCT event_id) AS n FROM events WHERE {SITE_FILTER}"
COUNT_CONVERSIONS_SQL = f"/* check:count_conversions */ SELECT count(DISTINCT conversion_event_id) AS n FROM conversion_credits WHERE {SITE_FILTER}"
COUNT_ROWS_SQL = f"""/* check:count_rows */
SELECT (SELECT count() FROM events WHERE {SITE_FILTER}) + (SELECT count() FROM conversion_credits WHERE {SITE_FILTER}) AS n"""

# Used with --report-source own: the same numbers as the reports, written here.
OWN_SOURCE_OF_SALE_SQL = f"""/* check:source_of_sale model={{model}} */
SELECT toString(channel) AS channel, toString(source) AS source, ifNull(social_network, '') AS social_network,
    sumIf(weight, conversion_type = 'purchase') AS sales,
    sumIf(weight, conversion_type != 'purchase') AS micro_conversions,
    sum(revenue_credit) AS revenue_minor
FROM conversion_credits FINAL
WHERE {SITE_FILTER} AND model = '{{model}}' AND retracted = 0
GROUP BY channel, source, social_network"""

# The lifecycle report's documented identities: each anonymous_id resolved to the identity_id of
# its latest event; the cohort is every identity with a touch.
OWN_LIFECYCLE_SQL = f"""/* check:lifecycle */
SELECT first_touch_network, count() AS visitors, countIf(conversions > 0) AS customers,
    countIf(purchases > 0) AS clients, countIf(purchases > 1) AS repeat_clients
FROM
(
    SELECT identity, argMin(network, event_time_ms) AS first_touch_network
    FROM
    (
        SELECT anonymous_id, ifNull(social_network, toString(channel)) AS network, event_time_ms
        FROM events FINAL WHERE {SITE_FILTER} AND event_type = 'click' AND opens_touch = 1 AND is_bot = 0
    ) AS touches
    ANY LEFT JOIN
    (
        SELECT anonymous_id, argMax(identity_id, event_time_ms) AS identity FROM events FINAL WHERE {SITE_FILTER} GROUP BY anonymous_id
    ) AS identities USING anonymous_id
    GROUP BY identity
) AS cohort
ANY LEFT JOIN
(
    SELECT identity, count() AS conversions, countIf(event_type = 'purchase') AS purchases
    FROM
    (
        SELECT anonymous_id, toString(event_type) AS event_type
        FROM events FINAL WHERE {SITE_FILTER} AND event_type IN ('signup', 'download', 'purchase')
    ) AS conversion_events
    ANY LEFT JOIN
    (
        SELECT anonymous_id, argMax(identity_id, event_time_ms) AS identity FROM events FINAL WHERE {SITE_FILTER} GROUP BY anonymous_id
    ) AS identities USING anonymous_id
    GROUP BY identity
) AS converted USING identity
GROUP BY first_touch_network"""


def sql_literal(value):
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"


def bind_report_sql(sql, params):
    """Put the values of a report's {name:Type} placeholders in its text (18.16 has no query
    parameters): DateTime as toDateTime('…', 'UTC'), anything else as a string literal."""

    def sub(m):
        name, typ = m.group(1), m.group(2)
        value = params[name]
        if typ == "DateTime":
            return f"toDateTime({sql_literal(value)}, 'UTC')"
        return sql_literal(value)

    return re.sub(r"\{(\w+):(\w+)\}", sub, sql)


# ---------------------------------------------------------------------------------------------
# Reports: three ways to get the rows (binary, the repository's report SQL, our own SQL)
# ---------------------------------------------------------------------------------------------


def report_bin_command(binary, report, frm, to, args, model=None):
    """The command line of `touchstream report`; adapt here when its flags change."""
    cmd = [binary, "report", report, "--from", frm, "--to", to, "--format", "json",
           "--clickhouse-url", args.clickhouse, "--database", args.database]
    if model:
        cmd += ["--model", model]
    if args.report_user:
        cmd += ["--user", args.report_user]
    env = dict(os.environ, TOUCHSTREAM_REPORT__CLICKHOUSE__DATABASE=args.database)
    if args.report_password is not None:
        env["TOUCHSTREAM_CLICKHOUSE_PASSWORD"] = args.report_password
    return cmd, env


def parse_report_json(text):
    """`--format json` output: {"rows": [{column: value}]} (values are strings), or a bare array,
    or JSON lines."""
    text = text.strip()
    if not text:
        return []
    try:
        doc = json.loads(text)
    except json.JSONDecodeError:
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    return doc["rows"] if isinstance(doc, dict) else doc


def run_report_bin(binary, report, frm, to, args, model=None):
    cmd, env = report_bin_command(binary, report, frm, to, args, model)
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    if p.returncode != 0:
        raise RunError(f"{' '.join(cmd)} exited {p.returncode}: {p.stderr.strip()[:2000]}")
    return parse_report_json(p.stdout)


def fetch_reports(ch, args, frm, to):
    """Rows of source-of-sale for every model and of lifecycle, from the chosen source."""
    source = args.report_source
    sos, lifecycle = {}, []
    if source == "bin":
        for m in MODELS:
            sos[m] = run_report_bin(args.report_bin, "source-of-sale", iso(frm), iso(to), args, m)
        lifecycle = run_report_bin(args.report_bin, "lifecycle", iso(frm), iso(to), args)
    elif source == "sql":
        params = {"from": ch_time(frm), "to": ch_time(to)}
        with open(os.path.join(args.reports_dir, "source-of-sale.sql")) as f:
            sos_sql = f.read()
        with open(os.path.join(args.reports_dir, "lifecycle.sql")) as f:
            life_sql = f.read()
        for m in MODELS:
            sos[m] = ch.query(bind_report_sql(sos_sql, dict(params, model=m)))
        lifecycle = ch.query(bind_report_sql(life_sql, params))
    else:
        for m in MODELS:
            sos[m] = ch.query(OWN_SOURCE_OF_SALE_SQL.replace("{model}", m))
        lifecycle = ch.query(OWN_LIFECYCLE_SQL)
    return sos, lifecycle


def iso(ms):
    return datetime.fromtimestamp(ms / 1000, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def ch_time(ms):
    return datetime.fromtimestamp(ms / 1000, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def report_period(res, now_ms):
    """[from, to) covering every event: from the UTC midnight before the first event to one hour
    after now."""
    first = min(e.time for e in res.events.values())
    return first - first % reference.DAY_MS, now_ms + reference.HOUR_MS


# ---------------------------------------------------------------------------------------------
# Sending and waiting
# ---------------------------------------------------------------------------------------------


def post_events(collector, events, batch_size=BATCH_SIZE, timeout=60, log=print):
    """POST the events (in order) to /v1/import in batches, one request at a time. A 503 is
    retried after its Retry-After (event ids make a retry idempotent); any other non-2xx, or an
    answer not accepting the whole batch, stops the run."""
    url = collector.rstrip("/") + "/v1/import"
    for start in range(0, len(events), batch_size):
        batch = events[start:start + batch_size]
        body = json.dumps(batch).encode()
        for attempt in range(6):
            req = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(req, timeout=timeout) as resp:
                    status, text = resp.status, resp.read().decode()
                break
            except urllib.error.HTTPError as e:
                status, text = e.code, e.read().decode(errors="replace")
                if status == 503 and attempt < 5:
                    time.sleep(float(e.headers.get("Retry-After") or 1))
                    continue
                break
            except urllib.error.URLError as e:
                raise RunError(f"collector unreachable at {url}: {e.reason}") from None
        if not 200 <= status < 300:
            raise RunError(f"batch at {start}: {url} answered {status}: {text[:2000]}")
        try:
            accepted = json.loads(text).get("accepted")
        except (json.JSONDecodeError, AttributeError):
            accepted = None
        if accepted != len(batch):
            raise RunError(f"batch at {start}: accepted {accepted} of {len(batch)}: {text[:2000]}")
    log(f"posted {len(events)} events in {-(-len(events) // batch_size)} requests")


def wait_for_clickhouse(ch, n_events, n_conversions, timeout_s=120, settle_polls=3, interval_s=None, log=print):
    """Wait until ClickHouse holds every event id and credit rows for every conversion, then until
    the row counts stop changing (re-credits land after the first credits)."""
    interval_s = POLL_INTERVAL_S if interval_s is None else interval_s
    deadline = time.monotonic() + timeout_s
    have = -1
    while True:
        have = ch.scalar(COUNT_EVENTS_SQL)
        convs = ch.scalar(COUNT_CONVERSIONS_SQL)
        if have >= n_events and convs >= n_conversions:
            break
        if time.monotonic() > deadline:
            raise RunError(f"timed out after {timeout_s} s: {have}/{n_events} events, credits for {convs}/{n_conversions} conversions")
        time.sleep(interval_s)
    last, stable = None, 0
    while stable < settle_polls and time.monotonic() < deadline:
        n = ch.scalar(COUNT_ROWS_SQL)
        stable = stable + 1 if n == last else 0
        last = n
        if stable < settle_polls:
            time.sleep(interval_s)
    log(f"ClickHouse holds {have} events; rows settled at {last}")


# ---------------------------------------------------------------------------------------------
# Expected rows shaped like ClickHouse's (for offline tests and --out)
# ---------------------------------------------------------------------------------------------


def expected_event_rows(res):
    rows = []
    late = set(res.late_event_ids)
    for eid, e in res.events.items():
        scope = res.session_scope(eid)
        conv = res.conversions.get(eid)
        owner = res.identities[e.anonymous_id].touch_owner(e.key) if e.is_touch else res.identities[e.anonymous_id].owner_at(e.key)
        row = {
            "event_id": eid, "event_type": e.type, "anonymous_id": e.anonymous_id, "user_id": e.user_id,
            "identity_id": conv.identity_id if conv else (owner or e.anonymous_id),
            "session_id": f"{e.anonymous_id}:{e.session + 1}", "event_time_ms": str(e.time),
            "is_late": int(eid in late), "opens_touch": int(e.type == "click" and not e.cls.is_internal),
            "is_internal": int(e.cls.is_internal), "is_bot": int(e.cls.is_bot),
            "touches_to_conversion": conv.touches_to_conversion if conv else None,
            "days_to_conversion": conv.days_to_conversion if conv else None,
            "lifecycle_stage": conv.lifecycle_stage if conv else "visitor",
            "purchase_count": conv.purchase_count if conv else 0,
            "revenue": str(e.revenue) if e.type == "purchase" else None,
        }
        for f in EVENT_FIELDS:
            row[f] = getattr(e.cls, f)
            row["session_" + f] = getattr(scope, f)
        rows.append(row)
    return rows


def expected_credit_rows(res):
    rows = []
    for cid, conv in res.conversions.items():
        for m in MODELS:
            for c in conv.credits[m]:
                rows.append({
                    "conversion_event_id": cid, "model": m, "touch_event_id": c.touch_id,
                    "weight": float(c.weight), "revenue_credit": float(c.revenue_credit), "retracted": 0,
                    "channel": c.cls.channel, "source": c.cls.source, "social_network": c.cls.social_network,
                    "identity_id": conv.identity_id,
                })
    return rows


def expected_report_rows(res):
    """Source-of-sale rows per model rounded as the report rounds them, and lifecycle rows."""
    sos = {}
    for m in MODELS:
        sos[m] = [{"channel": k[0], "source": k[1], "social_network": k[2],
                   "sales": round(float(v["sales"]), 2), "micro_conversions": round(float(v["micro_conversions"]), 2),
                   "revenue_minor": float(round(v["revenue"]))}
                  for k, v in res.source_of_sale(m).items()]
    life = [dict(first_touch_network=k, **v) for k, v in res.lifecycle("rules").items()]
    return sos, life


# ---------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------


def compare_all(res, event_rows, credit_rows, sos_rows, lifecycle_rows, send_order=None, lifecycle_definition="rules"):
    mm = Mismatches()
    compare_events(res, event_rows, mm)
    compare_conversions(res, event_rows, mm)
    exempt = compare_sessions(res, event_rows, mm, send_order)
    mm.count("events exempt from the session check", len(exempt))
    compare_credits(res, credit_rows, mm)
    compare_source_of_sale(res, sos_rows, mm)
    compare_lifecycle(res, lifecycle_rows, mm, lifecycle_definition)
    return mm


def print_report(mm, res, lifecycle_rows=None, limit=20, out=None):
    w = (out or sys.stdout).write
    w("compared: " + ", ".join(f"{n} {what}" for what, n in mm.compared.items()) + "\n")
    if not mm:
        w("OK: no mismatch\n")
        return
    w(f"MISMATCHES: {len(mm)}\n")
    for cat, n in sorted(mm.categories().items()):
        w(f"  {cat}: {n}\n")
    w(f"first {min(limit, len(mm))}:\n")
    for cat, key, detail in mm.items[:limit]:
        w(f"  [{cat}] {key}: {detail}\n")
    if lifecycle_rows is not None and any(c.startswith("lifecycle.") for c in mm.categories()):
        fields = ("visitors", "customers", "clients", "repeat_clients")
        have = {r["first_touch_network"]: {f: as_int(r.get(f)) for f in fields} for r in lifecycle_rows}
        if have == res.lifecycle("latest_identity"):
            w("  note: the lifecycle rows equal the reference's 'latest identity per device' definition (the "
              "report's documented identities), not the rules' people: they differ on shared devices.\n")


def write_json(path, data):
    with open(path, "w") as f:
        json.dump(data, f, indent=1, sort_keys=True, default=str)


def main(argv=None):
    ap = argparse.ArgumentParser(description="Check the pipeline's attribution against the independent reference.")
    ap.add_argument("--collector", required=True, help="collector base URL, e.g. http://127.0.0.1:8080")
    ap.add_argument("--clickhouse", required=True, help="ClickHouse HTTP URL, e.g. http://127.0.0.1:8123")
    ap.add_argument("--database", required=True)
    ap.add_argument("--user", default="default")
    ap.add_argument("--password", default="")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--people", type=int, default=400)
    ap.add_argument("--now", help="end of the generated period, epoch ms or ISO (default: now, rounded down to the hour)")
    ap.add_argument("--days", type=int, default=60)
    ap.add_argument("--timeout", type=float, default=120, help="seconds to wait for ClickHouse to hold everything")
    ap.add_argument("--report-bin", help="the touchstream binary: read the reports through `touchstream report`")
    ap.add_argument("--report-user", help="user for `touchstream report` (default: the binary's)")
    ap.add_argument("--report-password", help="password for `touchstream report`")
    ap.add_argument("--report-source", choices=["bin", "sql", "own"],
                    help="where the report rows come from: the binary, the repository's report SQL run over HTTP, "
                         "or this script's own SQL (default: bin with --report-bin, else sql)")
    ap.add_argument("--reports-dir", default=REPORTS_DIR, help="the report SQL files (default: the repository's)")
    ap.add_argument("--lifecycle-definition", choices=["rules", "latest_identity"], default="rules",
                    help="people of the lifecycle comparison: the rules' (default) or each device's latest identity")
    ap.add_argument("--skip-post", action="store_true", help="do not POST (the events are already in), only compare")
    ap.add_argument("--out", help="write events, send order, labels, expected results and the ClickHouse rows here")
    args = ap.parse_args(argv)
    if args.report_source is None:
        args.report_source = "bin" if args.report_bin else "sql"
    if args.report_source == "bin" and not args.report_bin:
        ap.error("--report-source bin needs --report-bin")

    now_ms = generate.parse_now(args.now)
    wall_ms = int(time.time() * 1000)
    if now_ms > wall_ms or now_ms - args.days * reference.DAY_MS < wall_ms - 400 * reference.DAY_MS:
        ap.error("--now and --days must keep every event within the last 400 days and not in the future")
    gen = generate.generate(args.seed, args.people, now_ms, args.days)
    send = gen.send_order()
    res = reference.attribute(gen.events, send)
    print(f"generated: {json.dumps(gen.summary())}")
    if res.late_event_ids:
        print(f"warning: {len(res.late_event_ids)} events later than the allowed lateness; their results are best effort")
    if args.out:
        generate.write_outputs(gen, args.out)
        write_json(os.path.join(args.out, "expected.json"), reference.result_to_json(res))

    ch = ClickHouse(args.clickhouse, args.database, args.user, args.password)
    try:
        if not args.skip_post:
            by_id = {e["event_id"]: e for e in gen.events}
            post_events(args.collector, [by_id[i] for i in send])
        wait_for_clickhouse(ch, len(gen.events), len(res.conversions), args.timeout)
        event_rows = ch.query(EVENTS_SQL)
        credit_rows = ch.query(CREDITS_SQL)
        frm, to = report_period(res, gen.now)
        sos_rows, lifecycle_rows = fetch_reports(ch, args, frm, to)
    except RunError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.out:
        write_json(os.path.join(args.out, "clickhouse_events.json"), event_rows)
        write_json(os.path.join(args.out, "clickhouse_credits.json"), credit_rows)
        write_json(os.path.join(args.out, "clickhouse_reports.json"), {"source_of_sale": sos_rows, "lifecycle": lifecycle_rows})

    mm = compare_all(res, event_rows, credit_rows, sos_rows, lifecycle_rows, send, args.lifecycle_definition)
    print_report(mm, res, lifecycle_rows)
    return 1 if mm else 0


if __name__ == "__main__":
    sys.exit(main())

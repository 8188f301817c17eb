"""check.py's queries on a real ClickHouse (18.16 or later), without the pipeline.

Skipped unless JOURNEYS_CLICKHOUSE_URL is set (e.g. http://127.0.0.1:8123; user from
JOURNEYS_CLICKHOUSE_USER, default "default"). It creates a scratch database with tables holding
the columns check.py reads, loads the reference's own rows (each twice, the older copy wrong, so
FINAL has to pick the newer; plus a retracted credit), runs check.py's queries and the
repository's report SQL, expects no mismatch, and drops the database.
"""

import json
import os
import sys
import unittest
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import check  # noqa: E402
import generate  # noqa: E402
import reference  # noqa: E402

URL = os.environ.get("JOURNEYS_CLICKHOUSE_URL")
USER = os.environ.get("JOURNEYS_CLICKHOUSE_USER", "default")
PASSWORD = os.environ.get("JOURNEYS_CLICKHOUSE_PASSWORD", "")

EVENTS_DDL = """
CREATE TABLE events (
    site_id String, event_id UUID,
    event_type Enum8('click' = 1, 'signup' = 2, 'download' = 3, 'purchase' = 4, 'identify' = 5),
    event_time DateTime('UTC'), event_time_ms Int64, anonymous_id String, user_id Nullable(String),
    identity_id String, session_id String, revision UInt32, is_late UInt8, opens_touch UInt8,
    is_internal UInt8, is_bot UInt8, channel String, source String, medium String,
    campaign Nullable(String), content Nullable(String), social_network Nullable(String),
    session_channel String, session_source String, session_medium String, session_campaign Nullable(String),
    session_content Nullable(String), session_social_network Nullable(String),
    touches_to_conversion Nullable(Int32), days_to_conversion Nullable(Float64),
    lifecycle_stage Enum8('visitor' = 1, 'customer' = 2, 'client' = 3), purchase_count Int32,
    revenue Nullable(Int64), currency Nullable(String), order_id Nullable(String)
) ENGINE = ReplacingMergeTree(revision) PARTITION BY toYYYYMM(event_time)
ORDER BY (event_type, toDate(event_time), event_id)"""

CREDITS_DDL = """
CREATE TABLE conversion_credits (
    site_id String, conversion_event_id UUID,
    conversion_type Enum8('click' = 1, 'signup' = 2, 'download' = 3, 'purchase' = 4, 'identify' = 5),
    conversion_time DateTime('UTC'), conversion_time_ms Int64, anonymous_id String, identity_id String,
    model Enum8('first_touch' = 1, 'last_touch' = 2, 'last_non_direct' = 3, 'linear' = 4, 'position_based' = 5, 'time_decay' = 6),
    touch_event_id UUID, touch_time_ms Int64, channel String, source String, social_network Nullable(String),
    campaign Nullable(String), content Nullable(String), weight Float64, revenue Int64, revenue_credit Float64,
    currency Nullable(String), revision UInt32, retracted UInt8
) ENGINE = ReplacingMergeTree(revision) PARTITION BY toYYYYMM(conversion_time)
ORDER BY (model, toDate(conversion_time), conversion_event_id, touch_event_id)"""


def post(sql, database=None, data=None):
    params = {"user": USER, "password": PASSWORD}
    if database:
        params["database"] = database
    if data is not None:
        params["query"] = sql
        body = data
    else:
        body = sql.encode()
    req = urllib.request.Request(f"{URL.rstrip('/')}/?{urllib.parse.urlencode(params)}", data=body, method="POST")
    with urllib.request.urlopen(req, timeout=60) as resp:
        return resp.read().decode()


@unittest.skipUnless(URL, "set JOURNEYS_CLICKHOUSE_URL to run against a real ClickHouse")
class ClickHouseQueriesTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.db = f"journeys_check_{os.getpid()}"
        post(f"CREATE DATABASE {cls.db}")
        post(EVENTS_DDL, cls.db)
        post(CREDITS_DDL, cls.db)
        cls.now = generate.parse_now(None)
        gen = generate.generate(seed=5, people=60, now_ms=cls.now)
        cls.send = gen.send_order()
        cls.res = reference.attribute(gen.events, cls.send)
        cls.load()

    @classmethod
    def tearDownClass(cls):
        post(f"DROP DATABASE IF EXISTS {cls.db}")

    @classmethod
    def load(cls):
        res = cls.res
        events = []
        for r in check.expected_event_rows(res):
            e = res.events[r["event_id"]]
            row = dict(r, site_id=check.SITE_ID, event_time=e.time // 1000, event_time_ms=e.time, revision=1,
                       revenue=e.revenue if e.type == "purchase" else None, currency="EUR" if e.type == "purchase" else None,
                       order_id=e.raw.get("order_id"))
            events.append(row)
            if e.is_conversion:  # an older revision with wrong numbers: FINAL must not read it
                events.append(dict(row, revision=0, purchase_count=99, identity_id="stale", session_id="stale"))
        credits = []
        for r in check.expected_credit_rows(res):
            conv = res.conversions[r["conversion_event_id"]]
            touch = res.events.get(r["touch_event_id"])
            row = dict(r, site_id=check.SITE_ID, conversion_type=conv.event.type, conversion_time=conv.event.time // 1000,
                       conversion_time_ms=conv.event.time, anonymous_id=conv.event.anonymous_id,
                       touch_time_ms=touch.time if touch else conv.event.time, campaign=None, content=None,
                       revenue=conv.event.revenue, currency="EUR" if conv.event.revenue else None, revision=2)
            credits.append(row)
            credits.append(dict(row, revision=1, weight=0.123))
        # a touch credited by an earlier revision and retracted since
        conv = next(c for c in res.conversions.values() if c.touches)
        first = next(r for r in credits if r["conversion_event_id"] == conv.event.id and r["model"] == "linear")
        credits.append(dict(first, touch_event_id="00000000-0000-4000-8000-00000000000f", weight=0.0, revenue_credit=0.0, retracted=1))
        for table, rows in (("events", events), ("conversion_credits", credits)):
            data = "".join(json.dumps(r) + "\n" for r in rows).encode()
            post(f"INSERT INTO {table} FORMAT JSONEachRow", cls.db, data)

    def test_queries_read_back_the_reference(self):
        ch = check.ClickHouse(URL, self.db, USER, PASSWORD)
        self.assertEqual(ch.scalar(check.COUNT_EVENTS_SQL), len(self.res.events))
        self.assertEqual(ch.scalar(check.COUNT_CONVERSIONS_SQL), len(self.res.conversions))
        check.wait_for_clickhouse(ch, len(self.res.events), len(self.res.conversions), timeout_s=30, interval_s=0.1, log=lambda *_: None)
        event_rows = ch.query(check.EVENTS_SQL)
        credit_rows = ch.query(check.CREDITS_SQL)
        frm, to = check.report_period(self.res, self.now)
        for source in ("own", "sql"):
            with self.subTest(report_source=source):
                args = check.argparse.Namespace(report_source=source, reports_dir=check.REPORTS_DIR)
                sos, life = check.fetch_reports(ch, args, frm, to)
                # The lifecycle report's identities are each device's latest; rules people differ
                # only when the population has a shared device, which seed 5 / 60 people does.
                mm = check.compare_all(self.res, event_rows, credit_rows, sos, life, self.send, "latest_identity")
                self.assertEqual(mm.items[:5], [])


if __name__ == "__main__":
    unittest.main()

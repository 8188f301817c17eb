"""Runs every ClickHouse migration and report query on current ClickHouse, embedded via chDB.

The local server is ClickHouse 18.16 and production runs current ClickHouse; the Rust tests
(tests/tests/warehouse.rs) cover 18.16, this covers the other end. In a scratch database of a
throwaway chDB session it:

1. applies schemas/clickhouse/schema_migrations.sql and every NNNN_*.sql migration in order,
   statement by statement, twice (they must be idempotent);
2. inserts a small sample (two clicks, one purchase credited to the first, then re-credited to
   the second with a higher revision) twice, as a replayed sink batch would, without merging;
3. runs every schemas/clickhouse/reports/*.sql with its {site:String}, {from:DateTime},
   {to:DateTime} and {model:String} placeholders bound through chDB's own query parameters, and compares the
   answer with the expected rows for the sample (which also shows the de-duplication works);
4. runs the statements of retention (listing and dropping a monthly partition) and of erasure
   (`ALTER TABLE … DELETE WHERE`, a mutation, waited for in system.mutations).

Exits 0 when everything passed, 1 with a message per failure otherwise.

Usage: .services/python/bin/python tests/chdb/check_sql.py   (from the repository root or anywhere)
"""

from __future__ import annotations

import json
import time
import re
import sys
import uuid
from pathlib import Path

try:
    import chdb
    from chdb import session as chdb_session
except ImportError:  # pragma: no cover - a setup problem, reported plainly
    sys.exit(
        "chdb is not installed in this Python: run `deploy/services.sh install-test-tools` and use "
        ".services/python/bin/python (it installs tests/python-requirements.txt)"
    )

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = ROOT / "schemas" / "clickhouse"
PLACEHOLDER = re.compile(r"\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*:\s*([^}]+?)\s*\}")
KNOWN_PARAMS = {"site": "String", "from": "DateTime", "to": "DateTime", "model": "String"}
PARAMS = {"site": "default", "from": "2026-01-01 00:00:00", "to": "2026-02-01 00:00:00",
          "model": "last_non_direct"}

CLICK = "00000000-0000-4000-8000-000000000001"
CLICK2 = "00000000-0000-4000-8000-000000000003"
PURCHASE = "00000000-0000-4000-8000-000000000002"


def click(event_id: str, day: int, source: str, content: str) -> str:
    t = f"toDateTime('2026-01-{day:02d} 00:00:00', 'UTC')"
    ms = 1767225600000 + (day - 1) * 86400000
    return f"""INSERT INTO events (event_id, event_type, site_id, event_time, event_time_ms,
        occurred_at_ms, received_at, received_at_ms, ingested_at, ingested_at_ms, anonymous_id,
        identity_id, session_id, page_url, property_keys, property_values, channel, source, medium,
        campaign, content, social_network, opens_touch, session_channel, session_source,
        session_medium, lifecycle_stage, purchase_count)
    VALUES ('{event_id}', 'click', 'default', {t}, {ms}, {ms}, {t}, {ms},
        toDateTime('2026-01-20 00:00:00', 'UTC'), 1768867200000, 'a1', 'a1', 's1',
        'https://shop.example/?utm_content={content}', ['plan'], ['pro'], 'Organic Social',
        '{source}', 'social', 'spring', '{content}', '{source}', 1, 'Organic Social', '{source}',
        'social', 'visitor', 0)"""


def purchase(revision: int, touches: int) -> str:
    return f"""INSERT INTO events (event_id, event_type, site_id, event_time, event_time_ms,
        occurred_at_ms, received_at, received_at_ms, ingested_at, ingested_at_ms, revision,
        anonymous_id, user_id, identity_id, session_id, page_url, property_keys, property_values,
        order_id, revenue, currency, channel, source, medium, opens_touch, session_channel,
        session_source, session_medium, lifecycle_stage, purchase_count, touches_to_conversion,
        days_to_conversion)
    VALUES ('{PURCHASE}', 'purchase', 'default', toDateTime('2026-01-12 00:00:00', 'UTC'),
        1768176000000, 1768176000000, toDateTime('2026-01-12 00:00:00', 'UTC'), 1768176000000,
        toDateTime('2026-01-20 00:00:00', 'UTC'), 1768867200000, {revision}, 'a1', 'u1', 'u1',
        's1', 'https://shop.example/thanks', [], [], 'o1', 5000, 'EUR', 'Direct', '(direct)',
        '(none)', 0, 'Organic Social', 'linkedin', 'social', 'client', 1, {touches}, 2.0)"""


def credit(revision: int, touch: str, day: int, source: str, content: str, weight: float,
           retracted: int) -> str:
    t = f"toDateTime('2026-01-{day:02d} 00:00:00', 'UTC')"
    ms = 1767225600000 + (day - 1) * 86400000
    return f"""INSERT INTO conversion_credits (conversion_event_id, conversion_type, site_id,
        conversion_time, conversion_time_ms, anonymous_id, identity_id, model, touch_event_id,
        touch_time, touch_time_ms, channel, source, social_network, campaign, content, weight,
        revenue, revenue_credit, currency, touches_to_conversion, days_to_conversion, revision,
        retracted, ingested_at, ingested_at_ms)
    VALUES ('{PURCHASE}', 'purchase', 'default', toDateTime('2026-01-12 00:00:00', 'UTC'),
        1768176000000, 'a1', 'u1', 'last_non_direct', '{touch}', {t}, {ms}, 'Organic Social',
        '{source}', '{source}', 'spring', '{content}', {weight}, 5000, {5000 * weight}, 'EUR', 1,
        2.0, {revision}, {retracted}, toDateTime('2026-01-20 00:00:00', 'UTC'), 1768867200000)"""


# Two touches; a purchase first credited (revision 0) to the first, then re-credited
# (revision 1) to the second, which arrived late, with the first one's credit retracted.
SAMPLE = [
    click(CLICK, 10, "instagram", "reel-1"),
    click(CLICK2, 11, "linkedin", "post-2"),
    purchase(0, 1),
    credit(0, CLICK, 10, "instagram", "reel-1", 1.0, 0),
    purchase(1, 2),
    credit(1, CLICK2, 11, "linkedin", "post-2", 1.0, 0),
    credit(1, CLICK, 10, "instagram", "reel-1", 0.0, 1),
]

# What each report must answer for the sample under last_non_direct in January 2026.
# Only the latest revision counts: linkedin has the sale, instagram nothing (its group drops).
EXPECTED = {
    "source-of-sale": [["Organic Social", "linkedin", "linkedin", 1, 0, 5000, "EUR"]],
    "social-micro-macro": [["linkedin", 0, 0, 0, 1, 5000, 0]],
    "posts": [["post-2", "linkedin", "linkedin", "spring", 1, 1, 5000, 1]],
    "path-length": [["touches", "2", 1, 1, 0], ["days", "1-3", 1, 1, 0]],
    "funnel": [["instagram", 1, 0, 0, 1, 100], ["linkedin", 1, 0, 0, 1, 100]],
    "lifecycle": [["instagram", 1, 1, 1, 0]],
    "channel-share": [["social", 1, 100, 1, 100, 5000]],
    # 2026-01-12 is a Monday: the purchase's own week.
    "channel-share-weekly": [["2026-01-12", "social", 1, 100, 1, 5000]],
}


def statements(sql: str) -> list[str]:
    """Splits at ';' outside quotes and comments (the same rules as the Rust migrate runner)."""
    out, start, i, n = [], 0, 0, len(sql)
    while i < n:
        c = sql[i]
        if c in "'\"`":
            i += 1
            while i < n and sql[i] != c:
                i += 2 if sql[i] == "\\" else 1
        elif sql.startswith("--", i):
            while i < n and sql[i] != "\n":
                i += 1
        elif sql.startswith("/*", i):
            end = sql.find("*/", i + 2)
            i = n if end < 0 else end + 1
        elif c == ";":
            out.append(sql[start:i])
            start = i + 1
        i += 1
    out.append(sql[start:])
    no_comments = lambda s: re.sub(r"--[^\n]*|/\*.*?\*/", "", s, flags=re.S).strip()
    return [s.strip() for s in out if no_comments(s)]


def same(got: list, want: list) -> bool:
    if len(got) != len(want):
        return False
    for g, w in zip(got, want):
        if isinstance(w, (int, float)) and not isinstance(w, bool):
            try:
                if abs(float(g) - float(w)) > 1e-9:
                    return False
            except (TypeError, ValueError):
                return False
        elif str(g) != str(w):
            return False
    return True


def main() -> int:
    failures: list[str] = []
    migrations = sorted(p for p in SCHEMAS.glob("*.sql") if re.match(r"\d{4}_", p.name))
    reports = sorted((SCHEMAS / "reports").glob("*.sql"))
    if not migrations or not reports:
        print(f"no migrations or reports found under {SCHEMAS}", file=sys.stderr)
        return 1

    sess = chdb_session.Session()
    version = sess.query("SELECT version()", "CSV").bytes().decode().strip().strip('"')
    print(f"chdb {chdb.__version__}, ClickHouse {version}")
    database = f"ts_check_{uuid.uuid4().hex[:12]}"
    try:
        sess.query(f"CREATE DATABASE {database}")
        sess.query(f"USE {database}")

        for run in (1, 2):
            for path in [SCHEMAS / "schema_migrations.sql", *migrations]:
                for statement in statements(path.read_text()):
                    try:
                        sess.query(statement)
                    except Exception as e:  # chdb raises ChdbError; report any failure alike
                        # A RENAME onto an existing table was done by the first run (the Rust
                        # runner takes it the same way).
                        code_only = re.sub(r"--[^\n]*", "", statement).strip().upper()
                        if code_only.startswith("RENAME TABLE") and "already exists" in str(e):
                            continue
                        failures.append(f"migration {path.name} (run {run}) failed: {e}")
        if failures:
            raise StopIteration
        print(f"ok   {len(migrations)} migrations applied twice")

        for _ in range(2):  # a replayed batch: every row twice, unmerged
            for insert in SAMPLE:
                sess.query(insert)

        for path in reports:
            name = path.stem
            sql = path.read_text()
            unknown = {m.group(0) for m in PLACEHOLDER.finditer(sql)
                       if KNOWN_PARAMS.get(m.group(1)) != m.group(2)}
            if unknown:
                failures.append(f"report {name}: unknown placeholders {sorted(unknown)}; reports "
                                f"take {{site:String}}, {{from:DateTime}}, {{to:DateTime}}, "
                                f"{{model:String}}")
                continue
            try:
                answer = json.loads(sess.query(sql, "JSONCompact", params=PARAMS).bytes())
            except Exception as e:
                failures.append(f"report {name} failed: {e}")
                continue
            rows = answer["data"]
            want = EXPECTED.get(name)
            if want is None:
                failures.append(f"report {name}: no expected answer in check_sql.py; add one")
            elif len(rows) != len(want) or not all(same(g, w) for g, w in zip(rows, want)):
                failures.append(f"report {name}: got {rows}, expected {want}")
            else:
                columns = [c["name"] for c in answer["meta"]]
                print(f"ok   report {name}: {len(rows)} rows, columns {columns}")

        failures.extend(check_privacy(sess, database))
    except StopIteration:
        pass
    finally:
        try:
            sess.query(f"DROP DATABASE IF EXISTS {database}")
        finally:
            sess.close()

    for failure in failures:
        print(f"FAIL {failure}", file=sys.stderr)
    if failures:
        print(f"{len(failures)} check(s) failed on ClickHouse {version}", file=sys.stderr)
        return 1
    print(f"all migrations and {len(reports)} reports ran on ClickHouse {version}")
    return 0


def check_privacy(sess, database: str) -> list[str]:
    """The statements of erasure and retention (crates/touchstream-warehouse/src/privacy.rs,
    whose unit tests pin the exact text of the conditions), on the sample: the partition of
    January is listed and dropped from events; a user nobody knows matches nothing; forgetting
    device a1 deletes its rows (the credits left) by mutation."""
    failures: list[str] = []
    count = lambda sql: int(sess.query(sql, "CSV").bytes().decode().strip() or 0)
    events_of = lambda cond: f"SELECT count() FROM events WHERE {cond}"
    nobody = "(site_id = 'default' AND (identity_id = 'nobody' OR user_id = 'nobody'))"
    device = "(site_id = 'default' AND (anonymous_id = 'a1'))"
    try:
        parts = sess.query(
            f"SELECT partition, sum(rows) FROM system.parts WHERE database = '{database}' "
            "AND table = 'events' AND active GROUP BY partition", "CSV").bytes().decode()
        if "202601" not in parts:
            failures.append(f"retention: system.parts lists no partition 202601: {parts!r}")
        rows = count("SELECT count() FROM events")
        sess.query("ALTER TABLE events DROP PARTITION 202601")
        if rows == 0 or count("SELECT count() FROM events") != 0:
            failures.append(f"retention: {rows} rows before DROP PARTITION 202601, some left after")
        else:
            print("ok   retention: DROP PARTITION 202601")
        if count(events_of(nobody)) != 0:
            failures.append("erasure: an unknown user matched rows")
        sess.query(f"SELECT DISTINCT site_id, anonymous_id FROM events WHERE {nobody}", "CSV")
        before = count(events_of(device)) + count(f"SELECT count() FROM conversion_credits WHERE {device}")
        for table in ("events", "conversion_credits"):
            sess.query(f"ALTER TABLE {table} DELETE WHERE {device}")
        for _ in range(100):
            if count(f"SELECT count() FROM system.mutations WHERE database = '{database}' AND is_done = 0") == 0:
                break
            time.sleep(0.1)
        after = count(events_of(device)) + count(f"SELECT count() FROM conversion_credits WHERE {device}")
        if before == 0 or after != 0:
            failures.append(f"erasure: {before} rows of a1 before the mutations, {after} after")
        else:
            print(f"ok   erasure: ALTER TABLE … DELETE removed {before} rows of a1")
    except Exception as e:
        failures.append(f"privacy statements failed: {e}")
    return failures


if __name__ == "__main__":
    sys.exit(main())

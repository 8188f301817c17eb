"""Offline tests of check.py: its comparisons find nothing in the reference's own output shaped
like ClickHouse rows and catch each deliberately wrong row; the whole run (POST, wait, query,
compare, exit code) works against a fake collector and a fake ClickHouse on loopback.

Run: python3 -m unittest discover -s tests/journeys
"""

import copy
import io
import json
import os
import re
import sys
import threading
import unittest
from contextlib import redirect_stdout
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import check  # noqa: E402
import generate  # noqa: E402
import reference  # noqa: E402

NOW = generate.default_now()  # check.py refuses a period outside the last 400 days


def population(people=400):
    gen = generate.generate(seed=1, people=people, now_ms=NOW)
    send = gen.send_order()
    return gen, send, reference.attribute(gen.events, send)


class ComparisonTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.gen, cls.send, cls.res = population()
        cls.events = check.expected_event_rows(cls.res)
        cls.credits = check.expected_credit_rows(cls.res)
        cls.sos, cls.life = check.expected_report_rows(cls.res)

    def run_compare(self, events=None, credits=None, sos=None, life=None):
        return check.compare_all(self.res, events if events is not None else self.events,
                                 credits if credits is not None else self.credits,
                                 sos if sos is not None else self.sos, life if life is not None else self.life, self.send)

    def assertCaught(self, mm, category, n=1):
        cats = mm.categories()
        self.assertIn(category, cats, f"{category} not reported; got {dict(cats)}")
        self.assertEqual(sum(cats.values()), n, dict(cats))

    # rows of one kind, picked deterministically
    def conversion_row(self, etype="purchase", pred=lambda c: True):
        for r in self.events:
            c = self.res.conversions.get(r["event_id"])
            if c and c.event.type == etype and pred(c):
                return r
        raise AssertionError("no such conversion")

    def multi_touch_credit(self, model):
        for r in self.credits:
            if r["model"] == model and len(self.res.conversions[r["conversion_event_id"]].touches) >= 3:
                return r
        raise AssertionError

    def mutate(self, rows, row, **changes):
        out = [copy.copy(r) for r in rows]
        i = rows.index(row)
        out[i].update(changes)
        return out

    # ----------------------------------------------------------------------------------------

    def test_reference_against_itself(self):
        mm = self.run_compare()
        self.assertEqual(mm.items, [])
        self.assertEqual(mm.compared["credit sets"], 6 * len(self.res.conversions))
        out = io.StringIO()
        check.print_report(mm, self.res, out=out)
        self.assertIn("OK: no mismatch", out.getvalue())

    def test_tolerances_are_allowed(self):
        r = self.multi_touch_credit("time_decay")
        credits = self.mutate(self.credits, r, weight=r["weight"] + 5e-7, revenue_credit=r["revenue_credit"] + 0.009)
        events = self.mutate(self.events, self.conversion_row(pred=lambda c: c.days_to_conversion > 0),
                             days_to_conversion=self.conversion_row(pred=lambda c: c.days_to_conversion > 0)["days_to_conversion"] + 5e-10)
        self.assertEqual(self.run_compare(events=events, credits=credits).items, [])

    def test_credit_weight(self):
        r = self.multi_touch_credit("linear")
        self.assertCaught(self.run_compare(credits=self.mutate(self.credits, r, weight=r["weight"] + 2e-6)), "credits.weight")

    def test_credit_revenue(self):
        r = self.multi_touch_credit("position_based")
        self.assertCaught(self.run_compare(credits=self.mutate(self.credits, r, revenue_credit=r["revenue_credit"] + 0.02)),
                          "credits.revenue_credit")

    def test_missing_credit_row(self):
        r = self.multi_touch_credit("time_decay")
        self.assertCaught(self.run_compare(credits=[x for x in self.credits if x is not r]), "credits.missing")

    def test_retracted_row_does_not_count(self):
        r = self.multi_touch_credit("linear")
        self.assertCaught(self.run_compare(credits=self.mutate(self.credits, r, retracted=1, weight=0.0)), "credits.missing")

    def test_retracted_rows_are_ignored(self):
        r = self.multi_touch_credit("first_touch")
        extra = dict(r, touch_event_id=self.res.conversions[r["conversion_event_id"]].touches[-1].id, retracted=1, weight=0.0, revenue_credit=0.0)
        self.assertEqual(self.run_compare(credits=self.credits + [extra]).items, [])
        self.assertCaught(self.run_compare(credits=self.credits + [dict(extra, weight=0.5)]), "credits.retracted_weight")

    def test_extra_credit_row(self):
        r = self.multi_touch_credit("last_touch")
        other = self.res.conversions[r["conversion_event_id"]].touches[0].id
        self.assertCaught(self.run_compare(credits=self.credits + [dict(r, touch_event_id=other, weight=0.0)]), "credits.extra")

    def test_duplicate_credit_row(self):
        r = self.multi_touch_credit("linear")
        self.assertCaught(self.run_compare(credits=self.credits + [dict(r)]), "credits.duplicate")

    def test_conversion_without_credits(self):
        cid = self.conversion_row("signup")["event_id"]
        credits = [r for r in self.credits if not (r["conversion_event_id"] == cid and r["model"] == "time_decay")]
        self.assertCaught(self.run_compare(credits=credits), "credits.missing_conversion")

    def test_credit_touch_classification_and_identity(self):
        r = self.multi_touch_credit("first_touch")
        self.assertCaught(self.run_compare(credits=self.mutate(self.credits, r, social_network="tiktok")), "credits.social_network")
        self.assertCaught(self.run_compare(credits=self.mutate(self.credits, r, identity_id="someone")), "credits.identity_id")

    def test_conversion_fields(self):
        cases = [
            ("identity_id", "someone-else", "conversions.identity_id"),
            ("touches_to_conversion", 99, "conversions.touches_to_conversion"),
            ("purchase_count", 7, "conversions.purchase_count"),
            ("lifecycle_stage", "visitor", "conversions.lifecycle_stage"),
            ("session_source", "tiktok", "conversions.session_source"),
        ]
        row = self.conversion_row()
        for field, value, category in cases:
            with self.subTest(field=field):
                self.assertCaught(self.run_compare(events=self.mutate(self.events, row, **{field: value})), category)
        row = self.conversion_row(pred=lambda c: c.days_to_conversion > 0)
        self.assertCaught(self.run_compare(events=self.mutate(self.events, row, days_to_conversion=row["days_to_conversion"] + 1e-6)),
                          "conversions.days_to_conversion")

    def test_event_classification(self):
        touch = next(r for r in self.events if r["event_type"] == "click" and r["social_network"] == "linkedin")
        self.assertCaught(self.run_compare(events=self.mutate(self.events, touch, channel="Referral")), "events.channel")
        self.assertCaught(self.run_compare(events=self.mutate(self.events, touch, social_network=None)), "events.social_network")
        self.assertCaught(self.run_compare(events=self.mutate(self.events, touch, source="linkedin.com")), "events.source")
        self.assertCaught(self.run_compare(events=self.mutate(self.events, touch, is_late=1)), "events.is_late")
        bot = next(r for r in self.events if r["is_bot"])
        cats = self.run_compare(events=self.mutate(self.events, bot, is_bot=0)).categories()
        self.assertIn("events.touch", cats)
        self.assertIn("events.is_bot", cats)

    def test_missing_and_unexpected_events(self):
        nav = next(r for r in self.events if r["is_internal"] and r["event_type"] == "click")
        mm = self.run_compare(events=[r for r in self.events if r is not nav])
        self.assertEqual(set(mm.categories()), {"events.missing"})
        stranger = dict(nav, event_id="00000000-0000-4000-8000-000000000000")
        self.assertCaught(self.run_compare(events=self.events + [stranger]), "events.unexpected")

    def test_session_split_and_merge(self):
        anon, sessions = next((a, s) for a, s in self.res.sessions.items() if len(s) >= 2 and len(s[0]) >= 2)
        second_of_first = sessions[0][1]
        row = next(r for r in self.events if r["event_id"] == second_of_first)
        split = self.run_compare(events=self.mutate(self.events, row, session_id=anon + ":split"))
        self.assertEqual(set(split.categories()), {"sessions.partition"})
        first_of_second = next(r for r in self.events if r["event_id"] == sessions[1][0])
        merged = self.run_compare(events=[dict(r, session_id=row["session_id"]) if r["session_id"] == first_of_second["session_id"] else r
                                          for r in self.events])
        self.assertEqual(set(merged.categories()), {"sessions.partition"})

    def test_session_exemption_for_rows_written_before_a_late_event(self):
        # The internal click between a late landing and its conversion was written before the
        # landing arrived: it may keep its old session.
        exempt = check.session_exemptions(self.res, self.send)
        self.assertTrue(exempt)
        late_touch_navs = [e for p in self.gen.persons if p.kind == "late_touch" for e in p.event_ids if e in exempt]
        self.assertTrue(late_touch_navs)
        row = next(r for r in self.events if r["event_id"] == late_touch_navs[0])
        self.assertEqual(self.run_compare(events=self.mutate(self.events, row, session_id="elsewhere")).items, [])
        # ... but not the late landing itself, nor the conversion it leads to.
        landing = next(lid for lid, after in self.gen.late_after.items() if self.res.events[lid].is_touch)
        row = next(r for r in self.events if r["event_id"] == landing)
        self.assertIn("sessions.partition", self.run_compare(events=self.mutate(self.events, row, session_id="elsewhere")).categories())
        conv = next(r for r in self.events if r["event_id"] == self.gen.late_after[landing])
        self.assertIn("sessions.partition", self.run_compare(events=self.mutate(self.events, conv, session_id="elsewhere")).categories())

    def test_source_of_sale(self):
        sos = copy.deepcopy(self.sos)
        sos["linear"][0]["sales"] += 0.02
        self.assertCaught(self.run_compare(sos=sos), "source_of_sale.sales")
        sos = copy.deepcopy(self.sos)
        sos["time_decay"][0]["revenue_minor"] += 1
        self.assertCaught(self.run_compare(sos=sos), "source_of_sale.revenue_minor")
        sos = copy.deepcopy(self.sos)
        del sos["first_touch"][0]
        self.assertCaught(self.run_compare(sos=sos), "source_of_sale.missing")
        sos = copy.deepcopy(self.sos)
        sos["last_touch"].append({"channel": "Referral", "source": "elsewhere.example", "social_network": "", "sales": 1, "micro_conversions": 0, "revenue_minor": 100})
        self.assertCaught(self.run_compare(sos=sos), "source_of_sale.extra")
        sos = copy.deepcopy(self.sos)  # a row left with zeros by retracted credits is harmless
        sos["last_touch"].append({"channel": "Referral", "source": "elsewhere.example", "social_network": None, "sales": "0", "micro_conversions": "0", "revenue_minor": "0"})
        self.assertEqual(self.run_compare(sos=sos).items, [])
        sos = copy.deepcopy(self.sos)  # values as strings, as `touchstream report --format json` gives them
        for rows in sos.values():
            for r in rows:
                r.update({k: str(r[k]) for k in ("sales", "micro_conversions", "revenue_minor")})
        self.assertEqual(self.run_compare(sos=sos).items, [])

    def test_lifecycle(self):
        life = copy.deepcopy(self.life)
        life[0]["clients"] += 1
        self.assertCaught(self.run_compare(life=life), "lifecycle.clients")
        self.assertCaught(self.run_compare(life=life[1:]), "lifecycle.missing")
        self.assertCaught(self.run_compare(life=self.life + [{"first_touch_network": "tiktok", "visitors": 1, "customers": 0, "clients": 0, "repeat_clients": 0}]),
                          "lifecycle.extra")

    def test_lifecycle_definitions_differ_on_the_shared_device_and_the_note_says_so(self):
        latest = [dict(first_touch_network=k, **v) for k, v in self.res.lifecycle("latest_identity").items()]
        mm = self.run_compare(life=latest)
        self.assertTrue(mm)
        self.assertTrue(all(c.startswith("lifecycle.") for c in mm.categories()))
        out = io.StringIO()
        check.print_report(mm, self.res, latest, out=out)
        self.assertIn("latest identity per device", out.getvalue())
        self.assertEqual(check.compare_all(self.res, self.events, self.credits, self.sos, latest, self.send, "latest_identity").items, [])

    def test_report_helpers(self):
        sql = "SELECT 1 WHERE model = {model:String} AND t >= {from:DateTime} AND t < {to:DateTime}"
        self.assertEqual(check.bind_report_sql(sql, {"model": "linear", "from": "2026-01-01 00:00:00", "to": "2026-02-01 00:00:00"}),
                         "SELECT 1 WHERE model = 'linear' AND t >= toDateTime('2026-01-01 00:00:00', 'UTC') "
                         "AND t < toDateTime('2026-02-01 00:00:00', 'UTC')")
        self.assertEqual(check.bind_report_sql("x = {model:String}", {"model": "a'b"}), "x = 'a\\'b'")
        for name in ("source-of-sale.sql", "lifecycle.sql"):
            path = os.path.join(check.REPORTS_DIR, name)
            if os.path.exists(path):
                with open(path) as f:
                    bound = check.bind_report_sql(f.read(), {"model": "linear", "from": "2026-01-01 00:00:00", "to": "2026-02-01 00:00:00"})
                self.assertIsNone(re.search(r"\{\w+:\w+\}", bound), name)
        self.assertEqual(check.parse_report_json('{"report": "x", "rows": [{"a": "1"}]}'), [{"a": "1"}])
        self.assertEqual(check.parse_report_json('[{"a": 1}]'), [{"a": 1}])
        self.assertEqual(check.parse_report_json('{"a": 1}\n{"a": 2}\n'), [{"a": 1}, {"a": 2}])
        args = check.argparse.Namespace(clickhouse="http://ch:8123", database="db1", report_user=None, report_password="pw")
        cmd, env = check.report_bin_command("/bin/ts", "source-of-sale", "2026-01-01T00:00:00Z", "2026-03-01T01:00:00Z", args, "linear")
        self.assertEqual(cmd[:3], ["/bin/ts", "report", "source-of-sale"])
        self.assertIn("--model", cmd)
        self.assertEqual(env["TOUCHSTREAM_CLICKHOUSE_PASSWORD"], "pw")


# ---------------------------------------------------------------------------------------------
# The whole run against fakes on loopback
# ---------------------------------------------------------------------------------------------


class Fakes:
    """A collector that records what it is sent and a ClickHouse that answers check.py's tagged
    queries from rows it is given (by default the reference's own)."""

    def __init__(self, res, accept_short=False):
        self.res = res
        self.batches = []
        self.accept_short = accept_short
        self.event_rows = check.expected_event_rows(res)
        self.credit_rows = check.expected_credit_rows(res)
        self.sos, self.life = check.expected_report_rows(res)
        self.posted = set()
        fakes = self

        class Collector(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                ok = self.path == "/v1/import" and self.headers["Content-Type"] == "application/json" and isinstance(body, list)
                fakes.batches.append(body)
                fakes.posted.update(e["event_id"] for e in body)
                n = len(body) - (1 if fakes.accept_short else 0)
                data = json.dumps({"accepted": n, "rejected": len(body) - n}).encode()
                self.send_response(200 if ok else 400)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(data)

        class ClickHouse(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                sql = self.rfile.read(int(self.headers["Content-Length"])).decode()
                q = parse_qs(urlsplit(self.path).query)
                assert q["database"] == ["db1"] and sql.rstrip().endswith("FORMAT JSONEachRow"), (q, sql)
                tag = re.search(r"/\* check:(\w+)(?: model=(\w+))? \*/", sql)
                rows = fakes.answer(tag.group(1), tag.group(2))
                data = "".join(json.dumps(r) + "\n" for r in rows).encode()
                self.send_response(200)
                self.end_headers()
                self.wfile.write(data)

        self.servers = [ThreadingHTTPServer(("127.0.0.1", 0), h) for h in (Collector, ClickHouse)]
        for s in self.servers:
            threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        self.collector_url, self.clickhouse_url = (f"http://127.0.0.1:{s.server_address[1]}" for s in self.servers)

    def answer(self, tag, model):
        # Rows appear only once their event was posted, like a pipeline that has caught up.
        if tag == "count_events":
            return [{"n": str(len(self.posted & set(self.res.events)))}]
        if tag == "count_conversions":
            return [{"n": str(len(self.posted & set(self.res.conversions)))}]
        if tag == "count_rows":
            return [{"n": str(len(self.event_rows) + len(self.credit_rows))}]
        if tag == "events":
            return self.event_rows
        if tag == "credits":
            return self.credit_rows
        if tag == "source_of_sale":
            return self.sos[model]
        if tag == "lifecycle":
            return self.life
        raise AssertionError(tag)

    def close(self):
        for s in self.servers:
            s.shutdown()
            s.server_close()


class RunTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.gen, cls.send, cls.res = population(people=40)
        cls.saved_interval, check.POLL_INTERVAL_S = check.POLL_INTERVAL_S, 0.05

    @classmethod
    def tearDownClass(cls):
        check.POLL_INTERVAL_S = cls.saved_interval

    def run_check(self, fakes, *extra):
        argv = ["--collector", fakes.collector_url, "--clickhouse", fakes.clickhouse_url, "--database", "db1",
                "--people", "40", "--now", str(NOW), "--report-source", "own", "--timeout", "10", *extra]
        out = io.StringIO()
        with redirect_stdout(out):
            code = check.main(argv)
        return code, out.getvalue()

    def test_clean_run(self):
        fakes = Fakes(self.res)
        try:
            code, out = self.run_check(fakes)
        finally:
            fakes.close()
        self.assertEqual(code, 0, out)
        self.assertIn("OK: no mismatch", out)
        self.assertTrue(all(len(b) <= 200 for b in fakes.batches))
        self.assertEqual([e["event_id"] for b in fakes.batches for e in b], self.send)

    def test_wrong_row_fails_the_run(self):
        fakes = Fakes(self.res)
        row = next(r for r in fakes.credit_rows if r["model"] == "linear" and r["weight"] < 1)
        row["weight"] += 0.01
        fakes.posted = set(self.res.events)  # as if already sent
        try:
            code, out = self.run_check(fakes, "--skip-post")
        finally:
            fakes.close()
        self.assertEqual(code, 1, out)
        self.assertIn("credits.weight", out)
        self.assertIn(row["touch_event_id"], out)

    def test_short_acceptance_stops_the_run(self):
        fakes = Fakes(self.res, accept_short=True)
        err = io.StringIO()
        try:
            from contextlib import redirect_stderr
            with redirect_stderr(err):
                code, _ = self.run_check(fakes)
        finally:
            fakes.close()
        self.assertEqual(code, 2)
        self.assertIn("accepted", err.getvalue())
        self.assertEqual(len(fakes.batches), 1)


if __name__ == "__main__":
    unittest.main()

"""Unit tests of the reference on small journeys computed by hand, and of the generator's
population (every journey kind present, on time, classified as labelled).

Run: python3 -m unittest discover -s tests/journeys   (or: cd tests/journeys && python3 -m unittest)
"""

import os
import sys
import unittest
from fractions import Fraction

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import generate  # noqa: E402
import reference as ref  # noqa: E402
from reference import DAY_MS, HOUR_MS, MINUTE_MS  # noqa: E402

T0 = 1_760_000_000_000  # an arbitrary epoch-ms origin for hand-made journeys
UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"
BOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"

# source name -> (page_url, referrer)
HITS = {
    "linkedin": ("https://shop.example/", "https://www.linkedin.com/"),
    "facebook": ("https://shop.example/", "https://l.facebook.com/l.php?u=x"),
    "fb_ads": ("https://shop.example/?utm_source=facebook&utm_medium=cpc&utm_campaign=spring", None),
    "fb_ads2": ("https://shop.example/?utm_source=facebook&utm_medium=cpc&utm_campaign=retarget", None),
    "li_post": ("https://shop.example/?utm_source=linkedin&utm_medium=social&utm_campaign=b2b&utm_content=post-1", None),
    "google": ("https://shop.example/", "https://www.google.com/"),
    "youtube": ("https://shop.example/", "https://www.youtube.com/"),
    "direct": ("https://shop.example/", None),
    "internal": ("https://shop.example/cart", "https://shop.example/products/a"),
}


def ev(eid, etype, anon, t, src="internal", user=None, revenue=1000, ua=UA, **extra):
    page_url, referrer = HITS[src]
    e = {"event_id": eid, "event_type": etype, "anonymous_id": anon, "occurred_at": T0 + t,
         "page_url": page_url, "user_agent": ua}
    if referrer:
        e["referrer"] = referrer
    if user:
        e["user_id"] = user
    if etype == "purchase":
        e.update(order_id="o-" + eid, revenue=revenue, currency="EUR")
    if etype == "signup":
        e["signup_kind"] = extra.pop("signup_kind", "newsletter")
    if etype == "download":
        e.update(asset_id="wp", asset_kind="whitepaper")
    e.update(extra)
    return e


def click(eid, anon, t, src, **kw):
    return ev(eid, "click", anon, t, src, **kw)


def weights(res, conv_id, model):
    return {c.touch_id: c.weight for c in res.conversions[conv_id].credits[model]}


def touch_ids(res, conv_id):
    return [t.id for t in res.conversions[conv_id].touches]


class ModelsTest(unittest.TestCase):
    """Three touches: linkedin 10 days before, facebook ads 3 days before, Direct 1 hour before
    a purchase of 1000 cents."""

    def setUp(self):
        T = 20 * DAY_MS
        self.events = [
            click("t1", "a", T - 10 * DAY_MS, "linkedin"),
            click("n1", "a", T - 10 * DAY_MS + MINUTE_MS, "internal"),
            click("t2", "a", T - 3 * DAY_MS, "fb_ads"),
            click("t3", "a", T - HOUR_MS, "direct"),
            ev("p", "purchase", "a", T),
        ]
        self.res = ref.attribute(self.events)

    def test_single_touch_models(self):
        self.assertEqual(weights(self.res, "p", "first_touch"), {"t1": 1})
        self.assertEqual(weights(self.res, "p", "last_touch"), {"t3": 1})
        self.assertEqual(weights(self.res, "p", "last_non_direct"), {"t2": 1})

    def test_linear_and_position_based_are_exact(self):
        self.assertEqual(weights(self.res, "p", "linear"), {"t1": Fraction(1, 3), "t2": Fraction(1, 3), "t3": Fraction(1, 3)})
        self.assertEqual(weights(self.res, "p", "position_based"), {"t1": Fraction(2, 5), "t2": Fraction(1, 5), "t3": Fraction(2, 5)})
        credits = {c.touch_id: c.revenue_credit for c in self.res.conversions["p"].credits["linear"]}
        self.assertEqual(credits["t1"], Fraction(1000, 3))

    def test_time_decay(self):
        # 2^(-10/7), 2^(-3/7), 2^(-1/168) = 0.371499, 0.742997, 0.995883; sum 2.110379
        w = weights(self.res, "p", "time_decay")
        self.assertAlmostEqual(w["t1"], 0.176034, places=6)
        self.assertAlmostEqual(w["t2"], 0.352068, places=6)
        self.assertAlmostEqual(w["t3"], 0.471898, places=6)
        self.assertAlmostEqual(sum(w.values()), 1.0, places=12)

    def test_path_fields_and_internal_click_not_a_touch(self):
        conv = self.res.conversions["p"]
        self.assertEqual(touch_ids(self.res, "p"), ["t1", "t2", "t3"])
        self.assertEqual(conv.touches_to_conversion, 3)
        self.assertEqual(conv.days_to_conversion, 10.0)
        self.assertEqual((conv.lifecycle_stage, conv.purchase_count, conv.identity_id), ("client", 1, "a"))

    def test_all_direct_gives_last_non_direct_to_the_last(self):
        res = ref.attribute([click("d1", "a", 0, "direct"), click("d2", "a", DAY_MS, "direct"), ev("s", "signup", "a", 2 * DAY_MS)])
        self.assertEqual(weights(res, "s", "last_non_direct"), {"d2": 1})

    def test_position_based_with_one_and_two_touches(self):
        res = ref.attribute([click("x1", "a", 0, "google"), ev("s1", "signup", "a", DAY_MS),
                             click("x2", "b", 0, "google"), click("x3", "b", DAY_MS, "youtube"), ev("s2", "signup", "b", 2 * DAY_MS)])
        self.assertEqual(weights(res, "s1", "position_based"), {"x1": 1})
        self.assertEqual(weights(res, "s2", "position_based"), {"x2": Fraction(1, 2), "x3": Fraction(1, 2)})

    def test_ties_in_time_go_by_event_id(self):
        # Two devices of one user touch at the same millisecond: "b..." sorts before "c...".
        res = ref.attribute([
            click("c-touch", "a", DAY_MS, "google"), ev("ia", "identify", "a", DAY_MS + 1, user="u"),
            click("b-touch", "b", DAY_MS, "youtube"), ev("ib", "identify", "b", DAY_MS + 2, user="u"),
            ev("s", "signup", "b", 2 * DAY_MS, user="u"),
        ])
        self.assertEqual(touch_ids(res, "s"), ["b-touch", "c-touch"])
        self.assertEqual(weights(res, "s", "first_touch"), {"b-touch": 1})


class WindowTest(unittest.TestCase):
    def test_lookback_edges(self):
        T = 40 * DAY_MS
        res = ref.attribute([
            click("out", "a", T - 30 * DAY_MS - 1, "linkedin"),
            click("edge", "a", T - 30 * DAY_MS, "facebook"),
            ev("d", "download", "a", T),
        ])
        self.assertEqual(touch_ids(res, "d"), ["edge"])
        self.assertEqual(res.conversions["d"].days_to_conversion, 30.0)

    def test_synthetic_direct(self):
        T = 40 * DAY_MS
        res = ref.attribute([
            click("old", "a", T - 30 * DAY_MS - 1, "linkedin"),
            click("nav", "a", T - MINUTE_MS, "internal"),
            ev("s", "signup", "a", T),
            click("after", "a", T + MINUTE_MS, "google"),  # a touch after T never counts
        ])
        conv = res.conversions["s"]
        self.assertEqual(conv.touches, [])
        self.assertEqual((conv.touches_to_conversion, conv.days_to_conversion), (0, 0.0))
        for m in ref.MODELS:
            [c] = conv.credits[m]
            self.assertEqual((c.touch_id, c.touch_time, c.weight, c.cls.channel, c.cls.source), ("s", T0 + T, 1, "Direct", "(direct)"))
        self.assertEqual(res.source_of_sale("linear"), {("Direct", "(direct)", ""): {"sales": 0, "micro_conversions": 1, "revenue": 0}})

    def test_conversion_at_the_touch_time_counts_it_and_cap_keeps_newest(self):
        cfg = ref.Config(max_touches=2)
        res = ref.attribute([click("t1", "a", 0, "google"), click("t2", "a", HOUR_MS, "youtube"),
                             click("t3", "a", 2 * HOUR_MS, "linkedin"), ev("s", "signup", "a", 3 * HOUR_MS)], cfg=cfg)
        self.assertEqual(touch_ids(res, "s"), ["t2", "t3"])
        self.assertTrue(res.conversions["s"].capped)


class PeopleTest(unittest.TestCase):
    def test_two_devices_link_before_the_conversion(self):
        res = ref.attribute([
            click("a1", "A", 1 * DAY_MS, "linkedin"),  # anonymous on A: belongs to u once A links
            ev("ia", "identify", "A", 2 * DAY_MS, user="u"),
            click("a2", "A", 2 * DAY_MS + HOUR_MS, "google", user="u"),
            click("b1", "B", 3 * DAY_MS, "youtube"),
            ev("ib", "identify", "B", 4 * DAY_MS, user="u"),
            ev("p", "purchase", "B", 4 * DAY_MS + MINUTE_MS, user="u"),
        ])
        self.assertEqual(touch_ids(res, "p"), ["a1", "a2", "b1"])
        self.assertEqual(res.conversions["p"].identity_id, "u")

    def test_device_linked_after_the_conversion_contributes_nothing(self):
        res = ref.attribute([
            click("a1", "A", 1 * DAY_MS, "linkedin"),
            click("b1", "B", 3 * DAY_MS, "youtube"),
            ev("ib", "identify", "B", 4 * DAY_MS, user="u"),
            ev("p", "purchase", "B", 4 * DAY_MS + MINUTE_MS, user="u"),
            ev("ia", "identify", "A", 5 * DAY_MS, user="u"),  # A links after p
            ev("s", "signup", "A", 5 * DAY_MS + MINUTE_MS, user="u"),
        ])
        self.assertEqual(touch_ids(res, "p"), ["b1"])
        self.assertEqual(touch_ids(res, "s"), ["a1", "b1"])
        self.assertEqual((res.conversions["s"].lifecycle_stage, res.conversions["s"].purchase_count), ("client", 1))

    def test_device_that_is_its_own_person(self):
        # B converts as a guest before its sign-in: only B's own touches, identity B, and the
        # conversion is not re-credited once B links.
        res = ref.attribute([
            click("a1", "A", 0, "linkedin"), ev("ia", "identify", "A", HOUR_MS, user="u"),
            click("b1", "B", DAY_MS, "youtube"),
            ev("p", "purchase", "B", DAY_MS + MINUTE_MS),
            ev("ib", "identify", "B", 2 * DAY_MS, user="u"),
        ])
        self.assertEqual(touch_ids(res, "p"), ["b1"])
        self.assertEqual(res.conversions["p"].identity_id, "B")

    def test_signup_carrying_the_user_links_at_its_own_time(self):
        res = ref.attribute([click("a1", "A", 0, "google"), click("b1", "B", HOUR_MS, "linkedin"),
                             ev("ib", "identify", "B", 2 * HOUR_MS, user="u"),
                             ev("s", "signup", "A", DAY_MS, user="u", signup_kind="account")])
        self.assertEqual(res.conversions["s"].identity_id, "u")
        self.assertEqual(touch_ids(res, "s"), ["a1", "b1"])

    def test_shared_device(self):
        D = DAY_MS
        res = ref.attribute([
            click("s0", "S", 0, "google"),  # before U: stays with U
            ev("iu", "identify", "S", 1 * D, user="u"),
            click("s1", "S", 2 * D, "linkedin", user="u"),
            ev("p1", "purchase", "S", 2 * D + MINUTE_MS, user="u"),
            click("s2", "S", 3 * D, "youtube", user="u"),  # still U's: V has not signed in yet
            ev("sv", "signup", "S", 3 * D + MINUTE_MS, user="v", signup_kind="account"),
            click("s3", "S", 4 * D, "facebook", user="v"),
            ev("dv", "download", "S", 4 * D + MINUTE_MS, user="v"),
            click("ph", "P", 5 * D, "fb_ads"),  # U's phone
            ev("ip", "identify", "P", 5 * D + MINUTE_MS, user="u"),
            ev("np", "signup", "P", 5 * D + 2 * MINUTE_MS, user="u"),
            ev("iu2", "identify", "S", 6 * D, user="u"),  # U back on S
            click("s4", "S", 6 * D + HOUR_MS, "direct", user="u"),
            ev("p2", "purchase", "S", 6 * D + HOUR_MS + MINUTE_MS, user="u"),
        ])
        c = res.conversions
        self.assertEqual(touch_ids(res, "sv"), [])  # V inherits nothing: synthetic Direct
        self.assertEqual(c["sv"].identity_id, "v")
        self.assertEqual(touch_ids(res, "dv"), ["s3"])
        self.assertEqual((c["dv"].identity_id, c["dv"].lifecycle_stage, c["dv"].purchase_count), ("v", "customer", 0))
        self.assertEqual(touch_ids(res, "np"), ["s0", "s1", "s2", "ph"])
        self.assertEqual((c["np"].lifecycle_stage, c["np"].purchase_count), ("client", 1))
        self.assertEqual(touch_ids(res, "p2"), ["s0", "s1", "s2", "ph", "s4"])
        self.assertEqual((c["p2"].identity_id, c["p2"].purchase_count), ("u", 2))
        # Lifecycle: by the rules V is a visitor of its own (first touch s3, facebook); by the
        # device's latest identity S is all U's and V has no touch at all.
        rules = res.lifecycle("rules")
        self.assertEqual(rules["facebook"], {"visitors": 1, "customers": 1, "clients": 0, "repeat_clients": 0})
        self.assertEqual(rules["Organic Search"], {"visitors": 1, "customers": 1, "clients": 1, "repeat_clients": 1})
        latest = res.lifecycle("latest_identity")
        self.assertNotIn("facebook", latest)
        self.assertEqual(latest["Organic Search"], {"visitors": 1, "customers": 1, "clients": 1, "repeat_clients": 1})


class LatenessTest(unittest.TestCase):
    def test_late_touch_is_credited_and_on_time(self):
        events = [click("old", "a", 0, "google"), click("land", "a", DAY_MS, "linkedin"),
                  click("nav", "a", DAY_MS + MINUTE_MS, "internal"), ev("s", "signup", "a", DAY_MS + 7 * MINUTE_MS + 30_000)]
        send = ["old", "nav", "s", "land"]  # the landing arrives after the signup
        res = ref.attribute(events, send)
        self.assertEqual(touch_ids(res, "s"), ["old", "land"])
        self.assertEqual(res.late_event_ids, [])
        self.assertEqual(res.out_of_order_ids, ["land"])
        self.assertEqual(res.session_scope("s").source, "linkedin")

    def test_lateness_limit(self):
        events = [click("x", "a", 0, "google"), click("y", "a", HOUR_MS, "google"), click("z", "a", HOUR_MS + 1, "google")]
        res = ref.attribute(events, ["z", "y", "x"])
        self.assertEqual(res.out_of_order_ids, ["y", "x"])
        self.assertEqual(res.late_event_ids, ["x"])  # 60 min + 1 ms behind; y is 1 ms behind

    def test_late_conversion_counts_only_earlier_touches(self):
        events = [click("t1", "a", 0, "google"), ev("d", "download", "a", MINUTE_MS),
                  click("t2", "a", 4 * MINUTE_MS, "fb_ads")]
        res = ref.attribute(events, ["t1", "t2", "d"])
        self.assertEqual(touch_ids(res, "d"), ["t1"])

    def test_late_purchase_keeps_purchase_order(self):
        events = [click("t1", "a", 0, "google", user="u"), ev("p1", "purchase", "a", MINUTE_MS, user="u"),
                  ev("p2", "purchase", "a", 6 * MINUTE_MS, user="u")]
        res = ref.attribute(events, ["t1", "p2", "p1"])
        self.assertEqual(res.conversions["p1"].purchase_count, 1)
        self.assertEqual(res.conversions["p2"].purchase_count, 2)

    def test_late_sign_in_moves_the_link_earlier(self):
        events = [click("a1", "A", 0, "linkedin"), ev("ia", "identify", "A", HOUR_MS, user="u"),
                  click("b1", "B", DAY_MS, "youtube"), ev("ib", "identify", "B", DAY_MS + MINUTE_MS, user="u"),
                  ev("d", "download", "B", DAY_MS + 2 * MINUTE_MS),  # no user_id, but after B's sign-in
                  ev("p", "purchase", "B", DAY_MS + 4 * MINUTE_MS, user="u")]
        res = ref.attribute(events, ["a1", "ia", "b1", "d", "p", "ib"])
        self.assertEqual(res.conversions["d"].identity_id, "u")
        self.assertEqual(touch_ids(res, "d"), ["a1", "b1"])
        self.assertEqual(res.late_event_ids, [])


class LifecycleTest(unittest.TestCase):
    def test_conversions_before_a_link_join_the_user_at_the_link(self):
        D = DAY_MS
        res = ref.attribute([
            click("a1", "A", 0, "linkedin"),
            ev("da", "download", "A", 1 * D),  # A is its own person
            ev("pa", "purchase", "A", 2 * D),  # guest purchase
            click("b1", "B", 2 * D + HOUR_MS, "google"),
            ev("ib", "identify", "B", 2 * D + 2 * HOUR_MS, user="u"),
            ev("sb", "signup", "B", 2 * D + 3 * HOUR_MS, user="u"),  # before A links
            ev("ia", "identify", "A", 3 * D, user="u"),
            ev("pb", "purchase", "B", 4 * D, user="u"),
        ])
        c = res.conversions
        self.assertEqual((c["da"].identity_id, c["da"].lifecycle_stage, c["da"].purchase_count), ("A", "customer", 0))
        self.assertEqual((c["pa"].identity_id, c["pa"].lifecycle_stage, c["pa"].purchase_count), ("A", "client", 1))
        self.assertEqual((c["sb"].identity_id, c["sb"].lifecycle_stage, c["sb"].purchase_count), ("u", "customer", 0))
        self.assertEqual((c["pb"].identity_id, c["pb"].lifecycle_stage, c["pb"].purchase_count), ("u", "client", 2))
        self.assertEqual(touch_ids(res, "pb"), ["a1", "b1"])
        # One person in the end: first touch linkedin, 4 conversions, 2 purchases.
        self.assertEqual(res.lifecycle("rules"), {"linkedin": {"visitors": 1, "customers": 1, "clients": 1, "repeat_clients": 1}})

    def test_people_without_touches_are_not_visitors(self):
        res = ref.attribute([ev("s", "signup", "a", 0), click("b", "bot", 0, "google", ua=BOT), click("g", "c", 0, "google")])
        self.assertEqual(res.lifecycle("rules"), {"Organic Search": {"visitors": 1, "customers": 0, "clients": 0, "repeat_clients": 0}})


class SessionsTest(unittest.TestCase):
    def test_session_boundaries(self):
        M = MINUTE_MS
        res = ref.attribute([
            click("e1", "a", 0, "li_post"),
            click("e2", "a", 30 * M, "internal"),  # exactly 30 minutes: same session
            click("e3", "a", 60 * M + 1, "internal"),  # 30 min + 1 ms: new session, Direct
            ev("e4", "signup", "a", 62 * M),
            click("e5", "a", 67 * M, "fb_ads"),  # campaign: new session
            click("e6", "a", 70 * M, "direct"),  # Direct never starts one inside the timeout
            click("e7", "a", 72 * M, "fb_ads"),  # same campaign: same session
            click("e8", "a", 73 * M, "fb_ads2"),  # other campaign: new session
            ev("e9", "download", "a", 74 * M),
        ])
        self.assertEqual(res.sessions["a"], [["e1", "e2"], ["e3", "e4"], ["e5", "e6", "e7"], ["e8", "e9"]])
        self.assertEqual(res.session_scope("e4").source, "(direct)")
        self.assertEqual(res.session_scope("e2").campaign, "b2b")
        self.assertEqual(res.session_scope("e9").campaign, "retarget")
        self.assertEqual(touch_ids(res, "e9"), ["e1", "e5", "e6", "e7", "e8"])

    def test_session_without_campaign_takes_the_first_campaign_click_as_a_new_session(self):
        res = ref.attribute([click("d", "a", 0, "direct"), click("n", "a", MINUTE_MS, "internal"),
                             click("g", "a", 2 * MINUTE_MS, "google"), ev("s", "signup", "a", 3 * MINUTE_MS)])
        self.assertEqual(res.sessions["a"], [["d", "n"], ["g", "s"]])
        self.assertEqual(res.session_scope("s").source, "google")

    def test_a_conversion_or_a_bot_does_not_start_a_session_and_sessions_span_types(self):
        res = ref.attribute([ev("s", "signup", "a", 0), click("b", "a", MINUTE_MS, "google", ua=BOT),
                             click("n", "a", 2 * MINUTE_MS, "internal")])
        self.assertEqual(res.sessions["a"], [["s", "b", "n"]])
        self.assertEqual(res.session_scope("n").source, "(direct)")


class ClassificationTest(unittest.TestCase):
    def test_table(self):
        cases = [
            ("https://shop.example/", "https://www.linkedin.com/", ("Organic Social", "linkedin", "referral", None, None, "linkedin")),
            ("https://shop.example/", "https://l.facebook.com/l.php?u=x", ("Organic Social", "facebook", "referral", None, None, "facebook")),
            ("https://shop.example/", "https://l.instagram.com/", ("Organic Social", "instagram", "referral", None, None, "instagram")),
            ("https://shop.example/", "https://t.co/abc", ("Organic Social", "x", "referral", None, None, "x")),
            ("https://shop.example/", "https://www.reddit.com/r/x/", ("Organic Social", "reddit", "referral", None, None, "reddit")),
            ("https://shop.example/", "https://www.youtube.com/", ("Organic Video", "youtube", "referral", None, None, "youtube")),
            ("https://shop.example/?utm_source=linkedin&utm_medium=social&utm_campaign=c&utm_content=p", "https://www.linkedin.com/",
             ("Organic Social", "linkedin", "social", "c", "p", "linkedin")),
            ("https://shop.example/?utm_source=facebook&utm_medium=cpc&utm_campaign=c", None, ("Paid Social", "facebook", "cpc", "c", None, "facebook")),
            ("https://shop.example/", "https://www.google.com/", ("Organic Search", "google", "organic", None, None, None)),
            ("https://shop.example/?gclid=abc", "https://www.google.com/", ("Paid Search", "google", "cpc", None, None, None)),
            ("https://shop.example/?utm_source=newsletter&utm_medium=email&utm_campaign=w", None, ("Email", "newsletter", "email", "w", None, None)),
            ("https://shop.example/", None, ("Direct", "(direct)", "(none)", None, None, None)),
        ]
        for url, referrer, want in cases:
            c = ref.classify(url, referrer, UA)
            self.assertEqual((c.channel, c.source, c.medium, c.campaign, c.content, c.social_network), want, url + " " + str(referrer))
            self.assertFalse(c.is_internal or c.is_bot)
        internal = ref.classify("https://shop.example/cart", "https://shop.example/", UA)
        self.assertTrue(internal.is_internal)
        self.assertEqual(internal.source, "(direct)")
        self.assertTrue(ref.classify("https://shop.example/", "https://www.google.com/", BOT).is_bot)
        with self.assertRaises(ref.UnknownHit):
            ref.classify("https://shop.example/", "https://unknown.example/", UA)

    def test_conversion_is_its_own_hit_and_never_a_touch(self):
        res = ref.attribute([ev("s", "signup", "a", 0, "li_post")])
        self.assertEqual(res.events["s"].cls.source, "linkedin")
        self.assertFalse(res.events["s"].is_touch)
        self.assertEqual(touch_ids(res, "s"), [])


class ReportsTest(unittest.TestCase):
    def test_source_of_sale(self):
        res = ref.attribute([
            click("t1", "a", 0, "linkedin"), click("t2", "a", DAY_MS, "google"),
            ev("p", "purchase", "a", 2 * DAY_MS, revenue=999),
            ev("d", "download", "a", 3 * DAY_MS),
        ])
        rows = res.source_of_sale("linear")
        self.assertEqual(rows[("Organic Social", "linkedin", "linkedin")],
                         {"sales": Fraction(1, 2), "micro_conversions": Fraction(1, 2), "revenue": Fraction(999, 2)})
        self.assertEqual(rows[("Organic Search", "google", "")]["revenue"], Fraction(999, 2))
        self.assertEqual(res.source_of_sale("last_touch")[("Organic Search", "google", "")]["sales"], 1)


class GeneratedPopulationTest(unittest.TestCase):
    """The default population: every kind of journey is there, every event on time and within
    the limits, the generator's labels agree with the reference's classifier, and each special
    journey comes out as intended."""

    @classmethod
    def setUpClass(cls):
        cls.now = generate.parse_now("2026-03-01T00:00:00Z")
        cls.gen = generate.generate(seed=1, people=400, now_ms=cls.now)
        cls.send = cls.gen.send_order()
        cls.res = ref.attribute(cls.gen.events, cls.send)
        cls.by_kind = {}
        for p in cls.gen.persons:
            cls.by_kind.setdefault(p.kind, []).append(p)

    def conversions_of(self, person, etype=None):
        ids = set(person.event_ids)
        return sorted((c for c in self.res.conversions.values() if c.event.id in ids and (etype is None or c.event.type == etype)),
                      key=lambda c: c.event.key)

    def test_deterministic(self):
        again = generate.generate(seed=1, people=400, now_ms=self.now)
        self.assertEqual(again.events, self.gen.events)
        self.assertEqual(again.send_order(), self.send)
        self.assertNotEqual(generate.generate(seed=2, people=400, now_ms=self.now).events[0], self.gen.events[0])

    def test_every_kind_and_size(self):
        self.assertEqual(set(self.by_kind), {k for k, _, _ in generate.Generator.KINDS})
        self.assertTrue(2800 <= len(self.gen.events) <= 4000, len(self.gen.events))
        small = generate.generate(seed=3, people=20, now_ms=self.now)
        self.assertEqual({p.kind for p in small.persons}, set(self.by_kind))

    def test_labels_agree_with_the_reference_classifier(self):
        for eid, label in self.gen.labels.items():
            self.assertEqual(self.res.events[eid].cls.as_dict(), label, eid)

    def test_on_time_and_in_range(self):
        self.assertEqual(self.res.late_event_ids, [])
        self.assertEqual(set(self.res.out_of_order_ids), set(self.gen.late_after))
        self.assertTrue(all(self.now - 400 * DAY_MS <= e["occurred_at"] <= self.now for e in self.gen.events))
        self.assertEqual(sorted(self.send), sorted(e["event_id"] for e in self.gen.events))
        self.assertFalse(any(c.capped for c in self.res.conversions.values()))
        # Each device's latest event is sent after every event that links or switches the device,
        # so its row is written knowing who the device belongs to (the lifecycle report resolves
        # a device by its latest row).
        pos = {eid: i for i, eid in enumerate(self.send)}
        for anon, evs in self.res.devices.items():
            switches = [pos[k[1]] for k, _ in self.res.identities[anon].segments]
            self.assertTrue(not switches or pos[evs[-1].id] >= max(switches), anon)
        for e in self.gen.events:  # the collector's import format
            self.assertNotIn("sent_at", e)
            self.assertIsInstance(e["occurred_at"], int)

    def test_buyers(self):
        for p in self.by_kind["buyer"]:
            [buy] = self.conversions_of(p, "purchase")
            self.assertTrue(7 <= buy.touches_to_conversion <= 13)
            self.assertGreaterEqual(len({t.cls.source for t in buy.touches}), 3)
            self.assertEqual(buy.identity_id, p.users[0])
        for p in self.by_kind["repeat_buyer"]:
            buys = self.conversions_of(p, "purchase")
            self.assertIn(len(buys), (2, 3))
            self.assertEqual([b.purchase_count for b in buys], list(range(1, len(buys) + 1)))
        for p in self.by_kind["guest_buyer"]:
            [buy] = self.conversions_of(p, "purchase")
            self.assertEqual(buy.identity_id, p.devices[0].anon)
        self.assertTrue(any(t.cls.is_bot for p in self.by_kind["buyer"] for eid in p.event_ids for t in [self.res.events[eid]]))
        micro = sum(1 for c in self.res.conversions.values() if c.event.type != "purchase")
        self.assertGreater(micro, 3 * sum(1 for c in self.res.conversions.values() if c.event.type == "purchase"))

    def test_multi_device(self):
        for p in self.by_kind["multi_device"] + self.by_kind["cross_device_backfill"]:
            a, b = (d.anon for d in p.devices)
            buy = [c for c in self.conversions_of(p, "purchase") if c.event.anonymous_id == b][0]
            self.assertEqual(buy.identity_id, p.users[0])
            self.assertEqual({t.anonymous_id for t in buy.touches}, {a, b})
        for p in self.by_kind["multi_device_late_link"]:
            a, b = (d.anon for d in p.devices)
            [buy] = self.conversions_of(p, "purchase")
            self.assertEqual({t.anonymous_id for t in buy.touches}, {b})
            [later] = self.conversions_of(p, "signup")
            self.assertEqual({t.anonymous_id for t in later.touches}, {a, b})
            self.assertEqual((later.lifecycle_stage, later.purchase_count), ("client", 1))
        prelink = [c for p in self.by_kind["multi_device"] for c in self.conversions_of(p, "purchase")
                   if c.event.anonymous_id == p.devices[1].anon and c.purchase_count == 2]
        self.assertTrue(prelink, "a guest purchase on A before its link counts for B's purchase")
        self.assertTrue(self.gen.send_skew)

    def test_shared_device(self):
        for p in self.by_kind["shared_device"]:
            u, v = p.users
            s = p.devices[0].anon
            [dl] = self.conversions_of(p, "download")
            self.assertEqual(dl.identity_id, v)
            v_since = self.res.identities[s].link_key[v]
            self.assertTrue(dl.touches and all(t.key > v_since for t in dl.touches))
            buys = self.conversions_of(p, "purchase")
            self.assertEqual([b.identity_id for b in buys], [u, u])
            self.assertEqual(buys[-1].purchase_count, 2)
            self.assertFalse(any(self.res.identities[t.anonymous_id].owner_at(t.key) == v for t in buys[-1].touches))
            self.assertTrue(any(self.res.identities[s].owner_at(t.key) == v for t in self.res.events.values()
                                if t.anonymous_id == s and t.is_touch and t.time < buys[-1].event.time))

    def test_late_and_edges(self):
        late = self.gen.late_after
        for p in self.by_kind["late_touch"]:
            [conv] = self.conversions_of(p)
            self.assertIn(conv.touches[-1].id, late)  # the late landing is credited
            self.assertEqual(late[conv.touches[-1].id], conv.event.id)
            self.assertLessEqual(conv.event.time - conv.touches[-1].time, 7.5 * MINUTE_MS)
        self.assertEqual(self.conversions_of(self.by_kind["late_touch"][0])[0].touches_to_conversion, 1)
        for p in self.by_kind["late_conversion"]:
            [conv] = self.conversions_of(p)
            self.assertIn(conv.event.id, late)
            self.assertTrue(all(t.time < conv.event.time for t in conv.touches))
        for p in self.by_kind["late_signin"]:
            [dl] = self.conversions_of(p, "download")
            self.assertEqual(dl.identity_id, p.users[0])
            self.assertEqual({t.anonymous_id for t in dl.touches}, {d.anon for d in p.devices})
        edges = [self.conversions_of(p)[0] for p in self.by_kind["lookback_edge"]]
        self.assertIn(30.0, [c.days_to_conversion for c in edges])
        self.assertIn(0, [c.touches_to_conversion for c in edges])
        for p in self.by_kind["conversion_only"]:
            self.assertEqual(self.conversions_of(p)[0].touches, [])
        for p in self.by_kind["bot"]:
            self.assertTrue(all(self.res.events[e].cls.is_bot and not self.res.events[e].is_touch for e in p.event_ids))

    def test_sessions_split_by_gap_and_campaign(self):
        p = self.by_kind["session_edges"][0]
        self.assertEqual([len(s) for s in self.res.sessions[p.devices[0].anon]], [2, 2, 4])


if __name__ == "__main__":
    unittest.main()

#!/usr/bin/env python3
"""Deterministic journey generator for the attribution end-to-end check.

Builds a population of visitors of one site (host shop.example) over the days before "now":
people who browse and never convert, micro-converters, buyers with long multi-network
journeys, repeat buyers, guest checkouts, people on two devices (linking before and after a
conversion), a shared device, late touches / conversions / sign-ins, lookback edges, bots,
session edges. Every event is a dict in the collector's import format (POST /v1/import).

Each hit is picked from a small table whose classification is unambiguous, and the expected
event-scoped classification is recorded for every event *by construction* (labels), so the
reference's own classifier can be checked against it.

The send order is chronological (all devices interleaved) except for the deliberate late
events, each delivered right after a named later event of its device, and for the devices of
"backfill" people, whose whole stream is sent after another device of the same person.

Usage:
    python3 generate.py [--seed N] [--people N] [--now EPOCH_MS|ISO] [--days N] [--out DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import sys
import time
import uuid
from collections import Counter
from datetime import datetime, timezone
from urllib.parse import urlencode

SECOND_MS = 1000
MINUTE_MS = 60 * SECOND_MS
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS
LOOKBACK_MS = 30 * DAY_MS
MAX_TOUCHES = 64
SITE = "https://shop.example"

BROWSERS = [
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36",
]
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"

LANDING_PATHS = ["/", "/products/linen-shirt", "/products/wool-scarf", "/blog/attribution-101", "/pricing", "/guides/fit"]
NAV_PATHS = ["/products/linen-shirt", "/products/wool-scarf", "/cart", "/pricing", "/about", "/blog/attribution-101"]
LINKEDIN_CAMPAIGNS = {"b2b-guide": ["post-42", "post-checklist"], "launch": ["post-7", "carousel-3"]}
FACEBOOK_CAMPAIGNS = ["spring", "retarget"]
NEWSLETTER_CAMPAIGNS = ["weekly-12", "weekly-13"]
REVENUES = [1900, 2900, 4999, 7450, 9900, 14900, 19900]
ASSETS = [("whitepaper-attribution", "whitepaper"), ("checklist-2026", "checklist"), ("ebook-social", "ebook")]


def label(channel, source, medium, campaign=None, content=None, social_network=None, is_internal=False, is_bot=False):
    """Expected event-scoped classification of a hit."""
    return {
        "channel": channel,
        "source": source,
        "medium": medium,
        "campaign": campaign,
        "content": content,
        "social_network": social_network,
        "is_internal": is_internal,
        "is_bot": is_bot,
    }


DIRECT_LABEL = label("Direct", "(direct)", "(none)")
INTERNAL_LABEL = label("Direct", "(direct)", "(none)", is_internal=True)

# The table of sources a touch can come from, with weights. Each maker returns
# (query parameters or None, referrer or None, expected label).
SOURCE_WEIGHTS = {
    "linkedin": 11,
    "linkedin_post": 10,
    "facebook": 10,
    "facebook_ads": 8,
    "instagram": 10,
    "x": 6,
    "reddit": 4,
    "youtube": 6,
    "google": 10,
    "google_ads": 5,
    "newsletter": 7,
    "direct": 11,
}


def make_hit(rng, kind):
    if kind == "linkedin":
        return None, "https://www.linkedin.com/", label("Organic Social", "linkedin", "referral", social_network="linkedin")
    if kind == "facebook":
        return (None, "https://l.facebook.com/l.php?u=https%3A%2F%2Fshop.example%2F",
                label("Organic Social", "facebook", "referral", social_network="facebook"))
    if kind == "instagram":
        return None, "https://l.instagram.com/", label("Organic Social", "instagram", "referral", social_network="instagram")
    if kind == "x":
        return None, "https://t.co/" + rng.choice(["abc", "Zx81kQ", "q9"]), label("Organic Social", "x", "referral", social_network="x")
    if kind == "reddit":
        return None, "https://www.reddit.com/r/x/", label("Organic Social", "reddit", "referral", social_network="reddit")
    if kind == "youtube":
        return None, "https://www.youtube.com/", label("Organic Video", "youtube", "referral", social_network="youtube")
    if kind == "linkedin_post":
        campaign = rng.choice(sorted(LINKEDIN_CAMPAIGNS))
        content = rng.choice(LINKEDIN_CAMPAIGNS[campaign])
        params = {"utm_source": "linkedin", "utm_medium": "social", "utm_campaign": campaign, "utm_content": content}
        referrer = "https://www.linkedin.com/" if rng.random() < 0.5 else None
        return params, referrer, label("Organic Social", "linkedin", "social", campaign, content, "linkedin")
    if kind == "facebook_ads":
        campaign = rng.choice(FACEBOOK_CAMPAIGNS)
        params = {"utm_source": "facebook", "utm_medium": "cpc", "utm_campaign": campaign}
        return params, None, label("Paid Social", "facebook", "cpc", campaign, None, "facebook")
    if kind == "google":
        return None, "https://www.google.com/", label("Organic Search", "google", "organic")
    if kind == "google_ads":
        params = {"gclid": "Cj0K" + "%08x" % rng.getrandbits(32)}
        referrer = "https://www.google.com/" if rng.random() < 0.5 else None
        return params, referrer, label("Paid Search", "google", "cpc")
    if kind == "newsletter":
        campaign = rng.choice(NEWSLETTER_CAMPAIGNS)
        params = {"utm_source": "newsletter", "utm_medium": "email", "utm_campaign": campaign}
        return params, None, label("Email", "newsletter", "email", campaign)
    if kind == "direct":
        return None, None, DIRECT_LABEL
    raise ValueError(kind)


def page(path, params=None):
    return SITE + path + ("?" + urlencode(params) if params else "")


class Unset:
    pass


UNSET = Unset()


class Device:
    """One anonymous_id. `user` is the user the tracker currently sends on every event (set by a
    sign-in or an account signup), as the browser tracker does."""

    def __init__(self, person, anon, ua):
        self.person = person
        self.gen = person.gen
        self.anon = anon
        self.ua = ua
        self.user = None

    # -- raw emission -------------------------------------------------------------------------

    def emit(self, etype, t, page_url, referrer, expected, user_id=UNSET, exact=False, ua=None, **fields):
        at = self.person.slot(t)
        if exact and at != t:
            raise AssertionError(f"edge time {t} was taken; the generator must place it exactly")
        uid = self.user if user_id is UNSET else user_id
        ev = {"event_id": self.gen.uuid(), "event_type": etype, "anonymous_id": self.anon}
        if uid:
            ev["user_id"] = uid
        ev["occurred_at"] = at
        ev["page_url"] = page_url
        if referrer:
            ev["referrer"] = referrer
        ev["user_agent"] = ua or self.ua
        ev.update(fields)
        self.gen.add(ev, expected, self.person)
        return ev

    # -- what a visitor does ---------------------------------------------------------------------

    def land(self, t, source, exact=False, path=None):
        """A landing page view from `source` (a touch unless the source is internal)."""
        params, referrer, expected = make_hit(self.gen.rng, source)
        path = path or self.gen.rng.choice(LANDING_PATHS)
        return self.emit("click", t, page(path, params), referrer, expected, exact=exact)

    def nav(self, t, path=None):
        """A link click inside the site: referrer on the site, no campaign parameters."""
        rng = self.gen.rng
        return self.emit("click", t, page(path or rng.choice(NAV_PATHS)), SITE + rng.choice(NAV_PATHS), INTERNAL_LABEL)

    def bot_hit(self, t):
        """A crawler hit: classified from its hit like any other, flagged as a bot, not a touch."""
        source = self.gen.rng.choice(["linkedin", "google", "direct", "x"])
        params, referrer, expected = make_hit(self.gen.rng, source)
        return self.emit("click", t, page(self.gen.rng.choice(LANDING_PATHS), params), referrer,
                         dict(expected, is_bot=True), ua=GOOGLEBOT)

    def visit(self, t, source, pages=None):
        """A landing then `pages` (default 0-3, mostly 0-1) internal clicks; returns
        (landing event, time of the last event)."""
        rng = self.gen.rng
        landing = self.land(t, source)
        last = landing["occurred_at"]
        if pages is None:
            pages = rng.choices([0, 1, 2, 3], [40, 35, 18, 7])[0]
        for _ in range(pages):
            last = self.nav(last + rng.randint(20, 240) * SECOND_MS)["occurred_at"]
        return landing, last

    def _conversion_hit(self, path):
        return page(path), SITE + "/" + self.gen.rng.choice(["cart", "pricing", "blog/attribution-101"]), INTERNAL_LABEL

    def identify(self, t, user):
        """A sign-in: an identify call carrying the user."""
        self.user = user
        return self.emit("identify", t, page("/account"), SITE + "/login", INTERNAL_LABEL, user_id=user)

    def signup(self, t, kind="newsletter", user=None, on=None, **kw):
        """A signup. kind "account" creates `user` and signs the device in (the signup carries
        it). `on` = a landing event: the form sits on that landing page, so the signup's own hit
        is the landing's (same page URL and referrer) and is classified like it."""
        if kind == "account":
            self.user = user
        if on is not None:
            url, ref, expected = on["page_url"], on.get("referrer"), self.gen.labels[on["event_id"]]
        else:
            url, ref, expected = self._conversion_hit("/signup")
        return self.emit("signup", t, url, ref, expected, signup_kind=kind, **kw)

    def download(self, t, asset=None, **kw):
        asset_id, asset_kind = asset or self.gen.rng.choice(ASSETS)
        url, ref, expected = self._conversion_hit("/downloads/" + asset_id)
        return self.emit("download", t, url, ref, expected, asset_id=asset_id, asset_kind=asset_kind, **kw)

    def purchase(self, t, revenue=None, **kw):
        url, ref, expected = self._conversion_hit("/thanks")
        return self.emit("purchase", t, url, ref, expected, order_id=self.gen.order_id(),
                         revenue=revenue or self.gen.rng.choice(REVENUES), currency="EUR", **kw)


class Person:
    """One generated human (possibly several devices and, on a shared device, not alone)."""

    def __init__(self, gen, kind):
        self.gen = gen
        self.kind = kind
        self.devices = []
        self.users = []
        self.event_ids = []
        self.touch_times = []
        self.used = set()

    def device(self, ua=None):
        d = Device(self, self.gen.uuid(), ua or self.gen.rng.choice(BROWSERS))
        self.devices.append(d)
        return d

    def new_user(self):
        self.gen.user_seq += 1
        u = f"user-{self.gen.token}-{self.gen.user_seq}"
        self.users.append(u)
        return u

    def slot(self, t):
        """A free millisecond for this person at or after t (no two events of one person, so of
        one device, share a millisecond; it also keeps every tie out of the rules)."""
        t = int(t)
        while t in self.used:
            t += 1
        self.used.add(t)
        return t


MIN_DAYS = 52  # the longest journey (a repeat buyer) spans 50 days


class Generator:
    def __init__(self, seed=1, people=400, now_ms=None, days=60):
        if days < MIN_DAYS:
            raise ValueError(f"the generated period must be at least {MIN_DAYS} days (got {days})")
        self.seed = seed
        self.rng = random.Random(seed)
        self.now = now_ms if now_ms is not None else default_now()
        self.days = days
        self.start = self.now - days * DAY_MS
        # A token unique to (seed, now) in every user and order id, so two runs against one
        # pipeline never merge people or orders.
        self.token = hashlib.sha256(f"{seed}:{self.now}".encode()).hexdigest()[:8]
        self.people_target = people
        self.events = []
        self.labels = {}
        self.owner = {}  # event id -> Person
        self.late_after = {}  # late event id -> id of the later event it is delivered right after
        self.send_skew = {}  # anonymous_id -> ms added to the send position of all its events
        self.persons = []
        self.user_seq = 0
        self.order_seq = 0

    # -- ids ---------------------------------------------------------------------------------------

    def uuid(self):
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def order_id(self):
        self.order_seq += 1
        return f"o-{self.token}-{self.order_seq}"

    def add(self, ev, expected, person):
        if not (self.start <= ev["occurred_at"] <= self.now):
            raise AssertionError(f"event at {ev['occurred_at']} is outside [{self.start}, {self.now}] ({person.kind})")
        self.events.append(ev)
        self.labels[ev["event_id"]] = expected
        self.owner[ev["event_id"]] = person
        person.event_ids.append(ev["event_id"])
        if ev["event_type"] == "click" and not expected["is_internal"] and not expected["is_bot"]:
            person.touch_times.append(ev["occurred_at"])

    def deliver_after(self, late, later):
        """Send `late` right after `later` (a later event of the same device)."""
        assert late["anonymous_id"] == later["anonymous_id"] and late["occurred_at"] < later["occurred_at"]
        self.late_after[late["event_id"]] = later["event_id"]

    # -- time helpers ------------------------------------------------------------------------------

    def window(self, span_ms, margin_ms=HOUR_MS):
        """A start time so that [start, start + span] fits inside the generated period."""
        lo = self.start + margin_ms
        hi = self.now - span_ms - margin_ms
        if hi <= lo:
            raise AssertionError("journey longer than the generated period")
        return self.rng.randint(lo, hi)

    def spread(self, start, span_ms, n, gap_ms=2 * HOUR_MS):
        """n sorted times in [start, start + span], at least gap apart (separate visits)."""
        while True:
            ts = sorted(self.rng.randint(start, start + span_ms) for _ in range(n))
            if all(b - a >= gap_ms for a, b in zip(ts, ts[1:])):
                return ts

    def sources(self, n, distinct=1):
        """n touch sources from the table, at least `distinct` different ones."""
        keys = list(SOURCE_WEIGHTS)
        weights = [SOURCE_WEIGHTS[k] for k in keys]
        while True:
            picked = self.rng.choices(keys, weights, k=n)
            if len(set(picked)) >= min(distinct, n):
                return picked

    def after(self, t, lo_s=30, hi_s=200):
        return t + self.rng.randint(lo_s, hi_s) * SECOND_MS

    # -- the population ----------------------------------------------------------------------------

    # (kind, people per 400, minimum count). Special cases keep a minimum so every case is present
    # even in a small population.
    KINDS = [
        ("nonconverter", 170, 1),
        ("micro", 140, 1),
        ("buyer", 22, 2),
        ("repeat_buyer", 8, 1),
        ("guest_buyer", 8, 1),
        ("multi_device", 12, 2),
        ("multi_device_late_link", 6, 1),
        ("cross_device_backfill", 3, 1),
        ("shared_device", 2, 1),
        ("late_touch", 3, 2),
        ("late_conversion", 3, 1),
        ("late_purchase_order", 2, 1),
        ("late_signin", 2, 2),
        ("lookback_edge", 4, 3),
        ("conversion_only", 2, 1),
        ("bot", 4, 1),
        ("session_edges", 2, 1),
    ]

    def build(self):
        plan = []
        for kind, per400, minimum in self.KINDS:
            plan += [kind] * max(minimum, round(per400 * self.people_target / 400))
        seen = Counter()
        for kind in plan:
            p = Person(self, kind)
            self.persons.append(p)
            # k: the person's index among the people of its kind, which picks the variant.
            getattr(self, "j_" + kind)(p, seen[kind])
            seen[kind] += 1
        self.validate()
        return self

    # -- journeys --------------------------------------------------------------------------------

    def j_nonconverter(self, p, k):
        d = p.device()
        n = self.rng.randint(1, 3)
        start = self.window(20 * DAY_MS)
        for t, src in zip(self.spread(start, 20 * DAY_MS, n), self.sources(n)):
            d.visit(t, src)

    def j_micro(self, p, k):
        """1-6 touches, then a newsletter signup, a download or a webinar; sometimes a second."""
        d = p.device()
        n = self.rng.randint(1, 6)
        span = self.rng.randint(1, 20) * DAY_MS
        start = self.window(span + 10 * DAY_MS)
        times = self.spread(start, span, n)
        last = None
        for t, src in zip(times, self.sources(n)):
            landing, last = d.visit(t, src)
        r = self.rng.random()
        if r < 0.25:
            d.signup(self.after(landing["occurred_at"], 20, 90), "newsletter", on=landing)  # form on the landing
        elif r < 0.55:
            d.signup(self.after(last), "newsletter")
        elif r < 0.9:
            d.download(self.after(last))
        else:
            d.signup(self.after(last), "webinar")
        if self.rng.random() < 0.4:  # a second micro-conversion on a later visit
            _, last = d.visit(times[-1] + self.rng.randint(1, 9) * DAY_MS, self.sources(1)[0])
            d.download(self.after(last))

    def _buyer_path(self, p, d, start, span, n, purchases=1, account=True, bot_hit=False):
        """n touches over span with ≥3 networks, micro-conversions on the way, an account signup
        (unless a guest), then `purchases` purchases each after a few more touches."""
        times = self.spread(start, span, n)
        srcs = self.sources(n, distinct=3)
        # Purchase visits: the last one, and for repeat buyers some earlier ones spread out.
        buy_at = sorted(set([n - 1] + self.rng.sample(range(max(1, n // 2), n - 1), purchases - 1)))
        signup_at = self.rng.randint(1, buy_at[0]) if account else None
        micro_at = self.rng.randint(0, n - 1) if self.rng.random() < 0.8 else None
        user = p.new_user() if account else None
        for k, (t, src) in enumerate(zip(times, srcs)):
            landing, last = d.visit(t, src)
            if k == micro_at and k not in buy_at:
                last = (d.signup(self.after(last), "newsletter") if self.rng.random() < 0.5 else d.download(self.after(last)))["occurred_at"]
            if k == signup_at:
                last = d.signup(self.after(last), "account", user=user, method="email")["occurred_at"]
            if k in buy_at:
                if bot_hit and k == buy_at[-1]:
                    last = d.bot_hit(self.after(last, 60, 300))["occurred_at"]
                last = d.nav(self.after(last), "/cart")["occurred_at"]
                d.purchase(self.after(last))
        return user

    def j_buyer(self, p, k):
        d = p.device()
        span = self.rng.randint(5, 35) * DAY_MS
        self._buyer_path(p, d, self.window(span), span, self.rng.randint(7, 13), bot_hit=(k % 17 == 0))

    def j_repeat_buyer(self, p, k):
        d = p.device()
        span = self.rng.randint(25, 50) * DAY_MS
        self._buyer_path(p, d, self.window(span), span, self.rng.randint(9, 16), purchases=self.rng.randint(2, 3))

    def j_guest_buyer(self, p, k):
        d = p.device()
        span = self.rng.randint(5, 30) * DAY_MS
        self._buyer_path(p, d, self.window(span), span, self.rng.randint(7, 12), account=False)

    def _two_devices(self, p, link_after=False, prelink=None):
        """Device A browses anonymously; device B browses, signs in and purchases.
        link_after=False: A signs in before B's purchase (A's touches count).
        link_after=True: A signs in only after it (A's touches do not count for it), then makes
        a newsletter signup of its own, credited with both devices.
        prelink: "signup" / "purchase": A converts anonymously before its sign-in (that
        conversion joins the user's history at A's link)."""
        rng = self.rng
        a, b = p.device(), p.device()
        user = p.new_user()
        start = self.window(28 * DAY_MS)
        na, nb = rng.randint(3, 6), rng.randint(3, 6)
        ta = self.spread(start, 9 * DAY_MS, na)
        tb = self.spread(start + 11 * DAY_MS, 8 * DAY_MS, nb)
        last_a = None
        for k, (t, src) in enumerate(zip(ta, self.sources(na, 2))):
            _, last_a = a.visit(t, src)
            if k == 0 and prelink == "signup":
                last_a = a.signup(self.after(last_a), "newsletter")["occurred_at"]
            if k == 0 and prelink == "purchase":
                last_a = a.purchase(self.after(last_a))["occurred_at"]
        sign_in_a = lambda t: a.identify(t, user)  # noqa: E731
        if not link_after:
            sign_in_a(self.after(last_a, 60, 600))
        for t, src in zip(tb[:-1], self.sources(nb - 1, 2)):
            b.visit(t, src)
        landing, last = b.visit(tb[-1], self.sources(1)[0])
        last = b.identify(self.after(last), user)["occurred_at"]
        last = b.nav(self.after(last), "/cart")["occurred_at"]
        buy = b.purchase(self.after(last))
        if link_after:
            t = buy["occurred_at"] + rng.randint(2, 4) * DAY_MS
            _, last = a.visit(t, self.sources(1)[0])
            last = sign_in_a(self.after(last))["occurred_at"]
            last = a.nav(self.after(last))["occurred_at"]
            a.signup(self.after(last), "newsletter")
        return a, b, buy

    def j_multi_device(self, p, k):
        self._two_devices(p, prelink=[None, "signup", "purchase"][k % 3])

    def j_multi_device_late_link(self, p, k):
        self._two_devices(p, link_after=True)

    def j_cross_device_backfill(self, p, k):
        """As multi_device, but A's whole stream is sent after B's (as when one device's
        partition is processed ahead of another's): the purchase is first credited without A and
        must end with A's touches once A's sign-in arrives."""
        a, b, buy = self._two_devices(p, prelink="signup")
        first_a = min(self.events_of(a), key=lambda e: e["occurred_at"])["occurred_at"]
        self.send_skew[a.anon] = buy["occurred_at"] - first_a + MINUTE_MS

    def events_of(self, device):
        return [e for e in self.events if e["anonymous_id"] == device.anon]

    def j_shared_device(self, p, k):
        """A family laptop S: browsed anonymously, U signs in and buys, V signs up on it and
        downloads, U signs in on their phone and signs up to the newsletter, then U signs in on
        S again and buys a second time."""
        rng = self.rng
        s, phone = p.device(), p.device()
        u, v = p.new_user(), p.new_user()
        start = self.window(26 * DAY_MS)
        # pre-U touches on S (they belong to U, S's first user)
        for t, src in zip(self.spread(start, 3 * DAY_MS, 2), self.sources(2, 2)):
            s.visit(t, src)
        _, last = s.visit(start + 5 * DAY_MS, self.sources(1)[0])
        last = s.identify(self.after(last), u)["occurred_at"]
        last = s.nav(self.after(last), "/cart")["occurred_at"]
        s.purchase(self.after(last))
        _, last = s.visit(start + 7 * DAY_MS, self.sources(1)[0])  # U's touch on S
        # V uses S: an account signup carrying V switches the device to V.
        _, last = s.visit(start + 10 * DAY_MS, self.sources(1)[0])
        s.signup(self.after(last), "account", user=v)
        _, last = s.visit(start + 12 * DAY_MS, self.sources(1)[0])
        s.download(self.after(last))
        # U's phone: anonymous touches, sign-in, newsletter signup (credited with U's S touches,
        # not V's).
        for t, src in zip(self.spread(start + 13 * DAY_MS, 2 * DAY_MS, 2), self.sources(2)):
            phone.visit(t, src)
        _, last = phone.visit(start + 16 * DAY_MS, self.sources(1)[0])
        last = phone.identify(self.after(last), u)["occurred_at"]
        phone.signup(self.after(last), "newsletter")
        # U back on S.
        _, last = s.visit(start + 20 * DAY_MS, self.sources(1)[0])
        last = s.identify(self.after(last), u)["occurred_at"]
        _, last = s.visit(start + 21 * DAY_MS + rng.randint(1, 5) * HOUR_MS, self.sources(1)[0])
        s.purchase(self.after(last))

    def j_late_touch(self, p, k):
        """The landing touch of the converting visit is delivered right after the conversion
        (up to 7.5 minutes later than it in event time). The first of these people has no other
        touch: its conversion is first credited to synthetic Direct, then to the landing."""
        rng = self.rng
        d = p.device()
        earlier = 0 if k == 0 else rng.randint(1, 4)
        start = self.window(12 * DAY_MS)
        for t, src in zip(self.spread(start, 8 * DAY_MS, earlier) if earlier else [], self.sources(earlier)):
            d.visit(t, src)
        t0 = start + 10 * DAY_MS
        landing = d.land(t0, self.sources(1)[0])
        last = d.nav(t0 + rng.randint(30, 90) * SECOND_MS)["occurred_at"]
        conv_t = t0 + rng.randint(4 * MINUTE_MS, 7 * MINUTE_MS + 30 * SECOND_MS)
        conv = [lambda: d.signup(conv_t, "newsletter"), lambda: d.download(conv_t), lambda: d.purchase(conv_t)][k % 3]()
        self.deliver_after(landing, conv)

    def j_late_conversion(self, p, k):
        """A conversion delivered after the next touch of its device (a new campaign session a
        few minutes later): it must be credited with the touches before it only."""
        rng = self.rng
        d = p.device()
        n = rng.randint(2, 5)
        start = self.window(15 * DAY_MS)
        times = self.spread(start, 10 * DAY_MS, n)
        for t, src in zip(times, self.sources(n, 2)):
            landing, last = d.visit(t, src)
        conv = (d.download if k % 2 else d.purchase)(self.after(last, 30, 90))
        nxt = d.land(conv["occurred_at"] + rng.randint(2, 4) * MINUTE_MS, "facebook_ads")
        later = d.nav(self.after(nxt["occurred_at"], 20, 60))
        self.deliver_after(conv, later)

    def j_late_purchase_order(self, p, k):
        """A signed-in buyer buys twice within minutes; the first purchase is delivered after the
        second, whose purchase_count must still end as the second."""
        d = p.device()
        span = self.rng.randint(6, 20) * DAY_MS
        self._buyer_path(p, d, self.window(span + DAY_MS), span, self.rng.randint(7, 10))
        first = [e for e in self.events_of(d) if e["event_type"] == "purchase"][-1]
        second = d.purchase(first["occurred_at"] + self.rng.randint(3, 6) * MINUTE_MS)
        self.deliver_after(first, second)

    def j_late_signin(self, p, k):
        """A user linked on device A signs in on device B; B's sign-in is delivered after B's
        next events: a download without user_id (made after the sign-in, so it is the user's,
        credited with A's touches too), then a purchase carrying the user (variant 0: the link
        the enricher sees first, which the late sign-in moves earlier) or a plain click."""
        rng = self.rng
        a, b = p.device(), p.device()
        user = p.new_user()
        start = self.window(16 * DAY_MS)
        for t, src in zip(self.spread(start, 5 * DAY_MS, 3), self.sources(3, 2)):
            _, last = a.visit(t, src)
        a.identify(self.after(last), user)
        for t, src in zip(self.spread(start + 7 * DAY_MS, 5 * DAY_MS, 2), self.sources(2)):
            b.visit(t, src)
        landing, last = b.visit(start + 14 * DAY_MS, self.sources(1)[0], pages=1)
        sign_in = b.identify(self.after(last), user)
        b.user = None  # the next event reaches the collector without the user (e.g. server side)
        dl = b.download(self.after(sign_in["occurred_at"], 40, 90))
        if k % 2 == 0:
            b.user = user  # variant 0: the purchase carries the user (B's first link as seen)
            later = b.purchase(self.after(dl["occurred_at"], 60, 120))
        else:
            later = b.nav(self.after(dl["occurred_at"], 20, 60))  # variant 1: no other link
        self.deliver_after(sign_in, later)
        # A visit the next day, sent after the sign-in: the device's latest row is written
        # knowing the link (the lifecycle report resolves a device by its latest row).
        b.user = user
        b.visit(later["occurred_at"] + DAY_MS, self.sources(1)[0])

    def j_lookback_edge(self, p, k):
        """Variant 0: a touch exactly 30 days before the conversion (counts; days_to_conversion
        is 30). Variant 1: a touch 30 days + 1 ms before it (does not count) and others inside.
        Variant 2: only a touch 30 days + 1 ms before: the conversion gets synthetic Direct."""
        rng = self.rng
        d = p.device()
        variant = k % 3
        conv_t = self.window(0, margin_ms=2 * DAY_MS)
        conv_t = max(conv_t, self.start + LOOKBACK_MS + 3 * DAY_MS)
        edge = conv_t - LOOKBACK_MS - (0 if variant == 0 else 1)
        d.land(edge, self.sources(1)[0], exact=True)
        if variant in (0, 1):
            for t, src in zip(self.spread(edge + 2 * DAY_MS, 25 * DAY_MS, 3), self.sources(3, 2)):
                d.visit(t, src)
        last = d.nav(conv_t - rng.randint(60, 120) * SECOND_MS)["occurred_at"]
        assert last < conv_t
        if variant == 0:
            d.download(conv_t, exact=True)
        elif variant == 1:
            d.purchase(conv_t, exact=True)
        else:
            d.signup(conv_t, "newsletter", exact=True)

    def j_conversion_only(self, p, k):
        """A device whose only event is a conversion (an embedded form): synthetic Direct."""
        d = p.device()
        t = self.window(0)
        if k % 2:
            d.signup(t, "newsletter")
        else:
            d.download(t)

    def j_bot(self, p, k):
        d = p.device(ua=GOOGLEBOT)
        start = self.window(3 * DAY_MS)
        for t in self.spread(start, 3 * DAY_MS, self.rng.randint(2, 4), gap_ms=10 * MINUTE_MS):
            d.bot_hit(t)

    def j_session_edges(self, p, k):
        """Session boundaries: a gap of exactly 30 minutes stays in the session, 30 min + 1 ms
        starts a new one; a campaign change starts a new session, a Direct click and a click of
        the same campaign within the timeout do not."""
        d = p.device()
        t = self.window(4 * HOUR_MS)
        landing = d.land(t, "linkedin_post", exact=True)
        d.emit("click", t + 30 * MINUTE_MS, page("/pricing"), SITE + "/", INTERNAL_LABEL, exact=True)  # same session
        d.emit("click", t + 60 * MINUTE_MS + 1, page("/cart"), SITE + "/pricing", INTERNAL_LABEL, exact=True)  # new session
        d.signup(t + 62 * MINUTE_MS, "newsletter")  # session Direct, credited to the linkedin touch
        fb = d.land(t + 67 * MINUTE_MS, "facebook_ads")  # new campaign session
        d.land(t + 70 * MINUTE_MS, "direct")  # a Direct touch: same session
        params = {"utm_source": "facebook", "utm_medium": "cpc", "utm_campaign": self.labels[fb["event_id"]]["campaign"]}
        d.emit("click", t + 72 * MINUTE_MS, page("/products/wool-scarf", params), None, self.labels[fb["event_id"]])  # same campaign
        d.download(t + 74 * MINUTE_MS)
        assert landing["occurred_at"] == t

    # -- checks and output -----------------------------------------------------------------------

    def validate(self):
        ids = [e["event_id"] for e in self.events]
        assert len(ids) == len(set(ids)), "duplicate event ids"
        per_device = Counter((e["anonymous_id"], e["occurred_at"]) for e in self.events)
        assert max(per_device.values()) == 1, "two events of one device at the same millisecond"
        oldest_allowed = self.now - 400 * DAY_MS
        for e in self.events:
            assert oldest_allowed <= e["occurred_at"] <= self.now
        for p in self.persons:
            ts = sorted(p.touch_times)
            j = 0
            for k, t in enumerate(ts):
                while ts[j] < t - LOOKBACK_MS:
                    j += 1
                assert k - j + 1 <= MAX_TOUCHES, f"{p.kind}: more than {MAX_TOUCHES} touches within 30 days"

    def send_order(self):
        """Event ids in the order they are POSTed."""
        by_id = {e["event_id"]: e for e in self.events}

        def position(e):
            skew = self.send_skew.get(e["anonymous_id"], 0)
            target = self.late_after.get(e["event_id"])
            if target is None:
                return (e["occurred_at"] + skew, 0, e["occurred_at"], e["event_id"])
            return (by_id[target]["occurred_at"] + skew, 1, e["occurred_at"], e["event_id"])

        return [e["event_id"] for e in sorted(self.events, key=position)]

    def summary(self):
        kinds = Counter(p.kind for p in self.persons)
        types = Counter(e["event_type"] for e in self.events)
        touches = sum(len(p.touch_times) for p in self.persons)
        return {
            "seed": self.seed,
            "now_ms": self.now,
            "people": len(self.persons),
            "devices": sum(len(p.devices) for p in self.persons),
            "users": sum(len(p.users) for p in self.persons),
            "events": len(self.events),
            "touches": touches,
            "event_types": dict(sorted(types.items())),
            "kinds": dict(sorted(kinds.items())),
            "late_deliveries": len(self.late_after),
            "backfilled_devices": len(self.send_skew),
        }

    def people_json(self):
        return [
            {"kind": p.kind, "anonymous_ids": [d.anon for d in p.devices], "user_ids": p.users, "event_ids": p.event_ids}
            for p in self.persons
        ]


def default_now():
    """The current time rounded down to the hour (epoch ms)."""
    return int(time.time() * 1000) // HOUR_MS * HOUR_MS


def parse_now(text):
    if text is None:
        return default_now()
    if text.isdigit():
        return int(text)
    dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return int(dt.timestamp() * 1000)


def generate(seed=1, people=400, now_ms=None, days=60):
    """Build a population; returns the Generator (events, labels, send_order(), summary())."""
    return Generator(seed, people, now_ms, days).build()


def write_outputs(gen, out_dir):
    os.makedirs(out_dir, exist_ok=True)
    files = {
        "events.json": sorted(gen.events, key=lambda e: (e["occurred_at"], e["event_id"])),
        "send_order.json": gen.send_order(),
        "labels.json": gen.labels,
        "people.json": gen.people_json(),
        "summary.json": gen.summary(),
    }
    for name, data in files.items():
        with open(os.path.join(out_dir, name), "w") as f:
            json.dump(data, f, indent=1, sort_keys=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--people", type=int, default=400)
    ap.add_argument("--now", help="epoch ms or ISO time (default: now, rounded down to the hour)")
    ap.add_argument("--days", type=int, default=60, help=f"length of the generated period (≥ {MIN_DAYS})")
    ap.add_argument("--out", help="directory for events.json, send_order.json, labels.json, people.json, summary.json")
    ap.add_argument("--ndjson", action="store_true", help="print the events in send order as NDJSON on stdout")
    args = ap.parse_args(argv)
    gen = generate(args.seed, args.people, parse_now(args.now), args.days)
    if args.out:
        write_outputs(gen, args.out)
    if args.ndjson:
        by_id = {e["event_id"]: e for e in gen.events}
        for eid in gen.send_order():
            sys.stdout.write(json.dumps(by_id[eid]) + "\n")
    else:
        json.dump(gen.summary(), sys.stdout, indent=1)
        sys.stdout.write("\n")


if __name__ == "__main__":
    main()

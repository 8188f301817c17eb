"""Independent reference implementation of schemas/attribution-rules.md.

Given the events of one site (dicts in the collector's import format), this module recomputes
what the pipeline must write: the classification of every event, sessions per device, touches,
people and links, and for every conversion its person, path length, lifecycle stage and the
credits under the six models; then the source-of-sale and lifecycle reports derived from them.

It is written from the rules text alone, deliberately simple and slow (whole-history scans per
conversion), so that a disagreement with the engine points at one of the two, not at shared code.
Every computation is on event time with ties broken by event id; arrival order is only used to
find events later than the allowed lateness (for which the rules give no exact result).

Standard library only. Exact models (linear, position based, and the single-touch ones) use
fractions.Fraction; time decay uses floats.
"""

from __future__ import annotations

import bisect
import math
from collections import defaultdict
from dataclasses import dataclass, field
from fractions import Fraction
from urllib.parse import parse_qs, urlsplit

MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS

MODELS = ("first_touch", "last_touch", "last_non_direct", "linear", "position_based", "time_decay")
CONVERSION_TYPES = ("signup", "download", "purchase")
EVENT_TYPES = ("click", "signup", "download", "purchase", "identify")
DIRECT = "Direct"


@dataclass(frozen=True)
class Config:
    """The defaults of the rules (top of the rules file)."""

    lookback_ms: int = 30 * DAY_MS
    half_life_ms: int = 7 * DAY_MS
    session_timeout_ms: int = 30 * MINUTE_MS
    allowed_lateness_ms: int = 60 * MINUTE_MS
    max_touches: int = 64
    site_hosts: tuple = ("shop.example",)


# ---------------------------------------------------------------------------------------------
# Classification (rules section 4).
#
# This is a deliberately small classifier: it knows only the hits the journey generator uses
# and refuses anything else, so a generated hit can never be silently classified by a guess.
# Precedence: utm_* > ad click ids > referrer > Direct. (The generator never relies on the
# in-app-browser step: it uses plain browser user agents.)
# ---------------------------------------------------------------------------------------------

SOCIAL_NETWORKS = {"linkedin", "facebook", "instagram", "x", "reddit", "youtube", "tiktok", "pinterest"}

# Referrer host (without a leading "www.") -> (channel, source, medium, social_network).
REFERRERS = {
    "linkedin.com": ("Organic Social", "linkedin", "referral", "linkedin"),
    "l.facebook.com": ("Organic Social", "facebook", "referral", "facebook"),
    "facebook.com": ("Organic Social", "facebook", "referral", "facebook"),
    "l.instagram.com": ("Organic Social", "instagram", "referral", "instagram"),
    "instagram.com": ("Organic Social", "instagram", "referral", "instagram"),
    "t.co": ("Organic Social", "x", "referral", "x"),
    "reddit.com": ("Organic Social", "reddit", "referral", "reddit"),
    "youtube.com": ("Organic Video", "youtube", "referral", "youtube"),
    "google.com": ("Organic Search", "google", "organic", None),
}

# (utm_source, utm_medium) -> channel, for the campaign tags the generator uses.
UTM_CHANNELS = {
    ("linkedin", "social"): "Organic Social",
    ("facebook", "cpc"): "Paid Social",
    ("newsletter", "email"): "Email",
}

CLICK_ID_PARAMS = ("gclid",)
BOT_MARKERS = ("bot", "crawler", "spider")


class UnknownHit(ValueError):
    """A hit outside the reference's vocabulary."""


@dataclass(frozen=True)
class Classification:
    channel: str
    source: str
    medium: str
    campaign: str | None = None
    content: str | None = None
    social_network: str | None = None
    is_internal: bool = False
    is_bot: bool = False

    @property
    def campaign_key(self):
        """What identifies a campaign for sessions (rules section 3)."""
        return (self.source, self.medium, self.campaign)

    def as_dict(self):
        return {
            "channel": self.channel,
            "source": self.source,
            "medium": self.medium,
            "campaign": self.campaign,
            "content": self.content,
            "social_network": self.social_network,
            "is_internal": self.is_internal,
            "is_bot": self.is_bot,
        }


DIRECT_CLASSIFICATION = Classification(DIRECT, "(direct)", "(none)")


def _host_matches(host, site_hosts):
    return any(host == h or host.endswith("." + h) for h in site_hosts)


def classify(page_url, referrer=None, user_agent=None, site_hosts=("shop.example",)):
    """Classify one hit. Raises UnknownHit for a hit the generator would never produce."""
    ua = (user_agent or "").lower()
    is_bot = any(marker in ua for marker in BOT_MARKERS)
    query = parse_qs(urlsplit(page_url).query)

    def first(name):
        values = query.get(name)
        return values[0] if values else None

    if first("utm_source") is not None:
        source = first("utm_source").lower()
        medium = (first("utm_medium") or "").lower()
        channel = UTM_CHANNELS.get((source, medium))
        if channel is None:
            raise UnknownHit(f"utm_source={source} utm_medium={medium} is not in the reference table")
        return Classification(
            channel,
            source,
            medium,
            campaign=first("utm_campaign"),
            content=first("utm_content"),
            social_network=source if source in SOCIAL_NETWORKS else None,
            is_bot=is_bot,
        )
    if any(first(p) is not None for p in CLICK_ID_PARAMS):
        return Classification("Paid Search", "google", "cpc", is_bot=is_bot)
    if referrer:
        host = (urlsplit(referrer).hostname or "").lower()
        if _host_matches(host, site_hosts):
            return Classification(DIRECT, "(direct)", "(none)", is_internal=True, is_bot=is_bot)
        key = host[4:] if host.startswith("www.") else host
        if key not in REFERRERS:
            raise UnknownHit(f"referrer host {host} is not in the reference table")
        channel, source, medium, network = REFERRERS[key]
        return Classification(channel, source, medium, social_network=network, is_bot=is_bot)
    return Classification(DIRECT, "(direct)", "(none)", is_bot=is_bot)


# ---------------------------------------------------------------------------------------------
# Events
# ---------------------------------------------------------------------------------------------


@dataclass
class Event:
    id: str
    type: str
    anonymous_id: str
    user_id: str | None
    time: int
    page_url: str
    referrer: str | None
    user_agent: str | None
    revenue: int
    raw: dict
    cls: Classification = None
    is_touch: bool = False
    session: int = -1  # index into the device's session list

    @property
    def key(self):
        """The total order of the rules: event time, then event id as a string."""
        return (self.time, self.id)

    @property
    def is_conversion(self):
        return self.type in CONVERSION_TYPES

    @classmethod
    def from_json(cls, raw):
        etype = raw["event_type"]
        if etype not in EVENT_TYPES:
            raise ValueError(f"event {raw.get('event_id')}: unknown event_type {etype}")
        t = raw["occurred_at"]
        if not isinstance(t, int):
            raise ValueError(f"event {raw['event_id']}: occurred_at must be epoch ms (int)")
        revenue = 0
        if etype == "purchase":
            for f in ("order_id", "revenue", "currency"):
                if raw.get(f) in (None, ""):
                    raise ValueError(f"purchase {raw['event_id']} lacks {f}")
            revenue = int(raw["revenue"])
        return cls(
            id=str(raw["event_id"]).lower(),
            type=etype,
            anonymous_id=raw["anonymous_id"],
            user_id=raw.get("user_id") or None,
            time=t,
            page_url=raw["page_url"],
            referrer=raw.get("referrer") or None,
            user_agent=raw.get("user_agent"),
            revenue=revenue,
            raw=raw,
        )


# ---------------------------------------------------------------------------------------------
# People (rules section 5)
# ---------------------------------------------------------------------------------------------


@dataclass
class DeviceIdentity:
    """Who a device belongs to over time.

    segments: (start key, user) in order; the device belongs to `user` from that event on,
    until the next segment. Before the first segment the device is its own person.
    link_key[user]: the key of the first event of the device that carried that user (its link).
    """

    anonymous_id: str
    segments: list = field(default_factory=list)
    link_key: dict = field(default_factory=dict)

    @property
    def first_user(self):
        return self.segments[0][1] if self.segments else None

    @property
    def first_link_key(self):
        return self.segments[0][0] if self.segments else None

    def owner_at(self, key):
        """The user the device is linked to at `key`, or None before its first link."""
        starts = [s[0] for s in self.segments]
        i = bisect.bisect_right(starts, key) - 1
        return self.segments[i][1] if i >= 0 else None

    def touch_owner(self, key):
        """The user a touch at `key` belongs to once the device has linked (section 5: touches
        before the first link belong to the first user). None if the device never links."""
        owner = self.owner_at(key)
        return owner if owner is not None else self.first_user


def _device_identity(anonymous_id, events):
    ident = DeviceIdentity(anonymous_id)
    current = None
    for e in events:
        if e.user_id is None:
            continue
        ident.link_key.setdefault(e.user_id, e.key)
        if e.user_id != current:
            ident.segments.append((e.key, e.user_id))
            current = e.user_id
    return ident


# Internally a person is ("user", user_id) or ("device", anonymous_id); identity_id is the
# second element either way.
def _user(u):
    return ("user", u)


def _device(a):
    return ("device", a)


# ---------------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------------


@dataclass
class Credit:
    touch_id: str
    touch_time: int
    cls: Classification
    weight: object  # Fraction for the exact models, float for time decay
    revenue_credit: object

    @property
    def exact(self):
        return isinstance(self.weight, Fraction)


@dataclass
class Conversion:
    event: Event
    person: tuple
    touches: list  # credited touches (Event), ordered by key; empty means synthetic Direct
    credits: dict  # model -> list[Credit]
    purchase_count: int
    lifecycle_stage: str
    capped: bool = False

    @property
    def identity_id(self):
        return self.person[1]

    @property
    def touches_to_conversion(self):
        return len(self.touches)

    @property
    def days_to_conversion(self):
        if not self.touches:
            return 0.0
        return (self.event.time - self.touches[0].time) / DAY_MS


@dataclass
class Result:
    config: Config
    events: dict  # id -> Event
    devices: dict  # anonymous_id -> [Event] in key order
    sessions: dict  # anonymous_id -> [[event ids]]
    session_first: dict  # (anonymous_id, session index) -> first Event of the session
    identities: dict  # anonymous_id -> DeviceIdentity
    conversions: dict  # id -> Conversion
    late_event_ids: list
    out_of_order_ids: list  # sent after a later event of their device (late, on time or not)
    _cache: dict = field(default_factory=dict, repr=False)  # reports, computed once

    # -- per event -----------------------------------------------------------------------

    def session_scope(self, event_id):
        """Session-scoped classification of an event (section 4)."""
        e = self.events[event_id]
        first = self.session_first[(e.anonymous_id, e.session)]
        return first.cls if first.is_touch else DIRECT_CLASSIFICATION

    def session_id_set(self, event_id):
        e = self.events[event_id]
        return frozenset(self.sessions[e.anonymous_id][e.session])

    # -- reports ---------------------------------------------------------------------------

    def source_of_sale(self, model):
        """Rows keyed by (channel, source, social_network or ''):
        sales = Σ weights of purchases, micro_conversions = Σ weights of signups and downloads,
        revenue = Σ revenue_credit (exact where the weights are; revenue_minor rounds it)."""
        if ("sos", model) in self._cache:
            return self._cache[("sos", model)]
        rows = self._cache[("sos", model)] = {}
        for conv in self.conversions.values():
            for c in conv.credits[model]:
                k = (c.cls.channel, c.cls.source, c.cls.social_network or "")
                row = rows.setdefault(k, {"sales": Fraction(0), "micro_conversions": Fraction(0), "revenue": Fraction(0)})
                w = Fraction(c.weight) if not isinstance(c.weight, Fraction) else c.weight
                rc = Fraction(c.revenue_credit) if not isinstance(c.revenue_credit, Fraction) else c.revenue_credit
                if conv.event.type == "purchase":
                    row["sales"] += w
                else:
                    row["micro_conversions"] += w
                row["revenue"] += rc
        return rows

    def person_of_touch_final(self, e):
        """The person a touch belongs to once everything is known (section 5)."""
        owner = self.identities[e.anonymous_id].touch_owner(e.key)
        return _user(owner) if owner is not None else _device(e.anonymous_id)

    def person_of_conversion_final(self, conv):
        """The person whose history a conversion ends up in: its own person, or, for a device's
        conversion before its first link, the first user it links to (section 7)."""
        if conv.person[0] == "device":
            first = self.identities[conv.event.anonymous_id].first_user
            if first is not None:
                return _user(first)
        return conv.person

    def lifecycle(self, definition="rules"):
        """Lifecycle counts per first-touch network.

        definition="rules": people as in section 5 (a touch or conversion belongs to the person
        the rules give it, shared devices split at the switch).
        definition="latest_identity": every event of a device goes to the identity of the
        device's latest event, which is how the lifecycle report documents its identities.
        Visitors are people with at least one touch; customers, clients and repeat clients are
        the visitors with ≥1 conversion, ≥1 purchase, ≥2 purchases.
        Returns {network: {"visitors", "customers", "clients", "repeat_clients"}}.
        """
        if ("lifecycle", definition) in self._cache:
            return self._cache[("lifecycle", definition)]
        if definition == "rules":
            touch_person = self.person_of_touch_final
            conv_person = self.person_of_conversion_final
        elif definition == "latest_identity":
            latest = {}
            for anon, evs in self.devices.items():
                last = evs[-1]
                owner = self.identities[anon].owner_at(last.key)
                latest[anon] = _user(owner) if owner is not None else _device(anon)

            def touch_person(e):
                return latest[e.anonymous_id]

            def conv_person(conv):
                return latest[conv.event.anonymous_id]
        else:
            raise ValueError(definition)

        first_touch = {}
        for e in self.events.values():
            if e.is_touch:
                p = touch_person(e)
                if p not in first_touch or e.key < first_touch[p].key:
                    first_touch[p] = e
        conversions = defaultdict(int)
        purchases = defaultdict(int)
        for conv in self.conversions.values():
            p = conv_person(conv)
            conversions[p] += 1
            if conv.event.type == "purchase":
                purchases[p] += 1
        out = {}
        for p, t in first_touch.items():
            network = t.cls.social_network or t.cls.channel
            row = out.setdefault(network, {"visitors": 0, "customers": 0, "clients": 0, "repeat_clients": 0})
            row["visitors"] += 1
            row["customers"] += conversions[p] > 0
            row["clients"] += purchases[p] > 0
            row["repeat_clients"] += purchases[p] > 1
        self._cache[("lifecycle", definition)] = out
        return out


# ---------------------------------------------------------------------------------------------
# Crediting (section 6)
# ---------------------------------------------------------------------------------------------


def credit(touches, conv_time, revenue, cfg, conversion_id):
    """Weights under every model for touches (ordered by key). With no touch, a synthetic
    Direct touch whose id is the conversion's and whose time is the conversion's."""
    if not touches:
        synthetic = Credit(conversion_id, conv_time, DIRECT_CLASSIFICATION, Fraction(1), Fraction(revenue))
        return {m: [synthetic] for m in MODELS}
    n = len(touches)

    def single(i):
        t = touches[i]
        return [Credit(t.id, t.time, t.cls, Fraction(1), Fraction(revenue))]

    out = {"first_touch": single(0), "last_touch": single(n - 1)}
    non_direct = [i for i, t in enumerate(touches) if t.cls.channel != DIRECT]
    out["last_non_direct"] = single(non_direct[-1] if non_direct else n - 1)

    def spread(weights):
        return [Credit(t.id, t.time, t.cls, w, w * revenue) for t, w in zip(touches, weights)]

    out["linear"] = spread([Fraction(1, n)] * n)
    if n == 1:
        pb = [Fraction(1)]
    elif n == 2:
        pb = [Fraction(1, 2)] * 2
    else:
        middle = Fraction(1, 5) / (n - 2)
        pb = [Fraction(2, 5)] + [middle] * (n - 2) + [Fraction(2, 5)]
    out["position_based"] = spread(pb)
    raw = [math.pow(2.0, -(conv_time - t.time) / cfg.half_life_ms) for t in touches]
    total = math.fsum(raw)
    out["time_decay"] = spread([r / total for r in raw])
    return out


# ---------------------------------------------------------------------------------------------
# The whole computation
# ---------------------------------------------------------------------------------------------


def _sessions(events, cfg):
    """Split one device's events (in key order) into sessions (section 3). Sets e.session and
    returns the list of sessions as lists of events."""
    sessions = []
    campaign = None  # campaign key of the current session, None when it has none
    last_time = None
    for e in events:
        opens_campaign = e.is_touch and e.cls.channel != DIRECT
        new = (
            last_time is None
            or e.time - last_time > cfg.session_timeout_ms
            or (opens_campaign and e.cls.campaign_key != campaign)
        )
        if new:
            sessions.append([])
            campaign = e.cls.campaign_key if opens_campaign else None
        sessions[-1].append(e)
        e.session = len(sessions) - 1
        last_time = e.time
    return sessions


def late_events(events_by_id, send_order, cfg):
    """Events later than the allowed lateness, and events that arrived after a later event of
    their device (section 8), given the order they are sent in."""
    newest = {}
    late, out_of_order = [], []
    for eid in send_order:
        e = events_by_id[str(eid).lower()]
        seen = newest.get(e.anonymous_id)
        if seen is not None and e.time < seen:
            out_of_order.append(e.id)
            if seen - e.time > cfg.allowed_lateness_ms:
                late.append(e.id)
        newest[e.anonymous_id] = e.time if seen is None else max(seen, e.time)
    return late, out_of_order


def attribute(raw_events, send_order=None, cfg=None):
    """Compute everything the rules define from the events (dicts). send_order (event ids) is
    only used to find late events."""
    cfg = cfg or Config()
    events = {}
    for raw in raw_events:
        e = Event.from_json(raw)
        if e.id in events:
            raise ValueError(f"duplicate event_id {e.id}")
        e.cls = classify(e.page_url, e.referrer, e.user_agent, cfg.site_hosts)
        e.is_touch = e.type == "click" and not e.cls.is_internal and not e.cls.is_bot
        events[e.id] = e

    devices = defaultdict(list)
    for e in events.values():
        devices[e.anonymous_id].append(e)
    for evs in devices.values():
        evs.sort(key=lambda e: e.key)  # ties in time (the generator makes none) go by event id

    sessions, session_first = {}, {}
    for anon, evs in devices.items():
        split = _sessions(evs, cfg)
        sessions[anon] = [[e.id for e in s] for s in split]
        for i, s in enumerate(split):
            session_first[(anon, i)] = s[0]

    identities = {anon: _device_identity(anon, evs) for anon, evs in devices.items()}
    devices_of_user = defaultdict(list)
    for anon, ident in identities.items():
        for u in ident.link_key:
            devices_of_user[u].append(anon)
    touches_of_device = {anon: [e for e in evs if e.is_touch] for anon, evs in devices.items()}

    def person_at(e):
        owner = identities[e.anonymous_id].owner_at(e.key)
        return _user(owner) if owner is not None else _device(e.anonymous_id)

    conv_events = sorted((e for e in events.values() if e.is_conversion), key=lambda e: e.key)
    person_of = {e.id: person_at(e) for e in conv_events}

    # Lifecycle histories (section 7): a person's own conversions, and for a user the conversions
    # its devices made before their first link, which join the user at that link's time.
    own_conversions = defaultdict(list)
    joining = defaultdict(list)  # user -> [(join time, conversion)]
    for c in conv_events:
        p = person_of[c.id]
        own_conversions[p].append(c)
        first = identities[c.anonymous_id].first_user
        if p[0] == "device" and first is not None:
            joining[first].append((identities[c.anonymous_id].first_link_key[0], c))

    conversions = {}
    for c in conv_events:
        person = person_of[c.id]
        T = c.time
        lo = T - cfg.lookback_ms
        if person[0] == "device":
            # A device that is its own person: only its own touches (all before its first link).
            candidates = [t for t in touches_of_device[c.anonymous_id] if lo <= t.time <= T]
        else:
            user = person[1]
            candidates = []
            for anon in devices_of_user[user]:
                ident = identities[anon]
                if ident.link_key[user][0] > T:
                    continue  # linked to the user after the conversion: contributes nothing
                for t in touches_of_device[anon]:
                    if lo <= t.time <= T and ident.touch_owner(t.key) == user:
                        candidates.append(t)
        touches = sorted({t.id: t for t in candidates}.values(), key=lambda t: t.key)
        capped = len(touches) > cfg.max_touches
        if capped:
            touches = touches[-cfg.max_touches:]

        # Lifecycle: the person's conversions up to this one, plus those that joined by now.
        history = [o for o in own_conversions[person] if o.key <= c.key]
        if person[0] == "user":
            history += [o for joined_at, o in joining[person[1]] if joined_at <= T]
        purchases = sum(1 for h in history if h.type == "purchase")
        conversions[c.id] = Conversion(
            event=c,
            person=person,
            touches=touches,
            credits=credit(touches, T, c.revenue, cfg, c.id),
            purchase_count=purchases,
            lifecycle_stage="client" if purchases else "customer",
            capped=capped,
        )

    late, out_of_order = ([], [])
    if send_order is not None:
        late, out_of_order = late_events(events, send_order, cfg)

    return Result(
        config=cfg,
        events=events,
        devices=dict(devices),
        sessions=sessions,
        session_first=session_first,
        identities=identities,
        conversions=conversions,
        late_event_ids=late,
        out_of_order_ids=out_of_order,
    )


# ---------------------------------------------------------------------------------------------
# JSON form of a result (for --out and debugging)
# ---------------------------------------------------------------------------------------------


def _num(x):
    return float(x)


def result_to_json(res):
    conv = {}
    for cid, c in sorted(res.conversions.items()):
        scope = res.session_scope(cid)
        conv[cid] = {
            "event_type": c.event.type,
            "time_ms": c.event.time,
            "anonymous_id": c.event.anonymous_id,
            "identity_id": c.identity_id,
            "touches_to_conversion": c.touches_to_conversion,
            "days_to_conversion": c.days_to_conversion,
            "purchase_count": c.purchase_count,
            "lifecycle_stage": c.lifecycle_stage,
            "revenue": c.event.revenue,
            "session_source": scope.source,
            "session_channel": scope.channel,
            "credits": {
                m: [
                    {
                        "touch_event_id": cr.touch_id,
                        "weight": _num(cr.weight),
                        "weight_exact": str(cr.weight) if cr.exact else None,
                        "revenue_credit": _num(cr.revenue_credit),
                        "channel": cr.cls.channel,
                        "source": cr.cls.source,
                        "social_network": cr.cls.social_network,
                    }
                    for cr in c.credits[m]
                ]
                for m in MODELS
            },
        }
    events = {}
    for eid, e in sorted(res.events.items()):
        d = e.cls.as_dict()
        d.update(
            event_type=e.type,
            anonymous_id=e.anonymous_id,
            time_ms=e.time,
            is_touch=e.is_touch,
            session=f"{e.anonymous_id}:{e.session}",
        )
        events[eid] = d
    sos = {}
    for m in MODELS:
        sos[m] = [
            {
                "channel": k[0],
                "source": k[1],
                "social_network": k[2],
                "sales": float(v["sales"]),
                "micro_conversions": float(v["micro_conversions"]),
                "revenue_minor": float(v["revenue"]),
            }
            for k, v in sorted(res.source_of_sale(m).items())
        ]
    people = defaultdict(lambda: {"devices": set(), "touches": 0, "conversions": []})
    for e in res.events.values():
        if e.is_touch:
            p = res.person_of_touch_final(e)
            people[p[1]]["devices"].add(e.anonymous_id)
            people[p[1]]["touches"] += 1
    for cid, c in res.conversions.items():
        p = res.person_of_conversion_final(c)
        people[p[1]]["devices"].add(c.event.anonymous_id)
        people[p[1]]["conversions"].append(cid)
    devices = {
        anon: {
            "segments": [{"from_ms": k[0], "from_event_id": k[1], "user_id": u} for k, u in ident.segments],
            "links": {u: k[0] for u, k in ident.link_key.items()},
        }
        for anon, ident in sorted(res.identities.items())
    }
    return {
        "devices": devices,
        "people": {p: {"devices": sorted(v["devices"]), "touches": v["touches"], "conversions": sorted(v["conversions"])}
                   for p, v in sorted(people.items())},
        "late_event_ids": res.late_event_ids,
        "out_of_order_event_ids": res.out_of_order_ids,
        "events": events,
        "sessions": res.sessions,
        "conversions": conv,
        "source_of_sale": sos,
        "lifecycle": {d: res.lifecycle(d) for d in ("rules", "latest_identity")},
    }

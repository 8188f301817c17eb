-- Sites, revisions, and event- vs session-scoped sources (schemas/attribution-rules.md).
--
-- What changes and why the tables are rebuilt rather than altered:
-- - every row gets a `site_id`, which leads the sorting key (reports read one site);
-- - a conversion can now be credited again (a late touch, a device linked late): it is written
--   again with a higher `revision`, so `revision` becomes the ReplacingMergeTree version (it
--   was `ingested_at`), and a credit that is no longer given is written once more with
--   `retracted = 1` and weight 0. `FINAL` then reads each conversion's latest credit set;
-- - `channel`, `source` … on `events` become the event's own hit (an internal click is Direct);
--   the new `session_*` columns carry the source of the touch that opened its session.
-- ClickHouse cannot change a sorting key's leading column or a table's version column in place,
-- so the tables as created by 0001 and 0002 are renamed to `events_0002` and
-- `conversion_credits_0002`, created anew under their names, and their rows copied across. An
-- old table that held rows is kept (drop it once you have checked the copy); an empty one (a
-- new database) is dropped. Rows written before this migration
-- carry site `default`, revision 0, and their old source columns in both the event- and the
-- session-scoped columns (before, an internal click or a conversion carried the visitor's last
-- touch, which is what the session columns now mean).
--
-- Running twice, or from two migrators at once (the `@` guards are checked by the runner just
-- before each statement): a rename is skipped once the new table stands in the old one's place,
-- and a rename onto an existing table is taken as done; CREATE is IF NOT EXISTS; copying a row
-- twice writes an identical row with the same key and version, which reads and merges as one.
-- @unless-column-exists events.revision
RENAME TABLE events TO events_0002;

-- @unless-column-exists conversion_credits.revision
RENAME TABLE conversion_credits TO conversion_credits_0002;

-- One row per event (rows.rs: EventRow); a conversion re-credited is written again with a
-- higher revision, and FINAL / argMax(…, revision) read its latest row.
CREATE TABLE IF NOT EXISTS events
(
    event_id UUID COMMENT 'client UUID, the idempotency key',
    event_type Enum8('click' = 1, 'signup' = 2, 'download' = 3, 'purchase' = 4, 'identify' = 5, 'custom' = 6),
    site_id String COMMENT 'the site (tenant); every report reads one',
    event_name Nullable(String) COMMENT 'the client''s own name for the event (Segment track name), if any',
    event_time DateTime('UTC') COMMENT 'what attribution orders by (seconds): skew-corrected on live routes, occurred_at for imports',
    event_time_ms Int64 COMMENT 'event_time in epoch milliseconds',
    occurred_at_ms Int64 COMMENT 'client clock, epoch ms, as sent',
    sent_at_ms Nullable(Int64) COMMENT 'client clock when the batch left the browser, epoch ms',
    clock_correction_ms Int64 COMMENT 'event_time - occurred_at: the skew correction applied (0 for imports)',
    received_at DateTime('UTC') COMMENT 'collector clock (seconds)',
    received_at_ms Int64,
    received_via LowCardinality(String) COMMENT 'events, pixel, segment, import or replay',
    ingested_at DateTime('UTC') COMMENT 'sink clock when the row was written',
    ingested_at_ms Int64,
    revision UInt32 COMMENT '0 when first attributed, higher each time a conversion is re-credited; the replacing version',
    is_late UInt8 COMMENT 'arrived later than the allowed lateness: attributed best effort',
    anonymous_id String COMMENT 'first-party visitor (device) id',
    user_id Nullable(String),
    identity_id String COMMENT 'the person the event belongs to: the user_id its device was linked to at the event, else anonymous_id',
    session_id String COMMENT 'anonymous_id:n, per device',
    page_url String COMMENT 'empty for server-side events without a page',
    referrer Nullable(String),
    user_agent Nullable(String),
    ip Nullable(String) COMMENT 'truncated: IPv4 /24, IPv6 /48',
    property_keys Array(String) COMMENT 'properties: keys, sorted',
    property_values Array(String) COMMENT 'properties: values, in the order of property_keys',
    target_url Nullable(String) COMMENT 'click',
    element Nullable(String) COMMENT 'click',
    signup_kind LowCardinality(Nullable(String)) COMMENT 'signup: account, newsletter, webinar …',
    method LowCardinality(Nullable(String)) COMMENT 'signup',
    asset_id Nullable(String) COMMENT 'download',
    asset_kind LowCardinality(Nullable(String)) COMMENT 'download: ebook, checklist …',
    order_id Nullable(String) COMMENT 'purchase',
    revenue Nullable(Int64) COMMENT 'purchase, minor units (cents)',
    currency LowCardinality(Nullable(String)) COMMENT 'purchase, ISO 4217',
    channel LowCardinality(String) COMMENT 'event-scoped: this hit''s GA4 default channel group, or AI Assistant',
    source LowCardinality(String) COMMENT 'event-scoped: canonical source id, (direct), or registrable domain',
    medium LowCardinality(String) COMMENT 'event-scoped',
    campaign Nullable(String) COMMENT 'event-scoped utm_campaign',
    content Nullable(String) COMMENT 'event-scoped utm_content: the post',
    term Nullable(String) COMMENT 'event-scoped utm_term',
    campaign_id Nullable(String) COMMENT 'event-scoped utm_id',
    click_id_kind LowCardinality(Nullable(String)) COMMENT 'gclid, fbclid, ttclid …',
    social_network LowCardinality(Nullable(String)) COMMENT 'event-scoped: the source id when it is a social network',
    is_internal UInt8 COMMENT 'navigation within the site',
    is_bot UInt8,
    is_spam_referrer UInt8,
    opens_touch UInt8 COMMENT 'a click that is a touch: not internal navigation, not a bot',
    session_channel LowCardinality(String) COMMENT 'session-scoped: channel of the touch that opened the session (Direct if none)',
    session_source LowCardinality(String) COMMENT 'session-scoped source',
    session_medium LowCardinality(String) COMMENT 'session-scoped medium',
    session_campaign Nullable(String) COMMENT 'session-scoped utm_campaign',
    session_content Nullable(String) COMMENT 'session-scoped utm_content: the post that brought the session',
    session_social_network LowCardinality(Nullable(String)) COMMENT 'session-scoped social network',
    lifecycle_stage Enum8('visitor' = 1, 'customer' = 2, 'client' = 3) COMMENT 'of the person, after this event',
    purchase_count Int32 COMMENT 'purchases of the person so far, this one included',
    touches_to_conversion Nullable(Int32) COMMENT 'conversions only',
    days_to_conversion Nullable(Float64) COMMENT 'conversions only: first credited touch to conversion'
)
ENGINE = ReplacingMergeTree(revision)
PARTITION BY toYYYYMM(event_time)
ORDER BY (site_id, event_type, toDate(event_time), event_id);

-- One row per conversion × model × credited touch (rows.rs: CreditRow). A re-credit writes the
-- conversion's whole new credit set with a higher revision, plus a retracted row (weight 0) for
-- each touch the previous revision credited and this one does not: FINAL keeps the latest row
-- per key, so sums of weight and revenue_credit count the latest credit set only.
CREATE TABLE IF NOT EXISTS conversion_credits
(
    conversion_event_id UUID COMMENT 'events.event_id of the signup, download or purchase',
    conversion_type Enum8('click' = 1, 'signup' = 2, 'download' = 3, 'purchase' = 4, 'identify' = 5, 'custom' = 6),
    site_id String,
    conversion_time DateTime('UTC'),
    conversion_time_ms Int64,
    anonymous_id String COMMENT 'the device the conversion happened on',
    identity_id String COMMENT 'the person the conversion belongs to',
    model Enum8('first_touch' = 1, 'last_touch' = 2, 'last_non_direct' = 3, 'linear' = 4, 'position_based' = 5, 'time_decay' = 6),
    touch_event_id UUID COMMENT 'events.event_id of the click that carried the touch',
    touch_time DateTime('UTC'),
    touch_time_ms Int64,
    channel LowCardinality(String),
    source LowCardinality(String),
    social_network LowCardinality(Nullable(String)),
    campaign Nullable(String),
    content Nullable(String) COMMENT 'utm_content: the post',
    weight Float64 COMMENT 'share of the conversion; sums to 1 per conversion and model over its latest revision',
    revenue Int64 COMMENT 'the conversion revenue, minor units (0 for micro-conversions)',
    revenue_credit Float64 COMMENT 'weight × revenue, minor units',
    currency LowCardinality(Nullable(String)),
    touches_to_conversion Int32,
    days_to_conversion Float64,
    revision UInt32 COMMENT 'the conversion''s revision this row belongs to; the replacing version',
    retracted UInt8 COMMENT '1: credited by an earlier revision, no longer (weight and revenue_credit 0)',
    ingested_at DateTime('UTC') COMMENT 'sink clock',
    ingested_at_ms Int64
)
ENGINE = ReplacingMergeTree(revision)
PARTITION BY toYYYYMM(conversion_time)
ORDER BY (site_id, model, toDate(conversion_time), conversion_event_id, touch_event_id);

-- @if-table-exists events_0002
INSERT INTO events
(
    event_id, event_type, site_id, event_name, event_time, event_time_ms, occurred_at_ms, sent_at_ms,
    clock_correction_ms, received_at, received_at_ms, received_via, ingested_at, ingested_at_ms,
    revision, is_late, anonymous_id, user_id, identity_id, session_id, page_url, referrer, user_agent,
    ip, property_keys, property_values, target_url, element, signup_kind, method, asset_id, asset_kind,
    order_id, revenue, currency, channel, source, medium, campaign, content, term, campaign_id,
    click_id_kind, social_network, is_internal, is_bot, is_spam_referrer, opens_touch,
    session_channel, session_source, session_medium, session_campaign, session_content,
    session_social_network, lifecycle_stage, purchase_count, touches_to_conversion, days_to_conversion
)
SELECT
    event_id, toString(event_type), 'default', NULL, event_time, event_time_ms, occurred_at_ms, sent_at_ms,
    event_time_ms - occurred_at_ms, received_at, received_at_ms, 'events', ingested_at, ingested_at_ms,
    0, 0, anonymous_id, user_id, identity_id, session_id, page_url, referrer, user_agent,
    ip, property_keys, property_values, target_url, element, signup_kind, method, asset_id, asset_kind,
    order_id, revenue, currency, channel, source, medium, campaign, content, term, campaign_id,
    click_id_kind, social_network, is_internal, is_bot, is_spam_referrer, opens_touch,
    channel, source, medium, campaign, content,
    social_network, lifecycle_stage, purchase_count, touches_to_conversion, days_to_conversion
FROM events_0002;

-- @if-table-exists conversion_credits_0002
-- @if-table-exists events_0002
INSERT INTO conversion_credits
(
    conversion_event_id, conversion_type, site_id, conversion_time, conversion_time_ms, anonymous_id,
    identity_id, model, touch_event_id, touch_time, touch_time_ms, channel, source, social_network,
    campaign, content, weight, revenue, revenue_credit, currency, touches_to_conversion,
    days_to_conversion, revision, retracted, ingested_at, ingested_at_ms
)
SELECT
    conversion_event_id, toString(conversion_type), 'default', conversion_time, conversion_time_ms,
    if(device = '', identity_id, device), identity_id, model, touch_event_id, touch_time, touch_time_ms,
    channel, source, social_network, campaign, content, weight, revenue, revenue_credit, currency,
    touches_to_conversion, days_to_conversion, 0, 0, ingested_at, ingested_at_ms
FROM conversion_credits_0002 AS credits
ANY LEFT JOIN
(
    SELECT event_id AS conversion_event_id, any(anonymous_id) AS device
    FROM events_0002
    GROUP BY event_id
) AS devices USING conversion_event_id;

-- @if-table-empty events_0002
DROP TABLE IF EXISTS events_0002;

-- @if-table-empty conversion_credits_0002
DROP TABLE IF EXISTS conversion_credits_0002

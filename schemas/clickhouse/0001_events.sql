-- One row per event, as the sink writes it (crates/touchstream-warehouse/src/rows.rs: EventRow).
--
-- Replays (a retried insert, a re-consumed Kafka batch) write the same event_id again. The
-- sorting key is also the de-duplication key of a ReplacingMergeTree, so it holds event_id and
-- before it only columns that are the same in every copy of one event: event_type and the day
-- of event_time come from the raw event, which a replay never changes (the enrichment columns,
-- identity_id, channel …, could change if the enricher re-attributes, so they stay out of the
-- key). Copies collapse at merge time onto the latest ingested_at; until then the report
-- queries read `FINAL` or count distinct event ids. Reports mostly filter one event type over
-- a time range, which is what the key's order serves.
CREATE TABLE IF NOT EXISTS events
(
    event_id UUID COMMENT 'client UUID, the idempotency key',
    event_type Enum8('click' = 1, 'signup' = 2, 'download' = 3, 'purchase' = 4),
    event_time DateTime('UTC') COMMENT 'occurred_at corrected for client clock skew (seconds)',
    event_time_ms Int64 COMMENT 'event_time in epoch milliseconds',
    occurred_at_ms Int64 COMMENT 'client clock, epoch ms, as sent',
    sent_at_ms Nullable(Int64) COMMENT 'client clock when the batch left the browser, epoch ms',
    received_at DateTime('UTC') COMMENT 'collector clock (seconds)',
    received_at_ms Int64,
    ingested_at DateTime('UTC') COMMENT 'sink clock when the row was written; the replacing version',
    ingested_at_ms Int64,
    anonymous_id String COMMENT 'first-party visitor id',
    user_id Nullable(String),
    identity_id String COMMENT 'user_id once known, else anonymous_id (at the time of the event)',
    session_id String,
    page_url String,
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
    channel LowCardinality(String) COMMENT 'GA4 default channel group, or AI Assistant',
    source LowCardinality(String) COMMENT 'canonical source id, (direct), or registrable domain',
    medium LowCardinality(String),
    campaign Nullable(String) COMMENT 'utm_campaign',
    content Nullable(String) COMMENT 'utm_content: the post',
    term Nullable(String) COMMENT 'utm_term',
    campaign_id Nullable(String) COMMENT 'utm_id',
    click_id_kind LowCardinality(Nullable(String)) COMMENT 'gclid, fbclid, ttclid …',
    social_network LowCardinality(Nullable(String)) COMMENT 'the source id when it is a social network',
    is_internal UInt8 COMMENT 'navigation within the site',
    is_bot UInt8,
    is_spam_referrer UInt8,
    opens_touch UInt8 COMMENT 'a click that is not internal navigation',
    lifecycle_stage Enum8('visitor' = 1, 'customer' = 2, 'client' = 3) COMMENT 'of the identity, after this event',
    purchase_count Int32 COMMENT 'purchases of the identity so far, this one included',
    touches_to_conversion Nullable(Int32) COMMENT 'conversions only',
    days_to_conversion Nullable(Float64) COMMENT 'conversions only: first credited touch to conversion'
)
ENGINE = ReplacingMergeTree(ingested_at)
PARTITION BY toYYYYMM(event_time)
ORDER BY (event_type, toDate(event_time), event_id);

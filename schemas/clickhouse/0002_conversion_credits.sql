-- One row per conversion × attribution model × credited touch (rows.rs: CreditRow).
--
-- A replayed conversion writes the same rows again; the key (model, day of the conversion,
-- conversion_event_id, touch_event_id) is identical in every copy and unique per credit, so
-- copies collapse at merge time and read once through `FINAL` before that. model leads the key
-- because every report reads one model.
CREATE TABLE IF NOT EXISTS conversion_credits
(
    conversion_event_id UUID COMMENT 'events.event_id of the signup, download or purchase',
    conversion_type Enum8('click' = 1, 'signup' = 2, 'download' = 3, 'purchase' = 4),
    conversion_time DateTime('UTC'),
    conversion_time_ms Int64,
    identity_id String,
    model Enum8('first_touch' = 1, 'last_touch' = 2, 'last_non_direct' = 3, 'linear' = 4, 'position_based' = 5, 'time_decay' = 6),
    touch_event_id UUID COMMENT 'events.event_id of the click that carried the touch',
    touch_time DateTime('UTC'),
    touch_time_ms Int64,
    channel LowCardinality(String),
    source LowCardinality(String),
    social_network LowCardinality(Nullable(String)),
    campaign Nullable(String),
    content Nullable(String) COMMENT 'utm_content: the post',
    weight Float64 COMMENT 'share of the conversion; sums to 1 per conversion and model',
    revenue Int64 COMMENT 'the conversion revenue, minor units (0 for micro-conversions)',
    revenue_credit Float64 COMMENT 'weight × revenue, minor units',
    currency LowCardinality(Nullable(String)),
    touches_to_conversion Int32,
    days_to_conversion Float64,
    ingested_at DateTime('UTC') COMMENT 'sink clock; the replacing version',
    ingested_at_ms Int64
)
ENGINE = ReplacingMergeTree(ingested_at)
PARTITION BY toYYYYMM(conversion_time)
ORDER BY (model, toDate(conversion_time), conversion_event_id, touch_event_id);

-- Funnel per source: the distinct identities that arrived through a touch (a click that opened
-- one, bots left out) from each source in [from, to), and how many of them signed up,
-- downloaded and purchased in that period. Stages are counted independently: a guest checkout
-- counts as purchased without a signup.
-- An identity is each anonymous_id resolved to the latest identity_id seen for it (the user_id
-- once stitched), so clicks made before a signup join the purchases made after it.
-- Only DISTINCT and uniqExact on ids are used, so replayed copies count once before merges.
SELECT
    source,
    uniqExact(identity) AS clicked,
    uniqExactIf(identity, signups > 0) AS signed_up,
    uniqExactIf(identity, downloads > 0) AS downloaded,
    uniqExactIf(identity, purchases > 0) AS purchased,
    round(100 * purchased / clicked, 1) AS click_to_purchase_pct
FROM
(
    SELECT identity, source
    FROM
    (
        SELECT DISTINCT anonymous_id, source
        FROM events
        WHERE event_type = 'click'
            AND opens_touch = 1
            AND is_bot = 0
            AND event_time >= {from:DateTime}
            AND event_time < {to:DateTime}
    ) AS touches
    ANY LEFT JOIN
    (
        SELECT anonymous_id, argMax(identity_id, event_time_ms) AS identity
        FROM events
        GROUP BY anonymous_id
    ) AS identities USING anonymous_id
) AS touched
ANY LEFT JOIN
(
    SELECT
        identity,
        uniqExactIf(event_id, event_type = 'signup') AS signups,
        uniqExactIf(event_id, event_type = 'download') AS downloads,
        uniqExactIf(event_id, event_type = 'purchase') AS purchases
    FROM
    (
        SELECT anonymous_id, event_id, event_type
        FROM events
        WHERE event_type IN ('signup', 'download', 'purchase')
            AND event_time >= {from:DateTime}
            AND event_time < {to:DateTime}
    ) AS conversion_events
    ANY LEFT JOIN
    (
        SELECT anonymous_id, argMax(identity_id, event_time_ms) AS identity
        FROM events
        GROUP BY anonymous_id
    ) AS identities USING anonymous_id
    GROUP BY identity
) AS converted USING identity
GROUP BY source
ORDER BY clicked DESC, purchased DESC, source

-- Lifecycle per first-touch network: the people whose first touch (first click that opened
-- one, bots left out) falls in [from, to), by the social network of that touch (or its channel
-- when it was not social), and how far they have come since: every one was a visitor; customers
-- have converted at least once (signup, download or purchase), clients purchased at least once,
-- repeat clients at least twice. Stages count all conversions up to now, cumulatively.
-- People as in the funnel report: a row's identity_id, or for rows of a device from before its
-- first sign-in, the first user the device linked to.
-- Only min/argMin and uniqExact on ids are used, so replayed copies and re-credited revisions
-- count once before merges.
SELECT
    first_touch_network,
    count() AS visitors,
    countIf(conversions > 0) AS customers,
    countIf(purchases > 0) AS clients,
    countIf(purchases > 1) AS repeat_clients
FROM
(
    SELECT
        identity,
        argMin(network, event_time_ms) AS first_touch_network,
        min(event_time) AS first_touch_time
    FROM
    (
        SELECT
            if(identity_id != anonymous_id, identity_id, if(first_user = '', anonymous_id, first_user)) AS identity,
            network,
            event_time,
            event_time_ms
        FROM
        (
            SELECT anonymous_id, identity_id, ifNull(social_network, toString(channel)) AS network, event_time, event_time_ms
            FROM events
            WHERE site_id = {site:String} AND event_type = 'click' AND opens_touch = 1 AND is_bot = 0
        ) AS touches
        ANY LEFT JOIN
        (
            SELECT anonymous_id, argMin(identity_id, event_time_ms) AS first_user
            FROM events
            WHERE site_id = {site:String} AND identity_id != anonymous_id
            GROUP BY anonymous_id
        ) AS links USING anonymous_id
    ) AS resolved_touches
    GROUP BY identity
    HAVING first_touch_time >= {from:DateTime} AND first_touch_time < {to:DateTime}
) AS cohort
ANY LEFT JOIN
(
    SELECT
        identity,
        uniqExact(event_id) AS conversions,
        uniqExactIf(event_id, event_type = 'purchase') AS purchases
    FROM
    (
        SELECT
            if(identity_id != anonymous_id, identity_id, if(first_user = '', anonymous_id, first_user)) AS identity,
            event_id,
            event_type
        FROM
        (
            SELECT anonymous_id, identity_id, event_id, event_type
            FROM events
            WHERE site_id = {site:String} AND event_type IN ('signup', 'download', 'purchase')
        ) AS conversion_events
        ANY LEFT JOIN
        (
            SELECT anonymous_id, argMin(identity_id, event_time_ms) AS first_user
            FROM events
            WHERE site_id = {site:String} AND identity_id != anonymous_id
            GROUP BY anonymous_id
        ) AS links USING anonymous_id
    ) AS resolved_conversions
    GROUP BY identity
) AS converted USING identity
GROUP BY first_touch_network
ORDER BY visitors DESC, clients DESC, first_touch_network

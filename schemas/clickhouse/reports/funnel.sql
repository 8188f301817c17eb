-- Funnel per source: the distinct people who arrived through a touch (a click that opened one,
-- bots left out) from each source in [from, to), and how many of them signed up, downloaded
-- and purchased in that period. Stages are counted independently: a guest checkout counts as
-- purchased without a signup.
-- People (schemas/attribution-rules.md, section 5): a row's identity_id is the person it
-- belongs to, except that rows of a device from before its first sign-in carry the device's
-- own id; those belong to the first user the device linked to (`links`), so clicks made before
-- a signup join the purchases made after it, on any of the person's devices.
-- Only DISTINCT and uniqExact on ids are used, so replayed copies and re-credited revisions
-- count once before merges.
SELECT
    source,
    uniqExact(identity) AS clicked,
    uniqExactIf(identity, signups > 0) AS signed_up,
    uniqExactIf(identity, downloads > 0) AS downloaded,
    uniqExactIf(identity, purchases > 0) AS purchased,
    round(100 * purchased / clicked, 1) AS click_to_purchase_pct
FROM
(
    SELECT DISTINCT
        if(identity_id != anonymous_id, identity_id, if(first_user = '', anonymous_id, first_user)) AS identity,
        source
    FROM
    (
        SELECT DISTINCT anonymous_id, identity_id, source
        FROM events
        WHERE site_id = {site:String}
            AND event_type = 'click'
            AND opens_touch = 1
            AND is_bot = 0
            AND event_time >= {from:DateTime}
            AND event_time < {to:DateTime}
    ) AS touches
    ANY LEFT JOIN
    (
        SELECT anonymous_id, argMin(identity_id, event_time_ms) AS first_user
        FROM events
        WHERE site_id = {site:String} AND identity_id != anonymous_id
        GROUP BY anonymous_id
    ) AS links USING anonymous_id
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
        SELECT
            if(identity_id != anonymous_id, identity_id, if(first_user = '', anonymous_id, first_user)) AS identity,
            event_id,
            event_type
        FROM
        (
            SELECT anonymous_id, identity_id, event_id, event_type
            FROM events
            WHERE site_id = {site:String}
                AND event_type IN ('signup', 'download', 'purchase')
                AND event_time >= {from:DateTime}
                AND event_time < {to:DateTime}
        ) AS conversion_events
        ANY LEFT JOIN
        (
            SELECT anonymous_id, argMin(identity_id, event_time_ms) AS first_user
            FROM events
            WHERE site_id = {site:String} AND identity_id != anonymous_id
            GROUP BY anonymous_id
        ) AS links USING anonymous_id
    ) AS resolved
    GROUP BY identity
) AS converted USING identity
GROUP BY source
ORDER BY clicked DESC, purchased DESC, source

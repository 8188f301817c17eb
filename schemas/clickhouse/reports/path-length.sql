-- Path length: how many touches and how many days the conversions in [from, to) took, as two
-- distributions (measure = touches, then days; day buckets are half-open: 1-3 is [1, 3)).
-- The inner query keeps one row per conversion (GROUP BY event_id, latest copy by
-- revision), so a replayed or re-credited conversion counts once, with its latest numbers,
-- before merges.
SELECT measure, bucket, conversions, purchases, micro_conversions
FROM
(
    SELECT
        'touches' AS measure,
        multiIf(t = 0, 0, t = 1, 1, t = 2, 2, t = 3, 3, t <= 6, 4, t <= 13, 5, 6) AS bucket_order,
        transform(bucket_order, [0, 1, 2, 3, 4, 5, 6], ['0', '1', '2', '3', '4-6', '7-13', '14+'], '') AS bucket,
        count() AS conversions,
        countIf(is_purchase) AS purchases,
        countIf(NOT is_purchase) AS micro_conversions
    FROM
    (
        SELECT
            event_id,
            any(event_type = 'purchase') AS is_purchase,
            argMax(assumeNotNull(touches_to_conversion), revision) AS t
        FROM events
        WHERE site_id = {site:String}
            AND event_type IN ('signup', 'download', 'purchase')
            AND event_time >= {from:DateTime}
            AND event_time < {to:DateTime}
            AND touches_to_conversion IS NOT NULL
        GROUP BY event_id
    )
    GROUP BY bucket_order

    UNION ALL

    SELECT
        'days' AS measure,
        multiIf(d < 1, 0, d < 3, 1, d < 7, 2, d < 14, 3, d < 30, 4, 5) AS bucket_order,
        transform(bucket_order, [0, 1, 2, 3, 4, 5], ['0-1', '1-3', '3-7', '7-14', '14-30', '30+'], '') AS bucket,
        count() AS conversions,
        countIf(is_purchase) AS purchases,
        countIf(NOT is_purchase) AS micro_conversions
    FROM
    (
        SELECT
            event_id,
            any(event_type = 'purchase') AS is_purchase,
            argMax(assumeNotNull(days_to_conversion), revision) AS d
        FROM events
        WHERE site_id = {site:String}
            AND event_type IN ('signup', 'download', 'purchase')
            AND event_time >= {from:DateTime}
            AND event_time < {to:DateTime}
            AND days_to_conversion IS NOT NULL
        GROUP BY event_id
    )
    GROUP BY bucket_order
)
ORDER BY measure DESC, bucket_order

-- Channel share by week: for each week (Monday to Sunday, UTC) of [from, to), the conversions
-- credited under one model to social, search and everything else (grouped as in the
-- channel-share report), and each group's share of that week's conversions. The first and the
-- last week may be partial; a week without conversions has no rows, a group without credits in
-- a week that has some has none either (its share is 0).
-- Both subqueries read the same rows (keep their WHERE clauses identical); FINAL reads each
-- credit once before merges, and a re-credited conversion's latest revision only (a group left
-- with only retracted credits is left out).
SELECT
    week,
    channel_group,
    round(group_conversions, 2) AS conversions,
    round(100 * group_conversions / week_conversions, 1) AS conversions_pct,
    round(group_sales, 2) AS sales,
    round(group_revenue) AS revenue_minor
FROM
(
    SELECT
        toMonday(conversion_time) AS week,
        multiIf(
            social_network IS NOT NULL OR channel IN ('Organic Social', 'Paid Social'), 'social',
            channel IN ('Organic Search', 'Paid Search'), 'search',
            'other') AS channel_group,
        sum(weight) AS group_conversions,
        sumIf(weight, conversion_type = 'purchase') AS group_sales,
        sum(revenue_credit) AS group_revenue
    FROM conversion_credits FINAL
    WHERE site_id = {site:String}
        AND model = {model:String}
        AND conversion_time >= {from:DateTime}
        AND conversion_time < {to:DateTime}
    GROUP BY week, channel_group
    HAVING countIf(retracted = 0) > 0
) AS groups
ANY LEFT JOIN
(
    SELECT
        toMonday(conversion_time) AS week,
        sum(weight) AS week_conversions
    FROM conversion_credits FINAL
    WHERE site_id = {site:String}
        AND model = {model:String}
        AND conversion_time >= {from:DateTime}
        AND conversion_time < {to:DateTime}
    GROUP BY week
) AS weeks USING week
ORDER BY week, channel_group

-- Channel share: the share of the conversions in [from, to) credited, under one model, to
-- social (any touch with a social network: Organic/Paid Social and YouTube video), search
-- (Organic Search, Paid Search) and everything else.
-- Re-credited conversions count with their latest revision only (FINAL); a group whose credits
-- were all retracted by a later revision is left out.
SELECT
    channel_group,
    round(group_conversions, 2) AS conversions,
    round(100 * group_conversions / total_conversions, 1) AS conversions_pct,
    round(group_sales, 2) AS sales,
    if(total_sales > 0, round(100 * group_sales / total_sales, 1), NULL) AS sales_pct,
    round(group_revenue) AS revenue_minor
FROM
(
    SELECT
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
    GROUP BY channel_group
    HAVING countIf(retracted = 0) > 0
) AS groups
CROSS JOIN
(
    SELECT
        sum(weight) AS total_conversions,
        sumIf(weight, conversion_type = 'purchase') AS total_sales
    FROM conversion_credits FINAL
    WHERE site_id = {site:String}
        AND model = {model:String}
        AND conversion_time >= {from:DateTime}
        AND conversion_time < {to:DateTime}
) AS totals
ORDER BY group_conversions DESC, channel_group

-- Micro-conversions (signups, downloads) against macro-conversions (purchases) credited to
-- each social network under one model, for conversions in [from, to). A network with many
-- micro- and few macro-conversions fills the funnel top but does not close.
-- Re-credited conversions count with their latest revision only (FINAL); a group whose credits
-- were all retracted by a later revision is left out.
SELECT
    social_network,
    round(sumIf(weight, conversion_type = 'signup'), 2) AS signups,
    round(sumIf(weight, conversion_type = 'download'), 2) AS downloads,
    round(sumIf(weight, conversion_type IN ('signup', 'download')), 2) AS micro_conversions,
    round(sumIf(weight, conversion_type = 'purchase'), 2) AS macro_conversions,
    round(sumIf(revenue_credit, conversion_type = 'purchase')) AS revenue_minor,
    if(
        sumIf(weight, conversion_type = 'purchase') > 0,
        round(sumIf(weight, conversion_type IN ('signup', 'download')) / sumIf(weight, conversion_type = 'purchase'), 2),
        NULL) AS micro_per_macro
FROM conversion_credits FINAL
WHERE site_id = {site:String}
    AND model = {model:String}
    AND conversion_time >= {from:DateTime}
    AND conversion_time < {to:DateTime}
    AND social_network IS NOT NULL
GROUP BY social_network
HAVING countIf(retracted = 0) > 0
ORDER BY macro_conversions DESC, micro_conversions DESC, social_network

-- Posts: touches that carried utm_content, ranked by the revenue and conversions credited to
-- them under one model, for conversions in [from, to). Top 100.
SELECT
    content,
    source,
    ifNull(social_network, '') AS social_network,
    ifNull(campaign, '') AS campaign,
    round(sum(weight), 2) AS conversions,
    round(sumIf(weight, conversion_type = 'purchase'), 2) AS sales,
    round(sum(revenue_credit)) AS revenue_minor,
    uniqExact(conversion_event_id) AS conversions_touched
FROM conversion_credits FINAL
WHERE model = {model:String}
    AND conversion_time >= {from:DateTime}
    AND conversion_time < {to:DateTime}
    AND content IS NOT NULL
GROUP BY content, source, social_network, campaign
ORDER BY revenue_minor DESC, conversions DESC, content, source
LIMIT 100

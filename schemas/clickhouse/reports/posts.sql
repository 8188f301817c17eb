-- Posts: touches that carried utm_content, ranked by the revenue and conversions credited to
-- them under one model, for conversions in [from, to). Top 100.
-- Re-credited conversions count with their latest revision only (FINAL); a group whose credits
-- were all retracted by a later revision is left out.
SELECT
    content,
    source,
    ifNull(social_network, '') AS social_network,
    ifNull(campaign, '') AS campaign,
    round(sum(weight), 2) AS conversions,
    round(sumIf(weight, conversion_type = 'purchase'), 2) AS sales,
    round(sum(revenue_credit)) AS revenue_minor,
    uniqExactIf(conversion_event_id, retracted = 0) AS conversions_touched
FROM conversion_credits FINAL
WHERE site_id = {site:String}
    AND model = {model:String}
    AND conversion_time >= {from:DateTime}
    AND conversion_time < {to:DateTime}
    AND content IS NOT NULL
GROUP BY content, source, social_network, campaign
HAVING countIf(retracted = 0) > 0
ORDER BY revenue_minor DESC, conversions DESC, content, source
LIMIT 100

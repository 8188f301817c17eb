-- Source of sale: conversions and revenue credited to each channel / source / social network
-- under one attribution model, for conversions in [from, to).
-- Conversions are fractional under multi-touch models (weights of a conversion sum to 1).
-- revenue_minor is in the currencies' minor units; `currencies` lists them (mixing is visible).
-- FINAL reads each credit once even when a replay wrote it twice and no merge has run yet, and
-- only a re-credited conversion's latest revision (a touch it no longer credits has a retracted
-- row of weight 0 there).
-- Re-credited conversions count with their latest revision only (FINAL); a group whose credits
-- were all retracted by a later revision is left out.
SELECT
    channel,
    source,
    ifNull(social_network, '') AS social_network,
    round(sumIf(weight, conversion_type = 'purchase'), 2) AS sales,
    round(sumIf(weight, conversion_type != 'purchase'), 2) AS micro_conversions,
    round(sum(revenue_credit)) AS revenue_minor,
    arrayStringConcat(arraySort(arrayFilter(c -> c != '', groupUniqArray(if(retracted = 0, ifNull(currency, ''), '')))), ',') AS currencies
FROM conversion_credits FINAL
WHERE site_id = {site:String}
    AND model = {model:String}
    AND conversion_time >= {from:DateTime}
    AND conversion_time < {to:DateTime}
GROUP BY channel, source, social_network
HAVING countIf(retracted = 0) > 0
ORDER BY revenue_minor DESC, sales DESC, micro_conversions DESC, channel, source

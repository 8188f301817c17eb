-- Source of sale: conversions and revenue credited to each channel / source / social network
-- under one attribution model, for conversions in [from, to).
-- Conversions are fractional under multi-touch models (weights of a conversion sum to 1).
-- revenue_minor is in the currencies' minor units; `currencies` lists them (mixing is visible).
-- FINAL reads each credit once even when a replay wrote it twice and no merge has run yet.
SELECT
    channel,
    source,
    ifNull(social_network, '') AS social_network,
    round(sumIf(weight, conversion_type = 'purchase'), 2) AS sales,
    round(sumIf(weight, conversion_type != 'purchase'), 2) AS micro_conversions,
    round(sum(revenue_credit)) AS revenue_minor,
    arrayStringConcat(arraySort(arrayFilter(c -> c != '', groupUniqArray(ifNull(currency, '')))), ',') AS currencies
FROM conversion_credits FINAL
WHERE model = {model:String}
    AND conversion_time >= {from:DateTime}
    AND conversion_time < {to:DateTime}
GROUP BY channel, source, social_network
ORDER BY revenue_minor DESC, sales DESC, micro_conversions DESC, channel, source

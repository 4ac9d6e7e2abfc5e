-- history: for every key (branch x item, item, branch, customer, customer x item) and every day on which
-- that key sold, the statistics of all usable lines of that key up to and including that day.
-- Features look up the latest row strictly before a line's day (an as-of look-up), so a line never
-- sees its own day or anything later. Rebuilt after every load; $low_max / $medium_max come from configs/.
CREATE OR REPLACE TABLE history AS
WITH keyed AS (
    SELECT 'branch_item' AS kind, branch_id || chr(31) || item_code AS key, sale_day, quantity_sold AS q, unit_price AS p
    FROM usable_lines
    UNION ALL
    SELECT 'item', item_code, sale_day, quantity_sold, unit_price FROM usable_lines
    UNION ALL
    SELECT 'branch', branch_id, sale_day, quantity_sold, unit_price FROM usable_lines
    UNION ALL
    SELECT 'customer', customer_id, sale_day, quantity_sold, unit_price FROM usable_lines
    WHERE customer_id IS NOT NULL
    UNION ALL
    SELECT 'customer_item', customer_id || chr(31) || item_code, sale_day, quantity_sold, unit_price FROM usable_lines
    WHERE customer_id IS NOT NULL
),
daily AS (
    SELECT kind, key, sale_day,
           count(*)                                                   AS n,
           sum(ln(q))                                                 AS sum_log_q,
           count(*) FILTER (WHERE q <= $low_max)                      AS n_low,
           count(*) FILTER (WHERE q > $medium_max)                    AS n_high,
           sum(p) FILTER (WHERE p > 0)                                AS sum_p,
           count(p) FILTER (WHERE p > 0)                              AS n_p
    FROM keyed
    GROUP BY ALL
),
running AS (
    SELECT kind, key, sale_day,
           sum(n)         OVER w AS n,
           sum(sum_log_q) OVER w AS sum_log_q,
           sum(n_low)     OVER w AS n_low,
           sum(n_high)    OVER w AS n_high,
           sum(sum_p)     OVER w AS sum_p,
           sum(n_p)       OVER w AS n_p
    FROM daily
    WINDOW w AS (PARTITION BY kind, key ORDER BY sale_day ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
)
SELECT kind, key, sale_day,
       CAST(n AS DOUBLE)                    AS n,
       sum_log_q / n                        AS log_qty_mean,
       n_low / n                            AS share_low,
       n_high / n                           AS share_high,
       CASE WHEN n_p > 0 THEN sum_p / n_p END AS price_mean
FROM running
ORDER BY kind, key, sale_day;

-- Rendered from sales_sql/definition.py by `make sql` (for Spark SQL): edit the definition, not this file.
-- history: for every key and every day on which that key sold, the statistics of the key's usable lines up to and
-- including that day ("running"), of that day alone ("day"), or of the N days ending on it. Features look up the
-- latest row strictly before a line's day (an as-of look-up), so a line never sees its own day or anything later.
-- history_daily holds each key and day's sums: integers (counts, and fixed point for logs and prices), so a load
-- adds its lines' sums to them exactly and recomputes only the keys it touched, from their first new day on
-- (sql/history_update.sql). This script rebuilds both from usable_lines; $low_max / $medium_max: the settings.
CREATE OR REPLACE TEMPORARY VIEW history_daily AS
WITH keyed AS (
    SELECT 'branch_item' AS kind, branch_id || chr(31) || item_code AS key, sale_day, quantity_sold AS q, unit_price AS p
    FROM usable_lines WHERE branch_id IS NOT NULL AND item_code IS NOT NULL
    UNION ALL
    SELECT 'item' AS kind, item_code AS key, sale_day, quantity_sold AS q, unit_price AS p
    FROM usable_lines WHERE item_code IS NOT NULL
    UNION ALL
    SELECT 'branch' AS kind, branch_id AS key, sale_day, quantity_sold AS q, unit_price AS p
    FROM usable_lines WHERE branch_id IS NOT NULL
    UNION ALL
    SELECT 'customer' AS kind, customer_id AS key, sale_day, quantity_sold AS q, unit_price AS p
    FROM usable_lines WHERE customer_id IS NOT NULL
    UNION ALL
    SELECT 'customer_item' AS kind, customer_id || chr(31) || item_code AS key, sale_day, quantity_sold AS q, unit_price AS p
    FROM usable_lines WHERE customer_id IS NOT NULL AND item_code IS NOT NULL
)
SELECT kind, key, sale_day,
       count(*)                                                                         AS n,
       coalesce(sum(CAST(round(ln(q) * 4294967296) AS BIGINT)), 0)                      AS sum_log_q,
       count(*) FILTER (WHERE q <= $low_max)                                            AS n_low,
       count(*) FILTER (WHERE q > $medium_max)                                          AS n_high,
       coalesce(sum(CAST(round(CASE WHEN p > 0 AND p < 1e15 THEN p END * 4294967296) AS DECIMAL(38,0))), 0) AS sum_p,
       count(p) FILTER (WHERE p > 0 AND p < 1e15)                                       AS n_p
FROM keyed
GROUP BY ALL
ORDER BY kind, key, sale_day;

CREATE OR REPLACE TEMPORARY VIEW history AS
WITH running AS (
    SELECT kind, key, sale_day,
           sum(n) OVER w AS n,
           sum(sum_log_q) OVER w AS sum_log_q,
           sum(n_low) OVER w AS n_low,
           sum(n_high) OVER w AS n_high,
           sum(sum_p) OVER w AS sum_p,
           sum(n_p) OVER w AS n_p,
           n AS on_day_n,
           sum_log_q AS on_day_sum_log_q,
           sum(n) OVER w28 AS in_28d_n,
           sum(sum_log_q) OVER w28 AS in_28d_sum_log_q
    FROM history_daily
    WINDOW w AS (PARTITION BY kind, key ORDER BY sale_day ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW),
         w28 AS (PARTITION BY kind, key ORDER BY sale_day RANGE BETWEEN INTERVAL 27 DAYS PRECEDING AND CURRENT ROW)
)
SELECT kind, key, sale_day,
       CAST(n AS DOUBLE)                                            AS n,
       CAST(sum_log_q AS DOUBLE) / 4294967296 / nullif(n, 0)        AS log_qty_mean,
       CAST(n_low AS DOUBLE) / nullif(n, 0)                         AS share_low,
       CAST(n_high AS DOUBLE) / nullif(n, 0)                        AS share_high,
       CAST(sum_p AS DOUBLE) / 4294967296 / nullif(n_p, 0)          AS price_mean,
       CAST(on_day_n AS DOUBLE)                                     AS day_n,
       CAST(on_day_sum_log_q AS DOUBLE) / 4294967296 / nullif(on_day_n, 0) AS day_log_qty_mean,
       CAST(in_28d_n AS DOUBLE)                                     AS n_28d,
       CAST(in_28d_sum_log_q AS DOUBLE) / 4294967296 / nullif(in_28d_n, 0) AS log_qty_mean_28d
FROM running
ORDER BY kind, key, sale_day;

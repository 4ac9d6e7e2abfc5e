-- Spark SQL: the statements of sql/history.sql through definition.spark_sql (sqlglot); `make sql` writes it.
/* Rendered from sales_sql/definition.py by `make sql`: edit the definition, not this file. */
/* history: for every key and every day on which that key sold, the statistics of the key's usable lines up to and */
/* including that day ("running"), of that day alone ("day"), or of the N days ending on it. Features look up the */
/* latest row strictly before a line's day (an as-of look-up), so a line never sees its own day or anything later. */
/* history_daily holds each key and day's sums: integers (counts, and fixed point for logs and prices), so a load */
/* adds its lines' sums to them exactly and recomputes only the keys it touched, from their first new day on */
/* (sql/history_update.sql). This script rebuilds both from usable_lines; $low_max / $medium_max: the settings. */
CREATE OR REPLACE TEMPORARY VIEW history_daily AS
WITH keyed AS (
  SELECT
    'branch_item' AS kind,
    branch_id || CHR(  31) || item_code AS key,
    sale_day,
    quantity_sold AS q,
    unit_price AS p
  FROM usable_lines
  WHERE
    NOT branch_id IS NULL AND NOT item_code IS NULL
  UNION ALL
  SELECT
    'item' AS kind,
    item_code AS key,
    sale_day,
    quantity_sold AS q,
    unit_price AS p
  FROM usable_lines
  WHERE
    NOT item_code IS NULL
  UNION ALL
  SELECT
    'branch' AS kind,
    branch_id AS key,
    sale_day,
    quantity_sold AS q,
    unit_price AS p
  FROM usable_lines
  WHERE
    NOT branch_id IS NULL
  UNION ALL
  SELECT
    'customer' AS kind,
    customer_id AS key,
    sale_day,
    quantity_sold AS q,
    unit_price AS p
  FROM usable_lines
  WHERE
    NOT customer_id IS NULL
  UNION ALL
  SELECT
    'customer_item' AS kind,
    customer_id || CHR(  31) || item_code AS key,
    sale_day,
    quantity_sold AS q,
    unit_price AS p
  FROM usable_lines
  WHERE
    NOT customer_id IS NULL AND NOT item_code IS NULL
)
SELECT
  kind,
  key,
  sale_day,
  COUNT(*) AS n,
  COALESCE(SUM(CAST(ROUND(LN(q) * 4294967296) AS BIGINT)), 0) AS sum_log_q,
  COUNT(*) FILTER(WHERE
    q <= $low_max) AS n_low,
  COUNT(*) FILTER(WHERE
    q > $medium_max) AS n_high,
  COALESCE(
    SUM(
      CAST(ROUND(CASE WHEN p > 0 AND p < 1e15 THEN p END * 4294967296) AS DECIMAL(38, 0))
    ),
    0
  ) AS sum_p,
  COUNT(p) FILTER(WHERE
    p > 0 AND p < 1e15) AS n_p
FROM keyed
GROUP BY ALL;

CREATE OR REPLACE TEMPORARY VIEW history AS
WITH running AS (
  SELECT
    kind,
    key,
    sale_day,
    SUM(n) OVER w AS n,
    SUM(sum_log_q) OVER w AS sum_log_q,
    SUM(n_low) OVER w AS n_low,
    SUM(n_high) OVER w AS n_high,
    SUM(sum_p) OVER w AS sum_p,
    SUM(n_p) OVER w AS n_p,
    n AS on_day_n,
    sum_log_q AS on_day_sum_log_q,
    SUM(n) OVER w28 AS in_28d_n,
    SUM(sum_log_q) OVER w28 AS in_28d_sum_log_q
  FROM history_daily
  WINDOW w AS (
    PARTITION BY kind, key
    ORDER BY sale_day NULLS LAST
    ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW
  ), w28 AS (
    PARTITION BY kind, key
    ORDER BY sale_day NULLS LAST
    RANGE BETWEEN INTERVAL '27' DAYS PRECEDING AND CURRENT ROW
  )
)
SELECT
  kind,
  key,
  sale_day,
  CAST(n AS DOUBLE) AS n,
  CAST(sum_log_q AS DOUBLE) / 4294967296 / NULLIF(n, 0) AS log_qty_mean,
  CAST(n_low AS DOUBLE) / NULLIF(n, 0) AS share_low,
  CAST(n_high AS DOUBLE) / NULLIF(n, 0) AS share_high,
  CAST(sum_p AS DOUBLE) / 4294967296 / NULLIF(n_p, 0) AS price_mean,
  CAST(on_day_n AS DOUBLE) AS day_n,
  CAST(on_day_sum_log_q AS DOUBLE) / 4294967296 / NULLIF(on_day_n, 0) AS day_log_qty_mean,
  CAST(in_28d_n AS DOUBLE) AS n_28d,
  CAST(in_28d_sum_log_q AS DOUBLE) / 4294967296 / NULLIF(in_28d_n, 0) AS log_qty_mean_28d
FROM running;

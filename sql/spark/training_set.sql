-- Spark SQL: the training_set view, its as-of look-up over each key's timeline through definition.spark_sql (sqlglot); `make sql` writes it.
/* Rendered from sales_sql/definition.py by `make sql`: edit the definition, not this file. */
/* training_set: one row per usable invoice line with its label and every model feature. Calendar and hashed */
/* features come from the line's own day and keys; history features from the latest history row strictly before */
/* the line's day (ASOF join), NULL when the key has no earlier sale. The line's quantity makes the label only. */
CREATE OR REPLACE TEMPORARY VIEW training_set AS
WITH lines AS (
  SELECT
    *,
    branch_id || CHR(  31) || item_code AS branch_item_key,
    customer_id || CHR(  31) || item_code AS customer_item_key
  FROM usable_lines
), timeline AS (
  SELECT
    'branch_item' AS kind,
    branch_item_key AS key,
    sale_day,
    0 AS tag,
    line_id,
    NULL AS h
  FROM lines
  WHERE
    NOT branch_id IS NULL AND NOT item_code IS NULL
  UNION ALL
  SELECT
    'item' AS kind,
    item_code AS key,
    sale_day,
    0 AS tag,
    line_id,
    NULL AS h
  FROM lines
  WHERE
    NOT item_code IS NULL
  UNION ALL
  SELECT
    'branch' AS kind,
    branch_id AS key,
    sale_day,
    0 AS tag,
    line_id,
    NULL AS h
  FROM lines
  WHERE
    NOT branch_id IS NULL
  UNION ALL
  SELECT
    'customer' AS kind,
    customer_id AS key,
    sale_day,
    0 AS tag,
    line_id,
    NULL AS h
  FROM lines
  WHERE
    NOT customer_id IS NULL
  UNION ALL
  SELECT
    'customer_item' AS kind,
    customer_item_key AS key,
    sale_day,
    0 AS tag,
    line_id,
    NULL AS h
  FROM lines
  WHERE
    NOT customer_id IS NULL AND NOT item_code IS NULL
  UNION ALL
  SELECT
    kind,
    key,
    sale_day,
    1 AS tag,
    NULL AS line_id,
    STRUCT(
      sale_day AS sale_day,
      n AS n,
      log_qty_mean AS log_qty_mean,
      share_low AS share_low,
      share_high AS share_high,
      price_mean AS price_mean,
      day_n AS day_n,
      day_log_qty_mean AS day_log_qty_mean,
      n_28d AS n_28d,
      log_qty_mean_28d AS log_qty_mean_28d
    ) AS h
  FROM history
), asof AS (
  SELECT
    kind,
    tag,
    line_id,
    LAST_VALUE(h) IGNORE NULLS OVER (
      PARTITION BY kind, key
      ORDER BY sale_day NULLS LAST, tag NULLS LAST
      ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW
    ) AS h
  FROM timeline
), found AS (
  SELECT
    line_id,
    MAX(CASE WHEN kind = 'branch_item' THEN h END) AS bi,
    MAX(CASE WHEN kind = 'item' THEN h END) AS item,
    MAX(CASE WHEN kind = 'branch' THEN h END) AS branch,
    MAX(CASE WHEN kind = 'customer' THEN h END) AS customer,
    MAX(CASE WHEN kind = 'customer_item' THEN h END) AS ci
  FROM asof
  WHERE
    tag = 0
  GROUP BY
    line_id
)
SELECT
  l.line_id,
  l.sale_time,
  l.sale_day,
  l.branch_id,
  l.item_code,
  l.customer_id,
  l.quantity_sold,
  CASE
    WHEN l.quantity_sold <= $low_max
    THEN 'LOW'
    WHEN l.quantity_sold <= $medium_max
    THEN 'MEDIUM'
    ELSE 'HIGH'
  END AS label,
  (
    WEEKDAY(l.sale_day) + 1
  ) AS day_of_week,
  DAYOFMONTH(l.sale_day) AS day_of_month,
  MONTH(l.sale_day) AS month,
  DAYOFYEAR(l.sale_day) AS day_of_year,
  CASE
    WHEN l.sale_time <> CAST(l.sale_day AS TIMESTAMP_NTZ)
    THEN HOUR(l.sale_time)
  END AS hour,
  l.unit_price AS unit_price,
  l.unit_price / item.price_mean AS price_vs_item,
  l.unit_price / bi.price_mean AS price_vs_branch_item,
  l.unit_price / ci.price_mean AS price_vs_customer_item,
  l.unit_price / customer.price_mean AS price_vs_customer,
  HASH_FEATURES(l.branch_id, l.item_code) AS hashed,
  bi.n AS bi_n,
  bi.log_qty_mean AS bi_log_qty_mean,
  bi.share_low AS bi_share_low,
  bi.share_high AS bi_share_high,
  bi.day_n AS bi_day_n,
  bi.day_log_qty_mean AS bi_day_log_qty_mean,
  bi.n_28d AS bi_n_28d,
  bi.log_qty_mean_28d AS bi_log_qty_mean_28d,
  DATEDIFF(l.sale_day, bi.sale_day) AS bi_days_since,
  item.n AS item_n,
  item.log_qty_mean AS item_log_qty_mean,
  item.share_low AS item_share_low,
  item.share_high AS item_share_high,
  item.day_n AS item_day_n,
  item.day_log_qty_mean AS item_day_log_qty_mean,
  item.n_28d AS item_n_28d,
  item.log_qty_mean_28d AS item_log_qty_mean_28d,
  DATEDIFF(l.sale_day, item.sale_day) AS item_days_since,
  branch.n AS branch_n,
  branch.log_qty_mean AS branch_log_qty_mean,
  branch.share_low AS branch_share_low,
  branch.share_high AS branch_share_high,
  branch.day_n AS branch_day_n,
  branch.day_log_qty_mean AS branch_day_log_qty_mean,
  branch.n_28d AS branch_n_28d,
  branch.log_qty_mean_28d AS branch_log_qty_mean_28d,
  customer.n AS customer_n,
  customer.log_qty_mean AS customer_log_qty_mean,
  customer.share_low AS customer_share_low,
  customer.share_high AS customer_share_high,
  customer.day_n AS customer_day_n,
  customer.day_log_qty_mean AS customer_day_log_qty_mean,
  customer.n_28d AS customer_n_28d,
  customer.log_qty_mean_28d AS customer_log_qty_mean_28d,
  DATEDIFF(l.sale_day, customer.sale_day) AS customer_days_since,
  ci.n AS ci_n,
  ci.log_qty_mean AS ci_log_qty_mean,
  ci.share_low AS ci_share_low,
  ci.share_high AS ci_share_high,
  ci.day_n AS ci_day_n,
  ci.day_log_qty_mean AS ci_day_log_qty_mean,
  ci.n_28d AS ci_n_28d,
  ci.log_qty_mean_28d AS ci_log_qty_mean_28d,
  DATEDIFF(l.sale_day, ci.sale_day) AS ci_days_since
FROM lines AS l
LEFT JOIN found AS f
  ON f.line_id = l.line_id;

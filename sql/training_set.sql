-- Rendered from sales_sql/definition.py by `make sql`: edit the definition, not this file.
-- training_set: one row per usable invoice line with its label and every model feature. Calendar and hashed
-- features come from the line's own day and keys; history features from the latest history row strictly before
-- the line's day (ASOF join), NULL when the key has no earlier sale. The line's quantity makes the label only.
CREATE OR REPLACE VIEW training_set AS
WITH lines AS (
    SELECT *,
           branch_id || chr(31) || item_code AS branch_item_key,
           customer_id || chr(31) || item_code AS customer_item_key
    FROM usable_lines
)
SELECT
    l.line_id, l.sale_time, l.sale_day, l.branch_id, l.item_code, l.customer_id, l.quantity_sold,
    CASE WHEN l.quantity_sold <= $low_max THEN 'LOW' WHEN l.quantity_sold <= $medium_max THEN 'MEDIUM' ELSE 'HIGH' END AS label,
    isodow(l.sale_day) AS day_of_week,
    dayofmonth(l.sale_day) AS day_of_month,
    month(l.sale_day) AS month,
    dayofyear(l.sale_day) AS day_of_year,
    CASE WHEN l.sale_time <> CAST(l.sale_day AS TIMESTAMP) THEN hour(l.sale_time) END AS hour,
    l.unit_price AS unit_price,
    l.unit_price / item.price_mean AS price_vs_item,
    l.unit_price / bi.price_mean AS price_vs_branch_item,
    l.unit_price / ci.price_mean AS price_vs_customer_item,
    l.unit_price / customer.price_mean AS price_vs_customer,
    hash_features(l.branch_id, l.item_code) AS hashed,
    bi.n AS bi_n, bi.log_qty_mean AS bi_log_qty_mean, bi.share_low AS bi_share_low, bi.share_high AS bi_share_high, bi.day_n AS bi_day_n, bi.day_log_qty_mean AS bi_day_log_qty_mean, bi.n_28d AS bi_n_28d, bi.log_qty_mean_28d AS bi_log_qty_mean_28d, l.sale_day - bi.sale_day AS bi_days_since,
    item.n AS item_n, item.log_qty_mean AS item_log_qty_mean, item.share_low AS item_share_low, item.share_high AS item_share_high, item.day_n AS item_day_n, item.day_log_qty_mean AS item_day_log_qty_mean, item.n_28d AS item_n_28d, item.log_qty_mean_28d AS item_log_qty_mean_28d, l.sale_day - item.sale_day AS item_days_since,
    branch.n AS branch_n, branch.log_qty_mean AS branch_log_qty_mean, branch.share_low AS branch_share_low, branch.share_high AS branch_share_high, branch.day_n AS branch_day_n, branch.day_log_qty_mean AS branch_day_log_qty_mean, branch.n_28d AS branch_n_28d, branch.log_qty_mean_28d AS branch_log_qty_mean_28d,
    customer.n AS customer_n, customer.log_qty_mean AS customer_log_qty_mean, customer.share_low AS customer_share_low, customer.share_high AS customer_share_high, customer.day_n AS customer_day_n, customer.day_log_qty_mean AS customer_day_log_qty_mean, customer.n_28d AS customer_n_28d, customer.log_qty_mean_28d AS customer_log_qty_mean_28d, l.sale_day - customer.sale_day AS customer_days_since,
    ci.n AS ci_n, ci.log_qty_mean AS ci_log_qty_mean, ci.share_low AS ci_share_low, ci.share_high AS ci_share_high, ci.day_n AS ci_day_n, ci.day_log_qty_mean AS ci_day_log_qty_mean, ci.n_28d AS ci_n_28d, ci.log_qty_mean_28d AS ci_log_qty_mean_28d, l.sale_day - ci.sale_day AS ci_days_since
FROM lines l
ASOF LEFT JOIN (FROM history WHERE kind = 'branch_item') bi
       ON bi.key = l.branch_item_key AND l.sale_day > bi.sale_day
ASOF LEFT JOIN (FROM history WHERE kind = 'item') item
       ON item.key = l.item_code AND l.sale_day > item.sale_day
ASOF LEFT JOIN (FROM history WHERE kind = 'branch') branch
       ON branch.key = l.branch_id AND l.sale_day > branch.sale_day
ASOF LEFT JOIN (FROM history WHERE kind = 'customer') customer
       ON customer.key = l.customer_id AND l.sale_day > customer.sale_day
ASOF LEFT JOIN (FROM history WHERE kind = 'customer_item') ci
       ON ci.key = l.customer_item_key AND l.sale_day > ci.sale_day;

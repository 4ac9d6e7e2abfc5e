-- Rendered from sales_sql/definition.py by `make sql`: edit the definition, not this file.
-- After a load: the lines with line_id > $after added to history_daily and history, touching only their keys.
-- A key's rows from its first new day on are recomputed (a back-dated line changes every later running and
-- windowed statistic of its keys): the running sums from the sums of its days before (one aggregate) plus its
-- days since, the windows from the days they reach back to. The result equals a rebuild by sql/history.sql
-- exactly (the sums are integers), which tests check after loads in any order.
CREATE OR REPLACE TEMP TABLE _history_added AS
WITH keyed AS (
    SELECT 'branch_item' AS kind, branch_id || chr(31) || item_code AS key, sale_day, quantity_sold AS q, unit_price AS p
    FROM usable_lines WHERE line_id > $after AND branch_id IS NOT NULL AND item_code IS NOT NULL
    UNION ALL
    SELECT 'item' AS kind, item_code AS key, sale_day, quantity_sold AS q, unit_price AS p
    FROM usable_lines WHERE line_id > $after AND item_code IS NOT NULL
    UNION ALL
    SELECT 'branch' AS kind, branch_id AS key, sale_day, quantity_sold AS q, unit_price AS p
    FROM usable_lines WHERE line_id > $after AND branch_id IS NOT NULL
    UNION ALL
    SELECT 'customer' AS kind, customer_id AS key, sale_day, quantity_sold AS q, unit_price AS p
    FROM usable_lines WHERE line_id > $after AND customer_id IS NOT NULL
    UNION ALL
    SELECT 'customer_item' AS kind, customer_id || chr(31) || item_code AS key, sale_day, quantity_sold AS q, unit_price AS p
    FROM usable_lines WHERE line_id > $after AND customer_id IS NOT NULL AND item_code IS NOT NULL
)
SELECT kind, key, sale_day,
       count(*)                                                                         AS n,
       coalesce(sum(CAST(round(ln(q) * 4294967296) AS BIGINT)), 0)                      AS sum_log_q,
       count(*) FILTER (WHERE q <= $low_max)                                            AS n_low,
       count(*) FILTER (WHERE q > $medium_max)                                          AS n_high,
       coalesce(sum(CAST(round(CASE WHEN p > 0 AND p < 1e15 THEN p END * 4294967296) AS HUGEINT)), 0) AS sum_p,
       count(p) FILTER (WHERE p > 0 AND p < 1e15)                                       AS n_p
FROM keyed
GROUP BY ALL;

CREATE OR REPLACE TEMP TABLE _history_days AS
SELECT kind, key, sale_day,
       coalesce(d.n, 0) + a.n AS n,
       coalesce(d.sum_log_q, 0) + a.sum_log_q AS sum_log_q,
       coalesce(d.n_low, 0) + a.n_low AS n_low,
       coalesce(d.n_high, 0) + a.n_high AS n_high,
       coalesce(d.sum_p, 0) + a.sum_p AS sum_p,
       coalesce(d.n_p, 0) + a.n_p AS n_p
FROM _history_added a LEFT JOIN history_daily d USING (kind, key, sale_day);

DELETE FROM history_daily d USING _history_added a
WHERE d.kind = a.kind AND d.key = a.key AND d.sale_day = a.sale_day;
INSERT INTO history_daily SELECT * FROM _history_days;

CREATE OR REPLACE TEMP TABLE _history_keys AS
SELECT kind, key, min(sale_day) AS from_day FROM _history_added GROUP BY ALL;

DELETE FROM history h USING _history_keys t
WHERE h.kind = t.kind AND h.key = t.key AND h.sale_day >= t.from_day;
CREATE OR REPLACE TEMP TABLE _history_touched AS  -- one scan of history_daily
SELECT d.*, t.from_day FROM history_daily d JOIN _history_keys t USING (kind, key);
INSERT INTO history
WITH before AS (
    SELECT kind, key,
           sum(d.n) AS before_n,
           sum(d.sum_log_q) AS before_sum_log_q,
           sum(d.n_low) AS before_n_low,
           sum(d.n_high) AS before_n_high,
           sum(d.sum_p) AS before_sum_p,
           sum(d.n_p) AS before_n_p
    FROM _history_touched d
    WHERE d.sale_day < d.from_day
    GROUP BY ALL
), running AS (
    SELECT kind, key, sale_day,
           coalesce(b.before_n, 0) + sum(CASE WHEN sale_day >= from_day THEN d.n END) OVER w AS n,
           coalesce(b.before_sum_log_q, 0) + sum(CASE WHEN sale_day >= from_day THEN d.sum_log_q END) OVER w AS sum_log_q,
           coalesce(b.before_n_low, 0) + sum(CASE WHEN sale_day >= from_day THEN d.n_low END) OVER w AS n_low,
           coalesce(b.before_n_high, 0) + sum(CASE WHEN sale_day >= from_day THEN d.n_high END) OVER w AS n_high,
           coalesce(b.before_sum_p, 0) + sum(CASE WHEN sale_day >= from_day THEN d.sum_p END) OVER w AS sum_p,
           coalesce(b.before_n_p, 0) + sum(CASE WHEN sale_day >= from_day THEN d.n_p END) OVER w AS n_p,
           n AS on_day_n,
           sum_log_q AS on_day_sum_log_q,
           sum(n) OVER w28 AS in_28d_n,
           sum(sum_log_q) OVER w28 AS in_28d_sum_log_q
    FROM _history_touched d LEFT JOIN before b USING (kind, key)
    WHERE d.sale_day >= d.from_day - INTERVAL 27 DAYS
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
FROM running JOIN _history_keys t USING (kind, key)
WHERE sale_day >= t.from_day;

DROP TABLE _history_touched;
DROP TABLE _history_added;
DROP TABLE _history_days;
DROP TABLE _history_keys;

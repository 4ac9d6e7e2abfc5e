-- One drift-check row per feature: the lines of the temporary view drift_window (with the model's class of
-- each line, `predicted`) against the training baseline of model $model_name version $version. Filled in by
-- sales_sql/monitor.py (and in Spark SQL by sales_sql/spark.py, its classes from the join path).
--   ks   (numbers):    quantity_sold, unit_price
--   chi2 (categories): branch_id, item_code (the baseline's $top most frequent values, the rest as '(other)':
--                      thousands of sparse categories would make the effect size mostly sampling noise),
--                      day_of_week, predicted_class (prediction drift)
--   performance:       the model's accuracy and macro-F1 on the window against its test-slice figures
--                      ($accuracy, $macro_f1: the version's, from deployed_models or the registry)
-- The calendar is tested through day_of_week only: day_of_month, month and day_of_year of any window of a
-- few weeks differ from a year-round baseline by construction (the baseline keeps them for inspection).
-- Decision: effect_size > threshold and, for ks / chi2, Holm-adjusted p-value < $alpha.
CREATE OR REPLACE TEMP VIEW drift_current AS
SELECT quantity_sold, unit_price, branch_id, item_code,
       isodow(sale_day)     AS day_of_week,
       dayofmonth(sale_day) AS day_of_month,
       predicted,
       CASE WHEN quantity_sold <= $low_max THEN 'LOW' WHEN quantity_sold <= $medium_max THEN 'MEDIUM'
            ELSE 'HIGH' END AS actual
FROM drift_window;

CREATE OR REPLACE TEMP TABLE drift_current_rows AS FROM drift_current;

WITH b AS (SELECT * FROM drift_baseline WHERE model_name = $model_name AND version = $version),
w AS (FROM drift_current_rows),
top_branch AS (SELECT branch_id FROM b GROUP BY ALL ORDER BY count(*) DESC, branch_id LIMIT $top),
top_item AS (SELECT item_code FROM b GROUP BY ALL ORDER BY count(*) DESC, item_code LIMIT $top),
sides AS (
    SELECT 'w' AS side, quantity_sold, unit_price, branch_id, item_code, day_of_week, predicted FROM w
    UNION ALL
    SELECT 'b', quantity_sold, unit_price, branch_id, item_code, day_of_week, predicted FROM b
),
-- each side's values as (value, n) pairs: one row per distinct value reaches the statistics, however long the window
numbers AS (
    SELECT side, feature, list({'value': value, 'n': n}) AS pairs
    FROM (SELECT side, feature, value, count(*) AS n
          FROM (SELECT side, 'quantity_sold' AS feature, CAST(quantity_sold AS DOUBLE) AS value FROM sides
                UNION ALL
                SELECT side, 'unit_price', CAST(unit_price AS DOUBLE) FROM sides)
          WHERE value IS NOT NULL
          GROUP BY side, feature, value)
    GROUP BY side, feature
),
categories AS (
    SELECT side, feature, list({'value': value, 'n': n}) AS pairs
    FROM (SELECT side, feature, value, count(*) AS n
          FROM (SELECT side, 'branch_id' AS feature,
                       CASE WHEN branch_id IN (FROM top_branch) THEN branch_id ELSE '(other)' END AS value FROM sides
                UNION ALL
                SELECT side, 'item_code',
                       CASE WHEN item_code IN (FROM top_item) THEN item_code ELSE '(other)' END FROM sides
                UNION ALL
                SELECT side, 'day_of_week', CAST(day_of_week AS VARCHAR) FROM sides
                UNION ALL
                SELECT side, 'predicted_class', predicted FROM sides)
          WHERE value IS NOT NULL
          GROUP BY side, feature, value)
    GROUP BY side, feature
),
checks AS (
    SELECT * FROM (VALUES ('quantity_sold', 'ks'), ('unit_price', 'ks'), ('branch_id', 'chi2'),
                          ('item_code', 'chi2'), ('day_of_week', 'chi2'), ('predicted_class', 'chi2')) c(feature, test)
),
tested AS (
    SELECT c.feature, c.test,
           CASE WHEN c.test = 'ks' THEN ks_drift_counted(nw.pairs, nb.pairs) END AS ks,
           CASE WHEN c.test = 'chi2' THEN chi2_drift_counted(cw.pairs, cb.pairs) END AS chi2
    FROM checks c
    LEFT JOIN numbers nw ON nw.feature = c.feature AND nw.side = 'w'
    LEFT JOIN numbers nb ON nb.feature = c.feature AND nb.side = 'b'
    LEFT JOIN categories cw ON cw.feature = c.feature AND cw.side = 'w'
    LEFT JOIN categories cb ON cb.feature = c.feature AND cb.side = 'b'
),
tests AS (
    SELECT feature, test, coalesce(ks.statistic, chi2.statistic) AS statistic,
           coalesce(ks.p_value, chi2.p_value) AS p_value, coalesce(ks.effect_size, chi2.effect_size) AS effect_size,
           coalesce(ks.n_current, chi2.n_current) AS n_current, coalesce(ks.n_baseline, chi2.n_baseline) AS n_baseline
    FROM tested
),
holm AS (
    SELECT *, row_number() OVER (ORDER BY p_value NULLS LAST) AS k, count(p_value) OVER () AS m FROM tests
),
adjusted AS (
    SELECT feature, test, statistic, p_value,
           CASE WHEN p_value IS NOT NULL THEN
               least(1.0, max((m - k + 1) * p_value) OVER (ORDER BY k ROWS UNBOUNDED PRECEDING)) END AS p_adjusted,
           effect_size,
           CAST(CASE test WHEN 'ks' THEN $ks_threshold ELSE $chi2_threshold END AS DOUBLE) AS threshold,
           n_current, n_baseline
    FROM holm
),
scored AS (SELECT * FROM w WHERE predicted IS NOT NULL),
f1 AS (
    SELECT c.label,
           coalesce(2.0 * count(*) FILTER (WHERE s.predicted = c.label AND s.actual = c.label)
                    / nullif(count(*) FILTER (WHERE s.predicted = c.label)
                             + count(*) FILTER (WHERE s.actual = c.label), 0), 0) AS f1
    FROM scored s, (VALUES ('LOW'), ('MEDIUM'), ('HIGH')) c(label)
    GROUP BY c.label
),
validation AS (SELECT CAST($accuracy AS DOUBLE) AS accuracy, CAST($macro_f1 AS DOUBLE) AS macro_f1),
performance AS (
    SELECT 'model_accuracy' AS feature, 'performance' AS test,
           (SELECT avg(CAST(predicted = actual AS INTEGER)) FROM scored) AS statistic,
           (SELECT accuracy FROM validation) AS reference
    UNION ALL
    SELECT 'model_macro_f1', 'performance', (SELECT CASE WHEN count(*) = 3 THEN avg(f1) END FROM f1
                                              WHERE (SELECT count(*) FROM scored) > 0),
           (SELECT macro_f1 FROM validation)
)
SELECT feature, test, statistic, p_value, p_adjusted, effect_size, threshold,
       coalesce(effect_size > threshold AND p_adjusted < $alpha, false) AS is_drift, n_current AS n_window, n_baseline
FROM adjusted
UNION ALL
SELECT feature, test, statistic, NULL, NULL, reference - statistic, CAST($performance_drop AS DOUBLE),
       coalesce(reference - statistic > $performance_drop, false),
       (SELECT count(*) FROM scored), NULL
FROM performance
ORDER BY test DESC, feature

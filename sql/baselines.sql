-- The two baselines every retrain reports beside its model, on its test slice (the usable lines from $cutoff on, up
-- to line $last_line_id), learnt from the lines before the cut-off: the majority class, and the most frequent class
-- of the same branch x item (else of the item, else the majority class). Ties go to the lower class (LOW, MEDIUM,
-- HIGH). One row per (actual, mode, majority) with its count of lines: the confusion matrices of both. Run as it is
-- by DuckDB and, through definition.spark_sql, by Spark.
WITH lines AS (
    SELECT branch_id, item_code, sale_day, $label AS label FROM usable_lines WHERE line_id <= $last_line_id
), counts AS (
    SELECT branch_id, item_code, label, count(*) AS n,
           CASE label WHEN 'LOW' THEN 2 WHEN 'MEDIUM' THEN 1 ELSE 0 END AS tie
    FROM lines WHERE sale_day < $cutoff GROUP BY branch_id, item_code, label
), bi AS (
    SELECT branch_id, item_code, label FROM (
        SELECT branch_id, item_code, label,
               row_number() OVER (PARTITION BY branch_id, item_code ORDER BY n DESC, tie DESC) AS r FROM counts
    ) WHERE r = 1
), it AS (
    SELECT item_code, label FROM (
        SELECT item_code, label, row_number() OVER (PARTITION BY item_code ORDER BY sum(n) DESC, max(tie) DESC) AS r
        FROM counts GROUP BY item_code, label
    ) WHERE r = 1
), majority AS (
    SELECT label FROM (
        SELECT label, row_number() OVER (ORDER BY sum(n) DESC, max(tie) DESC) AS r FROM counts GROUP BY label
    ) WHERE r = 1
)
SELECT l.label AS actual, coalesce(bi.label, it.label, m.label) AS mode, m.label AS majority, count(*) AS n
FROM lines l
CROSS JOIN majority m
LEFT JOIN bi ON bi.branch_id = l.branch_id AND bi.item_code = l.item_code
LEFT JOIN it ON it.item_code = l.item_code
WHERE l.sale_day >= $cutoff
GROUP BY l.label, coalesce(bi.label, it.label, m.label), m.label;

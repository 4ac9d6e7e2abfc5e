-- The prediction functions: thin macros over the _sales_predict / _sales_class / _sales_explain UDFs
-- (sales_sql/serving.py).
-- Arguments are cast here: sale_date may be a TIMESTAMP (its hour is a feature), a DATE or an ISO string, and
-- numbers work as keys;
-- a date that does not cast gives a NULL answer with source 'invalid_date' instead of failing the query.
-- unit_price and customer_id may be left out (they count as unknown, NULL).
CREATE OR REPLACE MACRO predict_sales(sale_date, branch_id, item_code) AS
        _sales_predict(TRY_CAST(sale_date AS TIMESTAMP), CAST(branch_id AS VARCHAR), CAST(item_code AS VARCHAR), NULL, NULL),
    (sale_date, branch_id, item_code, unit_price) AS
        _sales_predict(TRY_CAST(sale_date AS TIMESTAMP), CAST(branch_id AS VARCHAR), CAST(item_code AS VARCHAR),
                       TRY_CAST(unit_price AS DOUBLE), NULL),
    (sale_date, branch_id, item_code, unit_price, customer_id) AS
        _sales_predict(TRY_CAST(sale_date AS TIMESTAMP), CAST(branch_id AS VARCHAR), CAST(item_code AS VARCHAR),
                       TRY_CAST(unit_price AS DOUBLE), CAST(customer_id AS VARCHAR));

-- predict_sales_class has its own UDF: returning only the label is cheaper than the whole STRUCT
CREATE OR REPLACE MACRO predict_sales_class(sale_date, branch_id, item_code) AS
        _sales_class(TRY_CAST(sale_date AS TIMESTAMP), CAST(branch_id AS VARCHAR), CAST(item_code AS VARCHAR), NULL, NULL),
    (sale_date, branch_id, item_code, unit_price) AS
        _sales_class(TRY_CAST(sale_date AS TIMESTAMP), CAST(branch_id AS VARCHAR), CAST(item_code AS VARCHAR),
                     TRY_CAST(unit_price AS DOUBLE), NULL),
    (sale_date, branch_id, item_code, unit_price, customer_id) AS
        _sales_class(TRY_CAST(sale_date AS TIMESTAMP), CAST(branch_id AS VARCHAR), CAST(item_code AS VARCHAR),
                     TRY_CAST(unit_price AS DOUBLE), CAST(customer_id AS VARCHAR));

CREATE OR REPLACE MACRO predict_sales_proba(sale_date, branch_id, item_code) AS
        predict_sales(sale_date, branch_id, item_code).proba,
    (sale_date, branch_id, item_code, unit_price) AS
        predict_sales(sale_date, branch_id, item_code, unit_price).proba,
    (sale_date, branch_id, item_code, unit_price, customer_id) AS
        predict_sales(sale_date, branch_id, item_code, unit_price, customer_id).proba;

CREATE OR REPLACE MACRO explain_sales_class(sale_date, branch_id, item_code) AS
        _sales_explain(TRY_CAST(sale_date AS TIMESTAMP), CAST(branch_id AS VARCHAR), CAST(item_code AS VARCHAR), NULL, NULL),
    (sale_date, branch_id, item_code, unit_price) AS
        _sales_explain(TRY_CAST(sale_date AS TIMESTAMP), CAST(branch_id AS VARCHAR), CAST(item_code AS VARCHAR),
                       TRY_CAST(unit_price AS DOUBLE), NULL),
    (sale_date, branch_id, item_code, unit_price, customer_id) AS
        _sales_explain(TRY_CAST(sale_date AS TIMESTAMP), CAST(branch_id AS VARCHAR), CAST(item_code AS VARCHAR),
                       TRY_CAST(unit_price AS DOUBLE), CAST(customer_id AS VARCHAR));

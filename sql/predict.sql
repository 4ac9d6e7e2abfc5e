-- Rendered from sales_sql/inputs.py by `make sql`: edit the inputs there, not this file.
-- The prediction functions: thin macros over the _sales_predict / _sales_class / _sales_explain UDFs
-- (sales_sql/serving.py). Arguments are cast here (docs/sql.md): a sale date that does not cast gives a
-- NULL answer with source 'invalid_date', a price that is present but no number one with source
-- 'invalid_price', instead of failing the query; unit_price and customer_id may be left out.

-- a price: NULL stays NULL (no price); present but no number: NaN, which serving answers as invalid_price
CREATE OR REPLACE MACRO _sales_price(p) AS
    CASE WHEN p IS NULL THEN NULL ELSE coalesce(TRY_CAST(p AS DOUBLE), 'NaN'::DOUBLE) END;

CREATE OR REPLACE MACRO predict_sales(sale_date, branch_id, item_code) AS
        _sales_predict(TRY_CAST(sale_date AS TIMESTAMP), CAST(branch_id AS VARCHAR), CAST(item_code AS VARCHAR), NULL, NULL),
    (sale_date, branch_id, item_code, unit_price) AS
        _sales_predict(TRY_CAST(sale_date AS TIMESTAMP), CAST(branch_id AS VARCHAR), CAST(item_code AS VARCHAR), _sales_price(unit_price), NULL),
    (sale_date, branch_id, item_code, unit_price, customer_id) AS
        _sales_predict(TRY_CAST(sale_date AS TIMESTAMP), CAST(branch_id AS VARCHAR), CAST(item_code AS VARCHAR), _sales_price(unit_price), CAST(customer_id AS VARCHAR));

CREATE OR REPLACE MACRO predict_sales_class(sale_date, branch_id, item_code) AS
        _sales_class(TRY_CAST(sale_date AS TIMESTAMP), CAST(branch_id AS VARCHAR), CAST(item_code AS VARCHAR), NULL, NULL),
    (sale_date, branch_id, item_code, unit_price) AS
        _sales_class(TRY_CAST(sale_date AS TIMESTAMP), CAST(branch_id AS VARCHAR), CAST(item_code AS VARCHAR), _sales_price(unit_price), NULL),
    (sale_date, branch_id, item_code, unit_price, customer_id) AS
        _sales_class(TRY_CAST(sale_date AS TIMESTAMP), CAST(branch_id AS VARCHAR), CAST(item_code AS VARCHAR), _sales_price(unit_price), CAST(customer_id AS VARCHAR));

CREATE OR REPLACE MACRO explain_sales_class(sale_date, branch_id, item_code) AS
        _sales_explain(TRY_CAST(sale_date AS TIMESTAMP), CAST(branch_id AS VARCHAR), CAST(item_code AS VARCHAR), NULL, NULL),
    (sale_date, branch_id, item_code, unit_price) AS
        _sales_explain(TRY_CAST(sale_date AS TIMESTAMP), CAST(branch_id AS VARCHAR), CAST(item_code AS VARCHAR), _sales_price(unit_price), NULL),
    (sale_date, branch_id, item_code, unit_price, customer_id) AS
        _sales_explain(TRY_CAST(sale_date AS TIMESTAMP), CAST(branch_id AS VARCHAR), CAST(item_code AS VARCHAR), _sales_price(unit_price), CAST(customer_id AS VARCHAR));

CREATE OR REPLACE MACRO predict_sales_proba(sale_date, branch_id, item_code) AS
        predict_sales(sale_date, branch_id, item_code).proba,
    (sale_date, branch_id, item_code, unit_price) AS
        predict_sales(sale_date, branch_id, item_code, unit_price).proba,
    (sale_date, branch_id, item_code, unit_price, customer_id) AS
        predict_sales(sale_date, branch_id, item_code, unit_price, customer_id).proba;

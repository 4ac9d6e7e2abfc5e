-- The tables of a sales_sql database file. Safe to run again: nothing here drops or rewrites data.

CREATE SEQUENCE IF NOT EXISTS invoice_line_seq;

-- One row per distinct invoice line ever loaded. Returns and cancellations (quantity_sold <= 0)
-- are kept here and left out of training by the usable_lines view.
CREATE TABLE IF NOT EXISTS invoices (
    line_id        BIGINT    NOT NULL DEFAULT nextval('invoice_line_seq'),
    sale_time      TIMESTAMP NOT NULL,
    branch_id      VARCHAR   NOT NULL,
    invoice_number VARCHAR   NOT NULL,
    item_code      VARCHAR   NOT NULL,
    quantity_sold  INTEGER   NOT NULL,
    unit_price     DOUBLE,
    customer_id    VARCHAR,
    line_key       UHUGEINT  NOT NULL,  -- md5 of the line's values: the de-duplication key
    source_file    VARCHAR   NOT NULL,
    source_line    BIGINT    NOT NULL
);

-- Lines that could not be used, with where they came from and why.
CREATE TABLE IF NOT EXISTS rejected_rows (
    source_file VARCHAR   NOT NULL,
    file_sha256 VARCHAR   NOT NULL,
    source_line BIGINT    NOT NULL,
    reason      VARCHAR   NOT NULL,
    raw         VARCHAR,
    rejected_at TIMESTAMP NOT NULL DEFAULT current_localtimestamp()
);

-- One row per load of one file.
CREATE TABLE IF NOT EXISTS load_log (
    source_file VARCHAR   NOT NULL,
    file_sha256 VARCHAR   NOT NULL,
    rows_read   BIGINT    NOT NULL,
    loaded      BIGINT    NOT NULL,
    duplicates  BIGINT    NOT NULL,
    rejected    BIGINT    NOT NULL,
    returns     BIGINT    NOT NULL,
    loaded_at   TIMESTAMP NOT NULL DEFAULT current_localtimestamp()
);

-- Small key/value facts about the file, e.g. the settings the history table was built with.
CREATE TABLE IF NOT EXISTS sales_sql_meta (
    key   VARCHAR PRIMARY KEY,
    value VARCHAR NOT NULL
);

-- Lines a model may learn from: positive quantities on a day of the years 1-9999. What the loader refuses but a
-- hand edit can write: a NaN price counts as unknown, like NULL (otherwise it would pass `p > 0`, NaN sorting
-- above every number in DuckDB, and make the key's mean price NaN for every later line), and a line dated
-- infinity or outside those years is left out (no calendar feature or prediction exists for it).
CREATE OR REPLACE VIEW usable_lines AS
SELECT line_id, sale_time, CAST(sale_time AS DATE) AS sale_day, branch_id, invoice_number, item_code,
       quantity_sold, CASE WHEN NOT isnan(unit_price) THEN unit_price END AS unit_price, customer_id
FROM invoices
WHERE quantity_sold > 0 AND sale_time BETWEEN $first_time AND $last_time;

-- Production models deployed into this file by `sales-sql promote` (one row per deployment).
-- status: 'active' (answers predictions; at most one), 'retired' (replaced by a later promote),
-- 'rolled_back' (taken out by `sales-sql rollback`).
CREATE SEQUENCE IF NOT EXISTS deployment_seq;
CREATE TABLE IF NOT EXISTS deployed_models (
    deployment_id BIGINT    NOT NULL DEFAULT nextval('deployment_seq'),
    model_name    VARCHAR   NOT NULL,
    version       INTEGER   NOT NULL,
    run_id        VARCHAR   NOT NULL,
    booster       BLOB      NOT NULL,  -- XGBoost UBJSON
    feature_spec  JSON      NOT NULL,
    metrics       JSON      NOT NULL,
    status        VARCHAR   NOT NULL,
    deployed_at   TIMESTAMP NOT NULL DEFAULT current_localtimestamp()
);

-- Each retrain's training distribution, for drift checks against the model version that learned from it:
-- a seeded sample of up to 100,000 training lines with the model's own predicted class.
CREATE TABLE IF NOT EXISTS drift_baseline (
    model_name    VARCHAR NOT NULL,
    version       INTEGER NOT NULL,
    quantity_sold INTEGER,
    unit_price    DOUBLE,
    branch_id     VARCHAR,
    item_code     VARCHAR,
    day_of_week   INTEGER,
    day_of_month  INTEGER,
    month         INTEGER,
    predicted     VARCHAR
);

-- One row per feature per drift check (sales-sql drift), appended.
CREATE SEQUENCE IF NOT EXISTS drift_run_seq;
CREATE TABLE IF NOT EXISTS drift_report (
    run_id        BIGINT    NOT NULL,
    run_at        TIMESTAMP NOT NULL,
    window_start  DATE,
    window_end    DATE,
    model_name    VARCHAR   NOT NULL,
    model_version INTEGER   NOT NULL,
    feature       VARCHAR   NOT NULL,
    test          VARCHAR   NOT NULL,  -- ks, chi2 or performance
    statistic     DOUBLE,              -- KS D, chi-square, or the window's accuracy / macro-F1
    p_value       DOUBLE,
    p_adjusted    DOUBLE,              -- Holm-adjusted over the run's ks and chi2 tests
    effect_size   DOUBLE,              -- decides, with the threshold (performance: test slice minus window)
    threshold     DOUBLE,
    is_drift      BOOLEAN   NOT NULL,
    n_window      BIGINT,
    n_baseline    BIGINT
);

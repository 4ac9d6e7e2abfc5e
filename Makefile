# make demo: the whole flow on generated demo data (demo/ is remade each time), ending with predictions, drift checks and doctor.   make test: the test suite.
# Both create the virtual environment (.venv) first when it is missing or pyproject.toml changed.
# The packages are byte-compiled after pip, on every core (pip compiles one file at a time: 25 s longer here); with
# PYTHONDONTWRITEBYTECODE set, as on CI's machines, nothing would compile later and every process compiles its imports.
# The packages' own test folders (a fifth of their files, never imported here) are left out.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEMO_DB ?= demo/demo.duckdb

.PHONY: demo test test-cluster soak bench clean sql

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet --no-compile -e '.[dev]'
	$(BIN)/python -m compileall -q -j 0 -x '/tests/' $(VENV)/lib
	touch $@

demo: $(BIN)/.installed
	rm -rf demo
	$(BIN)/sales-sql generate demo/invoices.parquet
	$(BIN)/sales-sql load $(DEMO_DB) demo/invoices.parquet
	$(BIN)/sales-sql query $(DEMO_DB) "SELECT branch_id, item_code, hash_features(branch_id, item_code) AS hashed FROM invoices LIMIT 5"
	$(BIN)/sales-sql query $(DEMO_DB) "SELECT sale_day, branch_id, item_code, quantity_sold, label, unit_price, price_vs_item, bi_n, bi_share_low, item_log_qty_mean, customer_n, ci_n FROM training_set ORDER BY line_id DESC LIMIT 5"
	$(BIN)/sales-sql query $(DEMO_DB) "SELECT label, count(*) AS lines, round(count(*) / sum(count(*)) OVER (), 3) AS share FROM training_set GROUP BY label ORDER BY label"
	$(BIN)/sales-sql retrain $(DEMO_DB) --models-dir demo/models
	$(BIN)/sales-sql promote $(DEMO_DB) --best --models-dir demo/models
	$(BIN)/sales-sql models $(DEMO_DB)
	$(BIN)/sales-sql query $(DEMO_DB) "SELECT sale_day, branch_id, item_code, unit_price, label AS actual, predict_sales_class(sale_time, branch_id, item_code, unit_price, customer_id) AS predicted FROM training_set WHERE sale_day >= DATE '2025-12-01' ORDER BY line_id LIMIT 8"
	$(BIN)/sales-sql query $(DEMO_DB) "SELECT round(avg(CASE WHEN predict_sales_class(sale_time, branch_id, item_code, unit_price, customer_id) = label THEN 1 ELSE 0 END), 4) AS december_accuracy, count(*) AS lines FROM training_set WHERE sale_day >= DATE '2025-12-01'"
	$(BIN)/sales-sql query $(DEMO_DB) "SELECT item_code, p.label AS predicted, round(p.proba.low, 3) AS p_low, round(p.proba.medium, 3) AS p_medium, round(p.proba.high, 3) AS p_high, p.source, p.model_version FROM (SELECT item_code, predict_sales(DATE '2025-12-30', '1', item_code) AS p FROM (VALUES ('10001'), ('10002'), ('10003')) v(item_code))"
	$(BIN)/sales-sql query $(DEMO_DB) "SELECT item_code, e.feature, round(e.value, 3) AS value, round(e.contribution, 3) AS contribution FROM (SELECT item_code, unnest(explain_sales_class(DATE '2025-12-30', '1', item_code)) AS e FROM (VALUES ('10001'), ('10002')) v(item_code))"
	$(BIN)/sales-sql predict $(DEMO_DB) --where "sale_time >= DATE '2025-12-01'" --into december_predictions
	$(BIN)/sales-sql query $(DEMO_DB) "SELECT label, source, model_version, count(*) AS lines FROM december_predictions GROUP BY ALL ORDER BY label"
	@echo "--- drift: October 2025 against the training baseline (expect no drift, exit 0; December would flag the holiday peak)"
	$(BIN)/sales-sql drift $(DEMO_DB) --window 30d --end 2025-10-31
	@echo "--- drift: the same invoices made with the generator's drift option from 2025-10-01 (expect drift, exit 1)"
	$(BIN)/sales-sql generate demo/drifted.parquet --drift-after 2025-10-01
	$(BIN)/sales-sql load demo/drifted.duckdb demo/drifted.parquet
	$(BIN)/sales-sql promote demo/drifted.duckdb --best --models-dir demo/models
	$(BIN)/sales-sql drift demo/drifted.duckdb --window 30d --end 2025-10-31 --plot demo/drift.png; test $$? -eq 1
	@echo "--- doctor: the health of the demo database (expect every check OK, exit 0)"
	$(BIN)/sales-sql doctor $(DEMO_DB)

# two test files at a time (pytest-xdist), handed out in collection order (tests/conftest.py: the longest first;
# without --no-loadscope-reorder, xdist would order them by their number of tests); OpenMP's threads sleep when idle
# instead of spinning, or XGBoost in one file starves the other
test: $(BIN)/.installed
	OMP_WAIT_POLICY=PASSIVE $(BIN)/pytest -n 2 --dist loadfile --no-loadscope-reorder -m "not cluster"

# the test on a Spark standalone cluster started on this machine (about 3 minutes; CI runs it after make test)
test-cluster: $(BIN)/.installed
	$(BIN)/pytest -m cluster

soak: $(BIN)/.installed
	SALES_SQL_SOAK_SECONDS=60 $(BIN)/pytest -s tests/test_soak.py

bench: $(BIN)/.installed
	$(BIN)/python bench/hash_features.py
	$(BIN)/python bench/quality.py
	$(BIN)/python bench/frontier.py
	$(BIN)/python bench/train.py
	$(BIN)/python bench/predict.py
	$(BIN)/python bench/drift.py
	$(BIN)/python bench/drift_quality.py
	$(BIN)/python bench/drift_uci.py
	$(BIN)/python bench/scale.py
	$(BIN)/python bench/backfill.py
	$(BIN)/python bench/serve.py

clean:
	rm -rf $(VENV) demo

# sql/history.sql and sql/training_set.sql, rendered again from sales_sql/definition.py (tests fail while they differ)
sql: $(BIN)/.installed
	$(BIN)/python -c "from pathlib import Path; from sales_sql.definition import write_sql; write_sql(Path('sql'))"

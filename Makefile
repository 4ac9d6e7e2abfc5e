# make demo: the whole flow on generated demo data (demo/ is remade each time).   make test: the test suite.
# Both create the virtual environment (.venv) first when it is missing or pyproject.toml changed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEMO_DB ?= demo/demo.duckdb

.PHONY: demo test bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
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

test: $(BIN)/.installed
	$(BIN)/pytest

bench: $(BIN)/.installed
	$(BIN)/python bench/hash_features.py
	$(BIN)/python bench/quality.py
	$(BIN)/python bench/train.py

clean:
	rm -rf $(VENV) demo

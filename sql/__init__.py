"""The SQL that sales_sql runs, shipped inside the package as sales_sql.sql (see pyproject.toml)."""

"""The default settings, shipped inside the package as sales_sql.configs (see pyproject.toml)."""

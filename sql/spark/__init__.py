"""The Spark SQL twins of history.sql and training_set.sql, rendered from sales_sql/definition.py (sales_sql.spark)."""

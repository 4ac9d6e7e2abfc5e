"""sales_sql: retail sales-class prediction inside one DuckDB database file."""
from .config import Settings, load_settings
from .db import close, connect, register

__all__ = ["Settings", "close", "connect", "load_settings", "register"]
__version__ = "0.1.0"

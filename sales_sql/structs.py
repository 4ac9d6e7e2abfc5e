"""The STRUCT types the SQL functions return, each described once; the DuckDB type text and the Arrow type come from
the same description."""
from __future__ import annotations

import pyarrow as pa

_SCALARS = {"DOUBLE": pa.float64(), "BIGINT": pa.int64(), "INTEGER": pa.int32(), "VARCHAR": pa.string()}


class Struct:
    """STRUCT(name TYPE, ...) from (name, type) pairs, a type being a DuckDB scalar type name or another Struct;
    `many=True` makes it a list of such structs (STRUCT(...)[])."""

    def __init__(self, *fields: tuple[str, str | Struct], many: bool = False):
        self.fields, self.many = fields, many

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.fields]

    @property
    def duckdb(self) -> str:
        inner = ", ".join(f"{name} {t.duckdb if isinstance(t, Struct) else t}" for name, t in self.fields)
        return f"STRUCT({inner})" + ("[]" if self.many else "")

    @property
    def arrow(self) -> pa.DataType:
        struct = pa.struct([(name, t.arrow if isinstance(t, Struct) else _SCALARS[t]) for name, t in self.fields])
        return pa.list_(struct) if self.many else struct


PROBA = Struct(("low", "DOUBLE"), ("medium", "DOUBLE"), ("high", "DOUBLE"))
PREDICTION = Struct(("label", "VARCHAR"), ("proba", PROBA), ("source", "VARCHAR"), ("model_version", "INTEGER"))
EXPLANATION = Struct(("feature", "VARCHAR"), ("value", "DOUBLE"), ("contribution", "DOUBLE"), many=True)
KS = Struct(("statistic", "DOUBLE"), ("p_value", "DOUBLE"), ("effect_size", "DOUBLE"), ("n_current", "BIGINT"),
            ("n_baseline", "BIGINT"))
CHI2 = Struct(("statistic", "DOUBLE"), ("p_value", "DOUBLE"), ("dof", "INTEGER"), ("effect_size", "DOUBLE"),
              ("categories", "BIGINT"), ("n_current", "BIGINT"), ("n_baseline", "BIGINT"))

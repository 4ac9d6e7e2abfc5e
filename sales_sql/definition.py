"""The one feature definition: key kinds, their statistics, calendar, price and hashed features, and the label.

Everything else is derived from it: the SQL of the history tables, of their update after a load and of the
training_set view, for DuckDB and for Spark (rendered here, RENDERED below, and committed under sql/ so analysts read
plain SQL, with sql/predict.sql, the inputs' macros of inputs.py), the feature names in matrix order, the look-up
kernels' layout (sales_sql/lookups.py) and the feature spec stored with each model version. Adding a statistic or a
key kind is one entry below plus a retrain; docs/design.md shows the steps.

`make sql` writes the rendered files again after a change here (tests fail while they differ from the rendering).
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

from .inputs import render_predict

# the sales classes, in label order: LOW up to low_max, MEDIUM up to medium_max, HIGH above (settings)
CLASSES = ("LOW", "MEDIUM", "HIGH")

# the valid sale days, the years 1-9999: outside them a line is not usable (no calendar exists for it) and a
# prediction answers invalid_date. Days from 1970-01-01 for the kernels; SQL literals for usable_lines and the loader
FIRST_DAY, LAST_DAY = -719_162, 2_932_896
FIRST_TIME, LAST_TIME = "TIMESTAMP '0001-01-01'", "TIMESTAMP '9999-12-31 23:59:59.999999'"

# changes whenever the kernels' reading of a definition changes: older models then answer with the fallback
KERNEL_FORMAT = 2


@dataclass(frozen=True)
class KeyKind:
    """Lines grouped by a key (one or two invoice columns, joined with chr(31) as the view joins them)."""
    name: str                  # the history table's `kind`
    prefix: str                # of its feature names: prefix_statistic
    columns: tuple[str, ...]   # the key's columns, of usable_lines (and the prediction functions' arguments)
    label: str                 # in explanations
    stats: tuple[str, ...]     # the statistics (below) that are features of this kind
    days_since: bool = True    # also prefix_days_since: days from the key's latest earlier sale


@dataclass(frozen=True)
class Statistic:
    """A column of history: numerator / denominator of the daily sums, summed over every day of the key up to the
    history row's day (over = "running"), over that day alone ("day"), or over the N days ending on it ("28d")."""
    name: str
    numerator: str
    denominator: str | None = None
    over: str = "running"
    label: str = ""


@dataclass(frozen=True)
class Definition:
    # per key and day, over usable lines (q = quantity_sold, p = unit_price; $low_max, $medium_max from settings):
    # (name, SQL, scale). Every sum is an integer (a count, or a value times `scale` rounded: fixed point), so sums
    # of sums are exact in any order and a load that adds lines updates history to what a rebuild would give
    sums: tuple[tuple[str, str, int], ...]
    statistics: tuple[Statistic, ...]
    kinds: tuple[KeyKind, ...]
    # (feature, calendar function of CALENDAR_SQL); the kernels compute these
    calendar: tuple[tuple[str, str], ...]
    # (feature, key kind): the line's price over the kind's `divisor` statistic as of the day before
    price_ratios: tuple[tuple[str, str], ...]
    divisor: str = "price_mean"
    hashed: tuple[str, str] = ("branch_id", "item_code")  # hash_features' two columns, `hashed` in the view

    def statistic(self, name: str) -> Statistic:
        found = next((s for s in self.statistics if s.name == name), None)
        if found is None:
            raise KeyError(f"the feature definition has no statistic {name!r}; it has "
                           f"{[s.name for s in self.statistics]}")
        return found

    def features(self, buckets: int) -> list[str]:
        """The model's feature names in matrix order (the order of training_set's columns, hashed spread out)."""
        names = [name for name, _ in self.calendar] + ["unit_price"] + [name for name, _ in self.price_ratios]
        names += [f"hashed_{i}" for i in range(buckets)]
        for kind in self.kinds:
            names += [f"{kind.prefix}_{s}" for s in kind.stats] + ([f"{kind.prefix}_days_since"]
                                                                   if kind.days_since else [])
        return names

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict) -> Definition:
        return cls(sums=tuple(map(tuple, raw["sums"])), statistics=tuple(Statistic(**s) for s in raw["statistics"]),
                   kinds=tuple(KeyKind(**{**k, "columns": tuple(k["columns"]), "stats": tuple(k["stats"])})
                               for k in raw["kinds"]),
                   calendar=tuple(map(tuple, raw["calendar"])), price_ratios=tuple(map(tuple, raw["price_ratios"])),
                   divisor=raw["divisor"], hashed=tuple(raw["hashed"]))


# every kind's features: its running statistics, its previous selling day's, and those of the 28 days ending there
HISTORY_STATS = ("n", "log_qty_mean", "share_low", "share_high", "day_n", "day_log_qty_mean", "n_28d",
                 "log_qty_mean_28d")

# the calendar functions, of the line's day (l.sale_day) and time (l.sale_time): a time of exactly midnight is a
# date without a time of day, and its hour is unknown
CALENDAR_SQL = {"isodow": "isodow(l.sale_day)", "dayofmonth": "dayofmonth(l.sale_day)", "month": "month(l.sale_day)",
                "dayofyear": "dayofyear(l.sale_day)",
                "hour": "CASE WHEN l.sale_time <> CAST(l.sale_day AS TIMESTAMP) THEN hour(l.sale_time) END"}

FEATURES = Definition(
    sums=(  # fixed point at 2^-32; a price of 1e15 or more is no price (its sum could overflow; the CASE, not a
          # FILTER: DuckDB casts every row's value before it filters)
        ("n", "count(*)", 1),
        ("sum_log_q", "sum(CAST(round(ln(q) * 4294967296) AS BIGINT))", 1 << 32),
        ("n_low", "count(*) FILTER (WHERE q <= $low_max)", 1),
        ("n_high", "count(*) FILTER (WHERE q > $medium_max)", 1),
        ("sum_p", "sum(CAST(round(CASE WHEN p > 0 AND p < 1e15 THEN p END * 4294967296) AS HUGEINT))", 1 << 32),
        ("n_p", "count(p) FILTER (WHERE p > 0 AND p < 1e15)", 1),
    ),
    statistics=(
        Statistic("n", "n", label="lines before"),
        Statistic("log_qty_mean", "sum_log_q", "n", label="mean log quantity"),
        Statistic("share_low", "n_low", "n", label="share LOW"),
        Statistic("share_high", "n_high", "n", label="share HIGH"),
        Statistic("price_mean", "sum_p", "n_p", label="mean price"),
        Statistic("day_n", "n", over="day", label="lines on its last day"),
        Statistic("day_log_qty_mean", "sum_log_q", "n", over="day", label="mean log quantity on its last day"),
        Statistic("n_28d", "n", over="28d", label="lines in the 28 days to its last day"),
        Statistic("log_qty_mean_28d", "sum_log_q", "n", over="28d", label="mean log quantity in those 28 days"),
    ),
    kinds=(
        KeyKind("branch_item", "bi", ("branch_id", "item_code"), "branch x item", HISTORY_STATS),
        KeyKind("item", "item", ("item_code",), "item", HISTORY_STATS),
        KeyKind("branch", "branch", ("branch_id",), "branch", HISTORY_STATS, days_since=False),
        KeyKind("customer", "customer", ("customer_id",), "customer", HISTORY_STATS),
        KeyKind("customer_item", "ci", ("customer_id", "item_code"), "customer x item", HISTORY_STATS),
    ),
    calendar=(("day_of_week", "isodow"), ("day_of_month", "dayofmonth"), ("month", "month"),
              ("day_of_year", "dayofyear"), ("hour", "hour")),
    price_ratios=(("price_vs_item", "item"), ("price_vs_branch_item", "branch_item"),
                  ("price_vs_customer_item", "customer_item"), ("price_vs_customer", "customer")),
)


def spec(definition: Definition, low_max: int, medium_max: int, buckets: int) -> dict:
    """What a booster was trained on, stored with each version: a deployed model answers only while this equals
    the current one (else `fallback:spec_mismatch`). Comments and layout of the SQL do not enter it."""
    spec = {"kernel_format": KERNEL_FORMAT, "features": definition.features(buckets), "classes": list(CLASSES),
            "low_max": low_max, "medium_max": medium_max, "buckets": buckets, "definition": definition.as_dict()}
    return json.loads(json.dumps(spec))  # as it reads back from a model version (lists, not tuples)


def readable(definition: Definition, feature: str) -> str:
    """'bi_share_low' -> 'branch x item: share LOW'; the other names lose their underscores."""
    for kind in definition.kinds:
        stat = feature.removeprefix(kind.prefix + "_")
        if stat != feature and (stat in kind.stats or stat == "days_since"):
            what = "days since last sale" if stat == "days_since" else definition.statistic(stat).label
            return f"{kind.label}: {what}"
    ratios = {name: f"price / {next(k.label for k in definition.kinds if k.name == kind)} mean price"
              for name, kind in definition.price_ratios}
    return ratios.get(feature, feature.replace("_", " "))


# ---- the SQL ----------------------------------------------------------------------------------------------

def label_sql(quantity: str, low_max="$low_max", medium_max="$medium_max") -> str:
    """The class of a line from its quantity, as SQL (placeholders filled in from the settings, or the numbers)."""
    return (f"CASE WHEN {quantity} <= {low_max} THEN '{CLASSES[0]}' WHEN {quantity} <= {medium_max} THEN "
            f"'{CLASSES[1]}' ELSE '{CLASSES[2]}' END")


def key_sql(kind: KeyKind, table: str = "") -> str:
    """The SQL of a kind's key, the string history and the look-ups find it by: its columns joined by chr(31)."""
    return " || chr(31) || ".join(f"{table}{c}" for c in kind.columns)


def _ratio_sql(definition: Definition, s: Statistic, sums: str = "") -> str:
    scale = {name: k for name, _, k in definition.sums}
    value = lambda x: f"CAST({sums}{x} AS DOUBLE)" + (f" / {scale[x]}" if scale[x] != 1 else "")  # noqa: E731
    den = s.denominator and (value(s.denominator) if scale[s.denominator] != 1 else f"{sums}{s.denominator}")
    return value(s.numerator) if s.denominator is None else f"{value(s.numerator)} / nullif({den}, 0)"


def _over(s: Statistic) -> str:
    """The prefix of the sums a statistic divides: running sums "", the day's own "on_day_", N days' "in_Nd_"."""
    return "" if s.over == "running" else "on_day_" if s.over == "day" else f"in_{int(s.over[:-1])}d_"


def _history_parts(definition: Definition, running_sum: str = "sum({name}) OVER w") -> tuple[str, str, str, str]:
    """The pieces both history scripts share: the keyed lines (a WHERE to complete), the daily sums, the running
    and windowed sums over a daily table (a FROM to complete; `running_sum`: the SQL of a sum through the day),
    and the statistics."""
    for s in definition.statistics:
        if not (s.over in ("running", "day") or (s.over[:-1].isdigit() and s.over.endswith("d"))):
            raise ValueError(f"statistic {s.name}: over = {s.over!r}; write 'running', 'day' or a number of days "
                             "such as '28d'")
    extra = {}  # (prefix, sum) -> SQL, for the day's own sums and the windows of N days
    for s in definition.statistics:
        for x in (s.numerator, s.denominator):
            if x and s.over != "running":
                extra[(_over(s), x)] = x if s.over == "day" else f"sum({x}) OVER w{int(s.over[:-1])}"
    windows = sorted({int(s.over[:-1]) for s in definition.statistics if s.over.endswith("d") and s.over != "day"})
    keyed = "\n    UNION ALL\n".join(
        f"    SELECT '{k.name}' AS kind, {key_sql(k)} AS key, sale_day, quantity_sold AS q, unit_price AS p\n"
        f"    FROM usable_lines WHERE {{where}}{' AND '.join(f'{c} IS NOT NULL' for c in k.columns)}"
        for k in definition.kinds)
    daily = ",\n".join(f"       {sql if sql.startswith('count(') else 'coalesce(' + sql + ', 0)':80} AS {name}"
                       for name, sql, _ in definition.sums)  # never NULL: a load adds them up
    running = ",\n".join([f"           {running_sum.format(name=name)} AS {name}" for name, _, _ in definition.sums] +
                         [f"           {sql} AS {prefix}{name}" for (prefix, name), sql in extra.items()])
    window = ",\n         ".join(
        ["w AS (PARTITION BY kind, key ORDER BY sale_day ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)"] +
        [f"w{n} AS (PARTITION BY kind, key ORDER BY sale_day RANGE BETWEEN INTERVAL {n - 1} DAYS PRECEDING AND "
         "CURRENT ROW)" for n in windows])
    running = f"""    SELECT kind, key, sale_day,
{running}
    FROM {{daily}}
    WINDOW {window}"""
    stats = ",\n".join(f"       {_ratio_sql(definition, s, _over(s)):60} AS {s.name}" for s in definition.statistics)
    return keyed, daily, running, stats


def render_history(definition: Definition) -> str:
    """sql/history.sql: per key kind, key and day the key sold, its daily sums (history_daily) and its statistics
    through that day (history)."""
    keyed, daily, running, stats = _history_parts(definition)
    return f"""-- Rendered from sales_sql/definition.py by `make sql`: edit the definition, not this file.
-- history: for every key and every day on which that key sold, the statistics of the key's usable lines up to and
-- including that day ("running"), of that day alone ("day"), or of the N days ending on it. Features look up the
-- latest row strictly before a line's day (an as-of look-up), so a line never sees its own day or anything later.
-- history_daily holds each key and day's sums: integers (counts, and fixed point for logs and prices), so a load
-- adds its lines' sums to them exactly and recomputes only the keys it touched, from their first new day on
-- (sql/history_update.sql). This script rebuilds both from usable_lines; $low_max / $medium_max: the settings.
CREATE OR REPLACE TABLE history_daily AS
WITH keyed AS (
{keyed.format(where="")}
)
SELECT kind, key, sale_day,
{daily}
FROM keyed
GROUP BY ALL
ORDER BY kind, key, sale_day;

CREATE OR REPLACE TABLE history AS
WITH running AS (
{running.format(daily="history_daily")}
)
SELECT kind, key, sale_day,
{stats}
FROM running
ORDER BY kind, key, sale_day;
"""


def render_history_update(definition: Definition) -> str:
    """sql/history_update.sql: history and history_daily brought up to date with the lines after line $after."""
    windows = [int(s.over[:-1]) for s in definition.statistics if s.over.endswith("d") and s.over != "day"]
    keyed, daily, running, stats = _history_parts(
        definition, "coalesce(b.before_{name}, 0) + sum(CASE WHEN sale_day >= from_day THEN d.{name} END) OVER w")
    sums = [name for name, _, _ in definition.sums]
    merged = ",\n".join(f"       coalesce(d.{x}, 0) + a.{x} AS {x}" for x in sums)
    before = ",\n".join(f"           sum(d.{x}) AS before_{x}" for x in sums)
    recent = ("_history_touched d LEFT JOIN before b USING (kind, key)\n"
              f"    WHERE d.sale_day >= d.from_day - INTERVAL {max(windows, default=1) - 1} DAYS")
    return f"""-- Rendered from sales_sql/definition.py by `make sql`: edit the definition, not this file.
-- After a load: the lines with line_id > $after added to history_daily and history, touching only their keys.
-- A key's rows from its first new day on are recomputed (a back-dated line changes every later running and
-- windowed statistic of its keys): the running sums from the sums of its days before (one aggregate) plus its
-- days since, the windows from the days they reach back to. The result equals a rebuild by sql/history.sql
-- exactly (the sums are integers), which tests check after loads in any order.
CREATE OR REPLACE TEMP TABLE _history_added AS
WITH keyed AS (
{keyed.format(where="line_id > $after AND ")}
)
SELECT kind, key, sale_day,
{daily}
FROM keyed
GROUP BY ALL;

CREATE OR REPLACE TEMP TABLE _history_days AS
SELECT kind, key, sale_day,
{merged}
FROM _history_added a LEFT JOIN history_daily d USING (kind, key, sale_day);

DELETE FROM history_daily d USING _history_added a
WHERE d.kind = a.kind AND d.key = a.key AND d.sale_day = a.sale_day;
INSERT INTO history_daily SELECT * FROM _history_days;

CREATE OR REPLACE TEMP TABLE _history_keys AS
SELECT kind, key, min(sale_day) AS from_day FROM _history_added GROUP BY ALL;

DELETE FROM history h USING _history_keys t
WHERE h.kind = t.kind AND h.key = t.key AND h.sale_day >= t.from_day;
CREATE OR REPLACE TEMP TABLE _history_touched AS  -- one scan of history_daily
SELECT d.*, t.from_day FROM history_daily d JOIN _history_keys t USING (kind, key);
INSERT INTO history
WITH before AS (
    SELECT kind, key,
{before}
    FROM _history_touched d
    WHERE d.sale_day < d.from_day
    GROUP BY ALL
), running AS (
{running.format(daily=recent)}
)
SELECT kind, key, sale_day,
{stats}
FROM running JOIN _history_keys t USING (kind, key)
WHERE sale_day >= t.from_day;

DROP TABLE _history_touched;
DROP TABLE _history_added;
DROP TABLE _history_days;
DROP TABLE _history_keys;
"""


def render_training_set(definition: Definition, asof_join: bool = True) -> str:
    """sql/training_set.sql: one row per usable line with its label and every feature, history as of the day
    before (ASOF joins). Without `asof_join` (for Spark, which has none: render_spark_training_set), each line is put
    once per key kind into that key's timeline beside the key's history rows, and the latest history row before it is
    the last one seen in (day, lines first) order; one aggregation by line gathers the kinds' rows (one shuffle, where
    a join per kind took five)."""
    two = [k for k in definition.kinds if len(k.columns) > 1]
    keys = "".join(f",\n           {key_sql(k)} AS {k.name}_key" for k in two)
    unknown = [fn for _, fn in definition.calendar if fn not in CALENDAR_SQL]
    if unknown:
        raise ValueError(f"calendar functions {unknown}: the definition knows {sorted(CALENDAR_SQL)}")
    calendar = "\n".join(f"    {CALENDAR_SQL[fn]} AS {name}," for name, fn in definition.calendar)
    alias = {k.name: k.prefix for k in definition.kinds}
    ratios = "\n".join(f"    l.unit_price / {alias[kind]}.{definition.divisor} AS {name},"
                       for name, kind in definition.price_ratios)
    history = ",\n".join(
        "    " + ", ".join([f"{k.prefix}.{s} AS {k.prefix}_{s}" for s in k.stats] +
                           ([(f"l.sale_day - {k.prefix}.sale_day" if asof_join else
                              f"date_diff('day', {k.prefix}.sale_day, l.sale_day)") + f" AS {k.prefix}_days_since"]
                            if k.days_since else []))
        for k in definition.kinds)
    key = {k.name: k.name + '_key' if len(k.columns) > 1 else k.columns[0] for k in definition.kinds}
    timeline = ""
    if asof_join:
        joins = "\n".join(f"ASOF LEFT JOIN (FROM history WHERE kind = '{k.name}') {k.prefix}\n"
                          f"       ON {k.prefix}.key = l.{key[k.name]} AND l.sale_day > {k.prefix}.sale_day"
                          for k in definition.kinds)
    else:
        stats = ", ".join(f"{x} := {x}" for x in ["sale_day"] + [s.name for s in definition.statistics])
        found = ",\n".join(f"           max(CASE WHEN kind = '{k.name}' THEN h END) AS {k.prefix}"
                           for k in definition.kinds)
        probes = "\n    UNION ALL\n".join(
            f"    SELECT '{k.name}' AS kind, {key[k.name]} AS key, sale_day, 0 AS tag, line_id, NULL AS h\n"
            f"    FROM lines WHERE {' AND '.join(f'{c} IS NOT NULL' for c in k.columns)}" for k in definition.kinds)
        timeline = f""", timeline AS (  -- per kind and key: its lines (tag 0) and its history rows (tag 1)
{probes}
    UNION ALL
    SELECT kind, key, sale_day, 1 AS tag, NULL AS line_id, struct_pack({stats}) AS h FROM history
), asof AS (
    SELECT kind, tag, line_id, last_value(h IGNORE NULLS) OVER (PARTITION BY kind, key ORDER BY sale_day, tag
                                                               ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS h
    FROM timeline
), found AS (  -- per line, the history row found for each kind (a struct named as the kind's prefix; NULL: none)
    SELECT line_id,
{found}
    FROM asof WHERE tag = 0
    GROUP BY line_id
)"""
        joins = "LEFT JOIN found f ON f.line_id = l.line_id"
    b, i = definition.hashed
    return f"""-- Rendered from sales_sql/definition.py by `make sql`: edit the definition, not this file.
-- training_set: one row per usable invoice line with its label and every model feature. Calendar and hashed
-- features come from the line's own day and keys; history features from the latest history row strictly before
-- the line's day (ASOF join), NULL when the key has no earlier sale. The line's quantity makes the label only.
CREATE OR REPLACE VIEW training_set AS
WITH lines AS (
    SELECT *{keys}
    FROM usable_lines
){timeline}
SELECT
    l.line_id, l.sale_time, l.sale_day, l.branch_id, l.item_code, l.customer_id, l.quantity_sold,
    {label_sql("l.quantity_sold")} AS label,
{calendar}
    l.unit_price AS unit_price,
{ratios}
    hash_features(l.{b}, l.{i}) AS hashed,
{history}
FROM lines l
{joins};
"""


# ---- the same tables in Spark SQL ------------------------------------------------------------------------------

def spark_sql(sql: str, read: str = "duckdb") -> list[tuple[str | None, str]]:
    """sales_sql's SQL (DuckDB's, or Spark's with `read="spark"`) as Spark SQL statements: (the name a statement
    creates, or None; its text). Parsed and written by sqlglot (pinned in the spark extra), with sales_sql's own rules
    on the parsed statements: tables and views are temporary views (Spark works on views over the export; the ORDER BY
    that sorts a DuckDB table is dropped from them), HUGEINT a DECIMAL(38,0), isodow Spark's weekday + 1, a
    difference of days datediff(end, start), and $names stay templates."""
    import sqlglot  # pure Python, about 0.2 s: only where Spark SQL is made
    from sqlglot import exp

    def rule(node):
        if isinstance(node, exp.Create) and node.kind in ("TABLE", "VIEW"):
            node.set("kind", "VIEW")
            node.set("replace", True)
            node.set("properties", exp.Properties(expressions=[exp.TemporaryProperty()]))
        if isinstance(node, exp.DataType) and node.this == exp.DataType.Type.INT128:
            return exp.DataType.build("DECIMAL(38,0)")
        if isinstance(node, exp.DayOfWeekIso):
            return exp.paren(exp.Add(this=exp.func("weekday", node.this), expression=exp.Literal.number(1)))
        if isinstance(node, exp.DateDiff):
            return exp.func("datediff", node.this, node.expression)  # DuckDB's date_diff('day', start, end)
        if isinstance(node, exp.Placeholder):
            return exp.var(f"${node.name}")  # filled from the settings after (duck.fill)
        return node

    out = []
    for tree in sqlglot.parse(sql, read=read):
        if tree is not None:
            tree = tree.transform(rule)
            made = tree.this.name if isinstance(tree, exp.Create) else None
            if made and isinstance(tree.expression, exp.Select) and not tree.expression.args.get("limit"):
                tree.expression.set("order", None)  # a view keeps no order: DuckDB's sorted table, a global sort here
            out.append((made, tree.sql(dialect="spark", pretty=True)))
    return out


def _spark_file(statements: list[tuple[str | None, str]], about: str) -> str:
    return (f"-- Spark SQL: {about} through definition.spark_sql (sqlglot); `make sql` writes it.\n"
            + "".join(f"{text};\n\n" for _, text in statements).rstrip("\n") + "\n")


def render_spark_history(definition: Definition) -> str:
    """sql/spark/history.sql: history_daily and history as Spark views, the statements of sql/history.sql."""
    return _spark_file(spark_sql(render_history(definition)), "the statements of sql/history.sql")


def render_spark_training_set(definition: Definition) -> str:
    """sql/spark/training_set.sql: the training_set view in Spark SQL, its as-of look-up a window over each key's
    timeline (Spark has no ASOF join)."""
    return _spark_file(spark_sql(render_training_set(definition, asof_join=False)),
                       "the training_set view, its as-of look-up over each key's timeline")


RENDERED = {"history": render_history, "history_update": render_history_update, "predict": render_predict,
            "training_set": render_training_set, "spark/history": render_spark_history,
            "spark/training_set": render_spark_training_set}


def write_sql(folder: Path) -> list[Path]:
    """Write the rendered SQL files of the shipped definition into `folder` (the repository's sql/)."""
    written = []
    for name, render in RENDERED.items():
        path = folder / f"{name}.sql"
        path.parent.mkdir(exist_ok=True)
        path.write_text(render(FEATURES), encoding="utf-8")
        written.append(path)
    return written


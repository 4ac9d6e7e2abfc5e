"""The sales-sql command: options and output over the library's calls (retrain also reads the data while MLflow
starts, in a thread). Every outcome maps to one exit code (errors.Contract, with the codes and the messages).

Each command imports the modules it runs inside its own function: MLflow, XGBoost, numba's kernels and pyspark take
seconds each to import, and `sales-sql load` or `query` should not wait for them."""
from __future__ import annotations

import dataclasses
import json
import os
import re
import sys
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import click
import duckdb

from . import db
from .config import DEFAULT_PATH, FIELDS, load_settings
from .errors import DONE, FAILED, FINDING, Contract, Finding, step
from .loader import PRESETS, load_file, parse_mapping


def _remember_config(ctx, param, value):
    ctx.ensure_object(dict)["config"] = value
    return value


def config_option(command):
    """--config FILE on a command: settings that override the shipped defaults (see _settings)."""
    return click.option("--config", "config_file", type=click.Path(dir_okay=False), expose_value=False,
                        callback=_remember_config, metavar="FILE",
                        help="Settings file overriding the shipped defaults (default: $SALES_SQL_CONFIG, else none). "
                             "`sales-sql config --init FILE` writes one to edit.")(command)


def _settings():
    """The shipped defaults overridden by --config FILE, else $SALES_SQL_CONFIG (sales_sql.load_settings)."""
    return load_settings(click.get_current_context().find_object(dict).get("config"))


def _open(path: str, read_only: bool = False, memory_limit: str | None = None, check_history: bool = True):
    """DATABASE for the command, released when the command ends (DuckDB then removes its spill folder too)."""
    con = db.connect(path, read_only=read_only, settings=_settings(), check_history=check_history)
    click.get_current_context().call_on_close(lambda: db.close(path))
    con.execute("SET enable_progress_bar = false")
    if memory_limit is not None:
        _limit(con, memory_limit)
    return con


def _limit(con, memory_limit: str) -> None:
    try:
        con.execute("SET memory_limit = ?", [memory_limit])
    except duckdb.Error as e:
        raise click.BadParameter(f"{memory_limit!r}: {e}; write a size such as 512MB or 2GB",
                                 param_hint="--memory-limit") from None


def memory_limit_option(default: str, what: str):
    return click.option("--memory-limit", default=default, show_default=True,
                        help=f"DuckDB's memory limit for the command ({what}; beyond it DuckDB writes to a "
                             "temporary folder beside DATABASE, removed at the end).")


def _loading(file, step):
    """Progress of a long load on a terminal (nothing in a log): the step, and DuckDB's bar for long statements."""
    click.echo(f"{file}: {step} ...", err=True)


def spark_options(command):
    """--engine, --input, --master and --conf: what a command that also runs on Apache Spark takes."""
    options = [
        click.option("--engine", type=click.Choice(["duckdb", "spark"]), default="duckdb", show_default=True,
                     help="spark: run on Apache Spark over the invoices of --input (pip install 'sales_sql[spark]' "
                          "and Java 17; docs/scale-out.md); the model and what is saved stay in DATABASE and its "
                          "MLflow store."),
        click.option("--input", "input_dir", type=click.Path(exists=True, file_okay=False),
                     help="With --engine spark: the folder `sales-sql export` wrote (or any Parquet of invoices)."),
        click.option("--master", default="local[2]", show_default=True,
                     help="With --engine spark: Spark's master URL (spark://HOST:7077 for a standalone cluster)."),
        click.option("--conf", "conf", multiple=True, metavar="KEY=VALUE",
                     help="With --engine spark: a Spark setting, e.g. --conf spark.executor.memory=4g (repeatable)."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


@contextmanager
def _on_spark(settings, input_dir, master, conf):
    """A Spark session (master, --conf settings) with sales_sql's views over the invoices of --input; stopped at the
    end. Yields (sales_sql.spark, the session)."""
    if input_dir is None:
        raise click.UsageError("--engine spark needs --input DIR: the invoices as Parquet (sales-sql export "
                               "DATABASE DIR writes them)")
    settings_given = {}
    for item in conf:
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise click.BadParameter(f"{item!r} is not a Spark setting; write it as KEY=VALUE, e.g. "
                                     "spark.executor.memory=4g", param_hint="--conf")
        settings_given[key.strip()] = value
    try:
        from . import spark as engine
    except ImportError as e:
        raise click.UsageError(f"--engine spark needs pyspark ({e}): pip install 'sales_sql[spark]' "
                               "(and Java 17 or newer)") from None
    step(f"starting Spark ({master})")
    session = engine.session(master, **settings_given)
    try:
        step("reading the invoices on Spark")
        click.echo(f"history on Spark: {engine.create_views(session, input_dir, settings)}", err=True)
        yield engine, session
    finally:
        engine.stop(session)


def _local_only(engine: str, **given) -> None:
    """Refuse, in one line, options that only --engine spark takes when the engine is DuckDB."""
    for option, value in given.items():
        if engine != "spark" and value:
            raise click.UsageError(f"--{option.replace('_', '-')} is for --engine spark; leave it out on DuckDB")


@click.group(cls=Contract)
@click.version_option(package_name="sales_sql")
@click.option("--debug", is_flag=True, envvar="SALES_SQL_DEBUG",
              help="On a failure, print the traceback under the one-line message (or set SALES_SQL_DEBUG=1).")
@click.pass_context
def main(ctx, debug):
    """sales_sql: retail sales-class prediction inside one DuckDB database file.

    Exit codes of every command: 0 done; 1 a finding the command exists to report (drift, the gate refused a
    version, doctor found a WARN or FAIL); 2 could not run or failed (one line on stderr names the cause).
    """
    ctx.meta["sales_sql.debug"] = debug


@main.command()
@click.option("--init", "init", type=click.Path(dir_okay=False), metavar="FILE",
              help="Write a commented copy of the shipped defaults to FILE, to edit and pass as --config FILE.")
@click.option("--force", is_flag=True, help="With --init, overwrite FILE if it exists.")
@config_option
def config(init, force):
    """Show the settings in force (the shipped defaults overridden by --config FILE or $SALES_SQL_CONFIG),
    or write a copy of the defaults to start your own file from.

    Example: sales-sql config --init sales_sql.toml && sales-sql retrain sales.duckdb --config sales_sql.toml
    """


    if init:
        target = Path(init)
        if target.exists() and not force:
            raise click.UsageError(f"{target} exists already; edit it, or add --force to overwrite it")
        target.write_text(DEFAULT_PATH.read_text(encoding="utf-8"), encoding="utf-8")
        click.echo(f"wrote the default settings to {target}; edit it and pass --config {target} "
                   f"(or set SALES_SQL_CONFIG={target})")
        return
    settings = _settings()
    click.echo(f"# settings from: {settings.source} (over the shipped defaults)")
    for (section, key), (field, *_) in FIELDS.items():
        click.echo(f"{section}.{key} = {getattr(settings, field)!r}")


@main.command()
@click.argument("out", type=click.Path(dir_okay=False))
@click.option("--lines", default=220_000, show_default=True, help="Invoice lines drawn; about 10% fall away as repeats of an item within an invoice, then about 2% returns are added.")
@click.option("--seed", default=7, show_default=True)
@click.option("--start", default="2024-01-01", show_default=True, help="First day.")
@click.option("--days", default=731, show_default=True)
@click.option("--drift-after", default=None, help="Inject drift from this date on (YYYY-MM-DD).")
@click.option("--drift-strength", default=1.0, show_default=True, help="1.0 = the documented drift size.")
@config_option
def generate(out, lines, seed, start, days, drift_after, drift_strength):
    """Write deterministic demo invoices to OUT (.parquet or .csv).

    Example: sales-sql generate data/demo.parquet --lines 200000
    """
    from .demo import generate as make
    from .demo import write

    table = make(lines=lines, seed=seed, start=start, days=days, drift_after=drift_after,
                 drift_strength=drift_strength)
    write(table, out)
    click.echo(f"wrote {table.num_rows} lines to {out}")


@main.command()
@click.argument("database", type=click.Path(dir_okay=False))
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--preset", type=click.Choice(sorted(PRESETS)), default="seed", show_default=True,
              help="Column names to expect: seed (Date, BranchID, ...) or uci (both UCI Online Retail files).")
@click.option("--map", "mapping", multiple=True, metavar="TARGET=COLUMN",
              help="Read TARGET (e.g. Date or sale_time) from COLUMN; repeatable; overrides the preset.")
@click.option("--allow-rejects", is_flag=True,
              help="Load the good lines of a file with bad ones and record the bad ones in rejected_rows.")
@memory_limit_option("1GB", "a load of any size holds about this much beside Python's 0.2 GB")
@config_option
def load(database, files, preset, mapping, allow_rejects, memory_limit):
    """Load CSV or Parquet FILES into DATABASE (created if missing). Each file is all or nothing;
    lines already present are skipped as duplicates. On a terminal, long loads show their steps.

    Example: sales-sql load sales.duckdb ../shared/data/*.parquet --preset uci
    """
    con = _open(database, memory_limit=memory_limit, check_history=False)  # each load checks history, in one scan
    terminal = sys.stderr.isatty()
    if terminal:
        con.execute("SET enable_progress_bar = true")
    for file in files:
        r = load_file(con, file, preset=preset, mapping=parse_mapping(mapping), allow_rejects=allow_rejects,
                      settings=_settings(), progress=(lambda s, f=file: _loading(f, s)) if terminal else None)
        reasons = ", ".join(f"{k}: {v}" for k, v in r.reasons.items()) or "none"
        took = ", ".join(f"{k} {v:.1f} s" for k, v in r.seconds.items())
        click.echo(f"{r.file}: read {r.rows_read}, loaded {r.loaded} (returns/cancellations {r.returns}), "
                   f"duplicates skipped {r.duplicates}, rejected {r.rejected} (reasons: {reasons}); {took}")


@main.command()
@click.argument("database", type=click.Path(dir_okay=False, exists=True))
@click.argument("sql")
@click.option("--max-rows", default=20, show_default=True)
@config_option
def query(database, sql, max_rows):
    """Run SQL against DATABASE with every sales_sql function registered (read-only).

    Example: sales-sql query sales.duckdb "SELECT label, count(*) FROM training_set GROUP BY 1"
    """
    _open(database, read_only=True).sql(sql).show(max_rows=max_rows, max_width=160)


@main.command()
@click.argument("database", type=click.Path(dir_okay=False, exists=True))
@click.argument("folder", type=click.Path(file_okay=False))
@config_option
def export(database, folder):
    """Write DATABASE's invoices as Parquet partitioned by month (FOLDER/invoices/sale_month=YYYY-MM/) and its
    history (FOLDER/history/), for Spark (sales_sql.spark, `retrain --engine spark --input FOLDER`).

    Example: sales-sql export sales.duckdb export/
    """
    counts = db.export(_open(database, read_only=True), folder)
    click.echo(f"wrote {counts['invoices']:,} invoice lines and {counts['history']:,} history rows to {folder}")


@main.command()
@click.argument("database", type=click.Path(dir_okay=False, exists=True))
@click.option("--into", "table", help="Table to create with one row of predictions per line (DuckDB).")
@click.option("--output", type=click.Path(file_okay=False),
              help="With --engine spark: the folder to write the predictions to, as Parquet partitioned by month "
                   "(sale_month=YYYY-MM), the columns of --into.")
@click.option("--where", help="Filter on invoices columns, e.g. \"sale_time >= DATE '2025-12-01'\". Default: all lines.")
@click.option("--replace", is_flag=True, help="Overwrite the table (or the --output folder) if it exists.")
@click.option("--batch-rows", default=100_000, show_default=True,
              help="Lines per prediction batch (each line of a batch holds about 0.8 KB while it is scored).")
@memory_limit_option("128MB", "its buffers for reading invoices and writing the table")
@spark_options
@config_option
def predict(database, table, output, where, replace, batch_rows, memory_limit, engine, input_dir, master, conf):
    """Score invoice lines of DATABASE in bulk into a table: line_id, label, p_low, p_medium, p_high,
    source, model_version. All or nothing: the table appears only when every line is scored.

    Example: sales-sql predict sales.duckdb --where "sale_time >= DATE '2025-12-01'" --into december

    On Spark (the model deployed in DATABASE, each line's history from a join on the executors):
    sales-sql predict sales.duckdb --engine spark --input export/ --output predictions/
    """
    from .scoring import ScoreError, score_into

    _local_only(engine, output=output, input=input_dir, conf=conf)
    if engine == "spark":
        if table is not None:
            raise click.UsageError("--into is for DuckDB; with --engine spark, write to --output DIR")
        if output is None:
            raise click.UsageError("--engine spark needs --output DIR: the folder to write the predictions to")
        if Path(output).exists() and not replace:
            raise click.UsageError(f"--output {output} already exists; pass --replace to overwrite it or choose "
                                   "another folder")
        settings = _settings()
        with _on_spark(settings, input_dir, master, conf) as (spark_engine, session):
            lines = session.table("invoices")
            if where:
                try:
                    lines = lines.where(where)
                except Exception as e:  # noqa: BLE001  Spark's parse and analysis errors
                    raise ScoreError(f"--where {where!r} does not work on invoices: {str(e).strip().splitlines()[0]}"
                                     ) from None
            step("scoring on Spark")
            scored = spark_engine.predict(session, lines, settings, db=database)
            spark_engine.write_predictions(scored, output, replace)
            answered = session.read.parquet(output).groupBy("source", "model_version").count() \
                .orderBy("source", "model_version").collect()
        total = sum(r["count"] for r in answered)
        by = ", ".join(f"{r['source']}{f' v{r.model_version}' if r.model_version else ''} {r['count']:,}"
                       for r in answered)
        click.echo(f"wrote {total:,} predictions to {output} ({by or 'no lines'})")
        return
    if table is None:
        raise click.UsageError("--into TABLE is needed: the table to create with the predictions")

    def progress(done, total):
        click.echo(f"scored {done:,} of {total:,} lines", err=True)

    con = _open(database, memory_limit=memory_limit)
    total, model = score_into(con, _settings(), table, where, replace=replace, batch_rows=batch_rows,
                              progress=progress)
    answered = f"model v{model.version}" if model.source == "model" else f"the fallback heuristic ({model.reason})"
    click.echo(f"wrote {total:,} predictions to {table} from {answered}")


def _duration(value: str, unit: str, option: str, what: str) -> float:
    """A length of time in `unit`s (s, m, h or d) from '30s', '5m', '1h', '30d', or a number of `unit`s; `what`
    says what the option takes when the value is none of these."""
    seconds = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    m = re.fullmatch(r"(\d+(?:\.\d*)?)\s*([smhd]?)", value.strip().lower())
    if not m:
        raise click.BadParameter(f"{value!r} is not {what}", param_hint=option)
    return float(m.group(1)) * seconds[m.group(2) or unit] / seconds[unit]


format_option = click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table",
                             show_default=True, help="Print the report as a table or as JSON.")


@main.command()
@click.argument("database", type=click.Path(dir_okay=False, exists=True))
@click.option("--window", help="Days of recent invoices to check, e.g. 30d (default: drift.window_days).")
@click.option("--end", type=click.DateTime(["%Y-%m-%d"]), help="Last day of the window (default: the latest sale).")
@format_option
@click.option("--plot", type=click.Path(dir_okay=False), help="Write baseline vs window distributions of what "
              "drifted to this PNG.")
@click.option("--no-save", is_flag=True, help="Do not append to drift_report (opens the file read-only).")
@spark_options
@config_option
def drift(database, window, end, fmt, plot, no_save, engine, input_dir, master, conf):
    """Check recent invoices in DATABASE against the production model's training baseline, one row per
    feature, appended to drift_report. Exit code 0: no drift, 1: drift, 2: the check could not run.

    Example: sales-sql drift sales.duckdb --window 30d --plot drift.png

    On Spark (the window's lines from --input, the report saved into DATABASE):
    sales-sql drift sales.duckdb --engine spark --input export/ --window 30d
    """

    from .monitor import check, save_report
    from .monitor import plot as draw

    settings = _settings()
    days = None
    if window:
        what = "a number of days; write it like 30d or 30"
        days = _duration(window, "d", "--window", what)
        if days < 1 or days != int(days):
            raise click.BadParameter(f"{window!r} is not {what}", param_hint="--window")
    _local_only(engine, input=input_dir, conf=conf)
    window_days, last = int(days) if days else None, end.date() if end else None
    if engine == "spark":
        if plot:
            raise click.UsageError("--plot draws the window DuckDB reads; leave it out with --engine spark")
        with _on_spark(settings, input_dir, master, conf) as (spark_engine, session):
            step("checking drift on Spark")
            report = spark_engine.drift(session, settings, db=database, window_days=window_days, end=last)
        con = _open(database, read_only=no_save)
    else:
        con = _open(database, read_only=no_save)
        report = check(con, settings, window_days=window_days, end=last, save=False)
    panels = 0
    if plot:
        step(f"writing the plot {plot}")
        panels = draw(con, settings, report, plot)
    if not no_save:  # after the plot: a check that failed is not in drift_report
        step("saving the report")
        save_report(con, settings, report)
    if fmt == "json":
        click.echo(json.dumps({"run_id": report.run_id, "window_start": str(report.window_start),
                               "window_end": str(report.window_end), "model_version": report.model_version,
                               "drift": bool(report.drifted), "rows": report.rows}, indent=1, default=str))
    else:
        click.echo(f"window {report.window_start} .. {report.window_end} against the training baseline of "
                   f"model v{report.model_version}" + (f" (saved as run {report.run_id})" if report.run_id else ""))
        click.echo(f"{'feature':16} {'test':12} {'statistic':>10} {'p-value':>9} {'p (Holm)':>9} {'effect':>8} "
                   f"{'threshold':>9}  drift")
        for r in report.rows:
            def num(v, f):
                return f"{v:{f}}" if v is not None else "-"
            click.echo(f"{r['feature']:16} {r['test']:12} {num(r['statistic'], '10.4f'):>10} "
                       f"{num(r['p_value'], '9.2g'):>9} {num(r['p_adjusted'], '9.2g'):>9} "
                       f"{num(r['effect_size'], '8.4f'):>8} {r['threshold']:9.3f}  {'DRIFT' if r['is_drift'] else ''}")
        names = ", ".join(r["feature"] for r in report.drifted)
        click.echo(f"drift in: {names}" if names else "no drift")
        if plot:
            click.echo(f"plot: {plot} ({panels} panels)" if panels else "plot: nothing drifted, no plot written")
    sys.exit(FINDING if report.drifted else DONE)


def _lifecycle():
    from . import registry  # imports MLflow (seconds): only the lifecycle commands pay for it

    return registry


models_dir_option = click.option("--models-dir", default="models", show_default=True, type=click.Path(file_okay=False),
                                 help="Where checkpoints and exported bundles go.")


@main.command()
@click.argument("database", type=click.Path(dir_okay=False, exists=True))
@click.option("--cutoff", help="Train before this day, validate from it (YYYY-MM-DD). Default: configs/.")
@click.option("--rounds", type=click.IntRange(min=1), help="Boosting rounds (default: training.num_boost_round).")
@click.option("--resume", is_flag=True, help="Continue the same job from its last checkpoint after a crash.")
@click.option("--num-workers", type=click.IntRange(min=1), help="With --engine spark: XGBoost workers (default: Spark's parallelism).")
@spark_options
@models_dir_option
@config_option
def retrain(database, cutoff, rounds, resume, num_workers, engine, input_dir, master, conf, models_dir):
    """Train a new model version on DATABASE's training_set, log it to MLflow and register it.

    Example: sales-sql retrain sales.duckdb --cutoff 2011-09-01

    On Spark: sales-sql export sales.duckdb export/ && sales-sql retrain sales.duckdb --engine spark --input export/
    """

    from .training import prepare

    settings = _settings()
    if rounds is not None:
        settings = dataclasses.replace(settings, num_boost_round=rounds)
    _local_only(engine, input=input_dir, conf=conf, num_workers=num_workers)
    if engine == "spark":
        with _on_spark(settings, input_dir, master, conf) as (spark_engine, session):
            step("training on Spark and registering")
            version, metrics = spark_engine.retrain(session, database, settings, cutoff=cutoff,
                                                    num_workers=num_workers)
        click.echo(f"registered {settings.model_name} version {version} (trained on Spark, {master})")
        click.echo(_metrics_table([("model", metrics)]))
        return
    # importing MLflow and opening its store take seconds: do it while DuckDB reads the data
    step("reading the training data")
    prepared = None
    try:
        with ThreadPoolExecutor(1) as pool:
            warm = pool.submit(lambda: _lifecycle().warm_up(database, settings))
            prepared = prepare(database, settings, cutoff)
            warm.result()
    except BaseException:
        if prepared is not None:  # the matrices' files go with it
            prepared[0].close()
        raise
    step("training and registering")
    r = _lifecycle().retrain(database, settings, models_dir, cutoff=cutoff, resume=resume, prepared=prepared)
    if r.resumed_from:
        click.echo(f"resumed from iteration {r.resumed_from}")
    click.echo(f"registered {settings.model_name} version {r.version} (run {r.run_id}), {r.rounds} rounds")
    rows = [("model", r.metrics)] + [(f"baseline: {k}", m) for k, m in r.baselines.items()]
    click.echo(_metrics_table(rows))


def _metrics_table(rows) -> str:
    head = f"{'':28} {'accuracy':>9} {'macro-F1':>9} {'F1 LOW':>8} {'F1 MEDIUM':>10} {'F1 HIGH':>8}"
    lines = [head] + [f"{name:28} {m['accuracy']:9.4f} {m['macro_f1']:9.4f} {m['f1_LOW']:8.4f} {m['f1_MEDIUM']:10.4f} "
                      f"{m['f1_HIGH']:8.4f}" for name, m in rows]
    return "\n".join(lines)


@main.command()
@click.argument("database", type=click.Path(dir_okay=False, exists=True))
@click.argument("version", type=click.IntRange(min=1), required=False)
@click.option("--best", is_flag=True, help="Promote, of the versions that can serve under the current settings, the "
              "one with the best macro-F1 on the lines none of them trained on.")
@click.option("--force", is_flag=True, help="Skip the gate: promote even a version worse than production, or one "
              "that cannot serve under the current settings.")
@models_dir_option
@config_option
def promote(database, version, best, force, models_dir):
    """Make VERSION (default: the latest) production: MLflow alias @production, the deployed copy in
    DATABASE and the bundle in models/. The gate first scores VERSION and production as SQL serves them now, on
    VERSION's test slice, and refuses VERSION when it is worse beyond the bootstrap interval (gate.require) or cannot
    serve under the current settings (a production version that cannot serve counts as absent); --force skips it.
    Exit code 1: the gate refused.

    Example: sales-sql promote sales.duckdb --best
    """
    registry = _lifecycle()
    try:
        v = registry.promote(database, _settings(), version, best=best, force=force, models_dir=models_dir,
                             say=lambda line: click.echo(line, err=True))
    except registry.GateRefused as e:
        raise Finding(str(e)) from None
    click.echo(f"version {v} is production and deployed in {database}")


@main.command()
@click.argument("database", type=click.Path(dir_okay=False, exists=True))
@models_dir_option
@config_option
def rollback(database, models_dir):
    """Restore the previous production version in MLflow and in DATABASE.

    Example: sales-sql rollback sales.duckdb
    """
    v = _lifecycle().rollback(database, _settings(), models_dir=models_dir)
    click.echo(f"rolled back: version {v} is production and deployed in {database}")


@main.command()
@click.argument("database", type=click.Path(dir_okay=False, exists=True))
@config_option
def models(database):
    """List registered versions with their test-slice metrics; * = @production, D = deployed in DATABASE.

    Example: sales-sql models sales.duckdb
    """
    rows = _lifecycle().list_models(database, _settings())
    if not rows:
        click.echo("no versions registered yet; run `sales-sql retrain`")
    click.echo(f"{'version':>7} {'prod':>4} {'here':>4} {'accuracy':>9} {'macro-F1':>9}  cutoff")
    for r in rows:
        click.echo(f"{r['version']:>7} {'*' if r['production'] else '':>4} {'D' if r['deployed_here'] else '':>4} "
                   f"{r['accuracy']:9.4f} {r['macro_f1']:9.4f}  {r['cutoff']}")


@main.command()
@click.argument("database", type=click.Path(dir_okay=False))
@click.option("--port", default=5000, show_default=True, type=click.IntRange(1, 65535), help="The port to answer on.")
@click.option("--host", default="127.0.0.1", show_default=True, help="The address to answer on (0.0.0.0: every one).")
@click.option("--version", "version", default="production", show_default=True,
              help="The registered version to serve: a number, or an alias.")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(min=1),
              help="Processes answering requests side by side (uvicorn's --workers): one per core serves that many "
                   "clients at once.")
@config_option
def serve(database, port, host, version, workers):
    """Answer POST /invocations with JSON (or CSV) invoice lines: MLflow's own scoring server over the registered
    version, reading DATABASE's current history (a load while it runs is seen on the next request). The answers are
    predict_sales's: label, p_low, p_medium, p_high, source, model_version. It starts only when the version answers
    from the model (else exit 2, one line); GET /ready answers 200 while it does (503 and the cause while not);
    SIGTERM or Ctrl-C stops it (exit 0).

    Example: sales-sql serve sales.duckdb --port 5000, then curl -X POST localhost:5000/invocations
    -H 'Content-Type: application/json' -d '{"dataframe_records": [{"Date": "2025-12-30", "BranchID": "1",
    "ItemCode": "10001"}]}'
    """
    from .rest import run

    step("starting the scoring server")
    if not run(database, _settings(), version, host, port, workers, lambda line: click.echo(line, err=True)):
        raise click.ClickException("the scoring server stopped by itself before it was asked to (a worker could not "
                                   "start); run with --debug, or with --workers 1, to see why")
    sys.exit(DONE)


def _findings(rows, fmt: str, head: tuple[str, str]) -> None:
    """doctor's checks or pipeline's steps: a table (with the fix under each row that has one), or JSON."""

    if fmt == "json":
        click.echo(json.dumps([dataclasses.asdict(r) for r in rows], indent=1))
        return
    click.echo(f"{head[0]:10} {head[1]:9} detail")
    for r in rows:
        click.echo(f"{r.name:10} {r.status:9} {r.detail}")
        if r.fix:
            click.echo(f"{'':20} fix: {r.fix}")


@main.command()
@click.argument("database", type=click.Path(dir_okay=False))
@format_option
@config_option
def doctor(database, fmt):
    """Check the health of DATABASE without changing it: schema and history, the deployed model, MLflow's
    @production alias, the last drift check, rejected lines, free disk. Each finding that is not OK names the
    command that fixes it. Exit code 0: all OK, 1: a WARN or FAIL, 2: the check could not run. It writes nothing
    into DATABASE or MLflow; like any first prediction, it may write the prediction caches beside the file
    (DATABASE.index/: the history index and the checked trees, safe to delete).

    Example: sales-sql doctor sales.duckdb --format json
    """

    from .ops import OK
    from .ops import doctor as check_health

    # a health check answers in seconds: no minutes of MLflow's HTTP retries against a server that is down
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    found = check_health(database, _settings())
    _findings(found, fmt, ("check", "status"))
    sys.exit(DONE if all(f.status == OK for f in found) else FINDING)


@main.command()
@click.argument("database", type=click.Path(dir_okay=False))
@click.argument("files", nargs=-1, type=click.Path(exists=True, dir_okay=False))
@click.option("--cutoff", help="Passed to retrain: train before this day, validate from it (YYYY-MM-DD).")
@click.option("--force", is_flag=True, help="Retrain even when no new usable line arrived.")
@click.option("--wait", "wait", default="0s", show_default=True, metavar="DURATION",
              help="While another process holds DATABASE, retry opening it for this long (30s, 5m), then give up.")
@click.option("--preset", type=click.Choice(sorted(PRESETS)), default="seed", show_default=True,
              help="Column names of FILES, as for load.")
@click.option("--allow-rejects", is_flag=True, help="Load the good lines of a file with bad ones, as for load.")
@memory_limit_option("1GB", "as for load")
@format_option
@models_dir_option
@config_option
def pipeline(database, files, cutoff, force, wait, preset, allow_rejects, memory_limit, fmt, models_dir):
    """The scheduled flow in one command: load each of FILES (all or nothing per file; a file loaded before is
    skipped), retrain when new usable lines arrived since the last retrain (or --force), promote through the
    gate, then check drift over the latest window. Exit code 0: done (promoted or nothing to do), 1: the gate
    refused or drift was found, 2: a step failed (named; the steps before it stay done) or DATABASE stayed held.

    Example: sales-sql pipeline sales.duckdb incoming/2025-12-*.parquet --wait 5m
    """
    from .ops import pipeline as run

    def say(message):
        click.echo(message, err=True)

    seconds = _duration(wait, "s", "--wait", "a duration; write it like 30s, 5m or 1h")
    steps = run(database, files, _settings(), cutoff=cutoff, force=force, wait=seconds, models_dir=models_dir,
                preset=preset, allow_rejects=allow_rejects, say=say, limit=lambda con: _limit(con, memory_limit))
    _findings(steps, fmt, ("step", "status"))
    statuses = {s.status for s in steps}  # a failed step ends the run; the steps before it stay done
    sys.exit(FAILED if "failed" in statuses else FINDING if statuses & {"refused", "drift"} else DONE)


if __name__ == "__main__":
    sys.exit(main())

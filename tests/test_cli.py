"""The sales-sql command driven exactly as a user would, in a subprocess."""
import duckdb

from conftest import run_cli
from test_loader import BAD, GOOD, write_csv


def test_generate_load_query_end_to_end(tmp_path):
    data, db = tmp_path / "inv.parquet", tmp_path / "s.duckdb"
    out = run_cli("generate", data, "--lines", 3000, "--days", 90).stdout
    assert "wrote" in out
    first = run_cli("load", db, data).stdout
    assert "rejected 0" in first and "loaded 0 " not in first
    again = run_cli("load", db, data).stdout
    assert "loaded 0 (returns/cancellations 0)" in again
    shown = run_cli("query", db, "SELECT label, count(*) AS n FROM training_set GROUP BY 1 ORDER BY 1").stdout
    assert "HIGH" in shown and "LOW" in shown and "MEDIUM" in shown


def test_broken_csv_fails_with_the_line_and_changes_nothing(tmp_path):
    db = tmp_path / "s.duckdb"
    run_cli("load", db, write_csv(tmp_path / "ok.csv", GOOD))
    proc = run_cli("load", db, write_csv(tmp_path / "bad.csv", GOOD[:1] + BAD[:1]), check=False)
    assert proc.returncode == 2
    assert "Error: " in proc.stderr and "line 3: non-numeric quantity: lots" in proc.stderr
    assert "Traceback" not in proc.stderr
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM invoices").fetchone()[0] == 3
        assert con.execute("SELECT count(*) FROM rejected_rows").fetchone()[0] == 0
    ok = run_cli("load", db, tmp_path / "bad.csv", "--allow-rejects").stdout
    assert "loaded 0" in ok and "duplicates skipped 1, rejected 1 (reasons: non-numeric quantity: 1)" in ok


def test_bad_arguments_get_clear_errors(tmp_path):
    db = tmp_path / "s.duckdb"
    csv = write_csv(tmp_path / "ok.csv", GOOD)
    proc = run_cli("load", db, csv, "--map", "Nope=x", check=False)
    assert proc.returncode == 2 and "mapping 'Nope=x' is not TARGET=SOURCE_COLUMN" in proc.stderr
    proc = run_cli("load", db, csv, "--map", "Date=When", check=False)
    assert "has no column 'When' for sale_time" in proc.stderr
    proc = run_cli("query", db, "SELECT * FROM nowhere", check=False)
    assert proc.returncode == 2 and "nowhere" in proc.stderr and "Traceback" not in proc.stderr


def test_a_file_locked_by_another_process_gets_a_clear_message(tmp_path):
    import subprocess
    import sys

    db = tmp_path / "s.duckdb"
    run_cli("load", db, write_csv(tmp_path / "ok.csv", GOOD))
    holder = subprocess.Popen([sys.executable, "-c", f"import duckdb, time; c = duckdb.connect({str(db)!r}); "
                               "print('ready', flush=True); time.sleep(60)"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        proc = run_cli("load", db, tmp_path / "ok.csv", check=False)
        assert proc.returncode == 2
        assert f"in use by another process (PID {holder.pid}" in proc.stderr and "Traceback" not in proc.stderr
    finally:
        holder.kill()
        holder.wait()


def test_load_holds_its_memory_limit_and_says_where_the_time_went(tmp_path):
    data = tmp_path / "inv.parquet"
    run_cli("generate", data, "--lines", 20_000, "--days", 120)
    small, free = tmp_path / "small.duckdb", tmp_path / "free.duckdb"
    bounded = run_cli("load", small, data, "--memory-limit", "48MB").stdout
    run_cli("load", free, data, "--memory-limit", "4GB")
    assert "; read " in bounded and " s, de-duplicate " in bounded and " s, history " in bounded, bounded
    same = "SELECT count(*), sum(hash(x)::HUGEINT) FROM {} x"  # the hash of each whole row
    for table in ("invoices", "history"):  # the same rows, however little memory the load had
        assert run_cli("query", small, same.format(table)).stdout == run_cli("query", free, same.format(table)).stdout
    assert not (tmp_path / "small.duckdb.tmp").exists()  # DuckDB's spill folder goes with the load
    bad = run_cli("load", small, data, "--memory-limit", "lots", check=False)
    assert bad.returncode == 2 and "--memory-limit" in bad.stderr and "512MB" in bad.stderr

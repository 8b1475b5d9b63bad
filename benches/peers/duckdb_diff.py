"""DuckDB doing what `crm-etl diff OLD NEW --key Id` does: inserted, updated (new row) and deleted rows
of two CSV snapshots, each to a CSV file. Usage: duckdb_diff.py OLD NEW OUTDIR THREADS"""
import sys

import duckdb

old, new, out, threads = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
con = duckdb.connect()
con.execute(f"SET threads = {threads}")
opts = "header = true, all_varchar = true"
con.execute(f"CREATE VIEW o AS SELECT * FROM read_csv('{old}', {opts})")
con.execute(f"CREATE VIEW n AS SELECT * FROM read_csv('{new}', {opts})")
con.execute(f"COPY (SELECT n.* FROM n ANTI JOIN o USING (Id)) TO '{out}/insert.csv' (HEADER)")
con.execute(f"COPY (SELECT o.* FROM o ANTI JOIN n USING (Id)) TO '{out}/delete.csv' (HEADER)")
con.execute(
    f"COPY (SELECT n.* FROM n JOIN o USING (Id) WHERE n IS DISTINCT FROM o) TO '{out}/update.csv' (HEADER)"
)

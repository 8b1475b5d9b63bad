"""Reads crm-etl's Parquet and Arrow outputs back with other tools and compares every value with the
JSON Lines output of the same run (the same typed values, with nulls and empty strings apart).

usage: readback.py JSONL PARQUET ARROW [JSON_COLUMN...]

JSON_COLUMNs are fields of type json: an embedded document in JSON Lines, its text in the other files.

DuckDB reads the Parquet file, polars reads both. Prints DuckDB's column types, the row count and the Parquet row-group count as JSON on stdout; exits
1 with the first difference on stderr. Run by tests/parquet.rs.
"""

import datetime
import decimal
import json
import sys

import duckdb
import polars


def expected(path):
    with open(path, encoding="utf-8") as f:
        return [
            json.loads(line, parse_float=decimal.Decimal, parse_int=int)
            for line in f
            if line.strip()
        ]


def same(want, got, is_json):
    """Whether a JSON Lines value and a value read from a columnar file are the same value."""
    if is_json and got is not None:
        return json.loads(got, parse_float=decimal.Decimal, parse_int=int) == want
    if want is None or got is None:
        return want is None and got is None
    if isinstance(got, bool) or isinstance(want, bool):
        return want is got
    if isinstance(got, float):
        return float(want) == got and str(float(want)).startswith("-") == str(got).startswith("-")
    if isinstance(got, (int, decimal.Decimal)):
        return decimal.Decimal(want) == got
    if isinstance(got, datetime.datetime):
        w = datetime.datetime.fromisoformat(want)
        # A timestamptz compares as an instant; a timestamp without zone as a wall time.
        return w == got
    if isinstance(got, datetime.date):
        return got.isoformat() == want
    if isinstance(got, datetime.time):
        return datetime.time.fromisoformat(want) == got
    return want == got


def compare(tool, want, names, rows, json_columns):
    if len(rows) != len(want):
        sys.exit(f"{tool}: {len(rows)} rows, JSON Lines has {len(want)}")
    for i, (w, g) in enumerate(zip(want, rows)):
        for name, value in zip(names, g):
            if name not in w:
                sys.exit(f"{tool}: row {i + 1}: column {name!r} is not in the JSON Lines output")
            if not same(w[name], value, name in json_columns):
                sys.exit(
                    f"{tool}: row {i + 1}, column {name!r}: JSON Lines has {w[name]!r}, "
                    f"the file has {value!r}"
                )
        if len(g) != len(w):
            sys.exit(f"{tool}: row {i + 1} has {len(g)} columns, JSON Lines {len(w)}")


def main():
    jsonl, parquet, arrow = sys.argv[1:4]
    json_columns = set(sys.argv[4:])
    want = expected(jsonl)

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    rel = con.sql(f"SELECT * FROM read_parquet('{parquet}')")
    compare("duckdb parquet", want, rel.columns, rel.fetchall(), json_columns)
    types = dict(zip(rel.columns, [str(t) for t in rel.types]))

    df = polars.read_parquet(parquet)
    compare("polars parquet", want, df.columns, df.rows(), json_columns)
    df = polars.read_ipc(arrow)
    compare("polars arrow", want, df.columns, df.rows(), json_columns)
    groups = con.execute(
        f"SELECT count(DISTINCT row_group_id) FROM parquet_metadata('{parquet}')"
    ).fetchone()[0]
    json.dump({"types": types, "rows": len(want), "row_groups": groups}, sys.stdout)


if __name__ == "__main__":
    main()

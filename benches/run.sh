#!/usr/bin/env bash
# Benchmark `crm-etl run` with the typical contacts mapping against DuckDB and Polars doing the same casts,
# in one go on this machine, taking turns (benches/lib.sh, run_queue). Prints a Markdown table (wall time, MB/s of input, peak memory, ratio).
#
#   bash benches/run.sh [CONTACTS]      # default 1000000; data is generated (seeded) into bench-data/
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-1000000}
. benches/lib.sh
bench_build
bench_data "$n"
need_python duckdb polars
input=bench-data/Contact.csv
bytes=$(stat -c %s "$input")
bench_tmp

queue crm-etl "$rel"/crm-etl run benches/contacts.toml --out "$tmp/out" --quiet --threads "$threads"
queue crm-etl-no-pk "$rel"/crm-etl run benches/nopk.toml --out "$tmp/out" --quiet --threads "$threads"
queue polars python3 benches/peers/polars_contacts.py "$input" "$tmp/out/polars.csv"
queue duckdb python3 benches/peers/duckdb_contacts.py "$input" "$tmp/out/duckdb.csv" "$threads"
run_queue > "$tmp/results"

echo "input: $input, $n contacts, $((bytes / 1000000)) MB; $threads threads; $(date -u +%F)"
echo
table "$tmp/results" crm-etl "$bytes"

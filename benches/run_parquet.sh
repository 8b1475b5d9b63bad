#!/usr/bin/env bash
# Benchmark typed CSV -> Parquet: `crm-etl run` of the contacts mapping with `--format parquet` against
# Polars and DuckDB doing the same casts and writing zstd Parquet, in one go on this machine, taking
# turns. Prints a Markdown table (wall time, MB/s of input, peak memory, ratio) and the output sizes.
#
#   bash benches/run_parquet.sh [CONTACTS]      # default 1000000; data is generated (seeded) into bench-data/
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

# The size of each tool's Parquet file, kept after each of its runs.
declare -A sizes
after_each() {
  sizes[$1]=$(stat -c %s "$tmp/out"/*.parquet)
}
queue crm-etl "$rel"/crm-etl run benches/contacts.toml --out "$tmp/out" --format parquet --quiet --threads "$threads"
queue polars python3 benches/peers/polars_contacts.py "$input" "$tmp/out/polars.parquet"
queue duckdb python3 benches/peers/duckdb_contacts.py "$input" "$tmp/out/duckdb.parquet" "$threads"
run_queue > "$tmp/results"

echo "input: $input, $n contacts, $((bytes / 1000000)) MB; $threads threads; $(date -u +%F)"
echo
table "$tmp/results" crm-etl "$bytes"
echo
echo "Parquet bytes: crm-etl=${sizes[crm-etl]} polars=${sizes[polars]} duckdb=${sizes[duckdb]}"

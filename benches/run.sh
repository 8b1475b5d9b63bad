#!/usr/bin/env bash
# Benchmark `crm-etl run` with the typical contacts mapping against DuckDB and Polars doing the same casts,
# in one go on this machine. Prints a Markdown table (wall time, MB/s of input, peak memory, ratio).
#
#   bash benches/run.sh [CONTACTS]      # default 1000000; data is generated (seeded) into bench-data/
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-1000000}
threads=$(nproc)
cargo build --release --quiet --bin crm-etl --example gen_crm
if [ ! -f bench-data/.n ] || [ "$(cat bench-data/.n)" != "$n" ]; then
  ./target/release/examples/gen_crm bench-data "$n" 42
  echo "$n" > bench-data/.n
fi
python3 -c 'import duckdb, polars' 2>/dev/null || pip install --quiet duckdb polars
input=bench-data/Contact.csv
bytes=$(stat -c %s "$input")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Runs a command 3 times; keeps the fastest wall time and its peak RSS.
measure() {
  local name=$1; shift
  local best="" mem=""
  for _ in 1 2 3; do
    rm -rf "$tmp/out"; mkdir -p "$tmp/out"
    /usr/bin/time -f "%e %M" -o "$tmp/time" "$@" >/dev/null 2>"$tmp/err" || { cat "$tmp/err"; exit 1; }
    read -r t m < "$tmp/time"
    if [ -z "$best" ] || awk "BEGIN{exit !($t < $best)}"; then best=$t; mem=$m; fi
  done
  echo "$name $best $mem"
}

{
  measure crm-etl ./target/release/crm-etl run benches/contacts.toml --out "$tmp/out" --quiet --threads "$threads"
  measure crm-etl-no-pk ./target/release/crm-etl run benches/nopk.toml --out "$tmp/out" --quiet --threads "$threads"
  measure polars python3 benches/peers/polars_contacts.py "$input" "$tmp/out/polars.csv"
  measure duckdb python3 benches/peers/duckdb_contacts.py "$input" "$tmp/out/duckdb.csv" "$threads"
} > "$tmp/results"

ours=$(awk '$1=="crm-etl"{print $2}' "$tmp/results")
echo "input: $input, $n contacts, $((bytes / 1000000)) MB; $threads threads; $(date -u +%F)"
echo
echo "| tool | wall (s) | MB/s | peak memory (MB) | time vs crm-etl |"
echo "| --- | ---: | ---: | ---: | ---: |"
while read -r name t m; do
  awk -v n="$name" -v t="$t" -v m="$m" -v b="$bytes" -v o="$ours" \
    'BEGIN{printf "| %s | %.2f | %.0f | %.0f | %.2fx |\n", n, t, b/1e6/t, m/1024, t/o}'
done < "$tmp/results"

#!/usr/bin/env bash
# Diff benchmark: two snapshots of 1M contacts, the second with 1 % of rows changed, 1 % deleted and
# 1 % inserted (benches/mutate.py, seeded), diffed by Id with `crm-etl diff`, beside DuckDB doing the same
# anti-joins and join in the same go; a full `crm-etl run` of one snapshot for scale; and the incremental
# `crm-etl run --since` of the second snapshot against a run of the first (typed mapping, change files).
#
#   bash benches/run_diff.sh [CONTACTS]     # default 1000000
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-1000000}
. benches/lib.sh
bench_build
bench_data "$n"
if [ ! -f bench-data/Contact-next.csv ] || [ bench-data/Contact.csv -nt bench-data/Contact-next.csv ]; then
  python3 benches/mutate.py bench-data/Contact.csv bench-data/Contact-next.csv
fi
need_python duckdb
bench_tmp
old=bench-data/Contact.csv
new=bench-data/Contact-next.csv
# The contacts mapping on the second snapshot, and a run of the first as the base of `--since`.
sed 's#"../bench-data/Contact.csv"#"Contact-next.csv"#' benches/contacts.toml > bench-data/contacts-next.toml
"$rel"/crm-etl run benches/contacts.toml --out "$tmp/base" --quiet
{
  measure crm-etl-diff "$rel"/crm-etl diff "$old" "$new" --key Id --out "$tmp/out"
  measure duckdb-diff python3 benches/peers/duckdb_diff.py "$old" "$new" "$tmp/out" "$threads"
  measure crm-etl-full-run "$rel"/crm-etl run benches/contacts.toml --out "$tmp/out" --quiet
  measure crm-etl-run-since "$rel"/crm-etl run bench-data/contacts-next.toml --out "$tmp/out" --quiet --max-rejects 100000 --since "$tmp/base"
} > "$tmp/results"
bytes=$(( $(stat -c %s "$old") + $(stat -c %s "$new") ))
echo "two snapshots of $n contacts, $((bytes / 1000000)) MB together; $threads threads; $(date -u +%F)"
echo
table "$tmp/results" crm-etl-diff "$bytes"

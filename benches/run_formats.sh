#!/usr/bin/env bash
# Benchmark the JSON Lines and XML readers: the contacts of benches/run.sh as a JSON Lines API dump and as
# XML, mapped with the same 20 fields to CSV, beside DuckDB (JSON Lines) and Python lxml iterparse (XML)
# doing the same casts, in one go on this machine. Prints one Markdown table per format.
#
#   bash benches/run_formats.sh [CONTACTS]    # default 1000000; lxml runs once (RUNS_LXML=3 for best of 3)
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-1000000}
. benches/lib.sh
bench_build
if [ ! -f bench-data/.formats ] || [ "$(cat bench-data/.formats)" != "$n all" ]; then
  "$rel"/examples/gen_crm bench-data "$n" 42 all
  echo "$n" > bench-data/.n
  echo "$n all" > bench-data/.formats
fi
need_python duckdb lxml
bench_tmp

jsonl=bench-data/Contact.jsonl
xml=bench-data/Contact.xml
queue crm-etl "$rel"/crm-etl run benches/contacts-jsonl.toml --out "$tmp/out" --quiet --threads "$threads"
queue duckdb python3 benches/peers/duckdb_contacts_jsonl.py "$jsonl" "$tmp/out/duckdb.csv" "$threads"
run_queue > "$tmp/jsonl"
{
  measure crm-etl "$rel"/crm-etl run benches/contacts-xml.toml --out "$tmp/out" --quiet --threads "$threads"
  RUNS=${RUNS_LXML:-1} measure lxml-iterparse python3 benches/peers/lxml_contacts_xml.py "$xml" "$tmp/out/lxml.csv"
} > "$tmp/xml"

echo "JSON Lines: $jsonl, $n contacts, $(($(stat -c %s "$jsonl") / 1000000)) MB; $threads threads; $(date -u +%F)"
echo
table "$tmp/jsonl" crm-etl "$(stat -c %s "$jsonl")"
echo
echo "XML: $xml, $n contacts, $(($(stat -c %s "$xml") / 1000000)) MB; $threads threads; $(date -u +%F)"
echo
table "$tmp/xml" crm-etl "$(stat -c %s "$xml")"

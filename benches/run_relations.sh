#!/usr/bin/env bash
# Benchmark reference resolution: accounts then 1M contacts whose AccountId is resolved against them
# (benches/contacts-ref.toml), beside the same run with AccountId copied as it is
# (benches/contacts-with-accounts.toml); the duplicate policy "last" (a key pre-pass) beside the default
# "first" on 1M contacts; then the key index's memory for 10M parent keys.
#
#   bash benches/run_relations.sh [CONTACTS]    # default 1000000
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-1000000}
. benches/lib.sh
bench_build keyindex
bench_data "$n"
bench_tmp
{
  measure without-reference "$rel"/crm-etl run benches/contacts-with-accounts.toml --out "$tmp/out" --quiet --threads "$threads"
  measure with-reference "$rel"/crm-etl run benches/contacts-ref.toml --out "$tmp/out" --quiet --threads "$threads"
} > "$tmp/results"
bytes=$(( $(stat -c %s bench-data/Contact.csv) + $(stat -c %s bench-data/Account.csv) ))
echo "accounts + $n contacts, $((bytes / 1000000)) MB; $threads threads; $(date -u +%F)"
echo
table "$tmp/results" without-reference "$bytes"
echo
{
  measure duplicates-first "$rel"/crm-etl run benches/contacts.toml --out "$tmp/out" --quiet --threads "$threads"
  measure duplicates-last "$rel"/crm-etl run benches/contacts-last.toml --out "$tmp/out" --quiet --threads "$threads"
} > "$tmp/dups"
table "$tmp/dups" duplicates-first "$(stat -c %s bench-data/Contact.csv)"
echo
"$rel"/examples/keyindex 10000000

# Shared by the bench scripts: setup, timing with peak memory, and the Markdown table.

# Builds the release binary and the generator (and the examples named in "$@"); sets rel and threads.
bench_build() {
  threads=$(nproc)
  rel=${CARGO_TARGET_DIR:-target}/release
  local examples=()
  for e in gen_crm "$@"; do examples+=(--example "$e"); done
  cargo build --release --quiet --bin crm-etl "${examples[@]}"
}

# Generates the seeded CSV export of $1 contacts into bench-data/ unless it is there already.
bench_data() {
  if [ ! -f bench-data/.n ] || [ "$(cat bench-data/.n)" != "$1" ]; then
    "$rel"/examples/gen_crm bench-data "$1" 42
    echo "$1" > bench-data/.n
  fi
}

# A scratch folder in $tmp, removed on exit.
bench_tmp() {
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
}

# Installs the Python packages named unless they all import.
need_python() {
  python3 -c "import $(IFS=,; echo "$*")" 2>/dev/null || pip install --quiet "$@"
}

# Runs a command N times (default 3, or $RUNS); keeps the fastest wall time and its peak RSS. A script
# may define `before_each`, run untimed before every repetition of every tool (run_load.sh settles the
# database's and the kernel's pending writes there, so no repetition pays for the one before).
measure() {
  local name=$1; shift
  local best="" mem=""
  for _ in $(seq "${RUNS:-3}"); do
    rm -rf "$tmp/out"; mkdir -p "$tmp/out"
    if declare -F before_each >/dev/null; then before_each; fi
    /usr/bin/time -f "%e %M" -o "$tmp/time" "$@" >/dev/null 2>"$tmp/err" || { cat "$tmp/err"; exit 1; }
    read -r t m < "$tmp/time"
    if [ -z "$best" ] || awk "BEGIN{exit !($t < $best)}"; then best=$t; mem=$m; fi
  done
  echo "$name $best $mem"
}

# Prints results ("name seconds KB" lines in $1) as a table against the row named $2, for $3 input bytes.
table() {
  local results=$1 ours_name=$2 bytes=$3
  local ours
  ours=$(awk -v n="$ours_name" '$1==n{print $2}' "$results")
  echo "| tool | wall (s) | MB/s | peak memory (MB) | time vs $ours_name |"
  echo "| --- | ---: | ---: | ---: | ---: |"
  while read -r name t m; do
    awk -v n="$name" -v t="$t" -v m="$m" -v b="$bytes" -v o="$ours" \
      'BEGIN{printf "| %s | %.2f | %.0f | %.0f | %.2fx |\n", n, t, b/1e6/t, m/1024, t/o}'
  done < "$results"
}

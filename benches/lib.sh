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

# Queues a tool to time: `queue NAME CMD...`; `run_queue` then times the queue.
queue() {
  q_names+=("$1")
  shift
  q_cmds+=("$(printf '%q ' "$@")")
}

# Runs every queued tool once per round, for RUNS rounds (default 3), and prints per tool, in queue
# order, "name seconds KB": its fastest wall time and that run's peak RSS. The tools take turns, round
# after round, so that a slow spell of this shared machine (runs of one tool here vary by a third within
# minutes) falls on all of them alike, not on whichever ran during it. Before each run "$tmp/out" is
# emptied, and a script's `before_each` runs if it defines one (run_load.sh settles the database's and
# the kernel's pending writes there, so no run pays for the one before); after each run, `after_each NAME`
# if defined; both outside the timing. Empties the queue.
run_queue() {
  local -A best mem
  local i t m
  for _ in $(seq "${RUNS:-3}"); do
    for i in "${!q_names[@]}"; do
      rm -rf "$tmp/out"; mkdir -p "$tmp/out"
      if declare -F before_each >/dev/null; then before_each; fi
      eval "/usr/bin/time -f '%e %M' -o \"\$tmp/time\" ${q_cmds[$i]}" >/dev/null 2>"$tmp/err" \
        || { cat "$tmp/err"; exit 1; }
      if declare -F after_each >/dev/null; then after_each "${q_names[$i]}"; fi
      read -r t m < "$tmp/time"
      if [ -z "${best[$i]:-}" ] || awk "BEGIN{exit !($t < ${best[$i]})}"; then
        best[$i]=$t
        mem[$i]=$m
      fi
    done
  done
  for i in "${!q_names[@]}"; do echo "${q_names[$i]} ${best[$i]} ${mem[$i]}"; done
  q_names=()
  q_cmds=()
}

# Times one command alone (see run_queue): `measure NAME CMD...`.
measure() {
  queue "$@"
  run_queue
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

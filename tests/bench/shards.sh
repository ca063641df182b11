#!/usr/bin/env bash
# Sharded runs against one process, on this machine: the same plan and input run as one
# `ehrlift run`, and as N `ehrlift run --shard I/N` processes started together, timed until
# the last of them has finalized the run (wall seconds, and the largest shard's peak RSS).
# Each output's manifest must account for every row.
#
#   CSV:        the benchmark export (gen_patients_csv.py) cut into 8 files: a file table
#               is split between shards by its files.
#   PostgreSQL: (--db) the benchmark table loaded by load_db.sh, split by key ranges from
#               pg_stats.
#
# usage: tests/bench/shards.sh [--db] [ROWS]        (default 1,000,000 rows; SHARDS="2 4")
# Environment: BENCH_DIR, BENCH_SKIP_BUILD, CARGO_TARGET_DIR, PG_URL as in run.sh;
# SHARDS (default "2 4"); PIN=1 runs every process on one core (taskset), the one-process
# run included. On one machine the shards compete for its cores, so the unpinned figures
# show the coordination cost, not a speedup; PIN=1 with N <= cores imitates a batch engine
# that gives each shard a machine of its own.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
bench_dir=${BENCH_DIR:-$HOME/.cache/ehrlift-bench}
shared=${BENCH_SHARED:-$(cd "$repo/.." && pwd)/shared/bench}
venv=${BENCH_VENV:-$bench_dir/venv}
py=${PYTHON:-$venv/bin/python}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/ehrlift-target}
bin=$CARGO_TARGET_DIR/release/ehrlift
shards=${SHARDS:-2 4}
db=0
rows=1000000
for a in "$@"; do
  case $a in
    --db) db=1 ;;
    -*) echo "shards.sh: unknown option '$a' (usage: shards.sh [--db] [ROWS])" >&2; exit 2 ;;
    *) rows=$a ;;
  esac
done

[ "${BENCH_SKIP_BUILD:-0}" = 1 ] || (cd "$repo" && cargo build --release --locked -p ehrlift-cli >&2)
mkdir -p "$bench_dir"
csv=$bench_dir/patients-$rows.csv
if [ ! -f "$csv" ]; then
  # The generator needs duckdb: the benchmark venv (run.sh installs the peers there too).
  if ! "$py" -c 'import duckdb' 2> /dev/null; then
    [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
    "$venv/bin/pip" install -q duckdb >&2
    py=$venv/bin/python
  fi
  "$py" "$shared/gen_patients_csv.py" "$rows" "$csv"
fi
split_dir=$bench_dir/patients-$rows-split
if [ ! -f "$split_dir/.done" ]; then
  rm -rf "$split_dir" && mkdir -p "$split_dir"
  # 8 files, each with the header, rows dealt in order.
  awk -v dir="$split_dir" -v n="$rows" 'NR == 1 { h = $0; for (i = 0; i < 8; i++) print h > sprintf("%s/part-%d.csv", dir, i); next }
    { print > sprintf("%s/part-%d.csv", dir, int((NR - 2) * 8 / n)) }' "$csv"
  touch "$split_dir/.done"
fi
cat "$split_dir"/part-*.csv > /dev/null   # into the page cache, for every variant alike

work=$(mktemp -d "$bench_dir/shards.XXXXXX")
trap '[ "${BENCH_KEEP:-0}" = 1 ] || rm -rf "$work"' EXIT
export EHRLIFT_KEYRING=$work/keyring

# The shipped benchmark plans, with a slice size that lets this input split.
plan_copy() {  # plan_copy SHIPPED OUT
  sed -e "s#include = \[\"tables/#include = [\"$repo/mappings/bench/tables/#" \
      -e 's/^max_quarantine_ratio = 0.0$/max_quarantine_ratio = 0.0\nshard_unit_mib = 8/' "$1" > "$2"
  grep -q '^shard_unit_mib = 8' "$2" || { echo "shards.sh: could not set shard_unit_mib in $2" >&2; exit 2; }
}

rows_written() {  # rows_written DEST
  "$py" - "$1" <<'PY'
import glob, json, sys
m = json.load(open(glob.glob(sys.argv[1] + "/_ehrlift/runs/*/manifest.json")[0]))
print(sum(t["rows_written"] for t in m["tables"]))
PY
}

# pin CORE: with PIN=1 a process runs on one core only (taskset), as if each shard had a
# machine of one core to itself; the one-process run then gets one core too.
pin() { if [ "${PIN:-0}" = 1 ]; then echo taskset -c "$1"; fi; }

measure() {  # measure LABEL PLAN   (prints one row per variant)
  local label=$1 plan=$2 out t0 t1 n rss
  out=$work/$label-1
  $(pin 0) /usr/bin/time -f "%e %M" -o "$work/time" "$bin" --progress none run "$plan" --dest "file://$out" > /dev/null 2> "$work/log"
  read -r t rss < "$work/time"
  n=$(rows_written "$out")
  [ "$n" = "$rows" ] || { echo "shards.sh: $label, one process: $n rows written, expected $rows" >&2; exit 1; }
  printf '%-10s %-12s %9s %9s %12s\n' "$label" "1 process" "$t" "1.00" "$((rss / 1024))"
  local base=$t
  for n_sh in $shards; do
    out=$work/$label-$n_sh
    t0=$(date +%s.%N)
    pids=()
    for ((i = 0; i < n_sh; i++)); do
      $(pin $((i % $(nproc)))) /usr/bin/time -f "%e %M" -o "$work/time.$i" "$bin" --progress none run "$plan" --dest "file://$out" --shard "$i/$n_sh" > /dev/null 2> "$work/log.$i" &
      pids+=($!)
    done
    for p in "${pids[@]}"; do wait "$p"; done
    t1=$(date +%s.%N)
    n=$(rows_written "$out")
    [ "$n" = "$rows" ] || { echo "shards.sh: $label, $n_sh shards: $n rows written, expected $rows" >&2; exit 1; }
    "$bin" --progress none verify "file://$out" > /dev/null 2>&1 || { echo "shards.sh: $label, $n_sh shards: verify failed" >&2; exit 1; }
    rss=$(for ((i = 0; i < n_sh; i++)); do cut -d' ' -f2 "$work/time.$i"; done | sort -n | tail -1)
    slowest=$(for ((i = 0; i < n_sh; i++)); do cut -d' ' -f1 "$work/time.$i"; done | sort -n | tail -1)
    wall=$(echo "$t1 - $t0" | bc)
    printf '%-10s %-12s %9.2f %9.2f %12s   (slowest shard %ss)\n' "$label" "$n_sh shards" "$wall" "$(echo "$base / $wall" | bc -l)" "$((rss / 1024))" "$slowest"
  done
}

echo "$(nproc) cores$([ "${PIN:-0}" = 1 ] && echo ", one core per process (PIN=1)"); $rows rows; $("$bin" --version)"
printf '%-10s %-12s %9s %9s %12s\n' input variant wall_s speedup max_rss_MiB
plan_copy "$repo/mappings/bench/patients-plain.toml" "$work/csv.toml"
export BENCH_CSV="$split_dir/part-*.csv"
measure csv "$work/csv.toml"
if [ "$db" = 1 ]; then
  "$here/load_db.sh" "$rows" >&2
  plan_copy "$repo/mappings/bench/patients-postgres.toml" "$work/pg.toml"
  PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432/ehrlift_bench} measure postgres "$work/pg.toml"
fi

#!/usr/bin/env bash
# Benchmark ehrlift against peer CSV→Parquet tools on the same synthetic input.
#
# usage: tests/bench/run.sh [ROWS...]        (default: 1000000)
#   e.g. tests/bench/run.sh 1000000 5000000
#
# For each ROWS: generates (once, then reuses) $BENCH_DIR/patients-ROWS.csv, runs
# `ehrlift run mappings/bench/patients-plain.toml` (tool `ehrlift`) and
# `mappings/bench/patients-safe-harbor.toml` (tool `ehrlift-sh`, the de-identifying
# plan) and the same plan with EHRLIFT_ENCRYPT=all (tool `ehrlift-sh-enc`: every column
# and the footer under Parquet modular encryption) under /usr/bin/time, checks each
# manifest's row total, then `validate --full` of the Safe Harbor plan (tool
# `ehrlift-sh-validate`, checking the report's row total and that nothing was written), runs
# ../shared/bench/peers.sh on the same file (the peers and `duckdb-deid`), and prints
# one table: wall seconds, peak RSS, output bytes, and ehrlift's wall / each peer's,
# then ehrlift-sh against duckdb-deid.
# With several sizes it also prints ehrlift's RSS growth between them.
#
# Databases (opt-in): with --db (anywhere among the arguments) or BENCH_DB=1, it then
# also, for each ROWS, loads the same rows into PostgreSQL and MariaDB/MySQL
# (tests/bench/load_db.sh, skipped when already loaded), times `psql \copy (select ...)
# to /dev/null` (tool `psql-copy`) and `mariadb --quick -e "select ..." >/dev/null`
# (`mariadb-cli`) against `ehrlift run mappings/bench/patients-postgres.toml`
# (`ehrlift-pg`) and `patients-mysql.toml` (`ehrlift-mysql`), checks their manifests,
# and prints a second table. --db-only (or BENCH_DB=only) skips the CSV benchmark.
#   e.g. tests/bench/run.sh --db 1000000 5000000
#
# Environment (all optional):
#   BENCH_DIR         input cache and venv home   (default: $HOME/.cache/ehrlift-bench)
#   BENCH_OUT         output root                 (default: $BENCH_DIR/out)
#   BENCH_VENV        venv with duckdb pyarrow polars [sling dlt] (default: $BENCH_DIR/venv)
#   PYTHON            python to use               (default: $BENCH_VENV/bin/python)
#   BENCH_PEERS       space-separated peer list   (default: polars pyarrow duckdb, plus
#                     sling and dlt when importable)
#   BENCH_REPEAT      runs of every tool per size; the table shows each tool's median
#                     run by wall time, plus the min-max wall range (default: 1)
#   BENCH_SKIP_BUILD  1 to use the existing release binary without running cargo
#   BENCH_SHARED      dir holding gen_patients_csv.py and peers.sh (default: ../shared/bench
#                     beside the repository)
#   CARGO_TARGET_DIR  release build dir           (default: $HOME/.cache/ehrlift-target)
#   BENCH_DB          1: add the database benchmark (as --db); only: only it (as --db-only)
#   BENCH_DB_NAME, BENCH_PG_HOST/PORT/USER, BENCH_MYSQL_HOST/PORT/USER
#                     the servers (default: ehrlift_bench on postgres@127.0.0.1:5432 and
#                     root@127.0.0.1:3306, no password); see load_db.sh
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
bench_dir=${BENCH_DIR:-$HOME/.cache/ehrlift-bench}
out_root=${BENCH_OUT:-$bench_dir/out}
venv=${BENCH_VENV:-$bench_dir/venv}
py=${PYTHON:-$venv/bin/python}
shared=${BENCH_SHARED:-$(cd "$(dirname "$0")/../../.." && pwd)/shared/bench}
gen=$shared/gen_patients_csv.py
peers_sh=$shared/peers.sh
plan=$repo/mappings/bench/patients-plain.toml
plan_sh=$repo/mappings/bench/patients-safe-harbor.toml
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/ehrlift-target}
bin=$CARGO_TARGET_DIR/release/ehrlift

repeat=${BENCH_REPEAT:-1}
[[ $repeat =~ ^[1-9][0-9]*$ ]] || { echo "run.sh: BENCH_REPEAT must be a positive integer" >&2; exit 2; }

# --db / --db-only (or BENCH_DB=1 / only) add the database benchmark / run only it.
case ${BENCH_DB:-0} in
  0 | "") db_mode=0 csv_mode=1 ;;
  1) db_mode=1 csv_mode=1 ;;
  only) db_mode=1 csv_mode=0 ;;
  *) echo "run.sh: BENCH_DB must be 1 or only, got '$BENCH_DB'" >&2; exit 2 ;;
esac
rows_list=()
for a in "$@"; do
  case $a in
    --db) db_mode=1 ;;
    --db-only) db_mode=1 csv_mode=0 ;;
    -*) echo "run.sh: unknown option '$a' (usage: run.sh [--db | --db-only] [ROWS...])" >&2; exit 2 ;;
    *) rows_list+=("$a") ;;
  esac
done
[ ${#rows_list[@]} -eq 0 ] && rows_list=(1000000)
for r in "${rows_list[@]}"; do
  [[ $r =~ ^[1-9][0-9]*$ ]] || { echo "run.sh: ROWS must be a positive integer, got '$r'" >&2; exit 2; }
done

load_db=$here/load_db.sh
plan_pg=$repo/mappings/bench/patients-postgres.toml
plan_my=$repo/mappings/bench/patients-mysql.toml
for f in "$gen" "$peers_sh" "$plan" "$plan_sh" "$load_db" "$plan_pg" "$plan_my"; do
  [ -f "$f" ] || { echo "run.sh: missing $f" >&2; exit 2; }
done
[ -x /usr/bin/time ] || { echo "run.sh: /usr/bin/time (GNU time) is required" >&2; exit 2; }
if ! "$py" -c 'import duckdb, pyarrow, polars' 2>/dev/null; then
  echo "run.sh: installing the peers (duckdb pyarrow polars sling dlt) into $venv" >&2
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  "$venv/bin/pip" install -q duckdb pyarrow polars >&2
  "$venv/bin/pip" install -q sling sling-linux-amd64 'dlt[parquet,filesystem]' >&2 || echo "run.sh: sling/dlt could not be installed; they will be skipped" >&2
  py="$venv/bin/python"
fi

# Peers: the three required ones, plus sling and dlt when they are installed.
if [ "$csv_mode" != 1 ]; then
  peers=()
elif [ -n "${BENCH_PEERS:-}" ]; then
  read -r -a peers <<<"$BENCH_PEERS"
else
  peers=(polars pyarrow duckdb duckdb-deid)
  if "$py" -c 'import sling_linux_amd64' 2>/dev/null; then peers+=(sling)
  else echo "note: sling not installed in $venv (pip install sling sling-linux-amd64); skipping it"; fi
  if "$py" -c 'import dlt' 2>/dev/null; then peers+=(dlt)
  else echo "note: dlt not installed in $venv (pip install 'dlt[parquet,filesystem]'); skipping it"; fi
fi

if [ "${BENCH_SKIP_BUILD:-0}" != 1 ]; then
  echo "building release ehrlift-cli into $CARGO_TARGET_DIR ..."
  (cd "$repo" && cargo build --release -p ehrlift-cli)
fi
[ -x "$bin" ] || { echo "run.sh: no binary at $bin" >&2; exit 2; }
mkdir -p "$bench_dir" "$out_root"

if [ "$db_mode" = 1 ]; then
  command -v psql >/dev/null || { echo "run.sh: --db needs psql (PostgreSQL client)" >&2; exit 2; }
  if command -v mariadb >/dev/null; then mycli=mariadb
  elif command -v mysql >/dev/null; then mycli=mysql
  else echo "run.sh: --db needs the mariadb (or mysql) client" >&2; exit 2; fi
  [ -x "$load_db" ] || { echo "run.sh: $load_db is not executable" >&2; exit 2; }
  db_name=${BENCH_DB_NAME:-ehrlift_bench}
  pg_host=${BENCH_PG_HOST:-127.0.0.1} pg_port=${BENCH_PG_PORT:-5432} pg_user=${BENCH_PG_USER:-postgres}
  my_host=${BENCH_MYSQL_HOST:-127.0.0.1} my_port=${BENCH_MYSQL_PORT:-3306} my_user=${BENCH_MYSQL_USER:-root}
  export PG_URL=postgres://$pg_user@$pg_host:$pg_port/$db_name
  export MYSQL_URL=mysql://$my_user@$my_host:$my_port/$db_name
  export PGCONNECT_TIMEOUT=${PGCONNECT_TIMEOUT:-5}
  # Before the (long) CSV benchmark: the servers answer, the first size is loaded, and
  # this binary accepts the database plans (one without database sources rejects
  # `kind = "postgres"`; a binary that cannot reach the server must not hang us).
  echo "database preflight: $PG_URL, $MYSQL_URL"
  "$load_db" "${rows_list[0]}"
  for p in "$plan_pg" "$plan_my"; do
    status=0
    timeout 120 "$bin" validate "$p" >"$out_root/validate-$(basename "$p" .toml).log" 2>&1 || status=$?
    if [ "$status" -ne 0 ]; then
      echo "run.sh: \`ehrlift validate $p\` failed (exit status $status$([ "$status" -eq 124 ] && echo ', timed out after 120 s')):" >&2
      tail -n 20 "$out_root/validate-$(basename "$p" .toml).log" >&2
      if [ "$status" -eq 124 ]; then
        echo "run.sh: can $bin reach the servers ($PG_URL, $MYSQL_URL)? Or drop --db / BENCH_DB." >&2
      else
        echo "run.sh: does $bin have database sources? Rebuild it (run without BENCH_SKIP_BUILD=1), or drop --db / BENCH_DB." >&2
      fi
      exit 2
    fi
  done
fi

echo "machine: $(nproc) CPU(s), $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo) RAM, load average $(cut -d' ' -f1-3 /proc/loadavg)"
[ "$csv_mode" = 1 ] && echo "peers: ${peers[*]}"

# Results by size, for the RSS growth summary.
declare -A eh_rss eh_wall

fmt_mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }

# One ehrlift run of a plan: checks the manifest, appends "NAME wall rss bytes user sys"
# to $results. The destination starts empty, so the safe-harbor plan's surrogate vault
# assigns every patient anew (its slower path). Keys live in $bench_dir/keyring.
run_ehrlift() { # name plan rows csv out results
  local name=$1 plan=$2 rows=$3 csv=$4 out=$5 results=$6 dest=$5/$1 status=0
  rm -rf "$dest"
  BENCH_CSV=$csv EHRLIFT_KEYRING=$bench_dir/keyring /usr/bin/time -f "%e %M %U %S" -o "$out/$name.time" \
    "$bin" run "$plan" --dest "file://$dest" --fresh --progress none >"$out/$name.log" 2>&1 || status=$?
  if [ "$status" -ne 0 ]; then
    echo "$name FAILED with exit status $status; log: $out/$name.log" >&2
    tail -n 20 "$out/$name.log" >&2
    exit 1
  fi
  local wall rss user sys bytes written quarantined manifests
  read -r wall rss user sys <"$out/$name.time"
  bytes=$(du -sb "$dest/patients" | cut -f1)
  manifests=("$dest"/_ehrlift/runs/*/manifest.json)
  if [ ${#manifests[@]} -ne 1 ] || [ ! -f "${manifests[0]}" ]; then
    echo "expected one manifest under $dest/_ehrlift/runs, found: ${manifests[*]}" >&2
    exit 1
  fi
  written=$(jq '[.tables[].rows_written] | add' "${manifests[0]}")
  quarantined=$(jq '[.tables[].rows_quarantined] | add' "${manifests[0]}")
  if [ "$written" != "$rows" ]; then
    echo "row check FAILED: manifest rows_written=$written, expected $rows (quarantined: $quarantined)" >&2
    exit 1
  fi
  echo "$name: ${wall}s wall, user ${user}s + sys ${sys}s ($(awk -v u="$user" -v s="$sys" -v w="$wall" 'BEGIN { printf "%.0f%%", (w > 0 ? 100 * (u + s) / w : 0) }') of one core), peak RSS $(fmt_mib "$rss") MiB; manifest rows_written=$written rows_quarantined=$quarantined: ok"
  echo "$name $wall $rss $bytes $user $sys" >>"$results"
}

# `validate --full` of a plan: checks the report's row total, appends "NAME wall rss 0
# user sys" to $results. Nothing is written to its destination.
run_validate() { # name plan rows csv out results
  local name=$1 plan=$2 rows=$3 csv=$4 out=$5 results=$6 dest=$5/$1 status=0
  rm -rf "$dest"
  BENCH_CSV=$csv EHRLIFT_KEYRING=$bench_dir/keyring /usr/bin/time -f "%e %M %U %S" -o "$out/$name.time" \
    "$bin" validate "$plan" --dest "file://$dest" --full --json --progress none >"$out/$name.json" 2>"$out/$name.log" || status=$?
  if [ "$status" -ne 0 ]; then
    echo "$name FAILED with exit status $status; log: $out/$name.log" >&2
    tail -n 20 "$out/$name.log" >&2
    exit 1
  fi
  local wall rss user sys read
  read -r wall rss user sys <"$out/$name.time"
  read=$(jq '[.tables[].rows_read] | add' "$out/$name.json")
  if [ "$read" != "$rows" ] || [ -e "$dest" ]; then
    echo "$name: report rows_read=$read, expected $rows; or it wrote $dest" >&2
    exit 1
  fi
  echo "$name: ${wall}s wall, peak RSS $(fmt_mib "$rss") MiB; report rows_read=$read, destination untouched: ok"
  echo "$name $wall $rss 0 $user $sys" >>"$results"
}

# The peers once: appends "name wall rss bytes" (or "name FAILED") to $results.
run_peers() { # csv out results
  local line name rest
  while read -r line; do
    [ -n "$line" ] || continue
    echo "$line"
    read -r name rest <<<"$line"
    if [[ $rest == FAILED* ]]; then
      echo "$name FAILED" >>"$3"
    else
      echo "$name $(sed -n 's/.*wall_s=\([^ ]*\).*/\1/p' <<<"$rest") $(sed -n 's/.*peak_rss_kib=\([^ ]*\).*/\1/p' <<<"$rest") $(sed -n 's/.*out_bytes=\([^ ]*\).*/\1/p' <<<"$rest")" >>"$3"
    fi
  done < <(PYTHON="$py" bash "$peers_sh" "$1" "$2/peers" "${peers[@]}")
}

# The min-max wall time of a tool's runs in $results.
wall_range() { awk -v t="$1" '$1 == t && $2 != "FAILED" { if (min == "" || $2 < min) min = $2; if ($2 > max) max = $2 } END { if (min != "") printf "%s-%s", min, max; else print "-" }' "$results"; }

# The median run of a tool by wall time (a FAILED run makes the tool FAILED).
median_of() { # tool results
  if grep -q "^$1 FAILED" "$2"; then echo "$1 FAILED"; return; fi
  local n
  n=$(grep -c "^$1 " "$2" || true)
  [ "$n" -gt 0 ] || return 0
  grep "^$1 " "$2" | sort -k2,2g | sed -n "$(( (n + 1) / 2 ))p"
}

csv_rows=()
[ "$csv_mode" = 1 ] && csv_rows=("${rows_list[@]}")
for rows in "${csv_rows[@]}"; do
  csv=$bench_dir/patients-$rows.csv
  if [ ! -s "$csv" ]; then
    echo "generating $csv ..."
    "$py" "$gen" "$rows" "$csv.tmp.csv"
    mv "$csv.tmp.csv" "$csv"
  fi
  # Warm the page cache so every tool reads the input from memory alike.
  cat "$csv" >/dev/null
  out=$out_root/$rows
  results=$out/results.txt
  mkdir -p "$out"
  : >"$results"

  echo
  echo "== $rows rows: $csv ($(stat -c %s "$csv") bytes), $repeat run(s) each, load average $(cut -d' ' -f1-3 /proc/loadavg)"
  for ((i = 1; i <= repeat; i++)); do
    run_ehrlift ehrlift "$plan" "$rows" "$csv" "$out" "$results"
    run_ehrlift ehrlift-sh "$plan_sh" "$rows" "$csv" "$out" "$results"
    EHRLIFT_ENCRYPT=all run_ehrlift ehrlift-sh-enc "$plan_sh" "$rows" "$csv" "$out" "$results"
    run_validate ehrlift-sh-validate "$plan_sh" "$rows" "$csv" "$out" "$results"
    run_peers "$csv" "$out" "$results"
  done

  read -r _ e_wall e_rss e_bytes e_user e_sys < <(median_of ehrlift "$results")
  eh_rss[$rows]=$e_rss
  eh_wall[$rows]=$e_wall
  row() { # tool wall rss_kib bytes ratio
    if [ "$repeat" -gt 1 ]; then
      printf '%-20s %10s %14s %14s %18s %14s\n' "$1" "$2" "$3" "$4" "$5" "$(wall_range "$1")"
    else
      printf '%-20s %10s %14s %14s %18s\n' "$1" "$2" "$3" "$4" "$5"
    fi
  }
  table=$(
    if [ "$repeat" -gt 1 ]; then
      printf '%-20s %10s %14s %14s %18s %14s\n' tool wall_s peak_rss_MiB out_bytes "ehrlift/peer_wall" wall_min-max
    else
      printf '%-20s %10s %14s %14s %18s\n' tool wall_s peak_rss_MiB out_bytes "ehrlift/peer_wall"
    fi
    row ehrlift "$e_wall" "$(fmt_mib "$e_rss")" "$e_bytes" "-"
    read -r _ s_wall s_rss s_bytes _ < <(median_of ehrlift-sh "$results")
    row ehrlift-sh "$s_wall" "$(fmt_mib "$s_rss")" "$s_bytes" "-"
    read -r _ x_wall x_rss x_bytes _ < <(median_of ehrlift-sh-enc "$results")
    row ehrlift-sh-enc "$x_wall" "$(fmt_mib "$x_rss")" "$x_bytes" "-"
    read -r _ y_wall y_rss _ < <(median_of ehrlift-sh-validate "$results")
    row ehrlift-sh-validate "$y_wall" "$(fmt_mib "$y_rss")" "-" "-"
    for p in "${peers[@]}"; do
      read -r name wall rss bytes < <(median_of "$p" "$results"; echo)
      [ -n "${name:-}" ] || continue
      if [ "$wall" = FAILED ]; then
        row "$name" FAILED - - -
      else
        row "$name" "$wall" "$(fmt_mib "$rss")" "$bytes" "$(ratio "$e_wall" "$wall")"
      fi
    done
  )
  echo
  if [ "$repeat" -gt 1 ]; then echo "$rows rows (median of $repeat runs by wall time; load average now $(cut -d' ' -f1-3 /proc/loadavg)):"
  else echo "$rows rows (load average now $(cut -d' ' -f1-3 /proc/loadavg)):"; fi
  echo "$table"
  echo "ehrlift cpu: user ${e_user}s + sys ${e_sys}s over ${e_wall}s wall = $(awk -v u="$e_user" -v s="$e_sys" -v w="$e_wall" 'BEGIN { printf "%.0f%%", (w > 0 ? 100 * (u + s) / w : 0) }') of one core ($(nproc) available)"

  # The team's targets, for information (never changes the exit status).
  polars_wall=$(awk '$1 == "polars" { print $2 }' <<<"$table")
  rss_mb=$(awk -v k="$e_rss" 'BEGIN { printf "%.1f", k * 1024 / 1e6 }')
  if [ -n "$polars_wall" ] && [ "$polars_wall" != FAILED ]; then
    verdict=$(awk -v a="$e_wall" -v b="$polars_wall" 'BEGIN { print (a <= b) ? "PASS" : "FAIL" }')
    echo "target: ehrlift wall <= polars wall: $e_wall s vs $polars_wall s: $verdict"
  fi
  echo "target: ehrlift peak RSS < 150 MB: $rss_mb MB: $(awk -v m="$rss_mb" 'BEGIN { print (m < 150) ? "PASS" : "FAIL" }')"
  read -r _ s_wall s_rss _ < <(median_of ehrlift-sh "$results")
  read -r _ x_wall _ < <(median_of ehrlift-sh-enc "$results")
  read -r _ y_wall _ < <(median_of ehrlift-sh-validate "$results")
  echo "target: ehrlift-sh-validate (validate --full) wall <= 1.5 x ehrlift-sh wall: $y_wall s vs $s_wall s (x$(ratio "$y_wall" "$s_wall")): $(awk -v a="$y_wall" -v b="$s_wall" 'BEGIN { print (a <= 1.5 * b) ? "PASS" : "FAIL" }')"
  echo "target: ehrlift-sh-enc (encrypt = \"all\") wall <= 1.10 x ehrlift-sh wall: $x_wall s vs $s_wall s (x$(ratio "$x_wall" "$s_wall")): $(awk -v a="$x_wall" -v b="$s_wall" 'BEGIN { print (a <= 1.10 * b) ? "PASS" : "FAIL" }')"
  read -r dd_name dd_wall dd_rss _ < <(median_of duckdb-deid "$results"; echo)
  if [ -n "${dd_name:-}" ] && [ "$dd_wall" != FAILED ]; then
    echo "target: ehrlift-sh wall <= duckdb-deid wall: $s_wall s vs $dd_wall s (x$(ratio "$s_wall" "$dd_wall")): $(awk -v a="$s_wall" -v b="$dd_wall" 'BEGIN { print (a <= b) ? "PASS" : "FAIL" }')"
    echo "target: ehrlift-sh peak RSS <= 40% of duckdb-deid's: $(fmt_mib "$s_rss") MiB vs $(fmt_mib "$dd_rss") MiB ($(awk -v a="$s_rss" -v b="$dd_rss" 'BEGIN { printf "%.0f%%", 100 * a / b }')): $(awk -v a="$s_rss" -v b="$dd_rss" 'BEGIN { print (a <= 0.4 * b) ? "PASS" : "FAIL" }')"
  fi
done

if [ ${#csv_rows[@]} -gt 1 ]; then
  echo
  echo "ehrlift RSS growth:"
  prev=
  for rows in "${rows_list[@]}"; do
    if [ -n "$prev" ]; then
      awk -v a="$prev" -v b="$rows" -v ra="${eh_rss[$prev]}" -v rb="${eh_rss[$rows]}" -v wa="${eh_wall[$prev]}" -v wb="${eh_wall[$rows]}" 'BEGIN {
        g = 100 * (rb - ra) / ra
        printf "  %d -> %d rows: peak RSS %.1f -> %.1f MiB (%+.1f%%, target within 20%%: %s); wall %.2f -> %.2f s (x%.2f for x%.2f rows)\n",
          a, b, ra / 1024, rb / 1024, g, (g <= 20 && g >= -20) ? "PASS" : "FAIL", wa, wb, wb / wa, b / a }'
    fi
    prev=$rows
  done
fi

# ---- Databases (--db / BENCH_DB): ehrlift reading PostgreSQL and MariaDB/MySQL against
# each server's own command-line client dumping the same table to /dev/null.
[ "$db_mode" = 1 ] || exit 0

# One timed command-line client run: stdout to /dev/null, stderr to $out/NAME.log;
# appends "NAME wall rss - user sys" to $results.
run_cli() { # name out results command...
  local name=$1 out=$2 results=$3 status=0 wall rss user sys
  shift 3
  /usr/bin/time -f "%e %M %U %S" -o "$out/$name.time" "$@" >/dev/null 2>"$out/$name.log" || status=$?
  if [ "$status" -ne 0 ]; then
    echo "$name FAILED with exit status $status; log: $out/$name.log" >&2
    tail -n 20 "$out/$name.log" >&2
    exit 1
  fi
  read -r wall rss user sys <"$out/$name.time"
  echo "$name: ${wall}s wall, user ${user}s + sys ${sys}s, peak RSS $(fmt_mib "$rss") MiB (the client; the server's work is in the wall time only)"
  echo "$name $wall $rss - $user $sys" >>"$results"
}

declare -A db_rss
db_tools=(psql-copy mariadb-cli ehrlift-pg ehrlift-mysql)
for rows in "${rows_list[@]}"; do
  echo
  "$load_db" "$rows"
  out=$out_root/$rows
  results=$out/db-results.txt
  mkdir -p "$out"
  : >"$results"
  # Warm each server's cache alike for every tool (one untimed full scan).
  psql -X -q -h "$pg_host" -p "$pg_port" -U "$pg_user" -d "$db_name" -Atc 'select count(*), sum(length(note)) from patients' >/dev/null
  "$mycli" --batch -h "$my_host" -P "$my_port" -u "$my_user" "$db_name" -e 'select count(*), sum(length(note)) from patients' >/dev/null

  echo
  echo "== database, $rows rows: $PG_URL and $MYSQL_URL, $repeat run(s) each, load average $(cut -d' ' -f1-3 /proc/loadavg)"
  for ((i = 1; i <= repeat; i++)); do
    run_cli psql-copy "$out" "$results" \
      psql -X -q -h "$pg_host" -p "$pg_port" -U "$pg_user" -d "$db_name" -c "\copy (select * from patients) to '/dev/null' csv"
    run_cli mariadb-cli "$out" "$results" \
      "$mycli" --batch --quick -h "$my_host" -P "$my_port" -u "$my_user" "$db_name" -e "select * from patients"
    run_ehrlift ehrlift-pg "$plan_pg" "$rows" "" "$out" "$results"
    run_ehrlift ehrlift-mysql "$plan_my" "$rows" "" "$out" "$results"
  done

  declare -A w r b
  for t in "${db_tools[@]}"; do
    read -r _ w[$t] r[$t] b[$t] _ < <(median_of "$t" "$results")
  done
  db_rss[$rows]="${r[ehrlift-pg]} ${r[ehrlift-mysql]}"
  db_row() { # tool ratio
    if [ "$repeat" -gt 1 ]; then
      printf '%-20s %10s %14s %14s %18s %14s\n' "$1" "${w[$1]}" "$(fmt_mib "${r[$1]}")" "${b[$1]}" "$2" "$(wall_range "$1")"
    else
      printf '%-20s %10s %14s %14s %18s\n' "$1" "${w[$1]}" "$(fmt_mib "${r[$1]}")" "${b[$1]}" "$2"
    fi
  }
  echo
  if [ "$repeat" -gt 1 ]; then echo "database, $rows rows (median of $repeat runs by wall time; load average now $(cut -d' ' -f1-3 /proc/loadavg)):"
  else echo "database, $rows rows (load average now $(cut -d' ' -f1-3 /proc/loadavg)):"; fi
  if [ "$repeat" -gt 1 ]; then
    printf '%-20s %10s %14s %14s %18s %14s\n' tool wall_s peak_rss_MiB out_bytes "ehrlift/cli_wall" wall_min-max
  else
    printf '%-20s %10s %14s %14s %18s\n' tool wall_s peak_rss_MiB out_bytes "ehrlift/cli_wall"
  fi
  db_row psql-copy -
  db_row mariadb-cli -
  db_row ehrlift-pg "$(ratio "${w[ehrlift-pg]}" "${w[psql-copy]}")"
  db_row ehrlift-mysql "$(ratio "${w[ehrlift-mysql]}" "${w[mariadb-cli]}")"

  # The team's targets, for information (never changes the exit status).
  echo "target: ehrlift-pg wall <= psql-copy wall: ${w[ehrlift-pg]} s vs ${w[psql-copy]} s: $(awk -v a="${w[ehrlift-pg]}" -v b="${w[psql-copy]}" 'BEGIN { print (a <= b) ? "PASS" : "FAIL" }')"
  echo "info: ehrlift-mysql wall / mariadb-cli wall: ${w[ehrlift-mysql]} s vs ${w[mariadb-cli]} s (x$(ratio "${w[ehrlift-mysql]}" "${w[mariadb-cli]}"))"
  for t in ehrlift-pg ehrlift-mysql; do
    rss_mb=$(awk -v k="${r[$t]}" 'BEGIN { printf "%.1f", k * 1024 / 1e6 }')
    echo "target: $t peak RSS < 200 MB: $rss_mb MB: $(awk -v m="$rss_mb" 'BEGIN { print (m < 200) ? "PASS" : "FAIL" }')"
  done
done

if [ ${#rows_list[@]} -gt 1 ]; then
  first=${rows_list[0]} last=${rows_list[-1]}
  read -r pg_a my_a <<<"${db_rss[$first]}"
  read -r pg_b my_b <<<"${db_rss[$last]}"
  echo
  echo "database RSS growth, $first -> $last rows (target: flat, within 20%):"
  for t in ehrlift-pg:"$pg_a":"$pg_b" ehrlift-mysql:"$my_a":"$my_b"; do
    IFS=: read -r name ra rb <<<"$t"
    awk -v n="$name" -v ra="$ra" -v rb="$rb" 'BEGIN {
      g = 100 * (rb - ra) / ra
      printf "  %-14s peak RSS %.1f -> %.1f MiB (%+.1f%%): %s\n", n, ra / 1024, rb / 1024, g, (g <= 20 && g >= -20) ? "PASS" : "FAIL" }'
  done
fi

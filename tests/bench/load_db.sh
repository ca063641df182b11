#!/usr/bin/env bash
# Load the synthetic 'patients' CSV into PostgreSQL and MariaDB/MySQL for the database
# benchmarks (mappings/bench/patients-postgres.toml and patients-mysql.toml).
#
# usage: tests/bench/load_db.sh ROWS        (e.g. tests/bench/load_db.sh 1000000)
#
# Generates $BENCH_DIR/patients-ROWS.csv if it is missing (as run.sh does), then loads it
# into table `patients` of database `ehrlift_bench` on both servers, with a typed legacy
# schema (birth_date converted from %m/%d/%Y, empty deceased_at and note as NULL).
# Each database keeps a marker table `bench_loaded` with the row count of the last
# complete load: a rerun with the same ROWS (and a matching count(*)) skips that
# database; a different ROWS reloads it. Prints the load timings.
#
#   PostgreSQL: one transaction: CREATE TABLE, COPY ... FROM STDIN (psql \copy, FREEZE),
#               ADD PRIMARY KEY, marker row; then VACUUM (ANALYZE).
#   MariaDB:    CREATE TABLE patients_load (primary key first: InnoDB clusters on it and
#               the file is in key order), LOAD DATA LOCAL INFILE, warnings check,
#               swap it in as `patients`, ANALYZE TABLE, marker row.
#
# Environment (all optional):
#   BENCH_DIR, BENCH_VENV, PYTHON, BENCH_SHARED   as in run.sh (CSV cache, venv, generator)
#   BENCH_DB_NAME      database name on both servers       (default: ehrlift_bench)
#   BENCH_PG_HOST / BENCH_PG_PORT / BENCH_PG_USER          (default: 127.0.0.1 / 5432 / postgres)
#   BENCH_MYSQL_HOST / BENCH_MYSQL_PORT / BENCH_MYSQL_USER (default: 127.0.0.1 / 3306 / root)
#   BENCH_DB_FORCE     1 to reload even when the marker says ROWS are already loaded
# The servers are expected to accept these users without a password (trust / unix-socket
# style local setups); PGPASSWORD and MYSQL_PWD are honoured by the clients if set.
set -euo pipefail

die() { echo "load_db.sh: $*" >&2; exit 2; }

[ $# -eq 1 ] || die "usage: tests/bench/load_db.sh ROWS"
rows=$1
[[ $rows =~ ^[1-9][0-9]*$ ]] || die "ROWS must be a positive integer, got '$rows'"

bench_dir=${BENCH_DIR:-$HOME/.cache/ehrlift-bench}
venv=${BENCH_VENV:-$bench_dir/venv}
py=${PYTHON:-$venv/bin/python}
shared=${BENCH_SHARED:-$(cd "$(dirname "$0")/../../.." && pwd)/shared/bench}
gen=$shared/gen_patients_csv.py
db=${BENCH_DB_NAME:-ehrlift_bench}
pg_host=${BENCH_PG_HOST:-127.0.0.1}
pg_port=${BENCH_PG_PORT:-5432}
pg_user=${BENCH_PG_USER:-postgres}
my_host=${BENCH_MYSQL_HOST:-127.0.0.1}
my_port=${BENCH_MYSQL_PORT:-3306}
my_user=${BENCH_MYSQL_USER:-root}
force=${BENCH_DB_FORCE:-0}
[[ $db =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || die "BENCH_DB_NAME must be a plain identifier, got '$db'"

command -v psql >/dev/null || die "psql (PostgreSQL client) is not installed"
if command -v mariadb >/dev/null; then mycli=mariadb
elif command -v mysql >/dev/null; then mycli=mysql
else die "neither mariadb nor mysql (client) is installed"; fi

# Never wait long for a server that is down.
export PGCONNECT_TIMEOUT=${PGCONNECT_TIMEOUT:-5}
pg() { # database, then psql arguments
  local d=$1; shift
  psql -X -q -v ON_ERROR_STOP=1 -h "$pg_host" -p "$pg_port" -U "$pg_user" -d "$d" "$@"
}
my() { # mariadb arguments (batch mode, no column names)
  "$mycli" --connect-timeout=5 --batch --skip-column-names \
    -h "$my_host" -P "$my_port" -u "$my_user" "$@"
}

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }

# --- the servers are up? (before generating anything) ------------------------------
if ! err=$(pg postgres -Atc 'select 1' 2>&1 >/dev/null); then
  die "PostgreSQL at $pg_host:$pg_port (user $pg_user) is not reachable: ${err:-psql failed}
  start it (e.g. 'service postgresql start' or 'pg_ctlcluster 15 main start') or set BENCH_PG_HOST/BENCH_PG_PORT/BENCH_PG_USER"
fi
if ! err=$(my -e 'select 1' 2>&1 >/dev/null); then
  die "MariaDB/MySQL at $my_host:$my_port (user $my_user) is not reachable: ${err:-$mycli failed}
  start it (e.g. 'service mariadb start') or set BENCH_MYSQL_HOST/BENCH_MYSQL_PORT/BENCH_MYSQL_USER"
fi

# --- the CSV (generated once, like run.sh) -------------------------------------------
csv=$bench_dir/patients-$rows.csv
if [ ! -s "$csv" ]; then
  [ -f "$gen" ] || die "missing generator $gen (set BENCH_SHARED)"
  if ! "$py" -c 'import duckdb' 2>/dev/null; then
    echo "load_db.sh: installing duckdb pyarrow polars into $venv" >&2
    [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
    "$venv/bin/pip" install -q duckdb pyarrow polars >&2
    py="$venv/bin/python"
  fi
  mkdir -p "$bench_dir"
  echo "generating $csv ..."
  "$py" "$gen" "$rows" "$csv.tmp.csv"
  mv "$csv.tmp.csv" "$csv"
fi
csv_bytes=$(stat -c %s "$csv")
# The generator writes a header line plus one line per row (no embedded newlines).
lines=$(wc -l <"$csv")
[ "$lines" -eq $((rows + 1)) ] || die "$csv has $lines lines, expected $((rows + 1)) (header + ROWS); delete it to regenerate"

# --- PostgreSQL ----------------------------------------------------------------------
pg_load() {
  if [ "$(pg postgres -Atc "select 1 from pg_database where datname = '$db'")" != 1 ]; then
    pg postgres -c "create database $db" >/dev/null
    echo "postgres: created database $db"
  fi
  if [ "$force" != 1 ]; then
    local marker count
    marker=$(pg "$db" -Atc "select rows_loaded from bench_loaded where tbl = 'patients'" 2>/dev/null || true)
    if [ "$marker" = "$rows" ]; then
      count=$(pg "$db" -Atc 'select count(*) from patients' 2>/dev/null || true)
      if [ "$count" = "$rows" ]; then
        echo "postgres: $db.patients already holds $rows rows (marker and count(*)); skipping the load"
        return
      fi
      echo "postgres: marker says $rows rows but count(*) is '${count:-no table}'; reloading"
    fi
  fi
  echo "postgres: loading $rows rows into $db.patients ..."
  local t0 t1 steps
  t0=$(now)
  # One transaction (-1): the table is created and filled in it, so COPY can FREEZE the
  # rows (no later hint-bit or freeze pass), and a failed load leaves the old table and
  # marker in place. The CSV arrives on stdin (\copy ... from pstdin); birth_date is
  # m/d/Y, which DateStyle MDY reads; FORCE_NULL turns the quoted "" of the empty
  # deceased_at and note fields into NULL (in CSV mode only unquoted empties are NULL).
  # The primary key is added after the COPY (one sorted index build).
  steps=$(pg "$db" -1 -f <(cat <<SQL
set client_min_messages = warning;
set datestyle = 'ISO, MDY';
drop table if exists patients;
create table patients (
  patient_id   bigint not null,
  mrn          varchar(16) not null,
  ssn          char(11),
  first_name   varchar(40),
  last_name    varchar(40),
  birth_date   date,
  sex          char(1),
  address_line varchar(80),
  city         varchar(40),
  state        char(2),
  zip          varchar(5),
  phone        varchar(20),
  email        varchar(80),
  race_code    varchar(8),
  deceased_at  timestamp,
  weight_kg    numeric(5,1),
  note         text
);
\timing on
\copy patients from pstdin with (format csv, header true, force_null (deceased_at, note), freeze true)
\echo step COPY
alter table patients add primary key (patient_id);
\echo step primary-key
\timing off
create table if not exists bench_loaded (tbl text primary key, rows_loaded bigint not null, csv_bytes bigint, loaded_at timestamptz not null);
insert into bench_loaded values ('patients', $rows, $csv_bytes, now())
  on conflict (tbl) do update set rows_loaded = excluded.rows_loaded, csv_bytes = excluded.csv_bytes, loaded_at = excluded.loaded_at;
SQL
) <"$csv" | awk '/^Time: / { ms = $2 } /^step / { printf "%s %.2f s, ", $2, ms / 1000 }') ||
    die "postgres: the load failed (psql's error above); $db.patients and its marker are as they were"
  steps="${steps}whole transaction $(since "$t0") s"
  t1=$(now)
  pg "$db" -c 'vacuum (analyze) patients' -c 'analyze bench_loaded'
  local t_vac t_all count
  t_vac=$(since "$t1")
  t_all=$(since "$t0")
  count=$(pg "$db" -Atc 'select count(*) from patients')
  [ "$count" = "$rows" ] || die "postgres: count(*) is $count after the load, expected $rows"
  echo "postgres: loaded $rows rows in $t_all s ($steps; VACUUM ANALYZE $t_vac s); table $(pg "$db" -Atc "select round(pg_total_relation_size('patients') / 1048576.0, 1) || ' MiB'")"
}

# --- MariaDB / MySQL -----------------------------------------------------------------
my_load() {
  my -e "create database if not exists \`$db\`"
  if [ "$force" != 1 ]; then
    local marker count
    marker=$(my "$db" -e "select rows_loaded from bench_loaded where tbl = 'patients'" 2>/dev/null || true)
    if [ "$marker" = "$rows" ]; then
      count=$(my "$db" -e 'select count(*) from patients' 2>/dev/null || true)
      if [ "$count" = "$rows" ]; then
        echo "mariadb: $db.patients already holds $rows rows (marker and count(*)); skipping the load"
        return
      fi
      echo "mariadb: marker says $rows rows but count(*) is '${count:-no table}'; reloading"
    fi
  fi
  if [ "$(my -e 'select @@global.local_infile')" != 1 ]; then
    echo "mariadb: the server has local_infile off; enabling it (SET GLOBAL local_infile = 1)"
    my -e 'set global local_infile = 1' || die "mariadb: could not enable local_infile (needs SUPER); enable it in the server config"
  fi
  echo "mariadb: loading $rows rows into $db.patients ..."
  local path t0 t_load t1 warnings
  # A string literal for LOAD DATA: backslashes and single quotes escaped.
  path=$(sed -e 's/\\/\\\\/g' -e "s/'/\\\\'/g" <<<"$csv")
  my "$db" -e "
    drop table if exists patients_load;
    create table patients_load (
      patient_id   bigint not null primary key,
      mrn          varchar(16) not null,
      ssn          char(11),
      first_name   varchar(40),
      last_name    varchar(40),
      birth_date   date,
      sex          char(1),
      address_line varchar(80),
      city         varchar(40),
      state        char(2),
      zip          varchar(5),
      phone        varchar(20),
      email        varchar(80),
      race_code    varchar(8),
      deceased_at  datetime null,
      weight_kg    decimal(5,1),
      note         text
    ) engine = InnoDB default charset = utf8mb4"
  t0=$(now)
  # LOCAL turns data errors into warnings, so the warnings are the check: any warning
  # (a bad date, a truncated value, a duplicate key) fails the load. The CSV quotes
  # only empty fields, as "", which deceased_at and note turn into NULL.
  warnings=$(my --local-infile=1 "$db" -e "
    set session unique_checks = 0, foreign_key_checks = 0;
    load data local infile '$path' into table patients_load
      character set utf8mb4
      fields terminated by ',' optionally enclosed by '\"' escaped by ''
      lines terminated by '\n'
      ignore 1 lines
      (patient_id, mrn, ssn, first_name, last_name, @birth_date, sex, address_line, city,
       state, zip, phone, email, race_code, @deceased_at, weight_kg, @note)
      set birth_date = str_to_date(@birth_date, '%m/%d/%Y'),
          deceased_at = nullif(@deceased_at, ''),
          note = nullif(@note, '');
    show warnings limit 10") || {
    my "$db" -e 'drop table if exists patients_load' || true
    die "mariadb: LOAD DATA failed ($mycli's error above); $db.patients and its marker are as they were"
  }
  t_load=$(since "$t0")
  if [ -n "$warnings" ]; then
    echo "$warnings" >&2
    my "$db" -e 'drop table if exists patients_load' || true
    die "mariadb: LOAD DATA reported warnings (above); $db.patients and its marker are as they were"
  fi
  t1=$(now)
  # The marker goes first and comes back last, so an interrupted swap means a reload.
  my "$db" -e "
    create table if not exists bench_loaded (tbl varchar(64) primary key, rows_loaded bigint not null, csv_bytes bigint, loaded_at datetime not null);
    delete from bench_loaded where tbl = 'patients';
    drop table if exists patients;
    rename table patients_load to patients;
    analyze table patients;
    insert into bench_loaded values ('patients', $rows, $csv_bytes, now())" >/dev/null
  local t_an t_all count
  t_an=$(since "$t1")
  t_all=$(since "$t0")
  count=$(my "$db" -e 'select count(*) from patients')
  [ "$count" = "$rows" ] || die "mariadb: count(*) is $count after the load, expected $rows"
  echo "mariadb: loaded $rows rows in $t_all s (LOAD DATA $t_load s, swap + ANALYZE TABLE $t_an s); table $(my -e "select concat(round((data_length + index_length) / 1048576, 1), ' MiB') from information_schema.tables where table_schema = '$db' and table_name = 'patients'")"
}

echo "== load_db: $rows rows from $csv ($csv_bytes bytes)"
pg_load
my_load

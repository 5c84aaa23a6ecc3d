#!/usr/bin/env bash
# What the hub's own metering statement takes on this machine, alone: pgbench sends the meter's
# settlement for one call (the parts `gateway::meter` composes for a call no limit constrains: the
# subscription's lock and charge, then the usage row) to the bench's PostgreSQL, on 2 connections as the
# meter's 2 writers, on the open loop's schedule; beside it, in the same cluster and minutes, the one
# narrow durable INSERT of `bench/commit-floor.sh`. Each call is its own transaction with a durable
# commit, as a batch of one is at these rates.
#
#   bench/settlement-floor.sh [dir] [rates] [seconds] [rounds]   # defaults: target/bench, 500, 10 and 3
#
# `dir` is a bench directory after a run with scenario b (its users, keys, subscriptions and tool); the
# hub must not be running on it. Like scenario b, this writes usage rows and charges the bench's users.
# Prints p50 / p99 per statement without pgbench's own scheduling delay, and PostgreSQL's CPU per call.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
dir=${1:-$root/target/bench}
rates=${2:-500}
seconds=${3:-10}
rounds=${4:-3}

data="$dir/data/postgres"
if [ ! -f "$data/PG_VERSION" ]; then
    echo "settlement-floor: no bench cluster at $data (run the bench with scenario b first)" >&2
    exit 2
fi
if [ -f "$data/postmaster.pid" ]; then
    echo "settlement-floor: $data is in use (stop the hub first)" >&2
    exit 2
fi

# shellcheck source=bench/pg-bin.sh
source "$(dirname "$0")/pg-bin.sh"
PG_CTL=$(find_bin pg_ctl)
PGBENCH=$(find_bin pgbench)
PSQL=$(find_bin psql)

work=$(mktemp -d "$root/target/settlement-floor.XXXXXX")
owner=$(stat -c %U "$data")
as_owner=()
if [ "$(id -u)" != "$(id -u "$owner")" ]; then
    as_owner=(runuser -u "$owner" --)
    chown "$owner" "$work"
fi
cleanup() {
    "${as_owner[@]}" "$PG_CTL" -D "$data" -m fast stop >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

"${as_owner[@]}" "$PG_CTL" -D "$data" -l "$work/postgres.log" -w \
    -o "-c listen_addresses= -k $work -p 5499" start >/dev/null
conn=(-h "$work" -p 5499 -U postgres)
psql_hub() { "${as_owner[@]}" "$PSQL" -qAt "${conn[@]}" -v ON_ERROR_STOP=1 "$@" joyfull_hub; }

tool=$(psql_hub -c "SELECT id FROM tools WHERE deleted_at IS NULL ORDER BY created_at LIMIT 1")
psql_hub -c "SELECT s.id, s.user_id, k.id, s.tier FROM subscriptions s JOIN api_keys k ON k.user_id = s.user_id
             WHERE s.status = 'ACTIVE' AND k.revoked_at IS NULL AND s.tier = 'ENTERPRISE'" >"$work/callers"
callers=$(wc -l <"$work/callers")
if [ -z "$tool" ] || [ "$callers" = 0 ]; then
    echo "settlement-floor: the bench's tool, users and keys are missing (run scenario b first)" >&2
    exit 2
fi
# The narrow row lives in a database of its own, so the hub's schema holds only its own tables.
narrow_db=settlement_floor
if [ -z "$("${as_owner[@]}" "$PSQL" -qAt "${conn[@]}" -c "SELECT 1 FROM pg_database WHERE datname = '$narrow_db'" postgres)" ]; then
    "${as_owner[@]}" "$PSQL" -q "${conn[@]}" -c "CREATE DATABASE $narrow_db" postgres
fi
"${as_owner[@]}" "$PSQL" -q "${conn[@]}" -v ON_ERROR_STOP=1 -c \
    "CREATE TABLE IF NOT EXISTS narrow (id uuid PRIMARY KEY, user_id uuid NOT NULL, tokens bigint NOT NULL,
                                        created_at timestamptz NOT NULL DEFAULT now())" "$narrow_db"

# The parts as the meter composes them, each part's `$n` replaced by its value for one call (perl,
# since `$1` must not match inside `$13`). Comments are dropped: pgbench reads a statement per line.
part() {
    local file=$1
    shift
    grep -v '^\s*--' "$root/src/$file" | perl -0pe 's/,\s*\z//' |
        perl -pe 'BEGIN { @v = ("", @ARGV); @ARGV = () } s/\$(\d+)/$v[$1]/g' "$@"
}
n=0
while IFS='|' read -r sub user key tier; do
    uuid="ARRAY['$sub']::uuid[]"
    {
        echo "WITH"
        part billing/settle_lock.sql "$uuid"
        echo ","
        part billing/settle_nothing_held.sql
        echo ","
        part billing/settle_charge.sql "$uuid" "ARRAY[13]::bigint[]"
        echo ","
        part usage/record_batch.sql "ARRAY[gen_random_uuid()]" "ARRAY['$user']" "ARRAY['$key']" \
            "ARRAY['$tool']" "ARRAY['$sub']" "ARRAY[13]" "ARRAY[false]" "ARRAY['SUCCESS']" "ARRAY[NULL]" \
            "ARRAY[1]" "ARRAY[now()]" "ARRAY[0]" "ARRAY['$tier']"
        echo "SELECT 1::bigint AS n;"
    } | tr '\n' ' ' >"$work/settle_$n.sql"
    echo >>"$work/settle_$n.sql"
    n=$((n + 1))
done <"$work/callers"
echo "INSERT INTO narrow (id, user_id, tokens) VALUES (gen_random_uuid(), gen_random_uuid(), 13);" \
    >"$work/narrow.sql"
chmod a+r "$work"/*.sql
psql_hub -f "$work/settle_0.sql" >/dev/null

settle_files=()
for ((i = 0; i < n; i++)); do settle_files+=(-f "$work/settle_$i.sql"); done

# PostgreSQL's CPU: the postmaster's own and its ended children's (pgbench's backends end with it). A
# backend's time is counted once the postmaster has reaped it, so the reading waits for that (at most 5 s).
postmaster=$(head -n 1 "$data/postmaster.pid")
cluster_ticks() {
    local f waited=0
    while pgrep -P "$postmaster" -f "postgres: postgres ($narrow_db|joyfull_hub) \[local\]" >/dev/null &&
        [ "$waited" -lt 50 ]; do
        sleep 0.1
        waited=$((waited + 1))
    done
    read -r -a f <"/proc/$postmaster/stat"
    echo $((f[13] + f[14] + f[15] + f[16]))
}
clk_tck=$(getconf CLK_TCK)

echo "| round | statement | connections | rate/s | transactions | p50 ms | p99 ms | PostgreSQL CPU ms per call |"
echo "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |"
for ((round = 1; round <= rounds; round++)); do
    for rate in ${rates//,/ }; do
        for kind in narrow settle; do
            if [ "$kind" = narrow ]; then
                files=(-f "$work/narrow.sql") db=$narrow_db
            else
                files=("${settle_files[@]}") db=joyfull_hub
            fi
            rm -f "$work"/log.*
            before=$(cluster_ticks)
            PGOPTIONS="-c plan_cache_mode=force_generic_plan" "${as_owner[@]}" "$PGBENCH" "${conn[@]}" -n \
                -c 2 -j 2 -M prepared -R "$rate" -T "$seconds" "${files[@]}" -l --log-prefix="$work/log" \
                "$db" >/dev/null 2>&1
            after=$(cluster_ticks)
            # Log columns: client, transaction, latency from the scheduled start (us), script, epoch, us,
            # schedule lag (us). Latency minus lag is the time from when the statement was sent.
            cat "$work"/log.* | awk '{ print ($3 - $7) / 1000 }' | sort -n | awk -v k="$kind" -v r="$rate" \
                -v round="$round" -v ticks=$((after - before)) -v hz="$clk_tck" '
                { v[NR] = $1 }
                END {
                    label = (k == "narrow") ? "one narrow INSERT" : "the meter'"'"'s settlement, one call";
                    printf "| %d | %s | 2 | %d | %d | %.2f | %.2f | %.3f |\n", round, label, r, NR,
                        v[int(NR * 0.50) + 1], v[int(NR * 0.99) + 1], ticks * 1000 / hz / NR
                }'
        done
    done
done

#!/usr/bin/env bash
# The least any invocation through the hub can add on this machine: pgbench (a C client) sends the
# bare minimum of the metering rule — one single-row INSERT whose commit waits for the disk — and,
# for comparison, a `SELECT 1` round trip, to a throwaway PostgreSQL cluster with default settings
# (the same as the hub's owned cluster), on the same schedule as scenario b's open loop.
#
#   bench/commit-floor.sh [rates] [seconds]      # defaults: 250,500 and 20
#
# Prints p50 / p99 per statement, connection count and rate, without pgbench's own scheduling delay.
set -euo pipefail

rates=${1:-250,500}
seconds=${2:-20}

# shellcheck source=bench/pg-bin.sh
source "$(dirname "$0")/pg-bin.sh"
INITDB=$(find_bin initdb)
PG_CTL=$(find_bin pg_ctl)
PGBENCH=$(find_bin pgbench)
PSQL=$(find_bin psql)

root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d "$root/target/commit-floor.XXXXXX")
user_flag=()
if [ "$(id -u)" = 0 ]; then
    # PostgreSQL refuses to run as root: the cluster belongs to an unprivileged user.
    chown -R nobody "$work"
    user_flag=(runuser -u nobody --)
fi
cleanup() {
    "${user_flag[@]}" "$PG_CTL" -D "$work/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

"${user_flag[@]}" "$INITDB" -D "$work/data" -U postgres -A trust >/dev/null
"${user_flag[@]}" "$PG_CTL" -D "$work/data" -l "$work/postgres.log" -w \
    -o "-c listen_addresses= -k $work -c max_connections=100" start >/dev/null

cd "$work"
conn=(-h "$work" -U postgres)
"${user_flag[@]}" "$PSQL" -q "${conn[@]}" -c \
    "CREATE TABLE floor_usage (id uuid PRIMARY KEY, user_id uuid NOT NULL, tokens bigint NOT NULL,
                               created_at timestamptz NOT NULL DEFAULT now())" postgres
echo "INSERT INTO floor_usage (id, user_id, tokens) VALUES (gen_random_uuid(), gen_random_uuid(), 13);" >insert.sql
echo "SELECT 1;" >select.sql
chmod a+r insert.sql select.sql

echo "| statement | connections | rate/s | transactions | p50 ms | p99 ms |"
echo "| --- | ---: | ---: | ---: | ---: | ---: |"
for script in select insert; do
    for clients in 2 50; do
        for rate in ${rates//,/ }; do
            rm -f "$work"/log.*
            "${user_flag[@]}" "$PGBENCH" "${conn[@]}" -n -c "$clients" -j 2 -R "$rate" -T "$seconds" \
                -f "$script.sql" -l --log-prefix="$work/log" postgres >/dev/null 2>&1
            # Log columns: client, transaction, latency from the scheduled start (us), script, epoch,
            # us, schedule lag (us). Latency minus lag is the time from when the statement was sent.
            cat "$work"/log.* | awk '{ print ($3 - $7) / 1000 }' | sort -n | awk -v s="$script" \
                -v c="$clients" -v r="$rate" '
                { v[NR] = $1 }
                END {
                    p50 = v[int(NR * 0.50) + 1]; p99 = v[int(NR * 0.99) + 1];
                    label = (s == "insert") ? "INSERT, durable commit" : "SELECT 1";
                    printf "| %s | %d | %d | %d | %.2f | %.2f |\n", label, c, r, NR, p50, p99
                }'
        done
    done
done

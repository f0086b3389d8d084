#!/usr/bin/env bash
# The cost of the pipe hand-off: 40,000 queued tokens through a real
# `collector --drain | sender` (debug mode), wall time with start-up. Usage:
#   LIMIT=10 bash bench/pipe_rate.sh   (MAILROOM_BATCH_LIMIT; needs .venv, local PostgreSQL)
set -e
cd "$(dirname "$0")/.."
export PGHOST=127.0.0.1 PGUSER=postgres
psql -q -c "drop database if exists mr_pipe" -c "create database mr_pipe"
export MAILROOM_DATABASE_URL="host=127.0.0.1 user=postgres dbname=mr_pipe"
.venv/bin/mailroom migrate >/dev/null 2>&1
psql -q mr_pipe -c "select mailroom_register_queue('mailroom','token_insert')" >/dev/null
psql -q mr_pipe -c "insert into accounts (email, login) select 'u'||i||'@example.com', 'u'||i from generate_series(1,40000) i"
export MAILROOM_SECRET_KEY=$(printf '5f%.0s' {1..32}) MAILROOM_BATCH_LIMIT=${LIMIT:-10} MAILROOM_DEBUG=true \
       MAILROOM_SES_MAX_SEND_RATE=1000000 MAILROOM_SES_OUTPUT_PATH=$(mktemp -d) MAILROOM_LOG_LEVEL=warning
start=$(date +%s.%N)
.venv/bin/collector --drain | .venv/bin/sender > /dev/null
end=$(date +%s.%N)
echo "limit $MAILROOM_BATCH_LIMIT: 40000 tokens in $(echo "$end - $start" | bc) s"
grep -c '"Success"' $MAILROOM_SES_OUTPUT_PATH/deliveries.jsonl || true
psql -q -c "drop database mr_pipe"

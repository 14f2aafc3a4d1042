#!/bin/bash
# Run from the repository root, with PostgreSQL on 127.0.0.1:5432 (trust).
# Ingest through one and through two processes of zurich's service, same
# load generator, same run (docs/performance.md, "Scale-out").
set -euo pipefail
mkdir -p /tmp/sb && go build -o /tmp/sb/vitrine ./cmd/vitrine && go build -o /tmp/sb/vitrine-bench ./cmd/vitrine-bench
D=/tmp/sb/run; rm -rf $D; mkdir -p $D
SCHEMA=vsb_$(date +%s)
psql -q -h 127.0.0.1 -U postgres test -c "CREATE SCHEMA $SCHEMA"
DSN="postgres://postgres@127.0.0.1:5432/test?sslmode=disable&search_path=$SCHEMA"
cat > $D/vitrine.json <<JSON
{"name":"bench.local","data":"$D/core","listen":"127.0.0.1:18080",
 "residency":{"version":1,"default":"moscow","regions":[{"name":"zurich","url":"http://127.0.0.1:18181","countries":["DE","CH","US"]},{"name":"moscow"}]},
 "stores":{"zurich":"$DSN"},"external_regions":["zurich"],
 "platform_url":"http://127.0.0.1:18080","peer_token":"$D/core/peer.token","internal_tokens":{"zurich":"$D/core/internal/zurich.token"},"custody_token":"$D/core/custody.token",
 "monitor":{"off":true}}
JSON
/tmp/sb/vitrine up --config $D/vitrine.json > $D/core.log 2>&1 & CORE=$!
until curl -sf http://127.0.0.1:18080/.well-known/vitrine.json >/dev/null; do sleep 0.2; done
for p in 18181 18182; do
  /tmp/sb/vitrine serve --config $D/vitrine.json --role region:zurich --listen 127.0.0.1:$p --data $D/r$p > $D/r$p.log 2>&1 &
done
for p in 18181 18182; do until curl -sf http://127.0.0.1:$p/readyz >/dev/null; do sleep 0.2; done; done
P1=$(pgrep -f 'listen 127.0.0.1:18181'); P2=$(pgrep -f 'listen 127.0.0.1:18182')
for round in 1 2 3; do
  echo "== round $round: one process"
  /tmp/sb/vitrine-bench ingest --url http://127.0.0.1:18080 --operator-token $D/core/operator.token --region-urls http://127.0.0.1:18181 --rounds 1 --raw=false --server-pid $P1
  echo "== round $round: two processes"
  /tmp/sb/vitrine-bench ingest --url http://127.0.0.1:18080 --operator-token $D/core/operator.token --region-urls http://127.0.0.1:18181,http://127.0.0.1:18182 --rounds 1 --raw=false --server-pid $P1
done
kill $CORE $(pgrep -f "config $D/vitrine.json") 2>/dev/null || true
psql -q -h 127.0.0.1 -U postgres test -c "DROP SCHEMA $SCHEMA CASCADE"

#!/usr/bin/env bash
# The spendtrail demo on the embedded default (SQLite), in a fresh folder: demo-out/.
set -euo pipefail
cd "$(dirname "$0")/.."
export SPENDTRAIL_HOME="$PWD/demo-out" SPENDTRAIL_ACTOR="demo-operator" COLUMNS="${COLUMNS:-160}"
unset SPENDTRAIL_DATABASE_URL SPENDTRAIL_SPOOL_DIR
rm -rf demo-out

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "1. a fresh ledger"
spendtrail init

step "2. the owner registry (examples/registry.yaml)"
spendtrail registry load examples/registry.yaml --reason "demo: initial owner map"
spendtrail registry show

step "3. prices with their sources: list prices from genai-prices, the account's own sheet"
spendtrail prices import genai-prices --provider openai --provider anthropic \
  --reason "demo: reference list prices" > demo-out/genai-prices-import.txt
head -c 600 demo-out/genai-prices-import.txt | head -3
echo "  ... every price not imported exactly is listed, with why: demo-out/genai-prices-import.txt"
spendtrail prices import sheet examples/prices.yaml --reason "demo: CometAPI account prices"
spendtrail prices list --provider cometapi

step "4. ingest a sample event file from October (one line is deliberately broken)"
spendtrail ingest examples/events.jsonl || echo "(ingest exit $?: the broken line is listed above and kept in 'spendtrail ledger rejects')"
echo "replaying the same file changes nothing:"
spendtrail ingest examples/events.jsonl 2>/dev/null | head -1 || true

step "5. live traffic: the provider simulator, the gateway, and the real openai SDK"
free_port() { python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
SIM_PORT=$(free_port); GW_PORT=$(free_port)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT
spendtrail simulate-provider --port "$SIM_PORT" --error-rate 0.08 --seed 7 \
  --usage-log demo-out/provider-usage.csv > demo-out/simulator.log 2>&1 &
pids+=($!)
for app in support-assistant search-summaries contract-review; do
  echo "$app=$(spendtrail keys create --application "$app" --environment production \
    --reason 'demo' 2>/dev/null)" >> demo-out/keys.txt
done
echo "contract-review-staging=$(spendtrail keys create --application contract-review \
  --environment staging --reason 'demo' 2>/dev/null)" >> demo-out/keys.txt
spendtrail budgets set search-monthly --application search-summaries --period month \
  --limit "0.01 USD" --soft 50,80 --reason "demo: a small monthly cap, to see it refuse"
spendtrail budgets set support-tokens --application support-assistant --period month \
  --limit "2000000 tokens" --soft 80 --reason "demo: a token budget"
SPENDTRAIL_UPSTREAM_KEY="sk-demo-simulated-provider" spendtrail gateway --profile custom \
  --upstream "http://127.0.0.1:$SIM_PORT/v1" --provider cometapi --port "$GW_PORT" \
  > demo-out/gateway.log 2>&1 &
gateway_pid=$!
pids+=("$gateway_pid")
python - "$GW_PORT" <<'PY'
import sys, time, urllib.request
for _ in range(300):
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/healthz", timeout=1)
        break
    except OSError:
        time.sleep(0.1)
else:
    sys.exit("the gateway did not start; see demo-out/gateway.log")
PY
python examples/traffic.py "http://127.0.0.1:$GW_PORT/v1" demo-out/keys.txt
kill -TERM "$gateway_pid"; wait "$gateway_pid" || true  # a clean stop ingests the last events
echo "provider-side usage log (CometAPI export format): $(($(wc -l < demo-out/provider-usage.csv) - 1)) rows in demo-out/provider-usage.csv"

step "6. cost by owner and model, October 2026 (the sample file)"
spendtrail costs --period 2026-10 --by business_unit,application,model

step "7. cost by owner and model, this month (gateway traffic)"
spendtrail costs --period "$(date -u +%Y-%m)" --by application,environment,model,allocation_status

step "8. close the books: the provider's usage log (CometAPI export) against the ledger"
MONTH="$(date -u +%Y-%m)"
spendtrail bills import demo-out/provider-usage.csv --format cometapi-csv || true
BILL_ID=$(spendtrail bills list --format json | python -c 'import json,sys; print(json.load(sys.stdin)[-1]["id"])')
spendtrail reconcile --period "$MONTH" --bill "$BILL_ID" --tolerance 5% --reviewer demo-operator \
  --format md > demo-out/reconciliation.md || true
cat demo-out/reconciliation.md
spendtrail allocation coverage --period "$MONTH" || true
spendtrail exceptions list
spendtrail export focus --period "$MONTH" --output demo-out/focus-$MONTH.csv || true

step "8b. chargeback statements (Markdown and HTML)"
spendtrail allocation rules-load examples/shared-cost-rules.yaml --reason "demo: reviewed rules"
spendtrail report chargeback --period "$MONTH" --rules examples/shared-cost-rules.yaml \
  --format html --output demo-out/chargeback-$MONTH.html
spendtrail report chargeback --period 2026-10 --rules examples/shared-cost-rules.yaml \
  --format html --output demo-out/chargeback-2026-10.html
spendtrail report chargeback --period "$MONTH" --rules examples/shared-cost-rules.yaml \
  --format md --output demo-out/chargeback-$MONTH.md
sed -n '1,60p' demo-out/chargeback-$MONTH.md
echo "statements: demo-out/chargeback-$MONTH.{md,html}, demo-out/chargeback-2026-10.html"

step "8c. budget state and the budget review (one budget ledger row per budget)"
spendtrail budgets show search-monthly
spendtrail budgets review --period "$MONTH" --format md

step "9. what needs attention: stale prices, unpriced models"
spendtrail prices check || true

step "10. evidence: sources, a smoke test of the request path, the two-row review sample"
spendtrail sources defaults
SPENDTRAIL_UPSTREAM_KEY="sk-demo-simulated-provider" spendtrail smoke \
  --upstream "http://127.0.0.1:$SIM_PORT/v1" --application support-assistant || true
spendtrail review sample --period "$(date -u +%Y-%m)"
spendtrail review export --format md --period "$(date -u +%Y-%m)" --output demo-out/reviews.md
echo "review notes (Markdown): demo-out/reviews.md"
spendtrail followups list

step "11. the handoff record"
spendtrail handoff new > /dev/null && spendtrail handoff show

step "12. the ledger"
spendtrail ledger stats

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

step "4. ingest sample events (one line is deliberately broken)"
spendtrail ingest examples/events.jsonl || echo "(ingest exit $?: the broken line is listed above and kept in 'spendtrail ledger rejects')"
echo "replaying the same file changes nothing:"
spendtrail ingest examples/events.jsonl 2>/dev/null | head -1 || true

step "5. cost by owner and model, October 2026"
spendtrail costs --period 2026-10 --by business_unit,application,model

step "6. cost by day"
spendtrail costs --period 2026-10 --by day,allocation_status

step "7. what needs attention: stale prices, unpriced models"
spendtrail prices check --as-of 2026-11-22 || true

step "8. the ledger"
spendtrail ledger stats

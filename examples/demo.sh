#!/usr/bin/env bash
# The spendtrail demo on the embedded default (SQLite), in a fresh folder: demo-out/.
# The story: capture through the gateway -> the month's books -> a reconciliation that finds a
# (deliberate) price-sheet error -> fix, reprice, reconcile again -> statements -> review notes
# -> a smoke test of the request path -> the handoff -> the month closed, its statement equal
# to the bill. Every deliberate failure says so.
set -euo pipefail
cd "$(dirname "$0")/.."
export SPENDTRAIL_HOME="$PWD/demo-out" SPENDTRAIL_ACTOR="demo-operator" COLUMNS="${COLUMNS:-160}"
unset SPENDTRAIL_DATABASE_URL SPENDTRAIL_SPOOL_DIR
rm -rf demo-out
MONTH="$(date -u +%Y-%m)"
results=()

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
result() { results+=("$1"); }
deliberate() { printf '\033[33mDELIBERATE: %s\033[0m\n' "$*"; }
# Runs a command that must fail for the story (exit non-zero), and says so.
expect_failure() {
  local why="$1"; shift
  if "$@"; then echo "demo: '$*' was expected to fail ($why)" >&2; exit 1; fi
  deliberate "the failure above is expected: $why"
}

step "1. a fresh ledger"
spendtrail init

step "2. the owner registry (examples/registry.yaml)"
spendtrail registry load examples/registry.yaml --reason "demo: initial owner map"
spendtrail registry show

step "3. prices with their sources: list prices from genai-prices, the account's own sheet"
spendtrail prices import genai-prices --provider openai --provider anthropic \
  --reason "demo: reference list prices" > demo-out/genai-prices-import.txt
head -1 demo-out/genai-prices-import.txt | cut -c1-200
echo "  ... every price not imported exactly is listed, with why: demo-out/genai-prices-import.txt"
spendtrail prices import sheet examples/prices.yaml --reason "demo: CometAPI account prices"
deliberate "the sheet's gpt-4o price is the one from before 2026-12-01: CometAPI's" \
  "December price change is missing. Reconciliation (step 8) will find it."

step "4. ingest a sample event file from October"
expect_failure "line 11 of examples/events.jsonl is broken on purpose; it is kept in
  'spendtrail ledger rejects' and the other 20 lines are in the ledger" \
  spendtrail ingest examples/events.jsonl
echo "replaying the same file changes nothing:"
spendtrail ingest examples/events.jsonl 2>/dev/null | head -1 || true
result "ingest: 20 events from the October file, 1 broken line kept as a reject (deliberate)"

step "5. live traffic: the provider simulator, the gateway, and the real openai SDK"
free_port() { python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_ready() {
  python - "$1" "$2" <<'PY'
import sys, time, urllib.error, urllib.request
for _ in range(300):
    try:
        urllib.request.urlopen(sys.argv[1], timeout=1)
        break
    except urllib.error.HTTPError as error:  # any answer but 503 (not ready yet) means up
        if error.code != 503:
            break
        time.sleep(0.1)
    except OSError:
        time.sleep(0.1)
else:
    sys.exit(f"{sys.argv[1]} did not answer; see {sys.argv[2]}")
PY
}
SIM_PORT=$(free_port); GW_PORT=$(free_port)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT
echo "The simulator fails 8% of calls at random (faults on), so the SDK's retries show up."
spendtrail simulate-provider --port "$SIM_PORT" --error-rate 0.08 --seed 7 \
  --usage-log demo-out/provider-usage.csv > demo-out/simulator.log 2>&1 &
sim_pid=$!
pids+=("$sim_pid")
key() {  # NAME APPLICATION ENVIRONMENT: one line of demo-out/keys.txt
  echo "$1=$(spendtrail keys create --application "$2" --environment "$3" --reason 'demo' \
    2>/dev/null)" >> demo-out/keys.txt
}
# The keys are made side by side: each is its own short process on the 2 cores.
key_pids=()
key support-assistant support-assistant production & key_pids+=($!)
key search-summaries search-summaries production & key_pids+=($!)
key contract-review contract-review production & key_pids+=($!)
key contract-review-staging contract-review staging & key_pids+=($!)
wait "${key_pids[@]}"
spendtrail budgets set search-monthly --application search-summaries --period month \
  --limit "0.01 USD" --soft 50,80 --reason "demo: a small monthly cap, to see it refuse"
spendtrail budgets set support-tokens --application support-assistant --period month \
  --limit "2000000 tokens" --soft 80 --reason "demo: a token budget"
SPENDTRAIL_UPSTREAM_KEY="sk-demo-simulated-provider" spendtrail gateway --profile custom \
  --upstream "http://127.0.0.1:$SIM_PORT/v1" --provider cometapi --port "$GW_PORT" \
  > demo-out/gateway.log 2>&1 &
gateway_pid=$!
pids+=("$gateway_pid")
wait_ready "http://127.0.0.1:$GW_PORT/readyz" demo-out/gateway.log
python examples/traffic.py "http://127.0.0.1:$GW_PORT/v1" demo-out/keys.txt
deliberate "the refusals above are the budget cap and the registry's policy at work"
kill -TERM "$gateway_pid"; wait "$gateway_pid" || true  # a clean stop ingests the last events
kill -TERM "$sim_pid"; wait "$sim_pid" || true  # the provider's usage log is complete
echo "provider-side usage log (CometAPI export format): $(($(wc -l < demo-out/provider-usage.csv) - 1)) rows in demo-out/provider-usage.csv"
result "capture: every call through the gateway is an event; refusals by budget and policy (deliberate)"

step "6. cost by owner and model, October 2026 (the sample file)"
spendtrail costs --period 2026-10 --by business_unit,application,model

step "7. cost by owner and model, this month (gateway traffic)"
spendtrail costs --period "$MONTH" --by application,environment,model,allocation_status

step "8. reconcile: the provider's usage log (CometAPI export) against the ledger"
spendtrail bills import demo-out/provider-usage.csv --format cometapi-csv | tee demo-out/bill-import.txt
BILL_ID=$(sed -n 's/^bill \([0-9]*\): .*/\1/p' demo-out/bill-import.txt)
reconcile() {
  spendtrail reconcile --period "$MONTH" --bill "$BILL_ID" --reviewer demo-operator \
    --format md > "demo-out/reconciliation-$1.md"
}
summary() { grep -E '^\*\*Result|^\| (logged|billed|variance|variance %) \||^[a-z_]+: [0-9]+, ' "$1"; }
expect_failure "the price sheet misses gpt-4o's December price (step 3)" reconcile 1
summary demo-out/reconciliation-1.md
grep '^| price_mismatch' demo-out/reconciliation-1.md | cut -d'|' -f8,10,11 | sort | uniq -c | head -5
result "reconciliation 1: fail, price_mismatch on gpt-4o lines (deliberate)"

step "8b. fix the price the way docs/prices.md says, reprice the month, reconcile again"
spendtrail prices import sheet examples/price-change-2026-12.yaml \
  --reason "demo: CometAPI's gpt-4o price since 2026-12-01, found by reconciliation 1"
spendtrail reprice --period "$MONTH" --reason "demo: gpt-4o price change of 2026-12-01"
reconcile 2
summary demo-out/reconciliation-2.md
echo "records: demo-out/reconciliation-1.md (fail), demo-out/reconciliation-2.md (pass)"
result "reconciliation 2: pass after the price fix and repricing"

step "9. allocation coverage, the exception queue, the FOCUS export"
spendtrail allocation coverage --period "$MONTH" || true
spendtrail exceptions list
spendtrail export focus --period "$MONTH" --output "demo-out/focus-$MONTH.csv"

step "10. chargeback statements (Markdown, HTML, PDF)"
spendtrail allocation rules-load examples/shared-cost-rules.yaml --reason "demo: reviewed rules"
echo "The stored rules apply by default. The demo's amounts are fractions of a cent, so the"
echo "statements show 4 decimals (--decimals; the default is the currency's minor unit)."
# Four statements, written side by side (each is its own process; they only read the ledger),
# their "wrote ..." lines shown in order.
statement() {  # N, then the options of `report chargeback`
  local n=$1; shift
  spendtrail report chargeback --decimals 4 "$@" > "demo-out/statement-$n.txt" 2>&1
}
statement_pids=()
statement 1 --period "$MONTH" --format md --output "demo-out/chargeback-$MONTH.md" & statement_pids+=($!)
statement 2 --period "$MONTH" --format html --output "demo-out/chargeback-$MONTH.html" & statement_pids+=($!)
statement 3 --period "$MONTH" --owner business-unit:consumer --format pdf \
  --output "demo-out/chargeback-$MONTH-consumer.pdf" & statement_pids+=($!)
statement 4 --period 2026-10 --format html --output demo-out/chargeback-2026-10.html & statement_pids+=($!)
for pid in "${statement_pids[@]}"; do wait "$pid"; done
cat demo-out/statement-{1,2,3,4}.txt
sed -n '/^## Charges by application/,/^## Roll-up by business unit/p' "demo-out/chargeback-$MONTH.md"
result "statements: demo-out/chargeback-$MONTH.{md,html}, demo-out/chargeback-$MONTH-consumer.pdf (one business unit), demo-out/chargeback-2026-10.html"

step "11. budgets: state and the budget review"
spendtrail budgets show search-monthly
spendtrail budgets review --period "$MONTH" --format md | cut -c1-200
result "budgets: search-monthly exceeded and refusing (deliberate: a 0.01 USD cap), support-tokens ok"

step "12. what needs attention: stale prices, unpriced models"
spendtrail prices check || true

step "13. review notes: the two-row sample review note, checked against the chargeback review checklist"
spendtrail sources defaults
deliberate "row 2 of the sample has no team owner and shared usage without a decision:" \
  "the checklist must fail it"
spendtrail review sample --period "$MONTH"
spendtrail review export --format md --period "$MONTH" --output demo-out/reviews.md
echo "review notes (Markdown): demo-out/reviews.md"
result "review notes: row 1 pass, row 2 fail (deliberate)"

step "14. a smoke test of the request path (happy path and error path)"
echo "The smoke test makes one attempt and never retries, so it runs against the simulator"
echo "with its faults off (docs/evidence.md)."
SMOKE_PORT=$(free_port)
spendtrail simulate-provider --port "$SMOKE_PORT" --error-rate 0 > demo-out/smoke-simulator.log 2>&1 &
pids+=($!)
wait_ready "http://127.0.0.1:$SMOKE_PORT/v1/models" demo-out/smoke-simulator.log
SPENDTRAIL_UPSTREAM_KEY="sk-demo-simulated-provider" spendtrail smoke \
  --upstream "http://127.0.0.1:$SMOKE_PORT/v1" --application support-assistant
result "smoke test: happy path pass, error path pass"

step "15. follow-ups and the handoff record"
spendtrail followups list
spendtrail handoff new > /dev/null && spendtrail handoff show
result "handoff: decision 'review' while the failing sample row's follow-up is open"

step "16. close the month: the queue emptied, reconciled again, blockers, the close, the final statement"
for group in $(spendtrail exceptions list --format json | python -c '
import json, sys
print(" ".join(g["group"] for g in json.load(sys.stdin) if g["oldest"].startswith(sys.argv[1])))
' "$MONTH"); do
  spendtrail exceptions assign "$group" --to contract-review \
    --reason "demo: the contracts team confirmed these calls are theirs"
done
echo "The smoke test (step 14) added calls after reconciliation 2: reconcile the month again."
reconcile 3 || true
summary demo-out/reconciliation-3.md
expect_failure "demo price entries were checked in September, more than 30 days before the close" \
  spendtrail close --period "$MONTH" --check
spendtrail close --period "$MONTH" --accept stale_prices \
  --reason "demo: list prices re-checked against the provider page on the close date"
expect_failure "a closed month's allocation entries are final" \
  spendtrail allocation run --period "$MONTH"
spendtrail report chargeback --period "$MONTH" --decimals 6 --format md \
  --output "demo-out/chargeback-$MONTH-final.md"
grep -E '^\*\*|^- \*\*(Status|Total charged|Billed)' "demo-out/chargeback-$MONTH-final.md" || true
grep -E '^\| (Total charged|Billed, reconciled|Ledger total)' "demo-out/chargeback-$MONTH-final.md"
spendtrail export gl --period "$MONTH" --output "demo-out/gl-$MONTH.csv"
result "close: $MONTH closed; final statement total = the reconciled bill; GL journal demo-out/gl-$MONTH.csv"

step "17. the console: an admin user, and every page served on this ledger"
CONSOLE_PASSWORD=$(python -c 'import secrets; print(secrets.token_urlsafe(12))')
SPENDTRAIL_NEW_PASSWORD="$CONSOLE_PASSWORD" spendtrail users add admin --role admin
CONSOLE_PORT=$(free_port)
spendtrail serve --port "$CONSOLE_PORT" > demo-out/console.log 2>&1 &
console_pid=$!
pids+=("$console_pid")
wait_ready "http://127.0.0.1:$CONSOLE_PORT/login" demo-out/console.log
# Sign in through the page's own form (with its CSRF token) and open every page.
python - "http://127.0.0.1:$CONSOLE_PORT" admin "$CONSOLE_PASSWORD" <<'PY'
import http.cookiejar, re, sys, urllib.parse, urllib.request
base, name, password = sys.argv[1:]
web = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
form = web.open(f"{base}/login").read().decode()
token = re.search(r'name="csrf_token" value="([^"]+)"', form)[1]
data = urllib.parse.urlencode({"csrf_token": token, "name": name, "password": password,
                               "next": "/"}).encode()
overview = web.open(f"{base}/login", data).read().decode()
spent = re.search(r"Month to date</div><div class=\"figure\">([^<]+)<", overview)
print(f"signed in as {name}; month to date: {spent[1] if spent else '?'}")
for path in ("/spend", "/exceptions", "/reconciliation", "/budgets", "/statements",
             "/prices", "/evidence", "/keys"):
    print(f"  {path}: {web.open(base + path).status}")
PY
kill -TERM "$console_pid"; wait "$console_pid" || true
result "console: every page answers on this ledger for the admin user"

step "the demo's results"
printf '  - %s\n' "${results[@]}"
echo "Everything is in demo-out/ (SPENDTRAIL_HOME=demo-out); try 'SPENDTRAIL_HOME=demo-out spendtrail --help'."
echo
echo "Open the console on the demo's books:"
echo "  SPENDTRAIL_HOME=demo-out spendtrail serve     # then http://127.0.0.1:8700/"
echo "  sign in as admin, password: $CONSOLE_PASSWORD"
echo "  (shown this once: the ledger keeps only its hash; 'spendtrail users add' makes more users)"

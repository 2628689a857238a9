#!/usr/bin/env bash
# Run the FinOps Foundation FOCUS validator (focus-validator, PyPI) on spendtrail's FOCUS
# export, version by version, and print the rules that fail. Results: docs/focus.md.
#
# focus-validator 2.x needs Python >= 3.12, so it gets its own virtualenv (kept between runs
# in $FOCUS_VALIDATOR_VENV). spendtrail itself runs from the environment that calls this
# script (`spendtrail` on PATH). The ledger is a fresh SQLite file built from examples/: the
# registry, the price sheet, the sample events and the shared-cost rules.
#
#   bench/focus_validate.sh            # FOCUS 1.2, 1.3 and 1.4
#   FOCUS_VERSIONS="1.3" bench/focus_validate.sh
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
VENV=${FOCUS_VALIDATOR_VENV:-$ROOT/.venv-focus-validator}
VALIDATOR_VERSION=${FOCUS_VALIDATOR_VERSION:-2.2.1}
VERSIONS=${FOCUS_VERSIONS:-"1.2 1.3 1.4"}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

if [[ ! -x $VENV/bin/focus-validator ]]; then
  PY=${FOCUS_VALIDATOR_PYTHON:-$(ls -d "$(pyenv root 2>/dev/null)"/versions/3.1[2-9]*/bin/python 2>/dev/null | head -1)}
  [[ -x ${PY:-} ]] || { echo "need Python >= 3.12 (set FOCUS_VALIDATOR_PYTHON)" >&2; exit 2; }
  "$PY" -m venv "$VENV"
  # pyarrow 22 breaks the validator's loader (seen with 2.2.1); pin below it.
  "$VENV/bin/pip" install -q "focus-validator==$VALIDATOR_VERSION" "pyarrow<22"
fi
# It opens focus_validator/rules/currency_codes.csv by a relative path: run it from the
# folder that holds the package.
PACKAGE=$("$VENV/bin/python" -c 'import focus_validator, os; print(os.path.dirname(os.path.dirname(focus_validator.__file__)))')

export SPENDTRAIL_DATABASE_URL="sqlite:///$WORK/ledger.db" SPENDTRAIL_ACTOR=focus-bench
cd "$ROOT"
spendtrail init >/dev/null
spendtrail registry load examples/registry.yaml --reason "focus bench" >/dev/null
spendtrail prices import sheet examples/prices.yaml --reason "focus bench" >/dev/null
spendtrail ingest examples/events.jsonl >/dev/null 2>&1 || true  # one sample line is bad
spendtrail allocation rules-load examples/shared-cost-rules.yaml --reason "focus bench" >/dev/null

status=0
for version in $VERSIONS; do
  out="$WORK/focus-$version.csv"
  spendtrail export focus --period 2026-10 --output "$out" --focus-version "$version" \
    >/dev/null 2>&1 || true  # exits 1 when some usage is unpriced; the file is written
  rows=$(($(wc -l <"$out") - 1))
  echo "== FOCUS $version: $rows rows, validator $VALIDATOR_VERSION"
  log="$WORK/validate-$version.log"
  rules=$version
  if ! (cd "$PACKAGE" && "$VENV/bin/focus-validator" --supported-versions --block-download \
          2>/dev/null | grep -q "$version"); then
    # 2.2.1 bundles only the 1.2 rule model (1.3 would be downloaded from GitHub; 1.4 has
    # none yet). Cross-check with the 1.2 rules; what differs between versions is expected.
    echo "   the validator has no FOCUS $version rules offline; checking with its 1.2 rules"
    rules=1.2
  fi
  if ! (cd "$PACKAGE" && "$VENV/bin/focus-validator" --data-file "$out" \
          --validate-version "$rules" --block-download --show-violations) >"$log" 2>&1; then
    echo "   validator could not run: $(grep -E 'Error' "$log" | tail -1)"
    status=1
    continue
  fi
  echo "   $(grep -E '^Total:' "$log" | tail -1)"
  # The validator exits 0 even when rules fail: read its report.
  failed=$(grep -E '^❌' "$log" | sed -E 's/^❌ ([^:]+): FAIL +\(violations=[0-9]+, msg=(.*)\)$/\1: \2/; s/, [0-9.]+ms$//' | sort -u || true)
  if [[ -z $failed ]]; then
    echo "   no failing rules"
  else
    echo "   failing rules:"; sed 's/^/     /' <<<"$failed"
  fi
  [[ -n ${FOCUS_VALIDATE_KEEP:-} ]] && cp "$log" "$FOCUS_VALIDATE_KEEP/validate-$version.log"
done
exit $status

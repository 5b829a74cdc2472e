#!/usr/bin/env bash
# The whole pytest suite, as `make test` (and CI) runs it, in two runs side by side:
#
#   - the integration and browser tests, one at a time (they share one worker process, one
#     broker and one database), streamed as they run;
#   - beside them, the unit tests, in one pytest-xdist worker (so its database is
#     test_<name>_gw0 and its sandboxed children run as a user of their own, apart from the
#     integration run's), its output shown when both are done.
#
# The integration tests spend much of their time waiting for the worker, the browser or Triton,
# which leaves a core idle; the unit tests use it. Timings are not what tests check (benchmarks
# live in bench/), and the integration tests' deadlines leave room for a busy machine.
#
# The integration run keeps a Redis database of its own, since it flushes it: 14 on the local
# Redis, or SLIPWAY_INTEGRATION_BROKER_URL. Arguments go to both runs.
set -uo pipefail
cd "$(dirname "$0")/.."
PYTEST=${PYTEST:-.venv/bin/pytest}

fresh_tmp() { mktemp -d "${TMPDIR:-/tmp}/slipway-pytest-XXXXXX"; }

unit_tmp=$(fresh_tmp)
unit_log="$unit_tmp.log"
echo "unit tests: pytest's temporary folders $unit_tmp, output in $unit_log (shown at the end)"
PYTEST_DEBUG_TEMPROOT=$unit_tmp "$PYTEST" -q -n 1 -m "not integration and not e2e" --durations=15 "$@" \
  >"$unit_log" 2>&1 &
unit_pid=$!
# a Ctrl-C (or CI's cancel) stops the unit run too
trap 'kill "$unit_pid" 2>/dev/null' EXIT

it_tmp=$(fresh_tmp)
echo "integration and browser tests: pytest's temporary folders $it_tmp"
PYTEST_DEBUG_TEMPROOT=$it_tmp \
  CELERY_BROKER_URL=${SLIPWAY_INTEGRATION_BROKER_URL:-redis://127.0.0.1:6379/14} \
  "$PYTEST" -m "integration or e2e" --durations=15 "$@"
it_status=$?

wait "$unit_pid"
unit_status=$?
trap - EXIT
echo
echo "================================ the unit tests ================================"
cat "$unit_log"

# exit 5: no test was selected in that half (a selection given as arguments)
status=0
for part in "integration:$it_status" "unit:$unit_status"; do
  code=${part#*:}
  if [ "$code" -ne 0 ] && [ "$code" -ne 5 ]; then
    echo "the ${part%%:*} tests failed (pytest exit $code)"
    status=1
  fi
done
if [ "$it_status" -eq 5 ] && [ "$unit_status" -eq 5 ]; then
  echo "no tests were selected"
  status=5
fi
# temporary folders kept where a test failed, to look at
[ "$it_status" -ne 0 ] || rm -rf "$it_tmp"
[ "$unit_status" -ne 0 ] || rm -rf "$unit_tmp" "$unit_log"
exit $status

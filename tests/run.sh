#!/usr/bin/env bash
# The test command (README): install what the tests need, then run pytest.
# Extra arguments go to pytest, e.g. `bash tests/run.sh -m "not slow"`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash deploy/install-dev.sh
exec "${GUMBEL_VENV:-.venv}/bin/python" -m pytest "$@"

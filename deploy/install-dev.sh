#!/usr/bin/env bash
# Install everything the tests and benchmarks need on a fresh Debian machine, idempotently:
#   - a virtual environment (.venv, or $GUMBEL_VENV) with gumbel-stream[dev] installed editable
#   - the pinned Apache Kafka broker jars from Maven Central (cached in ~/.cache/gumbel-stream)
#   - Debian's prometheus (server + promtool) and kcat, when missing
#   - Debian's chromium and chromium-driver (the live page's browser test), when missing
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${GUMBEL_VENV:-.venv}

say() { printf '[install] %s\n' "$*" >&2; }

if [ ! -x "$venv/bin/python" ]; then
  say "creating virtual environment $venv"
  python3 -m venv "$venv"
fi
# The pip cache (~/.cache/pip) keeps the large torch wheel between runs on the same machine.
stamp="$venv/.installed-$(sha1sum pyproject.toml | cut -c1-12)"
if [ ! -f "$stamp" ]; then
  say "installing gumbel-stream[dev] (first run downloads torch: a few minutes)"
  "$venv/bin/python" -m pip install -q --upgrade pip
  "$venv/bin/python" -m pip install -q -e '.[dev]'
  touch "$stamp"
fi

if command -v java >/dev/null 2>&1 && command -v mvn >/dev/null 2>&1; then
  say "Kafka jars: $(bash services/apache_kafka/fetch-jars.sh)"
else
  say "no java/mvn: Kafka tests will fall back to the embedded Tansu broker"
fi

missing=()
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
command -v kcat >/dev/null 2>&1 || missing+=(kcat)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo -n"
  say "installing Debian packages: ${missing[*]}"
  if ! { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq \
        --no-install-recommends "${missing[@]}"; } >/tmp/gumbel-apt.log 2>&1; then
    say "could not install ${missing[*]} (see /tmp/gumbel-apt.log); tests needing them will skip"
  fi
fi

#!/usr/bin/env bash
# Install what the suite needs, then run all of it: lint, types, Python (unit, real servers,
# browser) and Node tests. Usage: bash tests/run.sh [extra pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."

python -m pip install --quiet --disable-pip-version-check -e ".[test]" -c tests/constraints.txt
if ! command -v chromium >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq && apt-get install -y -qq chromium >/dev/null
    else
        sudo apt-get update -qq && sudo apt-get install -y -qq chromium >/dev/null
    fi
fi
if ! command -v redis-server >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq && apt-get install -y -qq redis-server >/dev/null
    else
        sudo apt-get update -qq && sudo apt-get install -y -qq redis-server >/dev/null
    fi
fi

# The npm clients the tests drive (openai, ai): pinned in tests/node/package.json and its lock,
# installed into tests/node/node_modules (git-ignored) when missing or when the lock changed.
if ! cmp -s tests/node/package-lock.json tests/node/node_modules/.installed-lock.json; then
    (cd tests/node && npm ci --no-audit --no-fund --loglevel=error \
        && cp package-lock.json node_modules/.installed-lock.json)
fi

python -m ruff check indox_integrations example_apps tests bench
python -m ruff format --check indox_integrations example_apps tests bench
python -m mypy
node --test tests/js/
python -m pytest "$@"

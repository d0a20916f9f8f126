#!/usr/bin/env bash
# Sets up everything the test suite needs on a fresh machine, then runs it.
# Idempotent: a second run reuses the virtualenv and the installed packages.
set -euo pipefail
cd "$(dirname "$0")/.."

# Database servers for the import tests (the tests start private instances of them),
# installed as root, or through sudo where it needs no password (a CI runner's user).
as_root=()
[ "$(id -u)" = 0 ] || as_root=(sudo -n)
if command -v apt-get >/dev/null && { [ ${#as_root[@]} = 0 ] || sudo -n true 2>/dev/null; }; then
  missing=()
  command -v pg_ctlcluster >/dev/null || [ -x /usr/lib/postgresql/*/bin/initdb ] 2>/dev/null || missing+=(postgresql)
  command -v mariadbd >/dev/null || command -v mysqld >/dev/null || missing+=(mariadb-server)
  # Debian's chromium for the dashboard's browser tests (Playwright drives it; its own
  # browser download cannot work offline)
  [ -x /usr/bin/chromium ] || missing+=(chromium)
  if [ ${#missing[@]} -gt 0 ]; then
    echo "installing ${missing[*]} for the import and browser tests"
    "${as_root[@]}" apt-get update -qq >/dev/null
    "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
      apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
fi

python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[test]'
# one worker per core (GATELOG_TEST_WORKERS=0 runs in this process, e.g. for pdb)
exec .venv/bin/python -m pytest -q -n "${GATELOG_TEST_WORKERS:-2}" --dist loadfile "$@"

#!/usr/bin/env bash
# Prints the path of a Python 3.12 or 3.13 interpreter, or explains why there is none.
# Chalice takes the Lambda runtime from the local Python, so the venv must be one of these.
set -u
candidates=(python3.12 python3.13)
for root in "${PYENV_ROOT:-$HOME/.pyenv}/versions"/3.12* "${PYENV_ROOT:-$HOME/.pyenv}/versions"/3.13*; do
  [ -x "$root/bin/python" ] && candidates+=("$root/bin/python")
done
candidates+=(python3)
for candidate in "${candidates[@]}"; do
  # pyenv shims exist for versions that are not selected and fail when run: ask each one.
  if "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] not in ((3, 12), (3, 13)))' >/dev/null 2>&1; then
    "$candidate" -c 'import sys; print(sys.executable)'
    exit 0
  fi
done
echo "error: Python 3.12 or 3.13 is required (Chalice takes the Lambda runtime from it), and none was found." >&2
echo "       Install one, e.g. 'pyenv install 3.12', or put python3.12/python3.13 on PATH." >&2
exit 1

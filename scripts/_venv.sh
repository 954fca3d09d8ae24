# Sourced by the other scripts: make .venv (once) and keep it in step with
# pyproject.toml, so a fresh clone needs nothing but python3 >= 3.10.
# PYTHON picks the interpreter, THREADLINE_VENV the folder (default .venv).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv="$root/${THREADLINE_VENV:-.venv}"
python=${PYTHON:-python3}
stamp="$venv/.threadline-installed"
want=$(cat "$root/pyproject.toml" "$root/src/_threadline_bootstrap.py" "$root/src/threadline-bootstrap.pth" | sha256sum | cut -d' ' -f1)
if [ ! -x "$venv/bin/python" ]; then
    echo "threadline: creating ${venv#"$root"/} and installing dependencies (first run, about a minute)..." >&2
    "$python" -m venv "$venv"
elif [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "threadline: the dependencies changed, updating ${venv#"$root"/}..." >&2
fi
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    "$venv/bin/python" -m pip install --quiet --upgrade pip
    "$venv/bin/python" -m pip install --quiet -e "$root[aiohttp,test,bench,docs]"
    echo "$want" > "$stamp"
    echo "threadline: ${venv#"$root"/} is ready" >&2
fi
export PATH="$venv/bin:$PATH"

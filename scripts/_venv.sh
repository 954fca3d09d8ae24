# Sourced by the other scripts: make .venv (once) and keep it in step with
# pyproject.toml, so a fresh clone needs nothing but python3 >= 3.10.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv="$root/.venv"
python=${PYTHON:-python3}
if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"
fi
stamp="$venv/.threadline-installed"
want=$(cat "$root/pyproject.toml" "$root/src/_threadline_bootstrap.py" "$root/src/threadline-bootstrap.pth" | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    "$venv/bin/python" -m pip install --quiet --upgrade pip
    "$venv/bin/python" -m pip install --quiet -e "$root[aiohttp,test]"
    echo "$want" > "$stamp"
fi
export PATH="$venv/bin:$PATH"

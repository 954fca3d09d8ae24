# Sourced by the scripts that run on every supported Python.
# find_python 3.X prints the interpreter for that version (on PATH, or installed
# by pyenv without being its current version); nothing when there is none.
SUPPORTED_PYTHONS="3.10 3.11 3.12 3.13"
find_python() {
    local candidate
    for candidate in "$(command -v "python$1" || true)" \
        "${PYENV_ROOT:-$HOME/.pyenv}"/versions/"$1".*/bin/"python$1"; do
        if [ -n "$candidate" ] && "$candidate" -c pass 2>/dev/null; then
            echo "$candidate"
            return 0
        fi
    done
}

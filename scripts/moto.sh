# shellcheck shell=bash
# A local S3 + KMS (moto) for the ehrlift-aws tests. Source this file, then call
# `moto_start`: it exports EHRLIFT_TEST_AWS_ENDPOINT=http://127.0.0.1:PORT and stops the
# server when the shell exits. Without moto the S3 tests skip (print a notice), except
# under CI=true, where moto_start fails.
#
#   source scripts/moto.sh && moto_start && cargo test -p ehrlift-aws
#
# EHRLIFT_MOTO_VENV: where the moto virtualenv lives (default ~/.cache/ehrlift-moto/venv).

EHRLIFT_MOTO_VERSION=5.2.5

_moto_unavailable() {
    if [ "${CI:-}" = "true" ]; then
        echo "error: moto (S3/KMS) unavailable: $1" >&2
        return 1
    fi
    echo "notice: moto (S3/KMS) unavailable: $1; S3 tests will skip" >&2
    return 0
}

moto_start() {
    local venv="${EHRLIFT_MOTO_VENV:-$HOME/.cache/ehrlift-moto/venv}"
    local py
    py="$(command -v python3)" || { _moto_unavailable "python3 not found"; return; }

    if ! "$venv/bin/python" -c "import moto, sys; sys.exit(moto.__version__ != '$EHRLIFT_MOTO_VERSION')" 2>/dev/null; then
        mkdir -p "$(dirname "$venv")" 2>/dev/null
        if [ ! -x "$venv/bin/python" ]; then
            "$py" -m venv "$venv" >/dev/null 2>&1 || { _moto_unavailable "cannot create a virtualenv at $venv (python3-venv missing?)"; return; }
        fi
        "$venv/bin/pip" install --quiet --disable-pip-version-check "moto[server]==$EHRLIFT_MOTO_VERSION" >&2 \
            || { _moto_unavailable "pip could not install moto[server]==$EHRLIFT_MOTO_VERSION into $venv"; return; }
    fi

    local port
    port="$("$venv/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')" \
        || { _moto_unavailable "no free local port"; return; }

    EHRLIFT_MOTO_LOG="$(mktemp -t ehrlift-moto.XXXXXX.log)"
    "$venv/bin/moto_server" -H 127.0.0.1 -p "$port" >"$EHRLIFT_MOTO_LOG" 2>&1 &
    EHRLIFT_MOTO_PID=$!
    # Stop the server with the shell that started it (keeping any EXIT trap already set).
    local previous
    previous="$(trap -p EXIT | sed -E "s/^trap -- '(.*)' EXIT$/\1/")"
    # shellcheck disable=SC2064
    trap "${previous:+$previous; }moto_stop" EXIT

    local i
    for i in $(seq 1 80); do
        if ! kill -0 "$EHRLIFT_MOTO_PID" 2>/dev/null; then
            _moto_unavailable "moto_server exited at start ($(tail -n 3 "$EHRLIFT_MOTO_LOG" | tr '\n' ' '))"
            return
        fi
        if "$venv/bin/python" -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/moto-api/', timeout=1)" 2>/dev/null; then
            export EHRLIFT_TEST_AWS_ENDPOINT="http://127.0.0.1:$port"
            echo "moto $EHRLIFT_MOTO_VERSION (S3/KMS) on $EHRLIFT_TEST_AWS_ENDPOINT (log $EHRLIFT_MOTO_LOG)" >&2
            return 0
        fi
        sleep 0.25
    done
    moto_stop
    _moto_unavailable "moto_server did not answer on port $port within 20 s (log $EHRLIFT_MOTO_LOG)"
}

moto_stop() {
    if [ -n "${EHRLIFT_MOTO_PID:-}" ]; then
        kill "$EHRLIFT_MOTO_PID" 2>/dev/null
        wait "$EHRLIFT_MOTO_PID" 2>/dev/null
        unset EHRLIFT_MOTO_PID
    fi
    unset EHRLIFT_TEST_AWS_ENDPOINT
}

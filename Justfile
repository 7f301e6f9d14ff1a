# Ringtail's front door. `just` itself comes from PyPI: `pip install rust-just`.
set shell := ["bash", "-euo", "pipefail", "-c"]

python := env("PYTHON", "python3")
venv := ".venv"
bin := venv / "bin"
stamp := venv / ".ringtail-setup"

# list the recipes
default:
    @just --list

# create .venv, install Ringtail editable with every extra, and build native/
setup:
    @{{python}} -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
        || { echo "Ringtail needs Python 3.11 or newer; set PYTHON=/path/to/python3.11" >&2; exit 1; }
    {{python}} -m venv {{venv}}
    {{bin}}/python -m pip install --disable-pip-version-check --progress-bar off -e '.[dev]'
    touch {{stamp}}

# run `setup` when .venv is missing or older than the files that define it
[private]
ensure:
    #!/usr/bin/env bash
    set -euo pipefail
    stale=0
    if [ ! -f {{stamp}} ]; then stale=1; fi
    for f in pyproject.toml setup.py native/_build.py native/*.c native/*.h; do
        if [ -e "$f" ] && [ "$f" -nt {{stamp}} ]; then stale=1; fi
    done
    if [ "$stale" = 1 ]; then "{{just_executable()}}" setup; fi

# run the test suite (extra arguments go to pytest, e.g. `just test -k crc -x`)
test *ARGS: ensure
    {{bin}}/pytest {{ARGS}}

# ruff (lint and format) and mypy
lint: ensure lint-firmware
    {{bin}}/ruff check .
    {{bin}}/ruff format --check .
    {{bin}}/mypy

# mypy on firmware/ against each port's MicroPython stubs (installed on first use into
# .venv/stubs/<port>: the two stub packages conflict in one environment)
lint-firmware: ensure
    #!/usr/bin/env bash
    set -euo pipefail
    # every firmware module but the boards' HALs (each checked with its own port's stubs)
    common=$(ls firmware/*.py | grep -v '^firmware/hal_' | tr '\n' ' ')
    for port in esp32 rp2; do
        dir={{venv}}/stubs/$port
        if [ ! -f "$dir/.ringtail-stubs" ]; then
            rm -rf "$dir"
            {{bin}}/python -m pip install --disable-pip-version-check --quiet --target "$dir" \
                "micropython-$port-stubs>=1.29,<1.30"
            touch "$dir/.ringtail-stubs"
        fi
        mods="$common firmware/hal_$port.py"
        # the unix port has no stub package; its modules use only the common library
        if [ "$port" = esp32 ]; then mods="$mods firmware/hal_unix.py"; fi
        echo "mypy firmware ($port): $mods"
        MYPYPATH="firmware:$dir" {{bin}}/mypy --config-file firmware/mypy.ini \
            --custom-typeshed-dir "$dir" --cache-dir ".mypy_cache/firmware-$port" $mods
    done

# PORT: /dev/ttyACM0, a virtual board's /dev/pts/N, or auto (mpremote's first USB board);
# more arguments go to `ringtail device flash`: `just flash PORT=/dev/ttyACM0 --gateway 10.0.0.5`
# compile the firmware, deploy it to a board, write config.json, verify, reset (`just flash PORT=...`)
flash PORT="auto" *ARGS: ensure
    {{bin}}/ringtail device flash {{quote(replace_regex(PORT, '^PORT=', ''))}} {{ARGS}}

# run the benchmarks and print their tables (extra arguments select benchmarks by name)
bench *ARGS: ensure
    {{bin}}/python -m bench {{ARGS}}

# the whole pipeline on this machine: NATS, cloud, gateway, 3 virtual boards (Ctrl-C stops)
run *ARGS: ensure
    {{bin}}/ringtail stack {{ARGS}}

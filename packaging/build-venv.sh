#!/bin/sh
# Build Veilleuse's virtualenv at its final path from the hash-pinned locks.
#   packaging/build-venv.sh /opt/veilleuse/venv
# Run by debian/rules inside the throwaway build root of scripts/build-deb.sh.
# Every download is checked against packaging/*.lock; only systemd-python is
# compiled (PyPI has no wheel for it), everything else must come as a wheel.
set -eu

venv=$1
here=$(cd "$(dirname "$0")/.." && pwd)
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1

# Through the versioned interpreter, so the package depends on python3.X alone.
python=$(python3 -c 'import sys; print("/usr/bin/python%d.%d" % sys.version_info[:2])')
rm -rf "$venv"
"$python" -m venv "$venv"
pip="$venv/bin/python -m pip"
# First a pip recent enough to cache the wheel it compiles, and the build backends.
$pip install --quiet --require-hashes --no-deps --only-binary :all: \
    -r "$here/packaging/build-requirements.lock"
$pip install --quiet --require-hashes --no-deps --no-build-isolation \
    --only-binary :all: --no-binary systemd-python \
    -r "$here/packaging/requirements.lock"
# The project itself, from this source tree (its dependencies are all above).
$pip install --quiet --no-deps --no-build-isolation --no-index "$here"
$pip check
# Nothing on the box installs Python packages: no pip, no wheel builder.
$pip uninstall --quiet --yes wheel pip
"$venv/bin/python" -m compileall -q -j 0 "$venv/lib"

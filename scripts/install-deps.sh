#!/usr/bin/env bash
# Installs what Spanza needs on Debian bookworm: Debian packages (only the
# missing ones), then a virtualenv in .venv with the Python packages.
# Idempotent and quick when everything is there.
set -euo pipefail
cd "$(dirname "$0")/.."

DEBS=(
	build-essential pkg-config clang lld libclang-rt-14-dev clang-format clang-tidy
	libsodium-dev libssl-dev python3-dev python3-venv
	wireguard-go wireguard-tools iproute2 iputils-ping tshark iperf3 curl
	xz-utils ca-certificates debian-archive-keyring dpkg-dev
)

missing=()
for p in "${DEBS[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	echo "spanza: installing Debian packages: ${missing[*]}"
	SUDO=""
	[ "$(id -u)" -eq 0 ] || SUDO="sudo"
	export DEBIAN_FRONTEND=noninteractive
	echo "wireshark-common wireshark-common/install-setuid boolean false" | $SUDO debconf-set-selections
	$SUDO apt-get update -qq
	$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
	echo "spanza: creating .venv"
	"$PY" -m venv .venv
fi
if ! cmp -s requirements-dev.txt .venv/.requirements 2>/dev/null; then
	.venv/bin/python -m pip install -q --disable-pip-version-check -r requirements-dev.txt
	cp requirements-dev.txt .venv/.requirements
fi

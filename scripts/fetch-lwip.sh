#!/usr/bin/env bash
# Fetches Debian's lwIP source package (2.1.3+dfsg1-2) and extracts the
# upstream tarball into $1 (default .cache/lwip). apt runs against a private
# sources list, state and cache, so nothing under /etc/apt or /var/lib/apt is
# touched. The orig tarball is checked against a pinned sha256 (apt has
# already verified it against the signed Sources index). Never committed.
set -euo pipefail
cd "$(dirname "$0")/.."

DEST=${1:-.cache/lwip}
VERSION=2.1.3+dfsg1-2
ORIG=lwip_2.1.3+dfsg1.orig.tar.xz
SHA256=0a8276d09fc4e97bbba2f953d74af2388fc2195ea156be9d7589e297a68fde24
SRCDIR=$DEST/lwip-2.1.3

if [ -f "$SRCDIR/.spanza-ok" ]; then
	exit 0
fi

DL=$DEST/download
mkdir -p "$DL"
DL=$(cd "$DL" && pwd)

# A copy of the tarball from elsewhere (SPANZA_LWIP_ORIG: an offline build,
# or a pip build reusing a checkout's cache) is used when it checks out.
if [ -n "${SPANZA_LWIP_ORIG:-}" ] && [ -f "$SPANZA_LWIP_ORIG" ]; then
	cp "$SPANZA_LWIP_ORIG" "$DL/$ORIG"
fi

if ! echo "$SHA256  $DL/$ORIG" | sha256sum -c --status 2>/dev/null; then
	if ! command -v apt-get >/dev/null || [ ! -f /usr/share/keyrings/debian-archive-keyring.gpg ]; then
		echo "spanza: cannot fetch Debian's lwip source package here (needs apt-get and the" >&2
		echo "spanza: debian-archive-keyring); set SPANZA_LWIP_ORIG=/path/to/$ORIG (sha256 $SHA256)" >&2
		exit 1
	fi
	APT=$DEST/apt
	mkdir -p "$APT/sources" "$APT/lists/partial" "$APT/cache/archives/partial"
	APT=$(cd "$APT" && pwd)
	cat >"$APT/sources/lwip.sources" <<SRC
Types: deb-src
URIs: ${SPANZA_DEBIAN_MIRROR:-http://deb.debian.org/debian}
Suites: bookworm
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
	opts=(
		-o "Dir::Etc::SourceList=/dev/null"
		-o "Dir::Etc::SourceParts=$APT/sources"
		-o "Dir::State::Lists=$APT/lists"
		-o "Dir::Cache=$APT/cache"
		-o "Debug::NoLocking=1"
		-o "APT::Sandbox::User=root"
	)
	echo "spanza: fetching Debian source package lwip $VERSION"
	if ! apt-get "${opts[@]}" -qq update ||
		! (cd "$DL" && apt-get "${opts[@]}" -qq source --download-only "lwip=$VERSION"); then
		echo "spanza: cannot download Debian's lwip source package $VERSION (network?); or set" >&2
		echo "spanza: SPANZA_LWIP_ORIG=/path/to/$ORIG (sha256 $SHA256)" >&2
		exit 1
	fi
fi

if ! echo "$SHA256  $DL/$ORIG" | sha256sum -c --status; then
	echo "spanza: $DL/$ORIG does not match the pinned sha256 $SHA256" >&2
	exit 1
fi

rm -rf "$SRCDIR"
tar -xf "$DL/$ORIG" -C "$DEST"
test -f "$SRCDIR/src/core/tcp.c"
touch "$SRCDIR/.spanza-ok"

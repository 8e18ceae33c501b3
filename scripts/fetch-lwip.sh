#!/usr/bin/env bash
# Fetches Debian's lwIP source package (2.1.3+dfsg1-2) and extracts the
# upstream tarball into $1 (default .cache/lwip). apt runs against a private
# sources list, state and cache, so nothing under /etc/apt or /var/lib/apt is
# touched. The orig tarball is checked against a pinned sha256 (apt has
# already verified it against the signed Sources index). Never committed.
# Then Spanza's patches (scripts/lwip-patches/*.patch, in name order) are
# applied to the sources, whose line endings are made LF first, and the
# patched tree is checked against the sha256 pinned in
# scripts/lwip-patches/tree.sha256 (over the sorted list of `sha256sum` lines
# of every file under src/). The stamp holds that hash.
set -euo pipefail
cd "$(dirname "$0")/.."

DEST=${1:-.cache/lwip}
VERSION=2.1.3+dfsg1-2
ORIG=lwip_2.1.3+dfsg1.orig.tar.xz
SHA256=0a8276d09fc4e97bbba2f953d74af2388fc2195ea156be9d7589e297a68fde24
SRCDIR=$DEST/lwip-2.1.3
PATCHES=scripts/lwip-patches
TREE_SHA256=$(cat "$PATCHES/tree.sha256")

if [ "$(cat "$SRCDIR/.spanza-ok" 2>/dev/null)" = "$TREE_SHA256" ]; then
	touch "$SRCDIR/.spanza-ok" # newer than the patches that made it
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
find "$SRCDIR/src" -type f -exec sed -i 's/\r$//' {} +
for p in "$PATCHES"/*.patch; do
	patch -d "$SRCDIR" -p1 -s --no-backup-if-mismatch -i "$(pwd)/$p"
done
got=$(cd "$SRCDIR" && find src -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1)
if [ "$got" != "$TREE_SHA256" ]; then
	echo "spanza: the patched lwIP tree hashes to $got, not the pinned $TREE_SHA256" >&2
	echo "spanza: (after changing a patch on purpose, put the new hash in $PATCHES/tree.sha256)" >&2
	exit 1
fi
echo "$got" >"$SRCDIR/.spanza-ok"

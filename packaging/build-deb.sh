#!/usr/bin/env bash
# Builds edge-runtime_VERSION_ARCH.deb from a release build (`make deb` runs this).
#
#   packaging/build-deb.sh [--version V] [--binaries DIR] [--out DIR] [--config FILE]
#
# --version   Debian version (default: packaging/VERSION plus "-1", or $EDGE_DEB_VERSION)
# --binaries  directory holding already-built edgectl and edge-runtimed; skips the release build
#             (the install test repacks one build under a second version this way)
# --out       where the .deb goes (default: the repo root)
# --config    the /etc/edge-runtime/config.toml to ship (default: packaging/config.toml)
# --compress  xz (default, smallest), gzip or zstd (faster, for throw-away test packages)
#
# The Swift runtime and Foundation are linked statically (--static-swift-stdlib), so the package
# depends only on Debian libraries; Depends: is computed by dpkg-shlibdeps from the binaries.
# Prints the path of the .deb on its last line.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
pkg=edge-runtime
# Who signs the package; override for a real distribution channel.
maintainer=${EDGE_DEB_MAINTAINER:-edge-runtime maintainers <edge-runtime@example.org>}
version=${EDGE_DEB_VERSION:-}
bindir=""
outdir=$root
config=$root/packaging/config.toml
compress=xz

die() { echo "build-deb: $*" >&2; exit 1; }

while [ $# -gt 0 ]; do
  case "$1" in
    --version) version=${2:?--version needs a value}; shift 2 ;;
    --binaries) bindir=${2:?--binaries needs a directory}; shift 2 ;;
    --out) outdir=${2:?--out needs a directory}; shift 2 ;;
    --config) config=${2:?--config needs a file}; shift 2 ;;
    --compress) compress=${2:?--compress needs xz, gzip or zstd}; shift 2 ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
done

if [ -z "$version" ]; then
  [ -f "$root/packaging/VERSION" ] || die "packaging/VERSION is missing; pass --version"
  version="$(tr -d ' \n' < "$root/packaging/VERSION")-1"
fi
# Debian version syntax: upstream part starts with a digit; only [A-Za-z0-9.+~-] allowed.
[[ "$version" =~ ^[0-9][A-Za-z0-9.+~]*-[A-Za-z0-9.+~]+$ ]] \
  || die "version '$version' is not a Debian version of the form UPSTREAM-REVISION (e.g. 0.1.0-1)"
[ -f "$config" ] || die "config file '$config' not found (packaging/config.toml is the shipped default config)"

for tool in dpkg-deb dpkg-shlibdeps dpkg-architecture gzip strip; do
  command -v "$tool" >/dev/null || die "'$tool' not found: apt-get install dpkg-dev binutils gzip"
done
arch=$(dpkg-architecture -qDEB_HOST_ARCH)

if [ -z "$bindir" ]; then
  echo "build-deb: release build (static Swift runtime)..." >&2
  # All products in one invocation (the two binaries share almost every module).
  (cd "$root" && swift build -c release --static-swift-stdlib >&2)
  bindir=$(cd "$root" && swift build -c release --static-swift-stdlib --show-bin-path)
fi
for b in edgectl edge-runtimed; do
  [ -x "$bindir/$b" ] || die "'$bindir/$b' is missing or not executable"
done

work=$(mktemp -d "${TMPDIR:-/tmp}/edge-runtime-deb.XXXXXX")
trap 'rm -rf "$work"' EXIT
stage=$work/stage
mkdir -p "$stage/DEBIAN"
umask 022

# Binaries: stripped (debug info would triple the size); the Swift reflection sections stay.
install -D -m 0755 "$bindir/edgectl" "$stage/usr/bin/edgectl"
install -D -m 0755 "$bindir/edge-runtimed" "$stage/usr/sbin/edge-runtimed"
strip --strip-unneeded --remove-section=.comment --remove-section=.note \
  "$stage/usr/bin/edgectl" "$stage/usr/sbin/edge-runtimed"

# systemd units and the sysusers/tmpfiles snippets, shipped as the files in systemd/.
for unit in edge-runtime.service edge-runtime.socket edge-runtime-finetune.service edge-runtime-finetune.timer; do
  install -D -m 0644 "$root/systemd/$unit" "$stage/usr/lib/systemd/system/$unit"
done
install -D -m 0644 "$root/systemd/edge-runtime.sysusers" "$stage/usr/lib/sysusers.d/edge-runtime.conf"
install -D -m 0644 "$root/systemd/edge-runtime.tmpfiles" "$stage/usr/lib/tmpfiles.d/edge-runtime.conf"

install -D -m 0644 "$config" "$stage/etc/edge-runtime/config.toml"

# Completions and man pages come from the CLI itself, so they always match the binary.
ectl=$stage/usr/bin/edgectl
comp=$stage/usr/share
mkdir -p "$comp/bash-completion/completions" "$comp/zsh/vendor-completions" "$comp/fish/vendor_completions.d"
# bash-completion sources the file, so argument-parser's "#!/bin/bash" line is dropped.
"$ectl" --generate-completion-script bash | sed '1{/^#!/d}' > "$comp/bash-completion/completions/edgectl"
"$ectl" --generate-completion-script zsh > "$comp/zsh/vendor-completions/_edgectl"
"$ectl" --generate-completion-script fish > "$comp/fish/vendor_completions.d/edgectl.fish"
chmod 0644 "$comp/bash-completion/completions/edgectl" "$comp/zsh/vendor-completions/_edgectl" \
  "$comp/fish/vendor_completions.d/edgectl.fish"

man1=$stage/usr/share/man/man1
man8=$stage/usr/share/man/man8
mkdir -p "$man1" "$man8"
"$ectl" --experimental-dump-help > "$work/edgectl-help.json"
python3 "$root/packaging/gen-man.py" --date "$(date -u -d "@${SOURCE_DATE_EPOCH:-$(date +%s)}" +%Y-%m-%d)" \
  --version "$version" "$work/edgectl-help.json" "$man1" >/dev/null
"$stage/usr/sbin/edge-runtimed" --experimental-dump-help > "$work/edge-runtimed-help.json" \
  || die "edge-runtimed --experimental-dump-help failed: the daemon's man page is generated from it"
python3 "$root/packaging/gen-man.py" --section 8 --extra "$root/packaging/edge-runtimed.8.extra" \
  --date "$(date -u -d "@${SOURCE_DATE_EPOCH:-$(date +%s)}" +%Y-%m-%d)" \
  --version "$version" "$work/edge-runtimed-help.json" "$man8" >/dev/null
for page in "$man1"/*.1 "$man8"/*.8; do
  chmod 0644 "$page"
  gzip -9n "$page"
done

# Documentation. The changelog's newest entry must name the version being built; a build with a
# different version (e.g. the install test's repack) gets a generated entry on top.
doc=$stage/usr/share/doc/$pkg
install -D -m 0644 "$root/packaging/copyright" "$doc/copyright"
top=$(sed -n '1s/^[^(]*(\([^)]*\)).*/\1/p' "$root/packaging/changelog")
{
  if [ "$top" != "$version" ]; then
    printf '%s (%s) unstable; urgency=medium\n\n  * Package build of %s.\n\n -- %s  %s\n\n' \
      "$pkg" "$version" "$version" "$maintainer" \
      "$(date -R -u -d "@${SOURCE_DATE_EPOCH:-$(date +%s)}")"
  fi
  cat "$root/packaging/changelog"
} > "$work/changelog.Debian"
gzip -9n -c "$work/changelog.Debian" > "$doc/changelog.Debian.gz"
chmod 0644 "$doc/changelog.Debian.gz"

install -D -m 0644 "$root/packaging/debian/lintian-overrides" "$stage/usr/share/lintian/overrides/$pkg"

# Maintainer scripts and conffiles.
for script in postinst prerm postrm; do
  install -m 0755 "$root/packaging/debian/$script" "$stage/DEBIAN/$script"
done
install -m 0644 "$root/packaging/debian/conffiles" "$stage/DEBIAN/conffiles"

# Depends: dpkg-shlibdeps wants a source tree with debian/control; a minimal one is enough.
mkdir -p "$work/src/debian"
printf 'Source: %s\n\nPackage: %s\nArchitecture: any\n' "$pkg" "$pkg" > "$work/src/debian/control"
shlibs=$(cd "$work/src" && dpkg-shlibdeps -O -e"$stage/usr/bin/edgectl" -e"$stage/usr/sbin/edge-runtimed" 2>"$work/shlibdeps.err") \
  || { cat "$work/shlibdeps.err" >&2; die "dpkg-shlibdeps failed"; }
shlibs=${shlibs#shlibs:Depends=}
# systemd provides systemd-sysusers/-tmpfiles for postinst and runs the units.
depends="$shlibs, systemd"

(cd "$stage" && find . -path ./DEBIAN -prune -o -type f -print | sed 's|^\./||' | LC_ALL=C sort \
  | xargs md5sum) > "$stage/DEBIAN/md5sums"
chmod 0644 "$stage/DEBIAN/md5sums"
size=$(du -k -s --apparent-size --exclude=DEBIAN "$stage" | cut -f1)
sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" -e "s/@INSTALLED_SIZE@/$size/" \
  -e "s/@DEPENDS@/$depends/" -e "s|@MAINTAINER@|$maintainer|" "$root/packaging/debian/control.in" > "$stage/DEBIAN/control"

mkdir -p "$outdir"
deb=$outdir/${pkg}_${version}_${arch}.deb
dpkg-deb --root-owner-group -Z"$compress" --build "$stage" "$deb" >&2
echo "$deb"

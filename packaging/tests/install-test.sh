#!/usr/bin/env bash
# Install test for the Debian package (issue 8), run by scripts/test after the Swift tests.
#
#   packaging/tests/install-test.sh [--deb FILE] [--no-boot]
#
# 1. builds edge-runtime_*.deb once from a release build (or takes --deb / $EDGE_TEST_DEB), and a
#    second version by repacking the same binaries (cheap: no second build);
# 2. checks dpkg-deb --info/--contents, that the binaries need no Swift runtime, lintian (no errors),
#    `systemd-analyze verify` on the shipped units and `systemd-analyze security` exposure <= 2.0;
# 3. installs into a fresh minimal Debian root (debootstrap, cached as a tarball under .cache/) with
#    dpkg -i + apt-get -f install inside a chroot: files, user and group, directories, enabled
#    units; keeps an edited conffile across an upgrade; dpkg -r keeps the config; dpkg -P removes
#    everything;
# 4. boots that root with systemd-nspawn (systemd as PID 1) and talks to the daemon through the
#    activated socket, as a member of group edge-runtime and as a non-member.
#
# Needs root (chroot, mounts). Prints "install-test: N passed, N failed" last; exits 1 on failure.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
cache=${EDGE_CACHE_DIR:-$root/.cache}/debootstrap
suite=bookworm
mirror=${EDGE_DEBIAN_MIRROR:-http://deb.debian.org/debian}
deb1=${EDGE_TEST_DEB:-}
boot=1
while [ $# -gt 0 ]; do
  case "$1" in
    --deb) deb1=${2:?--deb needs a file}; shift 2 ;;
    --no-boot) boot=0; shift ;;
    *) echo "install-test: unknown argument '$1'" >&2; exit 2 ;;
  esac
done

started=$(date +%s)
passed=0
failed=0
ok() { passed=$((passed + 1)); echo "ok - $*"; }
bad() { failed=$((failed + 1)); echo "FAIL - $*"; }
# check DESCRIPTION COMMAND...: one assertion; the command's output is shown only on failure.
check() {
  local desc=$1 out
  shift
  if out=$("$@" 2>&1); then ok "$desc"; else bad "$desc"; printf '%s\n' "$out" | sed 's/^/    /' | tail -20; fi
}
finish() {
  echo "install-test: took $(( $(date +%s) - started )) s"
  echo "install-test: $passed passed, $failed failed"
  [ "$failed" -eq 0 ]
}
die() { bad "$*"; finish; exit 1; }

[ "$(id -u)" -eq 0 ] || die "must run as root (chroot, mount); CI runs as root"

need=()
command -v dpkg-shlibdeps >/dev/null || need+=(dpkg-dev)
command -v lintian >/dev/null || need+=(lintian)
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v systemd-nspawn >/dev/null || need+=(systemd-container)
command -v systemd-analyze >/dev/null || need+=(systemd)
command -v zstd >/dev/null || need+=(zstd)
command -v man >/dev/null || need+=(man-db)
if [ ${#need[@]} -gt 0 ]; then
  echo "install-test: installing ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/edge-install-test.XXXXXX")
chroot_dir=$work/root
mounted=()
cleanup() {
  local m
  for m in "${mounted[@]}"; do umount -l "$m" 2>/dev/null || true; done
  # EDGE_KEEP_WORK=1 keeps the roots, packages and logs for a post-mortem.
  if [ "${EDGE_KEEP_WORK:-0}" = 1 ]; then echo "install-test: kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT

# Boots the installed root with systemd-nspawn; a oneshot unit inside runs the probes once the
# system is up, writes key=value results to a bound directory and powers the container off.
boot_checks() {
  local results=$work/boot-results
  mkdir -p "$results"
  in_root apt-get install -y -q -o Dpkg::Use-Pty=0 curl > "$work/apt-curl.log" 2>&1 \
    || { tail -5 "$work/apt-curl.log"; bad "apt-get install curl in the root (for the socket probe)"; return; }
  cat > "$chroot_dir/usr/local/sbin/edge-boot-probe" <<'PROBE'
#!/bin/sh
# Runs inside the booted container; every result is one key=value line.
r=/edge-check/result
sock=/run/edge-runtime/edge.sock
exec 2>/edge-check/log
echo "socket_active=$(systemctl is-active edge-runtime.socket)" >> $r
echo "timer_active=$(systemctl is-active edge-runtime-finetune.timer)" >> $r
echo "service_before=$(systemctl is-active edge-runtime.service)" >> $r
echo "sock_mode=$(stat -c '%a %U:%G' $sock)" >> $r
useradd -M -G edge-runtime member && useradd -M outsider
body='{"model": "base", "prompt": "Hello", "max_tokens": 4}'
code=$(runuser -u member -- curl -s -o /tmp/member-body -w '%{http_code}' --max-time 60 \
  --unix-socket $sock -H 'Content-Type: application/json' -d "$body" http://localhost/v1/completions)
echo "member_code=$code" >> $r
cp /tmp/member-body /edge-check/member-body
runuser -u outsider -- curl -s -o /dev/null --max-time 10 --unix-socket $sock http://localhost/healthz
echo "outsider_curl_rc=$?" >> $r
echo "service_after=$(systemctl is-active edge-runtime.service)" >> $r
echo "service_status=$(systemctl show -p StatusText --value edge-runtime.service)" >> $r
echo "service_user=$(systemctl show -p User --value edge-runtime.service)" >> $r
pid1=$(systemctl show -p MainPID --value edge-runtime.service)
systemctl reload edge-runtime.service; echo "reload_rc=$?" >> $r
sleep 2
echo "after_reload=$(systemctl is-active edge-runtime.service) same_pid=$([ "$pid1" = "$(systemctl show -p MainPID --value edge-runtime.service)" ] && echo yes || echo no)" >> $r
echo "restarts=$(systemctl show -p NRestarts --value edge-runtime.service)" >> $r
echo "exposure_online=$(systemd-analyze security edge-runtime.service 2>/dev/null | sed -n 's/.*Overall exposure level for edge-runtime.service: \([0-9.]*\).*/\1/p')" >> $r
systemctl stop edge-runtime.service
echo "socket_after_service_stop=$(systemctl is-active edge-runtime.socket) sock_still_there=$([ -S $sock ] && echo yes || echo no)" >> $r
code=$(runuser -u member -- curl -s -o /dev/null -w '%{http_code}' --max-time 60 --unix-socket $sock http://localhost/healthz)
echo "reactivated=$(systemctl is-active edge-runtime.service) healthz_code=$code" >> $r
# The maintainer scripts' systemd paths, which a chroot never takes: remove stops everything,
# installing again starts the socket and timer.
dpkg -r edge-runtime > /edge-check/dpkg-r.log 2>&1; echo "booted_remove_rc=$?" >> $r
echo "after_remove=$(systemctl is-active edge-runtime.socket)/$(systemctl is-active edge-runtime.service)/$(systemctl is-active edge-runtime-finetune.timer)/$([ -e $sock ] && echo sock || echo nosock)" >> $r
dpkg -i /root/edge-runtime-v2.deb > /edge-check/dpkg-i.log 2>&1; echo "booted_install_rc=$?" >> $r
echo "after_install=$(systemctl is-active edge-runtime.socket)/$(systemctl is-active edge-runtime-finetune.timer)" >> $r
code=$(runuser -u member -- curl -s -o /dev/null -w '%{http_code}' --max-time 60 \
  --unix-socket $sock -H 'Content-Type: application/json' -d "$body" http://localhost/v1/completions)
echo "after_install_code=$code" >> $r
journalctl -b -u edge-runtime.service -u edge-runtime.socket --no-pager >> /edge-check/log
echo done=1 >> $r
systemctl poweroff
PROBE
  chmod 0755 "$chroot_dir/usr/local/sbin/edge-boot-probe"
  cp "$deb2" "$chroot_dir/root/edge-runtime-v2.deb"
  cat > "$chroot_dir/etc/systemd/system/edge-boot-probe.service" <<'UNIT'
[Unit]
Description=install-test probe of edge-runtime under a booted systemd
After=multi-user.target edge-runtime.socket
[Service]
Type=oneshot
ExecStart=/usr/local/sbin/edge-boot-probe
[Install]
WantedBy=multi-user.target
UNIT
  mkdir -p "$chroot_dir/etc/systemd/system/multi-user.target.wants"
  ln -sf /etc/systemd/system/edge-boot-probe.service "$chroot_dir/etc/systemd/system/multi-user.target.wants/"
  t0=$(date +%s)
  # --register=no/--keep-unit: no machined or systemd on the host; the container's systemd is PID 1.
  timeout 300 systemd-nspawn -q -b -D "$chroot_dir" --register=no --keep-unit --console=pipe \
    --private-network --bind="$results:/edge-check" > "$work/nspawn.log" 2>&1 || true
  echo "install-test: booted container ran for $(( $(date +%s) - t0 )) s"
  rm -f "$chroot_dir/etc/systemd/system/multi-user.target.wants/edge-boot-probe.service" \
    "$chroot_dir/etc/systemd/system/edge-boot-probe.service" "$chroot_dir/usr/local/sbin/edge-boot-probe" \
    "$chroot_dir/root/edge-runtime-v2.deb"
  local res=$results/result
  if ! grep -q '^done=1' "$res" 2>/dev/null; then
    bad "booted container ran the probe (see below)"
    tail -30 "$work/nspawn.log" | sed 's/^/    /'
    sed 's/^/    /' "$results/log" 2>/dev/null | tail -30
    return
  fi
  sed 's/^/    boot: /' "$res"
  v() { sed -n "s/^$1=//p" "$res" | head -n1; }
  check "boot: edge-runtime.socket active" test "$(v socket_active)" = active
  check "boot: fine-tune timer active" test "$(v timer_active)" = active
  check "boot: service not started before the first connection" test "$(v service_before)" = inactive
  check "boot: socket is 660 edge-runtime:edge-runtime" test "$(v sock_mode)" = "660 edge-runtime:edge-runtime"
  check "boot: group member without model gets 503 (got $(v member_code))" test "$(v member_code)" = 503
  check "boot: 503 body is an OpenAI-style error with a message" grep -q '"message"' "$results/member-body"
  check "boot: non-member cannot connect (curl exit 7)" test "$(v outsider_curl_rc)" = 7
  check "boot: service activated by the socket and running" test "$(v service_after)" = active
  check "boot: running unit has User=edge-runtime" test "$(v service_user)" = edge-runtime
  check "boot: STATUS= says there is no model ($(v service_status))" bash -c 'grep -qi model <<<"$1"' _ "$(v service_status)"
  check "boot: reload (SIGHUP) keeps the same process" bash -c '[ "$1" = "active same_pid=yes" ] && [ "$2" = 0 ]' _ "$(v after_reload)" "$(v reload_rc)"
  check "boot: no restarts" test "$(v restarts)" = 0
  check "boot: socket survives a service stop" test "$(v socket_after_service_stop)" = "active sock_still_there=yes"
  check "boot: next connection reactivates the service" bash -c '[[ "$1" == "reactivated=active"* ]] || [[ "$1" == active* ]]' _ "$(sed -n 's/^reactivated=//p' "$res")"
  # "failed" counts as stopped: a unit that failed earlier keeps that state after its file is gone.
  check "boot: dpkg -r stops socket, service and timer ($(v after_remove))" \
    bash -c '[ "$1" = 0 ] && [[ "$2" =~ ^(inactive|failed)/(inactive|failed)/(inactive|failed)/nosock$ ]]' _ "$(v booted_remove_rc)" "$(v after_remove)"
  check "boot: dpkg -i starts socket and timer" test "$(v booted_install_rc) $(v after_install)" = "0 active/active"
  check "boot: reinstalled daemon answers through the socket (503)" test "$(v after_install_code)" = 503
  echo "    boot: online exposure $(v exposure_online)"
  if [ "$failed" -gt 0 ]; then
    sed 's/^/    log: /' "$results/log" | tail -40
    sed 's/^/    booted dpkg -r: /' "$results/dpkg-r.log"; sed 's/^/    booted dpkg -i: /' "$results/dpkg-i.log"
  fi
}

# --- 1. the packages -----------------------------------------------------------------------
if [ -z "$deb1" ]; then
  t0=$(date +%s)
  deb1=$("$root/packaging/build-deb.sh" --out "$work" | tail -n1) || die "packaging/build-deb.sh failed"
  echo "install-test: built $(basename "$deb1") in $(( $(date +%s) - t0 )) s"
fi
[ -f "$deb1" ] || die "no package at '$deb1'"
v1=$(dpkg-deb -f "$deb1" Version)
v2="$v1+upgradetest1"
x1=$work/x1
dpkg-deb -x "$deb1" "$x1"
mkdir -p "$work/bin"
cp "$x1/usr/bin/edgectl" "$x1/usr/sbin/edge-runtimed" "$work/bin/"
deb2=$("$root/packaging/build-deb.sh" --binaries "$work/bin" --config "$x1/etc/edge-runtime/config.toml" \
  --version "$v2" --out "$work/v2" --compress gzip | tail -n1) \
  || die "repacking as $v2 failed"
check "v2 ($v2) sorts after v1 ($v1)" dpkg --compare-versions "$v2" gt "$v1"

# --- 2. static checks ----------------------------------------------------------------------
info=$(dpkg-deb --info "$deb1")
field() { dpkg-deb -f "$deb1" "$1"; }
check "Package is edge-runtime" test "$(field Package)" = edge-runtime
check "Architecture is the build's ($(dpkg --print-architecture))" test "$(field Architecture)" = "$(dpkg --print-architecture)"
depends=$(field Depends)
echo "    Depends: $depends"
check "Depends names libc6 and systemd" bash -c '[[ "$1" == *libc6* && "$1" == *systemd* ]]' _ "$depends"
check "Depends has no Swift runtime package" bash -c '! grep -qi swift <<<"$1"' _ "$depends"
check "conffiles lists /etc/edge-runtime/config.toml" bash -c 'dpkg-deb --ctrl-tarfile "$1" | tar -xO ./conffiles | grep -qx /etc/edge-runtime/config.toml' _ "$deb1"
check "maintainer scripts present" bash -c 'grep -q postinst <<<"$1" && grep -q prerm <<<"$1" && grep -q postrm <<<"$1"' _ "$info"

contents=$(dpkg-deb --contents "$deb1" | awk '{print $6}' | sed 's|^\./|/|')
for path in /usr/bin/edgectl /usr/sbin/edge-runtimed \
  /usr/lib/systemd/system/edge-runtime.service /usr/lib/systemd/system/edge-runtime.socket \
  /usr/lib/systemd/system/edge-runtime-finetune.service /usr/lib/systemd/system/edge-runtime-finetune.timer \
  /usr/lib/sysusers.d/edge-runtime.conf /usr/lib/tmpfiles.d/edge-runtime.conf /etc/edge-runtime/config.toml \
  /usr/share/bash-completion/completions/edgectl /usr/share/zsh/vendor-completions/_edgectl \
  /usr/share/fish/vendor_completions.d/edgectl.fish /usr/share/man/man1/edgectl.1.gz \
  /usr/share/man/man8/edge-runtimed.8.gz /usr/share/doc/edge-runtime/copyright \
  /usr/share/doc/edge-runtime/changelog.Debian.gz; do
  check "contents: $path" grep -qx "$path" <<<"$contents"
done
check "no file outside /usr and /etc" bash -c '! grep -v -e "^/usr/" -e "^/etc/" -e "^/$" <<<"$1" | grep -q .' _ "$contents"
for b in usr/bin/edgectl usr/sbin/edge-runtimed; do
  check "$b needs no Swift runtime library" bash -c '! readelf -d "$1" | grep NEEDED | grep -Ei "swift|Foundation|dispatch|BlocksRuntime"' _ "$x1/$b"
done
check "man pages render" bash -c 'for p in "$1"/usr/share/man/man*/*.gz; do MANWIDTH=80 man -l "$p" >/dev/null 2>"$2/man.err" || exit 1; ! grep -q . "$2/man.err" || { cat "$2/man.err"; exit 1; }; done' _ "$x1" "$work"
check "bash completion parses" bash -n "$x1/usr/share/bash-completion/completions/edgectl"

lintian_out=$work/lintian.txt
lintian --fail-on error --display-info "$deb1" > "$lintian_out" 2>&1 && lintian_rc=0 || lintian_rc=$?
echo "    lintian: $(grep -c '^E:' "$lintian_out" || true) errors, $(grep -c '^W:' "$lintian_out" || true) warnings, $(grep -c '^I:' "$lintian_out" || true) info"
sed 's/^/    /' "$lintian_out"
check "lintian reports no errors" test "$lintian_rc" -eq 0

# systemd-analyze verify checks that ExecStart= binaries exist and man: pages resolve, so the
# units are verified in a copy whose absolute paths point into the extracted package.
units=$work/units
mkdir -p "$units"
for u in "$x1"/usr/lib/systemd/system/*; do
  sed -e "s|/usr/sbin/edge-runtimed|$x1/usr/sbin/edge-runtimed|g" -e "s|/usr/bin/edgectl|$x1/usr/bin/edgectl|g" \
    "$u" > "$units/$(basename "$u")"
done
check "systemd-analyze verify (all units)" env MANPATH="$x1/usr/share/man:" SYSTEMD_LOG_LEVEL=warning \
  bash -c 'out=$(systemd-analyze verify "$@" 2>&1); echo "$out"; [ -z "$out" ]' _ "$units"/*.service "$units"/*.socket "$units"/*.timer
security=$(systemd-analyze security --offline=true "$units/edge-runtime.service" 2>&1 | grep -o 'Overall exposure level for .*' || true)
exposure=$(grep -Eo '[0-9]+\.[0-9]+' <<<"$security" | head -n1)
echo "    $security"
check "edge-runtime.service exposure ${exposure:-?} <= 2.0" awk -v e="${exposure:-99}" 'BEGIN { exit !(e <= 2.0) }'
check "sysusers.d snippet parses" systemd-sysusers --dry-run --root="$work/empty-root" "$x1/usr/lib/sysusers.d/edge-runtime.conf"

# --- 3. install, upgrade, remove, purge in a minimal Debian root ---------------------------
arch=$(dpkg --print-architecture)
tarball=$cache/$suite-minbase-$arch.tar.zst
if [ ! -s "$tarball" ]; then
  t0=$(date +%s)
  mkdir -p "$cache"
  echo "install-test: debootstrap $suite from $mirror (cached afterwards in $tarball)"
  debootstrap --variant=minbase "$suite" "$work/bootstrap" "$mirror" > "$work/debootstrap.log" 2>&1 \
    || { tail -20 "$work/debootstrap.log"; die "debootstrap failed (mirror $mirror; set EDGE_DEBIAN_MIRROR)"; }
  tar -C "$work/bootstrap" --zstd -cf "$tarball.part" . && mv "$tarball.part" "$tarball"
  rm -rf "$work/bootstrap"
  echo "install-test: debootstrap took $(( $(date +%s) - t0 )) s"
fi
mkdir -p "$chroot_dir"
tar -C "$chroot_dir" --zstd --numeric-owner -xf "$tarball"
cp /etc/resolv.conf "$chroot_dir/etc/resolv.conf"
# Downloaded dependencies (systemd, openblas, ...) are kept between runs on this machine.
mkdir -p "$cache/apt-archives/partial"
mount --bind "$cache/apt-archives" "$chroot_dir/var/cache/apt/archives"; mounted=("$chroot_dir/var/cache/apt/archives" "${mounted[@]}")
mount -t proc proc "$chroot_dir/proc"; mounted=("$chroot_dir/proc" "${mounted[@]}")
in_root() { chroot "$chroot_dir" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8 "$@"; }
cp "$deb1" "$chroot_dir/tmp/v1.deb"
cp "$deb2" "$chroot_dir/tmp/v2.deb"

in_root apt-get update -qq > "$work/apt.log" 2>&1 || { cat "$work/apt.log"; die "apt-get update in the chroot failed"; }
# dpkg -i fails on the missing dependencies and leaves the package unconfigured; apt-get -f
# install then brings them in and configures it (what users do with a downloaded .deb).
in_root dpkg -i /tmp/v1.deb > "$work/dpkg1.log" 2>&1 || true
check "apt-get -f install resolves the dependencies" in_root apt-get -f install -y -q -o Dpkg::Use-Pty=0
check "v1 installed" bash -c '[ "$(chroot "$1" dpkg-query -W -f="\${Status} \${Version}" edge-runtime)" = "install ok installed $2" ]' _ "$chroot_dir" "$v1"
for path in /usr/bin/edgectl /usr/sbin/edge-runtimed /etc/edge-runtime/config.toml \
  /usr/lib/systemd/system/edge-runtime.socket /usr/share/man/man1/edgectl.1.gz; do
  check "installed: $path" test -e "$chroot_dir$path"
done
check "edgectl runs in the bare root (only Debian libraries)" in_root /usr/bin/edgectl --version
check "edge-runtimed runs in the bare root" in_root /usr/sbin/edge-runtimed --help
check "user edge-runtime (home /var/lib/edge-runtime, no login shell)" bash -c \
  'IFS=: read -r n _ uid _ _ home shell < <(chroot "$1" getent passwd edge-runtime) && [ "$home" = /var/lib/edge-runtime ] && [ "$uid" -lt 1000 ] && [[ "$shell" == */nologin ]]' _ "$chroot_dir"
check "group edge-runtime" in_root getent group edge-runtime
for d in /var/lib/edge-runtime /var/lib/edge-runtime/models /var/cache/edge-runtime /var/cache/edge-runtime/adapters; do
  check "directory $d is edge-runtime:edge-runtime 750" bash -c '[ "$(chroot "$1" stat -c "%U:%G %a" "$2")" = "edge-runtime:edge-runtime 750" ]' _ "$chroot_dir" "$d"
done
check "socket enabled (sockets.target.wants)" test -L "$chroot_dir/etc/systemd/system/sockets.target.wants/edge-runtime.socket"
check "fine-tune timer enabled (timers.target.wants)" test -L "$chroot_dir/etc/systemd/system/timers.target.wants/edge-runtime-finetune.timer"
check "service itself not enabled (socket-activated)" test ! -e "$chroot_dir/etc/systemd/system/multi-user.target.wants/edge-runtime.service"

# Upgrade with a locally edited conffile: dpkg must keep the edit (the packaged file is unchanged).
echo "# local edit by install-test" >> "$chroot_dir/etc/edge-runtime/config.toml"
mkdir -p "$chroot_dir/var/lib/edge-runtime/models/kept"
echo state > "$chroot_dir/var/lib/edge-runtime/models/kept/marker"
check "upgrade to v2 with dpkg -i" bash -c 'chroot "$1" env DEBIAN_FRONTEND=noninteractive dpkg -i /tmp/v2.deb </dev/null' _ "$chroot_dir"
check "v2 installed" bash -c '[ "$(chroot "$1" dpkg-query -W -f="\${Status} \${Version}" edge-runtime)" = "install ok installed $2" ]' _ "$chroot_dir" "$v2"
check "edited conffile kept on upgrade" grep -qx "# local edit by install-test" "$chroot_dir/etc/edge-runtime/config.toml"
check "no .dpkg-dist/.dpkg-new left" bash -c '! ls "$1"/etc/edge-runtime/*.dpkg-* 2>/dev/null | grep -q .' _ "$chroot_dir"
check "state kept on upgrade" test -f "$chroot_dir/var/lib/edge-runtime/models/kept/marker"

# --- 4. a booted systemd: socket activation and a request through the socket ----------------
if [ "$boot" -eq 1 ]; then
  boot_checks
fi

# --- 3b. remove and purge ------------------------------------------------------------------
check "dpkg -r" in_root dpkg -r edge-runtime
check "after -r: status config-files" bash -c '[ "$(chroot "$1" dpkg-query -W -f="\${Status}" edge-runtime)" = "deinstall ok config-files" ]' _ "$chroot_dir"
check "after -r: config kept" grep -qx "# local edit by install-test" "$chroot_dir/etc/edge-runtime/config.toml"
check "after -r: binaries gone" test ! -e "$chroot_dir/usr/bin/edgectl" -a ! -e "$chroot_dir/usr/sbin/edge-runtimed"
check "after -r: units gone" bash -c '! ls "$1"/usr/lib/systemd/system/edge-runtime* 2>/dev/null | grep -q .' _ "$chroot_dir"
check "after -r: state kept" test -f "$chroot_dir/var/lib/edge-runtime/models/kept/marker"
check "after -r: user kept" in_root getent passwd edge-runtime
check "dpkg -P" in_root dpkg -P edge-runtime
check "after -P: package unknown to dpkg" bash -c '! chroot "$1" dpkg-query -W -f="\${Status}" edge-runtime 2>/dev/null | grep -q installed' _ "$chroot_dir"
for d in /etc/edge-runtime /var/lib/edge-runtime /var/cache/edge-runtime; do
  check "after -P: $d gone" test ! -e "$chroot_dir$d"
done
check "after -P: user gone" bash -c '! chroot "$1" getent passwd edge-runtime' _ "$chroot_dir"
check "after -P: group gone" bash -c '! chroot "$1" getent group edge-runtime' _ "$chroot_dir"
check "after -P: no enable/mask links left" bash -c '! find "$1/etc/systemd/system" -name "edge-runtime*" | grep .' _ "$chroot_dir"
check "after -P: no deb-systemd-helper state left" bash -c '! find "$1/var/lib/systemd/deb-systemd-helper-enabled" "$1/var/lib/systemd/deb-systemd-helper-masked" -name "*edge-runtime*" 2>/dev/null | grep .' _ "$chroot_dir"
check "reinstall after purge works (user recreated)" bash -c 'chroot "$1" dpkg -i /tmp/v2.deb >/dev/null && chroot "$1" getent passwd edge-runtime >/dev/null' _ "$chroot_dir"

finish

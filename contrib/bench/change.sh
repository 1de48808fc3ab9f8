#!/bin/bash
# What one ordinary reprepro change costs at a WAN round trip: a few new packages and their
# index files, pushed to a mirror that already has the rest. Times outsftphook, reprepro's
# reference hook (examples/outsftphook.py) and rsync of the whole tree, next to `ssh true`.
#
#   sudo contrib/bench/change.sh          (after: cargo build --release --bins --examples)
#
# Sets up on 127.0.0.1 a private sshd, a delay proxy (BENCH_ONE_WAY_MS, default 25: a 50 ms
# round trip) and a reprepro repository of BENCH_PACKAGES (1000) packages, seeds the mirror
# (on tmpfs, see lib.sh), then adds BENCH_NEW (3) packages with an outhook that leaves the
# log pending. Each run starts from the seeded mirror and pushes that one change; every
# result is checked against the local tree. BENCH_REPEAT (3) runs per tool, all printed.
# REFERENCE_HOOK as in peers.sh; BENCH_KEEP=1 keeps the temp dir.
set -eu
. "$(dirname "$0")/lib.sh"

N=${BENCH_PACKAGES:-1000}
NEW=${BENCH_NEW:-3}
ONE_WAY=${BENCH_ONE_WAY_MS:-25}
REPEAT=${BENCH_REPEAT:-3}
CODENAME=bench

bench_init
note "making $N packages and the repository"
make_debs "$BENCH_TMP/debs" "$N"
REPO=$BENCH_TMP/repo
make_repo "$REPO" "$CODENAME" "$BENCH_TMP/debs"
start_sshd
start_proxy "$ONE_WAY"

# ssh through the proxy by a Host alias, for the reference hook (which runs plain `ssh`)
# and rsync alike.
h=$BENCH_TMP/home
SSH_CFG=$(ssh_alias_home "$h" "$PROXY_PORT")

REF_DIR=$BENCH_TMP/refhook
ref_src=${REFERENCE_HOOK:-/usr/share/doc/reprepro/examples/outsftphook.py}
mkdir -p "$REF_DIR"
HAVE_REF=yes
cp "${ref_src%.gz}" "$(dirname "$ref_src")/sftp.py" "$REF_DIR/" 2>/dev/null || HAVE_REF=

# The mirror before the change.
SEED=$REMOTE_ROOT/seed
mkdir -p "$SEED"
printf 'servername bench\nsshcommand ssh -F %s\ntargetdir %s\n' "$SSH_CFG" "$SEED" \
    > "$REPO/conf/outsftphook.conf"
log=$(write_outlog "$REPO" "$CODENAME")
"$HOOK" --basedir "$REPO" --ignore-pending "$log" >/dev/null 2>&1 || die "seeding the mirror failed"

# The change: NEW packages, each in a new pool directory; the outhook leaves its log.
printf '#!/bin/sh\nexit 0\n' > "$BENCH_TMP/pending.sh"
chmod +x "$BENCH_TMP/pending.sh"
printf 'outhook %s\n' "$BENCH_TMP/pending.sh" > "$REPO/conf/options"
rm -f "$REPO"/logs/*
mkdir -p "$BENCH_TMP/new"
for i in $(seq "$NEW"); do
    p=$BENCH_TMP/new/src/znew$i
    mkdir -p "$p/DEBIAN" "$p/usr/share/znew$i"
    printf 'Package: znew%s\nVersion: 1.0\nArchitecture: amd64\nSection: misc\nPriority: optional\nMaintainer: Bench <bench@example.org>\nDescription: new package %s\n' \
        "$i" "$i" > "$p/DEBIAN/control"
    head -c 12000 /dev/urandom > "$p/usr/share/znew$i/payload"
    dpkg-deb --root-owner-group -Zgzip -b "$p" "$BENCH_TMP/new/znew${i}_1.0_amd64.deb" >/dev/null
done
reprepro -b "$REPO" --silent includedeb "$CODENAME" "$BENCH_TMP/new"/*.deb || die "includedeb failed"
LOG=$(ls "$REPO"/logs/*.outlog)
cp "$LOG" "$BENCH_TMP/change.outlog"
want=$(cd "$REPO" && find pool "dists/$CODENAME" -type f -printf '%P %s\n' | wc -l)

# One push of the change to a copy of the seeded mirror; prints its wall seconds.
push() {
    local tool=$1 remote t0 t1 got
    remote=$(remote_dir)
    cp -a "$SEED/." "$remote/"
    cp "$BENCH_TMP/change.outlog" "$LOG"
    rm -f "${LOG%.outlog}.done"
    t0=$(date +%s.%N)
    case $tool in
    outsftphook)
        printf 'servername bench\nsshcommand ssh -F %s\ntargetdir %s\n' "$SSH_CFG" "$remote" \
            > "$REPO/conf/outsftphook.conf"
        "$HOOK" --basedir "$REPO" --ignore-pending "$LOG" >"$BENCH_TMP/run.out" 2>&1
        ;;
    reference)
        printf 'servername bench\nusername root\ntargetdir %s/\n' "$remote" > "$REPO/conf/outsftphook.conf"
        env PATH="$h/bin:$PATH" HOME="$h" REPREPRO_OUT_DIR="$REPO" REPREPRO_LOG_DIR="$REPO/logs" \
            REPREPRO_CONFIG_DIR="$REPO/conf" python3 "$REF_DIR/outsftphook.py" "$LOG" >"$BENCH_TMP/run.out" 2>&1
        ;;
    rsync)
        (cd "$REPO" && rsync -a -e "ssh -F $SSH_CFG" pool dists "bench:$remote/") >"$BENCH_TMP/run.out" 2>&1
        ;;
    esac || { cat "$BENCH_TMP/run.out" >&2; die "$tool failed"; }
    t1=$(date +%s.%N)
    got=$(find "$remote/pool" "$remote/dists/$CODENAME" -type f | wc -l)
    [ "$got" = "$want" ] || die "$tool: the mirror has $got files, not $want"
    diff -r "$REPO/pool" "$remote/pool" >/dev/null || die "$tool: the pool differs"
    diff -r "$REPO/dists/$CODENAME" "$remote/dists/$CODENAME" >/dev/null || die "$tool: the dists differ"
    rm -rf "$remote"
    awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }'
}

TOOLS="outsftphook ${HAVE_REF:+reference} rsync"
command -v rsync >/dev/null || TOOLS=${TOOLS% rsync}
echo "outsftphook $HOOK_INFO"
echo "$(nproc) CPUs: $(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'); remote trees on $REMOTE_KIND"
echo "change: $NEW new packages of 12 kB in new pool directories and their index files ($(grep -c . "$BENCH_TMP/change.outlog") outlog lines), to a mirror of $N packages; round trip $((2 * ONE_WAY)) ms ($PROXY_KIND)"
printf '%-14s' "ssh true"
for i in $(seq "$REPEAT"); do printf ' %6s' "$(time_ssh_true "$PROXY_PORT")"; done
echo
for t in $TOOLS; do
    printf '%-14s' "$t"
    for i in $(seq "$REPEAT"); do printf ' %6s' "$(push "$t")"; done
    echo
done
[ -n "$HAVE_REF" ] || echo "(no reference hook at ${ref_src%.gz}: set REFERENCE_HOOK)"

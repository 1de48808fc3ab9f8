#!/bin/bash
# What real apt clients see while outsftphook pushes a change that replaces and removes
# packages, with deletions carried out at once (`keepdeleted 0`, as before issue 14) and
# held back (the default). Counts what apt reports; no timing is judged.
#
#   sudo contrib/bench/apt-during-push.sh      (after: cargo build --release --bins --examples)
#
# Sets up on 127.0.0.1 a private sshd, a delay proxy (BENCH_ONE_WAY_MS, default 25: a 50 ms
# round trip) and a reprepro repository of BENCH_PACKAGES (1000) packages, and seeds a
# mirror with it. The change: BENCH_REPLACED (100) packages get a new version, BENCH_REMOVED
# (100) others are removed (two reprepro commands whose logs stay pending). Each run starts
# from a copy of the seeded mirror with two fresh apt clients that have updated against it
# (all apt state private, as in tests/integration/apt.rs), starts the push
# (`outsftphook --pending`) and, until it ends (at most BENCH_MAX_ROUNDS, 50, rounds),
# repeats one round:
#   update   the first client runs `apt-get update`;
#   fresh    it downloads the sample packages (BENCH_SAMPLE, 10, of the replaced and as
#            many of the removed) at the versions its lists now name;
#   stale    the second client, which never updates again (a user who ran `apt-get update`
#            before the push), downloads the sample at the versions it listed before.
# One more round runs once the push has ended ("after"). Every push is checked with
# `outsftphook verify`. BENCH_REPEAT (5) runs per setting, interleaved; the table shows
# medians and sums over the runs, the per-run figures go to stderr (BENCH_SHOW=1: apt's
# output of each failed command too). BENCH_KEEPDELETED ("0 default") lists the settings;
# BENCH_KEEP=1 keeps the temp dir; HOOK=/path/to/outsftphook measures another binary.
#
# Counted per apt command: runs, failed (exit status not 0), E: and W: lines, and among
# the E: lines those of an index that disagrees with its Release ("Hash Sum mismatch",
# "File has unexpected size") and those of a missing file ("File not found" from the file:
# method, "404  Not Found" from http). A mismatch in a download (seen once in ~40 runs with
# keepdeleted 0, its output not kept) is most likely a .deb deleted while apt fetched it.
set -eu
. "$(dirname "$0")/lib.sh"

N=${BENCH_PACKAGES:-1000}
REPLACED=${BENCH_REPLACED:-100}
REMOVED=${BENCH_REMOVED:-100}
SAMPLE=${BENCH_SAMPLE:-10}
ONE_WAY=${BENCH_ONE_WAY_MS:-25}
REPEAT=${BENCH_REPEAT:-5}
MAX_ROUNDS=${BENCH_MAX_ROUNDS:-50}
SETTINGS=${BENCH_KEEPDELETED:-0 default}
CODENAME=bench

command -v apt-get >/dev/null || die "apt-get is not installed"
[ $((REPLACED + REMOVED)) -le "$N" ] || die "BENCH_REPLACED + BENCH_REMOVED > BENCH_PACKAGES"
[ "$SAMPLE" -le "$REPLACED" ] && [ "$SAMPLE" -le "$REMOVED" ] || die "BENCH_SAMPLE is too large"

# --- the apt client ---------------------------------------------------------------------
# A private apt client in DIR whose one source is `file:MIRROR CODENAME main`, the options
# of tests/integration/apt.rs: the configuration comes through APT_CONFIG, so that nothing
# of /etc/apt is read (Docker images put Post-Invoke commands in /etc/apt/apt.conf.d), and
# lists, caches, logs and the (empty) dpkg status are in DIR; no locks are taken.
apt_client() {
    local dir=$1 mirror=$2 codename=$3 d
    for d in etc/apt.conf.d etc/sources.list.d etc/preferences.d etc/trusted.gpg.d \
        etc/auth.conf.d state/lists/partial cache/archives/partial log download; do
        mkdir -p "$dir/$d"
    done
    : > "$dir/state/status"
    echo "deb [trusted=yes] file:$mirror $codename main" > "$dir/etc/sources.list"
    cat > "$dir/apt.conf" <<EOF
Dir "$dir/";
Dir::State "$dir/state/";
Dir::State::status "$dir/state/status";
Dir::Cache "$dir/cache/";
Dir::Etc "$dir/etc/";
Dir::Log "$dir/log/";
Debug::NoLocking "true";
APT::Architecture "amd64";
APT::Architectures { "amd64"; };
Acquire::Languages "none";
APT::Get::AllowUnauthenticated "true";
APT::Sandbox::User "root";
APT::Color "false";
EOF
}

# Runs `apt-get ARGS` as the client in DIR (in DIR/download, emptied first), its output
# into OUT; returns apt-get's status.
apt_get() {
    local dir=$1 out=$2
    shift 2
    rm -f "$dir"/download/*
    (cd "$dir/download" && APT_CONFIG="$dir/apt.conf" LC_ALL=C apt-get -q -y "$@") >"$out" 2>&1
}

# "NAME=VERSION ..." of the packages NAMES as the client in DIR lists them now.
listed_versions() {
    local dir=$1
    shift
    APT_CONFIG="$dir/apt.conf" LC_ALL=C apt-cache madison "$@" 2>/dev/null |
        awk -F'|' '{ gsub(/ /, ""); printf "%s=%s ", $1, $2 }'
}

# Adds the counts of apt's output OUT, status RC, to the counters of KEY.
declare -A COUNT
count() {
    local key=$1 out=$2 rc=$3 e w mm nf
    e=$(grep -c '^E:' "$out" || true)
    w=$(grep -c '^W:' "$out" || true)
    mm=$(grep '^E:' "$out" | grep -c -e 'Hash Sum mismatch' -e 'unexpected size' || true)
    nf=$(grep '^E:' "$out" | grep -c -e 'File not found' -e '404  *Not Found' || true)
    COUNT[$key,runs]=$((${COUNT[$key,runs]:-0} + 1))
    COUNT[$key,failed]=$((${COUNT[$key,failed]:-0} + (rc != 0)))
    COUNT[$key,E]=$((${COUNT[$key,E]:-0} + e))
    COUNT[$key,W]=$((${COUNT[$key,W]:-0} + w))
    COUNT[$key,mismatch]=$((${COUNT[$key,mismatch]:-0} + mm))
    COUNT[$key,notfound]=$((${COUNT[$key,notfound]:-0} + nf))
    if [ "$rc" != 0 ] && [ -n "${BENCH_SHOW:-}" ]; then
        sed "s/^/    $key: /" "$out" | grep -v -e ' Get:' -e ' Ign:' -e 'Reading package' >&2
    fi
}

# One round of both clients (see the top); PHASE is "during" or "after".
round() {
    local phase=$1 rc out=$BENCH_TMP/apt.out
    rc=0
    apt_get "$FRESH" "$out" update || rc=$?
    count "$phase,update" "$out" "$rc"
    rc=0
    # shellcheck disable=SC2046  # one word per package
    apt_get "$FRESH" "$out" download $(listed_versions "$FRESH" $SAMPLE_NAMES) || rc=$?
    count "$phase,fresh" "$out" "$rc"
    rc=0
    apt_get "$STALE" "$out" download $STALE_TARGETS || rc=$?
    count "$phase,stale" "$out" "$rc"
}

# --- the repository and the change --------------------------------------------------------
bench_init
note "making $N packages and the repository"
make_debs "$BENCH_TMP/debs" "$N"
REPO=$BENCH_TMP/repo
make_repo "$REPO" "$CODENAME" "$BENCH_TMP/debs"
start_sshd
start_proxy "$ONE_WAY"
SSH_CFG=$(ssh_alias_home "$BENCH_TMP/home" "$PROXY_PORT")

# conf/outsftphook.conf for a push to REMOTE with keepdeleted SETTING ("default": no line).
conf_for() {
    local remote=$1 setting=$2
    printf 'servername bench\nsshcommand ssh -F %s\ntargetdir %s\n' "$SSH_CFG" "$remote"
    [ "$setting" = default ] || echo "keepdeleted $setting"
}
for s in $SETTINGS; do
    [ "$s" = default ] || hook_accepts "$REPO" "keepdeleted $s" ||
        die "$HOOK does not accept 'keepdeleted $s'"
done
if hook_accepts "$REPO" "keepdeleted 0"; then
    DEFAULT_NOTE=""
    DEFAULT_KEEP=$("$HOOK" --help 2>&1 | tr -s ' \n' ' ' | grep -o 'default: [0-9]*[smhd]; conf: keepdeleted' |
        awk '{ print $2 }' | tr -d ';')
else
    DEFAULT_NOTE="(this binary has no keepdeleted: its default deletes at once)"
    DEFAULT_KEEP=none
fi

SEED=$REMOTE_ROOT/seed
mkdir -p "$SEED"
conf_for "$SEED" 0 | grep -v keepdeleted > "$REPO/conf/outsftphook.conf"
log=$(write_outlog "$REPO" "$CODENAME")
"$HOOK" --basedir "$REPO" --ignore-pending "$log" >"$BENCH_TMP/seed.out" 2>&1 ||
    { cat "$BENCH_TMP/seed.out" >&2; die "seeding the mirror failed"; }
rm -f "$REPO"/logs/*

# The names of make_debs, in order: the first REPLACED get 1.1, the next REMOVED go.
letters=abcdefghijklmnopqrstuvwxyz
name_of() { echo "${letters:$(($1 % 26)):1}bench$1"; }
mkdir -p "$BENCH_TMP/new"
pids=()
for i in $(seq "$REPLACED"); do
    name=$(name_of "$i")
    p=$BENCH_TMP/new/src/$name
    mkdir -p "$p/DEBIAN" "$p/usr/share/$name"
    printf 'Package: %s\nVersion: 1.1\nArchitecture: amd64\nSection: misc\nPriority: optional\nMaintainer: Bench <bench@example.org>\nDescription: benchmark package %s, new version\n' \
        "$name" "$i" > "$p/DEBIAN/control"
    head -c $((2000 + i * 37 % 15000)) /dev/urandom > "$p/usr/share/$name/payload"
    dpkg-deb --root-owner-group -Zgzip -b "$p" "$BENCH_TMP/new/${name}_1.1_amd64.deb" >/dev/null &
    pids+=($!)
    if [ ${#pids[@]} = 8 ]; then wait_all "${pids[@]}"; pids=(); fi
done
wait_all "${pids[@]}"
rm -rf "$BENCH_TMP/new/src"
removed=()
for i in $(seq $((REPLACED + 1)) $((REPLACED + REMOVED))); do removed+=("$(name_of "$i")"); done
SAMPLE_NAMES=""
STALE_TARGETS=""
for i in $(seq "$SAMPLE"); do
    SAMPLE_NAMES+="$(name_of "$i") $(name_of $((REPLACED + i))) "
    STALE_TARGETS+="$(name_of "$i")=1.0 $(name_of $((REPLACED + i)))=1.0 "
done

printf '#!/bin/sh\nexit 0\n' > "$BENCH_TMP/pending.sh"
chmod +x "$BENCH_TMP/pending.sh"
printf 'outhook %s\n' "$BENCH_TMP/pending.sh" > "$REPO/conf/options"
reprepro -b "$REPO" --silent includedeb "$CODENAME" "$BENCH_TMP/new"/*.deb || die "includedeb failed"
reprepro -b "$REPO" --silent remove "$CODENAME" "${removed[@]}" || die "remove failed"
mkdir -p "$BENCH_TMP/change"
cp "$REPO"/logs/*.outlog "$BENCH_TMP/change/"
[ "$(ls "$BENCH_TMP/change" | wc -l)" = 2 ] || die "expected 2 outlogs of the change"
LINES=$(cat "$BENCH_TMP/change"/*.outlog | grep -c .)
grep -h '^POOLDELETE' "$BENCH_TMP/change"/*.outlog | cut -f 2 > "$BENCH_TMP/deleted" || true
DELETES=$(grep -c . "$BENCH_TMP/deleted" || true)

# --- one run ------------------------------------------------------------------------------
# Pushes the change with keepdeleted SETTING while the clients go round; sets RUN_RESULT to
# "push_seconds rounds_during deleted_files_left" and adds to COUNT under
# "SETTING,PHASE,CLIENT". (Not to be called as $(...): the counts would stay in the subshell.)
declare -A RESULT   # setting -> lines "push rounds" of each run
run_one() {
    local setting=$1 rep=$2 remote t0 t1 rounds=0 rc key
    remote=$(remote_dir)
    cp -a "$SEED/." "$remote/"
    conf_for "$remote" "$setting" > "$REPO/conf/outsftphook.conf"
    rm -f "$REPO"/logs/*
    cp "$BENCH_TMP/change"/*.outlog "$REPO/logs/"
    FRESH=$BENCH_TMP/clients/$rep-$setting-fresh
    STALE=$BENCH_TMP/clients/$rep-$setting-stale
    for c in "$FRESH" "$STALE"; do
        rm -rf "$c"
        apt_client "$c" "$remote" "$CODENAME"
        apt_get "$c" "$BENCH_TMP/apt.out" update && ! grep -q -e '^E:' -e '^W:' "$BENCH_TMP/apt.out" ||
            { cat "$BENCH_TMP/apt.out" >&2; die "a client's first update failed"; }
    done
    apt_get "$STALE" "$BENCH_TMP/apt.out" download $STALE_TARGETS ||
        { cat "$BENCH_TMP/apt.out" >&2; die "a download before the push failed"; }
    sync
    rm -f "$BENCH_TMP/push.rc"
    t0=$(date +%s.%N)
    ( rc=0; "$HOOK" --basedir "$REPO" --pending >"$BENCH_TMP/push.out" 2>&1 || rc=$?
      date +%s.%N > "$BENCH_TMP/push.end"; echo "$rc" > "$BENCH_TMP/push.rc" ) &
    local push_pid=$!
    while [ ! -e "$BENCH_TMP/push.rc" ] && [ "$rounds" -lt "$MAX_ROUNDS" ]; do
        rounds=$((rounds + 1))
        round "$setting,during"
    done
    wait "$push_pid" || true
    rc=$(cat "$BENCH_TMP/push.rc")
    t1=$(cat "$BENCH_TMP/push.end")
    [ "$rc" = 0 ] || { cat "$BENCH_TMP/push.out" >&2; die "the push exited $rc"; }
    round "$setting,after"
    "$HOOK" --basedir "$REPO" verify >"$BENCH_TMP/verify.out" 2>&1 ||
        { cat "$BENCH_TMP/verify.out" >&2; die "verify after the push with keepdeleted $setting failed"; }
    local held=0 f
    while read -r f; do
        [ ! -e "$remote/$f" ] || held=$((held + 1))
    done < "$BENCH_TMP/deleted"
    rm -rf "$remote"
    RUN_RESULT=$(awk -v a="$t0" -v b="$t1" -v r="$rounds" -v h="$held" 'BEGIN { printf "%.2f %d %d", b - a, r, h }')
}

# Per-run snapshot of the counters, so that medians can be taken over runs.
declare -A PERRUN   # setting,phase,client,metric -> "v1 v2 ..."
METRICS="runs failed E W mismatch notfound"
snapshot() {
    local setting=$1 k m
    for k in during,update during,fresh during,stale after,update after,fresh after,stale; do
        for m in $METRICS; do
            PERRUN[$setting,$k,$m]+="${COUNT[$setting,$k,$m]:-0} "
            COUNT[$setting,$k,$m]=0
        done
    done
}
median() {
    tr ' ' '\n' | grep . | sort -n | awk '{ v[NR] = $1 } END { if (NR) print v[int((NR + 1) / 2)]; else print "-" }'
}

for rep in $(seq "$REPEAT"); do
    for s in $SETTINGS; do
        run_one "$s" "$rep"
        RESULT[$s]+="$RUN_RESULT"$'\n'
        snapshot "$s"
        read -r secs rounds held <<< "$RUN_RESULT"
        note "run $rep keepdeleted $s: push $secs s, $rounds rounds during it, $held of the $DELETES deleted pool files still there after it; failed/mismatch/notfound:$(
            for k in during,update during,fresh during,stale after,update after,fresh after,stale; do
                f=${PERRUN[$s,$k,failed]% }; mm=${PERRUN[$s,$k,mismatch]% }; nf=${PERRUN[$s,$k,notfound]% }
                printf ' %s %s/%s/%s' "$k" "${f##* }" "${mm##* }" "${nf##* }"
            done)"
    done
done

# --- the table ----------------------------------------------------------------------------
echo
echo "outsftphook $HOOK_INFO"
echo "$(nproc) CPUs: $(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'); remote trees on $REMOTE_KIND; $(apt-get --version | head -n 1)"
echo "mirror of $N packages; change: $REPLACED replaced by a new version, $REMOVED removed ($LINES outlog lines, $DELETES POOLDELETE); round trip $((2 * ONE_WAY)) ms ($PROXY_KIND)"
echo "each round: update = apt-get update; fresh = download of $((2 * SAMPLE)) sample packages at the versions just listed;"
echo "stale = the same $((2 * SAMPLE)) at the versions listed before the push, by a client that does not update again"
echo "medians of $REPEAT runs, at most $MAX_ROUNDS rounds during a push, then one round after it"
[ -z "$DEFAULT_NOTE" ] || echo "$DEFAULT_NOTE"
echo
echo "per row: medians over the runs of the counts in one run; then the sums over all runs (a rare event has median 0)"
echo
fmt='%-17s %-7s %-6s %5s %7s %4s %4s %9s %10s  |%7s %9s %10s\n'
printf "$fmt" keepdeleted phase client "runs" "failed" "E:" "W:" "mismatch" "not found" "failed" "mismatch" "not found"
printf '%s\n' "$(printf '%.0s-' $(seq 106))"
for s in $SETTINGS; do
    label="keepdeleted $s"
    [ "$s" = default ] && label="default (${DEFAULT_KEEP:-?})"
    push=$(printf '%s' "${RESULT[$s]}" | awk '{ print $1 }' | median)
    rounds=$(printf '%s' "${RESULT[$s]}" | awk '{ print $2 }' | median)
    held=$(printf '%s' "${RESULT[$s]}" | awk '{ print $3 }' | median)
    for k in during,update during,fresh during,stale after,update after,fresh after,stale; do
        row=()
        for m in $METRICS; do row+=("$(echo "${PERRUN[$s,$k,$m]}" | median)"); done
        for m in failed mismatch notfound; do
            row+=("$(echo "${PERRUN[$s,$k,$m]}" | tr ' ' '\n' | awk '{ t += $1 } END { print t + 0 }')")
        done
        printf "$fmt" "$label" "${k%,*}" "${k#*,}" "${row[@]}"
        label=""
    done
    echo "  push $push s, $rounds rounds during it; after it, $held of the $DELETES deleted pool files still there"
    echo
done

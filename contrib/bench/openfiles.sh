#!/bin/bash
# How does `maxopenfiles` (remote files open at once) change the wall time of a full push?
# Sets up, on 127.0.0.1, a private sshd, delay proxies in front of it (this kernel has no
# netem) and a reprepro repository of N small packages; then times outsftphook pushing all
# of it (pool + dists, as after a first export) to an empty remote dir, for each setting.
#
#   sudo contrib/bench/openfiles.sh          (after: cargo build --release)
#
# Environment: BENCH_PACKAGES (default 1000), BENCH_OPENFILES (default "1 4 8 16 32 64 128
# 256"), BENCH_REPEAT (default 2; the best run counts), BENCH_ONCE_ABOVE (default 30: a run
# slower than this many seconds is not repeated, it is latency-bound and its noise small;
# this keeps the whole at a few minutes), BENCH_CONNECTIONS (default 1: the `connections`
# line, for builds that know it; "default" writes none), BENCH_KEEP=1 keeps the temp dir,
# HOOK=/path/to/outsftphook measures another binary.
set -eu
. "$(dirname "$0")/lib.sh"

N=${BENCH_PACKAGES:-1000}
OPENFILES=${BENCH_OPENFILES:-1 4 8 16 32 64 128 256}
REPEAT=${BENCH_REPEAT:-2}
ONCE_ABOVE=${BENCH_ONCE_ABOVE:-30}
CONNECTIONS=${BENCH_CONNECTIONS:-1}
CODENAME=bench

bench_init
started=$(date +%s)

note "making $N packages and the repository"
make_debs "$BENCH_TMP/debs" "$N"
REPO=$BENCH_TMP/repo
make_repo "$REPO" "$CODENAME" "$BENCH_TMP/debs"
pool_files=$(cd "$REPO" && find pool -type f | wc -l)
dist_files=$(cd "$REPO" && find "dists/$CODENAME" -type f | wc -l)
files=$((pool_files + dist_files))
bytes=$(cd "$REPO" && find pool "dists/$CODENAME" -type f -printf '%s\n' | awk '{ s += $1 } END { print s }')
[ "$pool_files" = "$N" ] || die "the pool has $pool_files files, not $N"

# Newer builds may spread uploads over several ssh connections, each with maxopenfiles
# files open. To measure maxopenfiles alone we pin one connection where that setting exists.
CONN_LINES=()
if [ "$CONNECTIONS" = default ]; then
    CONN_INFO="connections: the binary's default"
elif hook_accepts "$REPO" "connections $CONNECTIONS"; then
    CONN_LINES=("connections $CONNECTIONS")
    CONN_INFO="connections $CONNECTIONS"
else
    CONN_INFO="connections: setting unknown to this binary (one connection)"
fi

start_sshd
# Three ways to the same sshd: directly, through the proxy without delay (its own cost),
# and through the proxy with 25 ms each way (50 ms round trip).
COLS=(direct 0ms 50ms)
declare -A PORT
PORT[direct]=$SSHD_PORT
start_proxy 0;  PORT[0ms]=$PROXY_PORT
start_proxy 25; PORT[50ms]=$PROXY_PORT

declare -A SSH_TRUE
for c in "${COLS[@]}"; do
    time_ssh_true "${PORT[$c]}" >/dev/null   # the first connection warms caches
    SSH_TRUE[$c]=$(time_ssh_true "${PORT[$c]}") || exit 1
done

# One push of everything to a fresh, empty remote dir; prints its wall seconds.
push() {
    local col=$1 maxopen=$2 remote log secs got_pool got_dists run="$1/$2"
    remote=$(remote_dir)
    write_conf "$REPO" "${PORT[$col]}" "$remote" "$maxopen" ${CONN_LINES[@]+"${CONN_LINES[@]}"}
    log=$(write_outlog "$REPO" "$CODENAME")
    secs=$(timed_push "$REPO" "$log") || exit 1
    # Exit 0 is not enough: everything must be there.
    got_pool=$(find "$remote/pool" -type f | wc -l)
    got_dists=$(find "$remote/dists/$CODENAME" -type f | wc -l)
    [ "$got_pool" = "$pool_files" ] || die "run $run: remote pool has $got_pool files, not $pool_files"
    [ "$got_dists" = "$dist_files" ] || die "run $run: remote dists have $got_dists files, not $dist_files"
    [ -e "${log%.outlog}.done" ] || die "run $run: $log was not marked done"
    rm -rf "$remote"
    echo "$secs"
}

# Repeats go round the whole grid, not back to back, so a slow moment does not hit one
# point twice.
declare -A BEST
for rep in $(seq "$REPEAT"); do
    for m in $OPENFILES; do
        for c in "${COLS[@]}"; do
            prev=${BEST[$c,$m]:-}
            if [ -n "$prev" ] && awk -v p="$prev" -v l="$ONCE_ABOVE" 'BEGIN { exit !(p > l) }'; then
                continue
            fi
            s=$(push "$c" "$m") || exit 1
            note "round $rep  maxopenfiles $m  $c: $s s"
            if [ -z "$prev" ] || awk -v s="$s" -v p="$prev" 'BEGIN { exit !(s < p) }'; then
                BEST[$c,$m]=$s
            fi
        done
    done
done

echo
echo "outsftphook $HOOK_INFO; $CONN_INFO"
echo "$(nproc) CPUs: $(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), kernel $(uname -r); remote trees on $REMOTE_KIND"
echo "push of $files files ($pool_files pool, $dist_files dists; $((bytes / 1024)) KiB) to an empty dir on 127.0.0.1 via sshd/sftp-server;"
echo "best of $REPEAT (1 for runs over ${ONCE_ABOVE} s); 0ms and 50ms go through ${PROXY_KIND:-delayproxy.py}, 50ms = 25 ms each way"
echo "ssh 127.0.0.1 true: direct ${SSH_TRUE[direct]} s, 0ms ${SSH_TRUE[0ms]} s, 50ms ${SSH_TRUE[50ms]} s"
echo
printf '%12s | %8s %8s | %8s %8s | %8s %8s\n' maxopenfiles "direct s" files/s "0ms s" files/s "50ms s" files/s
printf '%12s-+-%17s-+-%17s-+-%17s\n' ------------ ----------------- ----------------- -----------------
for m in $OPENFILES; do
    line=$(printf '%12s |' "$m")
    for c in "${COLS[@]}"; do
        line+=$(awk -v s="${BEST[$c,$m]}" -v f="$files" 'BEGIN { printf " %8.2f %8.0f |", s, f / s }')
    done
    echo "${line% |}"
done
echo
note "done in $(( $(date +%s) - started )) s"

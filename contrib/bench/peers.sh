#!/bin/bash
# outsftphook next to its peers: the same pushes done by outsftphook, reprepro's reference
# hook (examples/outsftphook.py), OpenSSH sftp -b, rsync, lftp mirror -R and rclone sync,
# and next to the raw ssh channel (`ssh true`, `ssh 'cat >/dev/null'`), on one table.
#
#   sudo contrib/bench/peers.sh          (after: cargo build --release; ~10-15 minutes)
#
# Everything runs on 127.0.0.1: a private sshd, delay proxies in front of it (delayproxy.py,
# this kernel has no netem), each target a fresh empty directory. Workloads:
#   S  a reprepro repository of 1000 packages of 2-20 KB (random payload) + its dists
#   L  10 files of 40 MB of random data in the pool of an empty repository + its dists
# Links: 0ms (through the proxy without delay) and 50ms round trip (25 ms each way).
#
# Per row: wall seconds; MB/s (10^6 bytes) and files/s over that wall time; CPU seconds
# (user+sys of the tool and everything it started, leftovers included; on this machine, not
# the sshd's); peak RSS (largest single process of the tool: for the ssh-based ones that may
# be the ssh client); and the wall time over the floor, where floor = `ssh true` on that link
# + workload bytes / raw channel rate on that link (the rate from `ssh 'cat >/dev/null'` of
# the L bytes, minus its connection setup). Every push is checked (files and bytes on the
# remote); a wrong one is FAILED. Best of BENCH_REPEAT runs, 1 for runs over ONCE_ABOVE s.
#
# Not equal work: outsftphook also fsyncs the index files and sets mtimes and renames
# them into place (NAME.new); the reference hook renames but sets no times; rsync, lftp and
# rclone set times; sftp -b (no -p) does not. Default ssh is used everywhere (here its
# sntrup761 key exchange costs ~0.13 s CPU per connection); rclone has its own ssh client.
#
# A tool that is not installed is skipped (`apt-get install rsync lftp rclone` for them).
# Environment: BENCH_PACKAGES (1000), BENCH_LARGE_FILES (10), BENCH_LARGE_MB (40),
# BENCH_LINKS (one-way ms, "0 25"), BENCH_WORKLOADS ("S L"), BENCH_TOOLS (all: "true raw
# hook1 hook hook3 ref sftp rsync lftp rclone"; hook3 pushes to three mirrors, true3
# is its handshakes alone), BENCH_REPEAT (2), BENCH_ONCE_ABOVE (30),
# BENCH_TIMEOUT (300 s per run, then killed and marked TIMEOUT), REFERENCE_HOOK (path of
# outsftphook.py, sftp.py beside it; default reprepro's examples), BENCH_KEEP=1 keeps the
# temp dir, HOOK=/path/to/outsftphook measures another binary.
set -eu
. "$(dirname "$0")/lib.sh"

N=${BENCH_PACKAGES:-1000}
LARGE_FILES=${BENCH_LARGE_FILES:-10}
LARGE_MB=${BENCH_LARGE_MB:-40}
LINKS=${BENCH_LINKS:-0 25}
WORKLOADS=${BENCH_WORKLOADS:-S L}
TOOLS=${BENCH_TOOLS:-true raw hook1 hook hook3 ref sftp rsync lftp rclone}
REPEAT=${BENCH_REPEAT:-2}
ONCE_ABOVE=${BENCH_ONCE_ABOVE:-30}
TIMEOUT=${BENCH_TIMEOUT:-300}
CODENAME=bench
MEASURE=$BENCH_DIR/measure.py

bench_init
started=$(date +%s)

declare -A NAME=(
    [true]="ssh bench true"
    [true3]="3 x ssh bench true, at once"
    [raw]="ssh bench 'cat >/dev/null'"
    [hook1]="outsftphook connections 1"
    [hook]="outsftphook (defaults)"
    [hook3]="outsftphook, 3 mirrors"
    [ref]="reprepro outsftphook.py"
    [sftp]="sftp -b (mkdir+put)"
    [rsync]="rsync -a"
    [lftp]="lftp mirror -R -P8"
    [rclone]="rclone sync"
)
declare -A SKIP    # tool -> why it is not run at all
declare -A FAIL    # tool,workload,link -> why that cell failed (not run again)
declare -A BEST    # tool,workload,link -> "wall user sys maxrss_kb" of the fastest run

for t in $TOOLS; do
    [ -n "${NAME[$t]:-}" ] || die "unknown tool '$t' in BENCH_TOOLS"
done
for t in rsync lftp rclone sftp; do
    command -v "$t" >/dev/null || SKIP[$t]="$t is not installed"
done

# The reference hook: a copy (decompressed if need be) with its sftp.py beside it.
REF_DIR=$BENCH_TMP/refhook
mkdir -p "$REF_DIR"
ref_src=${REFERENCE_HOOK:-/usr/share/doc/reprepro/examples/outsftphook.py}
ref_copy() {   # FILE.py into REF_DIR from FILE.py or FILE.py.gz
    if [ -f "$1" ]; then cp "$1" "$REF_DIR/"; elif [ -f "$1.gz" ]; then
        gzip -dc "$1.gz" > "$REF_DIR/$(basename "$1")"; else return 1; fi
}
if ! ref_copy "${ref_src%.gz}"; then
    SKIP[ref]="no reference hook at ${ref_src%.gz}[.gz] (set REFERENCE_HOOK)"
elif ! ref_copy "$(dirname "$ref_src")/sftp.py"; then
    SKIP[ref]="no sftp.py beside ${ref_src%.gz}"
fi

# --- workloads --------------------------------------------------------------------------
# Each: REPO (for the hooks, via an outlog of everything), SRC (pool + dists only, hard
# links, for the other tools), ONE (all its bytes in one file, for the raw channel).
declare -A REPO SRC ONE FILES BYTES
sum_tree() {   # "files bytes" of the regular files under DIR
    find "$1" -type f -printf '%s\n' | awk '{ n++; s += $1 } END { printf "%d %d\n", n, s }'
}
finish_workload() {
    local w=$1 repo=$2
    REPO[$w]=$repo
    SRC[$w]=$BENCH_TMP/$w/src
    mkdir -p "${SRC[$w]}"
    cp -al "$repo/pool" "$repo/dists" "${SRC[$w]}/"
    read -r FILES[$w] BYTES[$w] < <(sum_tree "${SRC[$w]}")
    ONE[$w]=$BENCH_TMP/$w/all-bytes
    (cd "${SRC[$w]}" && find . -type f -print0 | sort -z | xargs -0 cat) > "${ONE[$w]}"
    [ "$(stat -c %s "${ONE[$w]}")" = "${BYTES[$w]}" ] || die "$w: concatenation has the wrong size"
    note "workload $w: ${FILES[$w]} files, ${BYTES[$w]} bytes"
}
for w in $WORKLOADS; do
    case $w in
    S)
        note "making $N packages and their repository"
        make_debs "$BENCH_TMP/S/debs" "$N"
        make_repo "$BENCH_TMP/S/repo" "$CODENAME" "$BENCH_TMP/S/debs"
        rm -rf "$BENCH_TMP/S/debs"
        finish_workload S "$BENCH_TMP/S/repo"
        ;;
    L)
        note "making $LARGE_FILES files of $LARGE_MB MB in an empty repository"
        r=$BENCH_TMP/L/repo
        mkdir -p "$r/conf" "$r/logs" "$r/pool/main/b/bigdata"
        printf 'Codename: %s\nArchitectures: amd64\nComponents: main\nDescription: outsftphook benchmark\n' \
            "$CODENAME" > "$r/conf/distributions"
        reprepro -b "$r" --silent export "$CODENAME" || die "reprepro export failed"
        for i in $(seq "$LARGE_FILES"); do
            head -c "${LARGE_MB}M" /dev/urandom > "$r/pool/main/b/bigdata/bigdata_$i.bin"
        done
        finish_workload L "$r"
        ;;
    *) die "unknown workload '$w' in BENCH_WORKLOADS (S, L)" ;;
    esac
done

# --- links ------------------------------------------------------------------------------
# Per link a proxy and a HOME whose ssh config knows `Host bench`. ssh reads the config of
# the passwd home, not $HOME, so the tools get `-F` and a PATH with an `ssh` that adds it
# (for the reference hook, which runs plain `ssh`). $HOME keeps lftp's and rclone's state.
start_sshd
declare -A PORT HOMEDIR CFG
for l in $LINKS; do
    start_proxy "$l"
    PORT[$l]=$PROXY_PORT
    h=$BENCH_TMP/home.$l
    CFG[$l]=$(ssh_alias_home "$h" "$PROXY_PORT")
    HOMEDIR[$l]=$h
    env HOME="$h" ssh -F "${CFG[$l]}" bench true || die "ssh bench through the ${l} ms proxy failed"
done

CONN1_INFO=""
if [ -n "${REPO[S]:-${REPO[L]:-}}" ] && ! hook_accepts "${REPO[S]:-${REPO[L]}}" "connections 1"; then
    CONN1_INFO=" (this binary has no 'connections': same as the defaults)"
fi

# --- one run ----------------------------------------------------------------------------
# Runs TOOL on workload W over link L into a fresh remote dir; prints "wall user sys rss"
# or fails with the reason on stdout.
run_one() {
    local t=$1 w=$2 l=$3 remote log cmd=() out=$BENCH_TMP/run.out got want rc
    local cfg=${CFG[$l]} src=${SRC[$w]} repo=${REPO[$w]}
    remote=$(remote_dir)
    case $t in
    true) cmd=(ssh -F "$cfg" bench true) ;;
    true3) cmd=(sh -c 'ssh -F "$1" bench true & ssh -F "$1" bench true & ssh -F "$1" bench true; wait' sh "$cfg") ;;
    raw) cmd=(sh -c 'exec ssh -F "$1" bench "cat >/dev/null" < "$2"' sh "$cfg" "${ONE[$w]}") ;;
    hook1 | hook)
        {
            echo "servername bench"
            echo "sshcommand ssh -F $cfg"
            echo "targetdir $remote"
            [ "$t" = hook ] || [ -n "$CONN1_INFO" ] || echo "connections 1"
        } > "$repo/conf/outsftphook.conf"
        log=$(write_outlog "$repo" "$CODENAME")
        cmd=("$HOOK" --basedir "$repo" --ignore-pending "$log")
        ;;
    hook3)
        # Three mirrors on the same link and server, each its own ssh connection(s) and
        # target; the switch together (the default).
        mkdir -p "$remote.b" "$remote.c"
        {
            echo "servername bench"
            echo "sshcommand ssh -F $cfg"
            echo "targetdir $remote"
            for m in b c; do
                echo "mirror $m"
                echo "targetdir $remote.$m"
            done
        } > "$repo/conf/outsftphook.conf"
        rm -f "$repo/logs/outsftphook.owner"
        log=$(write_outlog "$repo" "$CODENAME")
        cmd=("$HOOK" --basedir "$repo" --ignore-pending "$log")
        ;;
    ref)
        # As reprepro runs an outhook: its environment and the log as the only argument.
        printf 'servername bench\nusername root\ntargetdir %s/\n' "$remote" > "$repo/conf/outsftphook.conf"
        log=$(write_outlog "$repo" "$CODENAME")
        cmd=(env REPREPRO_OUT_DIR="$repo" REPREPRO_LOG_DIR="$repo/logs"
            REPREPRO_CONFIG_DIR="$repo/conf" python3 "$REF_DIR/outsftphook.py" "$log")
        ;;
    sftp)
        # Parents first; "-" lets the batch go on if a mkdir fails (it should not).
        (cd "$src" && find . -mindepth 1 -type d | sort | sed "s|^\.|-mkdir $remote|"
            find . -type f | sort | sed "s|^\./\(.*\)|put $src/\1 $remote/\1|") > "$BENCH_TMP/batch"
        cmd=(sftp -q -F "$cfg" -b "$BENCH_TMP/batch" bench)
        ;;
    rsync) cmd=(rsync -a -e "ssh -F $cfg" "$src/" "bench:$remote/") ;;
    lftp)
        cmd=(lftp -c "set sftp:connect-program 'ssh -a -x -F $cfg'; set net:max-retries 1;
            set net:timeout 30; set cmd:fail-exit yes; open -u root, sftp://bench;
            mirror -R --parallel=8 $src $remote")
        ;;
    rclone)
        cmd=(rclone --config "${HOMEDIR[$l]}/rclone.conf" sync "$src" ":sftp:$remote"
            --sftp-host 127.0.0.1 --sftp-port "${PORT[$l]}" --sftp-user root
            --sftp-key-file "$CLIENT_KEY" --sftp-shell-type none)
        ;;
    esac
    sync   # the last run's remote writes must not land in this one
    env HOME="${HOMEDIR[$l]}" PATH="${HOMEDIR[$l]}/bin:$PATH" \
        python3 "$MEASURE" "$BENCH_TMP/measure.out" "$TIMEOUT" "${cmd[@]}" \
        > "$out" 2>&1 </dev/null || { echo "measure.py failed"; return 1; }
    read -r wall user sys rss rc < "$BENCH_TMP/measure.out"
    if [ "$rc" = 124 ]; then
        echo "TIMEOUT after $TIMEOUT s"; rm -rf "$remote"; return 1
    elif [ "$rc" != 0 ]; then
        echo "exit $rc: $(grep -v '^ *$' "$out" | tail -n 2 | tr '\n' ' ' | cut -c 1-160)"
        rm -rf "$remote"; return 1
    fi
    case $t in
    true | true3 | raw) ;;
    *)
        got=$(sum_tree "$remote")
        want="${FILES[$w]} ${BYTES[$w]}"
        if [ "$got" != "$want" ]; then
            echo "remote has $got (files bytes), not $want"; rm -rf "$remote"; return 1
        fi
        ;;
    esac
    if [ "$t" = hook3 ]; then
        for m in b c; do
            got=$(sum_tree "$remote.$m")
            if [ "$got" != "$want" ]; then
                echo "mirror $m has $got (files bytes), not $want"; rm -rf "$remote" "$remote".?; return 1
            fi
        done
        rm -rf "$remote.b" "$remote.c"
    fi
    case $t in hook1 | hook | hook3 | ref)
        [ -e "${log%.outlog}.done" ] || { echo "$log was not marked done"; rm -rf "$remote"; return 1; }
    esac
    rm -rf "$remote"
    echo "$wall $user $sys $rss"
}

# Repeats go round the whole grid, not back to back, so a slow moment does not hit one
# cell twice.
for rep in $(seq "$REPEAT"); do
    for l in $LINKS; do
        for w in $WORKLOADS; do
            for t in $TOOLS; do
                k=$t,$w,$l
                [ -z "${SKIP[$t]:-}" ] && [ -z "${FAIL[$k]:-}" ] || continue
                prev=${BEST[$k]:-}
                if [ -n "$prev" ] && awk -v p="${prev%% *}" -v l="$ONCE_ABOVE" 'BEGIN { exit !(p > l) }'; then
                    continue
                fi
                if r=$(run_one "$t" "$w" "$l"); then
                    note "round $rep  $w  $((2 * l))ms  ${NAME[$t]}: ${r%% *} s"
                    if [ -z "$prev" ] || awk -v s="${r%% *}" -v p="${prev%% *}" 'BEGIN { exit !(s < p) }'; then
                        BEST[$k]=$r
                    fi
                else
                    FAIL[$k]=$r
                    note "round $rep  $w  $((2 * l))ms  ${NAME[$t]}: FAILED: $r"
                fi
            done
        done
    done
done

# --- the table --------------------------------------------------------------------------
first_line() { "$@" 2>&1 | head -n 1 || true; }
echo
echo "outsftphook $HOOK_INFO"
echo "$(nproc) CPUs: $(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), kernel $(uname -r); remote trees on $REMOTE_KIND"
peers="$(first_line ssh -V | cut -d, -f1); $(first_line reprepro --version | sed 's/.*version /reprepro /')"
command -v rsync >/dev/null && peers+="; $(first_line rsync --version | awk '{ print "rsync " $3 }')"
command -v lftp >/dev/null && peers+="; $(first_line lftp --version | sed 's/.*Version \([^ ]*\).*/lftp \1/')"
command -v rclone >/dev/null && peers+="; $(first_line rclone version)"
echo "peers: $peers"
for w in $WORKLOADS; do
    echo "workload $w: ${FILES[$w]} files, $(awk -v b="${BYTES[$w]}" 'BEGIN { printf "%.1f", b / 1e6 }') MB, to an empty dir"
done
echo "client, sshd (sftp-server) and proxy share the CPUs; best of $REPEAT runs (1 for runs over $ONCE_ABOVE s);" \
    "0ms and 50ms go through ${PROXY_KIND:-delayproxy.py} (50ms = 25 ms each way)"
echo "CPU s = user+sys of the tool and all it started; RSS = peak of its largest process;" \
    "x floor = wall / (ssh true + bytes / raw channel rate)"
# Raw channel rate per link: the biggest workload's bytes through `cat`, less the connect.
RATE_W=S
[[ " $WORKLOADS " == *" L "* ]] && RATE_W=L
declare -A FLOOR_TRUE RATE
for l in $LINKS; do
    tr=${BEST[true,$RATE_W,$l]:-}; rw=${BEST[raw,$RATE_W,$l]:-}
    for w in $WORKLOADS; do   # the fastest `ssh true` of any workload on this link
        x=${BEST[true,$w,$l]:-}
        if [ -n "$x" ] && { [ -z "$tr" ] || awk -v a="${x%% *}" -v b="${tr%% *}" 'BEGIN { exit !(a < b) }'; }; then tr=$x; fi
    done
    if [ -n "$tr" ] && [ -n "$rw" ]; then
        FLOOR_TRUE[$l]=${tr%% *}
        RATE[$l]=$(awk -v b="${BYTES[$RATE_W]}" -v r="${rw%% *}" -v t="${tr%% *}" \
            'BEGIN { d = r - t; if (d < 0.001) d = 0.001; printf "%.1f", b / 1e6 / d }')
        echo "link $((2 * l))ms: ssh true ${FLOOR_TRUE[$l]} s, raw channel ${RATE[$l]} MB/s"
    fi
done
echo
fmt='%-2s %-5s %-28s %8s %8s %8s %7s %7s %8s  %s\n'
printf "$fmt" wl link tool "wall s" "MB/s" "files/s" "CPU s" "RSS MB" "x floor" ""
printf '%s\n' "$(printf '%.0s-' $(seq 100))"
for w in $WORKLOADS; do
    for l in $LINKS; do
        floor=""
        if [ -n "${RATE[$l]:-}" ]; then
            floor=$(awk -v t="${FLOOR_TRUE[$l]}" -v b="${BYTES[$w]}" -v r="${RATE[$l]}" 'BEGIN { printf "%.3f", t + b / 1e6 / r }')
        fi
        for t in $TOOLS; do
            k=$t,$w,$l
            label=${NAME[$t]}
            [ "$t" = hook1 ] && label+=$CONN1_INFO
            if [ -n "${SKIP[$t]:-}" ]; then
                printf "$fmt" "$w" "$((2 * l))ms" "$label" - - - - - - "skipped: ${SKIP[$t]}"
            elif [ -n "${FAIL[$k]:-}" ]; then
                printf "$fmt" "$w" "$((2 * l))ms" "$label" - - - - - - "FAILED: ${FAIL[$k]}"
            elif [ -n "${BEST[$k]:-}" ]; then
                read -r wall user sys rss <<< "${BEST[$k]}"
                if [ "$t" = true ]; then
                    printf "$fmt" "$w" "$((2 * l))ms" "$label" "$wall" - - \
                        "$(awk -v u="$user" -v s="$sys" 'BEGIN { printf "%.2f", u + s }')" \
                        "$(awk -v m="$rss" 'BEGIN { printf "%.1f", m / 1024 }')" - ""
                    continue
                fi
                awk -v w="$wall" -v u="$user" -v s="$sys" -v m="$rss" -v b="${BYTES[$w]}" \
                    -v f="${FILES[$w]}" -v fl="$floor" -v fmt="$fmt" -v a="$w" \
                    -v c="$((2 * l))ms" -v t="$label" -v raw="$t" 'BEGIN {
                        x = fl == "" ? "-" : sprintf("%.2f", w / fl)
                        printf fmt, a, c, t, sprintf("%.2f", w), sprintf("%.1f", b / 1e6 / w),
                            raw == "raw" ? "-" : sprintf("%.0f", f / w), sprintf("%.2f", u + s),
                            sprintf("%.1f", m / 1024), x, ""
                    }'
            fi
        done
        [ -z "$floor" ] || printf "$fmt" "$w" "$((2 * l))ms" "floor" "$floor" "" "" "" "" "1.00" ""
        echo
    done
done
note "done in $(( $(date +%s) - started )) s"

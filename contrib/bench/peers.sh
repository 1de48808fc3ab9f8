#!/bin/bash
# outsftphook next to its peers and its floor: the same pushes into an empty mirror done by
# outsftphook, reprepro's reference hook (examples/outsftphook.py) and rsync (and, on
# request, OpenSSH sftp -b, lftp mirror -R, rclone sync), next to the raw ssh channel, on
# one table of medians.
#
#   sudo contrib/bench/peers.sh          (after: cargo build --release --bins --examples)
#
# By hand, never in CI. Everything runs on 127.0.0.1: a private sshd, delay proxies in front
# of it (examples/delayproxy.rs, or delayproxy.py; this kernel has no netem), each target a
# fresh empty directory on a tmpfs (lib.sh). Workloads:
#   S  a reprepro repository of 1000 packages of 2-20 KB (random payload) + its dists
#   L  10 files of 40 MB of random data in the pool of an empty repository + its dists
# Links: 0ms (through the proxy without delay) and 50ms round trip (25 ms each way).
#
# Runs are interleaved: round r runs every tool once on every link and workload, the tools
# in an order rotated by r, so a slow moment of this machine does not hit one cell twice.
# BENCH_REPEAT rounds (5); each cell shows the median and min-max of its runs.
#
# The floor, per workload and link: an empty SFTP session (sftpinit.py: `ssh -s bench sftp`,
# INIT, VERSION, quit) + the workload's bytes at the raw channel's rate, where that rate is
# the largest workload's bytes through `ssh bench 'cat >/dev/null'` over that run's time
# less the same command's with no data (its own connect). No push over SFTP can do better.
#
# Per row: wall seconds, median (min-max); MB/s (10^6 bytes) and files/s over the median;
# CPU seconds (median of user+sys of the tool and everything it started, leftovers included;
# not the sshd's); peak RSS (median of the largest single process of the tool: for the
# ssh-based ones that may be the ssh client); and median wall over the floor. Every push is
# checked (files and bytes on the remote); a wrong one is FAILED and not run again.
# outsftphook runs with its defaults and no ssh master alive before each push: cold, as
# every other tool's is (its extra connections are channels on the connection its first
# ssh keeps, as in a user's first run); `hookwarm` is the same push right after another
# one (untimed) whose master it uses, as reprepro's next run would. When the binary has --timeline, one more push of S on the 50ms
# link (else the last link) runs with it and its timeline is printed after the table.
#
# Not equal work: outsftphook also fsyncs the index files and sets mtimes and renames
# them into place (NAME.new); the reference hook renames but sets no times; rsync, lftp and
# rclone set times; sftp -b (no -p) does not. Default ssh is used everywhere (here its
# sntrup761 key exchange costs ~0.13 s CPU per connection); rclone has its own ssh client.
#
# A tool that is not installed is skipped (`apt-get install rsync lftp rclone` for them).
# Environment: BENCH_PACKAGES (1000), BENCH_LARGE_FILES (10), BENCH_LARGE_MB (40),
# BENCH_LINKS (one-way ms, "0 25"), BENCH_WORKLOADS ("S L"), BENCH_TOOLS (default "empty
# raw0 raw hook1 hook hookwarm ref rsync"; also hook3 and hook3warm (three mirrors), sftp,
# lftp, rclone, and the
# old floor's `ssh true` as true, true3 for three at once), BENCH_REPEAT (5),
# BENCH_ONCE_ABOVE (unset: a cell whose first run took longer is not run again: for the
# slow peers at 50ms), BENCH_TIMEOUT (300 s per run, then killed and marked TIMEOUT),
# REFERENCE_HOOK (path of outsftphook.py, sftp.py beside it; default reprepro's examples),
# BENCH_SSH_CONFIG (ssh options for every tool, ';' between them, see lib.sh),
# BENCH_KEEP=1 keeps the temp dir, HOOK=/path/to/outsftphook measures another binary.
set -eu
. "$(dirname "$0")/lib.sh"

N=${BENCH_PACKAGES:-1000}
LARGE_FILES=${BENCH_LARGE_FILES:-10}
LARGE_MB=${BENCH_LARGE_MB:-40}
LINKS=${BENCH_LINKS:-0 25}
WORKLOADS=${BENCH_WORKLOADS:-S L}
TOOLS=${BENCH_TOOLS:-empty raw0 raw hook1 hook hookwarm ref rsync}
REPEAT=${BENCH_REPEAT:-5}
ONCE_ABOVE=${BENCH_ONCE_ABOVE:-}
TIMEOUT=${BENCH_TIMEOUT:-300}
CODENAME=bench
MEASURE=$BENCH_DIR/measure.py

bench_init
started=$(date +%s)

declare -A NAME=(
    [empty]="empty sftp session"
    [raw0]="ssh bench cat </dev/null"
    [true]="ssh bench true"
    [true3]="3 x ssh bench true, at once"
    [raw]="ssh bench 'cat >/dev/null'"
    [hook1]="outsftphook connections 1"
    [hook]="outsftphook (defaults)"
    [hookwarm]="outsftphook, warm"
    [hook3]="outsftphook, 3 mirrors"
    [hook3warm]="outsftphook, 3 mirrors, warm"
    [ref]="reprepro outsftphook.py"
    [sftp]="sftp -b (mkdir+put)"
    [rsync]="rsync -a"
    [lftp]="lftp mirror -R -P8"
    [rclone]="rclone sync"
)
declare -A SKIP    # tool -> why it is not run at all
declare -A FAIL    # tool,workload,link -> why that cell failed (not run again)
declare -A RUNS    # tool,workload,link -> lines of "wall user sys maxrss_kb", one a run

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
declare -A PORT HOMEDIR CFG PORT_B PORT_C
for l in $LINKS; do
    # Two more links of the same delay for the second and third mirror (hook3, hook3warm):
    # mirrors are hosts of their own, each with its own path and connection.
    start_proxy "$l"
    PORT_B[$l]=$PROXY_PORT
    start_proxy "$l"
    PORT_C[$l]=$PROXY_PORT
    start_proxy "$l"
    PORT[$l]=$PROXY_PORT
    h=$BENCH_TMP/home.$l
    CFG[$l]=$(ssh_alias_home "$h" "$PROXY_PORT")
    HOMEDIR[$l]=$h
    env HOME="$h" ssh -F "${CFG[$l]}" bench true || die "ssh bench through the ${l} ms proxy failed"
done

CONN1_INFO=""
any_repo=${REPO[S]:-${REPO[L]:-}}
if [ -n "$any_repo" ] && ! hook_accepts "$any_repo" "connections 1"; then
    CONN1_INFO=" (this binary has no 'connections': same as the defaults)"
fi
# Every push but the warm one cold: no ssh master alive when it starts.
PERSIST_INFO="this binary keeps no ssh connection between runs"
if [ -n "$any_repo" ] && hook_accepts "$any_repo" "sshpersist no"; then
    PERSIST_INFO="outsftphook cold: no ssh master alive before it (its defaults: its extra connections are channels on its first); warm: right after another push"
else
    SKIP[hookwarm]="this binary keeps no ssh connection"
    SKIP[hook3warm]=${SKIP[hookwarm]}
fi
HOOK_FLAGS=()   # extra flags for outsftphook (the timeline run's --timeline)

# REPO's conf for three mirrors through ssh config CFG: targets TARGET, TARGET.b, TARGET.c.
three_mirrors() {
    local repo=$1 cfg=$2 target=$3 l=$4
    mkdir -p "$target" "$target.b" "$target.c"
    {
        echo "servername bench"
        echo "sshcommand ssh -F $cfg"
        echo "targetdir $target"
        # Each on a link of its own (its own proxy port: its own ssh connection, as a
        # host of its own would have), to the same sshd.
        echo "mirror b"
        echo "sshcommand ssh -F $cfg -p ${PORT_B[$l]}"
        echo "targetdir $target.b"
        echo "mirror c"
        echo "sshcommand ssh -F $cfg -p ${PORT_C[$l]}"
        echo "targetdir $target.c"
    } > "$repo/conf/outsftphook.conf"
}

# --- one run ----------------------------------------------------------------------------
# Runs TOOL on workload W over link L into a fresh remote dir; prints "wall user sys rss"
# or fails with the reason on stdout.
run_one() {
    local t=$1 w=$2 l=$3 remote log cmd=() out=$BENCH_TMP/run.out got want rc
    local cfg=${CFG[$l]} src=${SRC[$w]} repo=${REPO[$w]}
    remote=$(remote_dir)
    case $t in
    empty) cmd=(python3 "$BENCH_DIR/sftpinit.py" "$BENCH_TMP/session.out" ssh -F "$cfg" -s -- bench sftp) ;;
    raw0) cmd=(ssh -F "$cfg" bench "cat >/dev/null") ;;   # stdin is /dev/null (below)
    true) cmd=(ssh -F "$cfg" bench true) ;;
    true3) cmd=(sh -c 'ssh -F "$1" bench true & ssh -F "$1" bench true & ssh -F "$1" bench true; wait' sh "$cfg") ;;
    raw) cmd=(sh -c 'exec ssh -F "$1" bench "cat >/dev/null" < "$2"' sh "$cfg" "${ONE[$w]}") ;;
    hook1 | hook | hookwarm)
        {
            echo "servername bench"
            echo "sshcommand ssh -F $cfg"
            echo "targetdir $remote"
            [ "$t" != hook1 ] || [ -n "$CONN1_INFO" ] || echo "connections 1"
        } > "$repo/conf/outsftphook.conf"
        kill_ssh_clients
        if [ "$t" = hookwarm ]; then
            # The push before (untimed, to a scratch tree) leaves its connection kept.
            mkdir -p "$remote.prime"
            sed -i "s|^targetdir .*|targetdir $remote.prime|" "$repo/conf/outsftphook.conf"
            log=$(write_outlog "$repo" "$CODENAME")
            "$HOOK" --basedir "$repo" --ignore-pending "$log" >/dev/null 2>&1 ||
                { echo "the priming push failed"; return 1; }
            rm -rf "$remote.prime"
            sed -i "s|^targetdir .*|targetdir $remote|" "$repo/conf/outsftphook.conf"
        fi
        log=$(write_outlog "$repo" "$CODENAME")
        cmd=("$HOOK" "${HOOK_FLAGS[@]}" --basedir "$repo" --ignore-pending "$log")
        ;;
    hook3 | hook3warm)
        # Three mirrors, each on a link of its own to the same server (three proxies of
        # the same delay), each its own target; the switch together (the default). Cold,
        # three handshakes at once; warm, each uses the master its mirror kept.
        kill_ssh_clients
        if [ "$t" = hook3warm ]; then
            three_mirrors "$repo" "$cfg" "$remote.prime" "$l"
            log=$(write_outlog "$repo" "$CODENAME")
            "$HOOK" --basedir "$repo" --ignore-pending "$log" >/dev/null 2>&1 ||
                { echo "the priming push failed"; return 1; }
            rm -rf "$remote.prime" "$remote.prime".?
        fi
        three_mirrors "$repo" "$cfg" "$remote" "$l"
        log=$(write_outlog "$repo" "$CODENAME")
        cmd=("$HOOK" "${HOOK_FLAGS[@]}" --basedir "$repo" --ignore-pending "$log")
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
    read -r wall user sys rss rc allcpu < "$BENCH_TMP/measure.out"
    kill_ssh_clients
    # The session's own clock, without Python's start-up (sftpinit.py).
    [ "$t" != empty ] || [ "$rc" != 0 ] || read -r wall < "$BENCH_TMP/session.out"
    if [ "$rc" = 124 ]; then
        echo "TIMEOUT after $TIMEOUT s"; rm -rf "$remote"; return 1
    elif [ "$rc" != 0 ]; then
        echo "exit $rc: $(grep -v '^ *$' "$out" | tail -n 2 | tr '\n' ' ' | cut -c 1-160)"
        rm -rf "$remote"; return 1
    fi
    case $t in
    empty | true | true3 | raw0 | raw) ;;
    *)
        got=$(sum_tree "$remote")
        want="${FILES[$w]} ${BYTES[$w]}"
        if [ "$got" != "$want" ]; then
            echo "remote has $got (files bytes), not $want"; rm -rf "$remote"; return 1
        fi
        ;;
    esac
    if [ "$t" = hook3 ] || [ "$t" = hook3warm ]; then
        for m in b c; do
            got=$(sum_tree "$remote.$m")
            if [ "$got" != "$want" ]; then
                echo "mirror $m has $got (files bytes), not $want"; rm -rf "$remote" "$remote".?; return 1
            fi
        done
        rm -rf "$remote.b" "$remote.c"
    fi
    case $t in hook1 | hook | hookwarm | hook3 | hook3warm | ref)
        [ -e "${log%.outlog}.done" ] || { echo "$log was not marked done"; rm -rf "$remote"; return 1; }
    esac
    rm -rf "$remote"
    echo "$wall $user $sys $rss ${allcpu:--}"
}

# Round r goes round the whole grid, each cell once, with the tools in an order rotated by
# r: a slow moment of this machine lands on different cells, and no tool always runs right
# after the same other one.
for rep in $(seq "$REPEAT"); do
    for l in $LINKS; do
        for w in $WORKLOADS; do
            for t in $(rotate $((rep - 1)) $TOOLS); do
                k=$t,$w,$l
                [ -z "${SKIP[$t]:-}" ] && [ -z "${FAIL[$k]:-}" ] || continue
                if [ -n "$ONCE_ABOVE" ] && [ -n "${RUNS[$k]:-}" ] &&
                    awk -v p="${RUNS[$k]%% *}" -v l="$ONCE_ABOVE" 'BEGIN { exit !(p > l) }'; then
                    continue
                fi
                if r=$(run_one "$t" "$w" "$l"); then
                    note "round $rep  $w  $((2 * l))ms  ${NAME[$t]}: ${r%% *} s"
                    RUNS[$k]+="$r"$'\n'
                else
                    FAIL[$k]=$r
                    note "round $rep  $w  $((2 * l))ms  ${NAME[$t]}: FAILED: $r"
                fi
            done
        done
    done
done

# "MEDIAN MIN MAX COUNT" of one column of a cell's runs: wall, cpu (user+sys), rss (KB) or
# all (the machine's CPU for the run: the bench's cgroup; none where it has none).
cell() {
    printf '%s' "${RUNS[$1]:-}" | awk -v c="$2" 'NF && !(c == "all" && $5 !~ /^[0-9.]+$/) {
        print c == "wall" ? $1 : c == "cpu" ? $2 + $3 : c == "all" ? $5 : $4 }' | stats
}

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
[ -z "${BENCH_SSH_CONFIG:-}" ] || echo "every tool's ssh config adds: $BENCH_SSH_CONFIG"
for w in $WORKLOADS; do
    echo "workload $w: ${FILES[$w]} files, $(awk -v b="${BYTES[$w]}" 'BEGIN { printf "%.1f", b / 1e6 }') MB, to an empty dir"
done
echo "client, sshd (sftp-server) and proxy share the CPUs; median (min-max) of $REPEAT interleaved rounds${ONCE_ABOVE:+ (1 run where the first took over $ONCE_ABOVE s)};" \
    "0ms and 50ms go through ${PROXY_KIND:-delayproxy.py} (50ms = 25 ms each way); $PERSIST_INFO"
echo "CPU s = user+sys of the tool and all it started; all CPU = what the run cost the machine" \
    "(the bench's cgroup: sshd, sftp-servers, proxies too; - without one); RSS = peak of its largest process;" \
    "x floor = wall / (empty sftp session + bytes / raw channel rate net of its connect)"
# The raw channel's rate per link: the biggest workload's bytes over the time `cat` took
# beyond the same connection with no data.
RATE_W=S
[[ " $WORKLOADS " == *" L "* ]] && RATE_W=L
declare -A RATE
for l in $LINKS; do
    raw=$(cell "raw,$RATE_W,$l" wall)
    raw0=$(cell "raw0,$RATE_W,$l" wall)
    empty=$(cell "empty,$RATE_W,$l" wall)
    [ -n "$raw" ] && [ -n "$raw0" ] || continue
    RATE[$l]=$(awk -v b="${BYTES[$RATE_W]}" -v r="${raw%% *}" -v z="${raw0%% *}" \
        'BEGIN { d = r - z; if (d < 0.001) d = 0.001; printf "%.1f", b / 1e6 / d }')
    echo "link $((2 * l))ms: empty sftp session ${empty%% *} s, raw channel ${RATE[$l]} MB/s" \
        "(workload $RATE_W: ${raw%% *} s with its data, ${raw0%% *} s without)"
done
echo
fmt='%-2s %-5s %-28s %20s %7s %8s %6s %7s %7s %7s %3s  %s\n'
printf "$fmt" wl link tool "wall s (min-max)" "MB/s" "files/s" "CPU s" "all CPU" "RSS MB" "x floor" "n" ""
printf '%s\n' "$(printf '%.0s-' $(seq 116))"
for w in $WORKLOADS; do
    for l in $LINKS; do
        floor=""
        empty=$(cell "empty,$w,$l" wall)
        if [ -n "${RATE[$l]:-}" ] && [ -n "$empty" ]; then
            floor=$(awk -v e="${empty%% *}" -v b="${BYTES[$w]}" -v r="${RATE[$l]}" 'BEGIN { printf "%.3f", e + b / 1e6 / r }')
        fi
        for t in $TOOLS; do
            k=$t,$w,$l
            label=${NAME[$t]}
            [ "$t" = hook1 ] && label+=$CONN1_INFO
            if [ -n "${SKIP[$t]:-}" ]; then
                printf "$fmt" "$w" "$((2 * l))ms" "$label" - - - - - - - - "skipped: ${SKIP[$t]}"
                continue
            fi
            if [ -n "${RUNS[$k]:-}" ]; then
                awk -v ws="$(cell "$k" wall)" -v cs="$(cell "$k" cpu)" -v ms="$(cell "$k" rss)" \
                    -v as="$(cell "$k" all)" \
                    -v b="${BYTES[$w]}" -v f="${FILES[$w]}" -v fl="$floor" -v fmt="$fmt" \
                    -v a="$w" -v c="$((2 * l))ms" -v t="$label" -v tool="$t" 'BEGIN {
                        split(ws, W, " "); split(cs, C, " "); split(ms, M, " "); split(as, A, " ")
                        nodata = tool ~ /^(empty|raw0|true|true3)$/
                        x = nodata || fl == "" ? "-" : sprintf("%.2f", W[1] / fl)
                        printf fmt, a, c, t, sprintf("%.2f (%.2f-%.2f)", W[1], W[2], W[3]),
                            nodata ? "-" : sprintf("%.1f", b / 1e6 / W[1]),
                            nodata || tool == "raw" ? "-" : sprintf("%.0f", f / W[1]),
                            sprintf("%.2f", C[1]), as == "" ? "-" : sprintf("%.2f", A[1]),
                            sprintf("%.1f", M[1] / 1024), x, W[4], ""
                    }'
            fi
            if [ -n "${FAIL[$k]:-}" ]; then
                printf "$fmt" "$w" "$((2 * l))ms" "$label" - - - - - - - - "FAILED: ${FAIL[$k]}"
            fi
        done
        [ -z "$floor" ] || printf "$fmt" "$w" "$((2 * l))ms" "floor" "$(printf '%.2f' "$floor")" "" "" "" "" "" "1.00" "" ""
        echo
    done
done

# --- the timeline -----------------------------------------------------------------------
# One more push of S with --timeline, on the 50ms link (else the last one), when the binary
# has the flag: where the time of a push goes, phase by phase.
if [ -n "${REPO[S]:-}" ] && [ -z "${SKIP[hook]:-}" ] && hook_has_flag --timeline; then
    tl_link=${LINKS##* }
    [[ " $LINKS " == *" 25 "* ]] && tl_link=25
    HOOK_FLAGS=(--timeline)
    if r=$(run_one hook S "$tl_link"); then
        echo "timeline of one more push of S at $((2 * tl_link))ms, ${NAME[hook]}: ${r%% *} s"
        grep 'timeline:' "$BENCH_TMP/run.out" || echo "(no timeline lines on its stderr)"
    else
        note "the --timeline push failed: $r"
    fi
    HOOK_FLAGS=()
fi
note "done in $(( $(date +%s) - started )) s"

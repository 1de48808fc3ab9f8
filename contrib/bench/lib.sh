# Helpers for the outsftphook benchmarks; sourced by the bench scripts (bash).
# Everything runs on 127.0.0.1 in one temp dir ($BENCH_TMP); bench_cleanup undoes it.

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TOP=$(cd "$BENCH_DIR/../.." && pwd)
HOOK=${HOOK:-$TOP/target/release/outsftphook}
BENCH_PIDS=()   # daemons we started, killed by bench_cleanup
BENCH_PORTS=()  # ports of our sshd and proxies: an ssh client connected to one is ours

die() { echo "bench: $*" >&2; exit 1; }
note() { echo "bench: $*" >&2; }

bench_init() {
    [ "$(id -u)" = 0 ] || die "must run as root (sshd must switch to the user, root here)"
    [ -x "$HOOK" ] || die "$HOOK is missing: run 'cargo build --release' first"
    # ss finds the ssh masters left behind (kill_ssh_clients).
    for t in /usr/sbin/sshd /usr/lib/openssh/sftp-server ssh ssh-keygen ss reprepro dpkg-deb python3; do
        command -v "$t" >/dev/null || die "$t is not installed"
    done
    BENCH_TMP=$(mktemp -d /tmp/outsftphook-bench.XXXXXX)
    # The remote trees go to a tmpfs: what is measured is the link and the protocol, not
    # the server's disk. (On this kind of VM, ext4 makes each mkdir or create cost about
    # 0.5 ms of CPU for as long as 30 s after many deletions, and every run deletes the last
    # one's tree: with the remote on disk, runs got slower one after the other.)
    # BENCH_REMOTE_DISK=1 puts them under $BENCH_TMP instead; without it, no tmpfs is an
    # error, not a quiet fall-back to the disk.
    if [ -n "${BENCH_REMOTE_DISK:-}" ]; then
        REMOTE_ROOT=$BENCH_TMP
        REMOTE_KIND="disk ($(df --output=fstype "$BENCH_TMP" | tail -1))"
    elif [ "$(stat -f -c %T /dev/shm 2>/dev/null)" = tmpfs ]; then
        REMOTE_ROOT=$(mktemp -d /dev/shm/outsftphook-bench.XXXXXX)
        REMOTE_KIND="tmpfs (/dev/shm)"
    else
        rm -rf "$BENCH_TMP"
        die "/dev/shm is not a tmpfs: mount one there, or set BENCH_REMOTE_DISK=1 to measure on disk"
    fi
    trap bench_cleanup EXIT
    trap 'exit 130' INT TERM   # runs the EXIT trap
    join_cpu_group
    # Our own copy: others rebuild target/release while we measure, and a binary swapped
    # half-way makes the rows incomparable (it happened). Say what we copied.
    local rev
    rev=$(git -C "$TOP" rev-parse --short HEAD 2>/dev/null || echo unknown)
    if [ -n "$(git -C "$TOP" status --porcelain -- src Cargo.toml Cargo.lock 2>/dev/null)" ]; then
        rev="$rev + local changes"
    fi
    HOOK_INFO="$("$HOOK" --version | awk '{ print $2 }'), binary of $(date -r "$HOOK" '+%F %T'), tree now $rev"
    cp "$HOOK" "$BENCH_TMP/outsftphook"
    HOOK=$BENCH_TMP/outsftphook
}

# The bench and all it starts (sshd and its sessions, sftp-servers, proxies, ssh clients)
# go into a cpuacct cgroup of their own (v1; where the hierarchy can be written): the CPU a
# run costs the whole machine, servers included, is then read off it (measure.py,
# BENCH_CPUACCT), whatever else the machine runs meanwhile.
join_cpu_group() {
    local root=/sys/fs/cgroup/cpuacct
    BENCH_CGROUP=""
    [ -w "$root" ] && [ -e "$root/cpuacct.usage" ] || return 0
    BENCH_CGROUP=$root/outsftphook-bench.$$
    mkdir "$BENCH_CGROUP" 2>/dev/null && echo $$ > "$BENCH_CGROUP/tasks" 2>/dev/null ||
        { BENCH_CGROUP=""; return 0; }
    export BENCH_CPUACCT=$BENCH_CGROUP/cpuacct.usage
}

bench_cleanup() {
    local pid
    kill_ssh_clients
    for pid in "${BENCH_PIDS[@]}"; do
        kill "$pid" 2>/dev/null
    done
    for pid in "${BENCH_PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true   # killed: 143; under set -e that would end the cleanup here
    done
    BENCH_PIDS=()
    if [ -n "${BENCH_CGROUP:-}" ]; then
        echo $$ > "${BENCH_CGROUP%/*}/tasks" 2>/dev/null || true
        rmdir "$BENCH_CGROUP" 2>/dev/null || note "$BENCH_CGROUP is not empty: left"
    fi
    if [ -n "${BENCH_KEEP:-}" ]; then
        note "kept $BENCH_TMP"
    else
        rm -rf "$BENCH_TMP"
    fi
    [ "${REMOTE_ROOT:-$BENCH_TMP}" = "$BENCH_TMP" ] || rm -rf "$REMOTE_ROOT"
}

# Pids of the ssh clients connected to our sshd or proxies: between runs, only connection
# masters an ssh left in the background (ControlPersist) are. They are found by their
# connection, not by name or control path: a master renames itself ("ssh: PATH [mux]") and
# the path is the hook's choice.
ssh_clients() {
    local port
    for port in "${BENCH_PORTS[@]}"; do
        ss -Htnp state established "( dst 127.0.0.1:$port )" 2>/dev/null
    done | grep -o '("ssh",pid=[0-9]*' | sed 's/.*pid=//' | sort -u
}

# Ends the ssh clients still connected to us (see ssh_clients), by pid, and waits until
# they are gone (SIGTERM lets a master remove its control socket; SIGKILL after 2 s).
kill_ssh_clients() {
    local pids pid i
    pids=$(ssh_clients)
    [ -n "$pids" ] || return 0
    for pid in $pids; do kill "$pid" 2>/dev/null || true; done
    for i in $(seq 40); do
        for pid in $pids; do [ -e "/proc/$pid" ] && break; pid=; done
        [ -n "$pid" ] || return 0
        sleep 0.05
    done
    for pid in $pids; do kill -KILL "$pid" 2>/dev/null || true; done
}

# Median, min and max of the numbers on stdin, one a line: "MEDIAN MIN MAX COUNT" (the
# median of an even count is the mean of the middle two); nothing when there are none.
stats() {
    sort -g | awk '{ v[NR] = $1 } END {
        if (NR == 0) exit
        m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
        printf "%.3f %.3f %.3f %d\n", m, v[1], v[NR], NR
    }'
}

# Whether outsftphook has the command-line flag FLAG (its --help names it).
hook_has_flag() {
    "$HOOK" --help 2>/dev/null | grep -q -e "$1\b"
}

# The words of the list ($@) rotated left by N: round N of an interleaved series runs the
# tools in this order, so no tool always follows the same one.
rotate() {
    local n=$1
    shift
    [ $# -gt 0 ] || return 0
    n=$((n % $#))
    echo "${@:n+1}" "${@:1:n}"
}

# A fresh empty remote directory (see REMOTE_ROOT); prints its path.
remote_dir() {
    mktemp -d "$REMOTE_ROOT/remote.XXXXXX"
}

# A loopback port nobody listens on (the kernel picks it; tiny race until we bind it).
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Waits until something accepts on PORT (daemons need a moment after fork).
wait_port() {
    local port=$1 i
    for i in $(seq 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
        sleep 0.05
    done
    die "nothing listens on port $port after 5 s"
}

# Private sshd with fresh keys. Sets SSHD_PORT and CLIENT_KEY.
start_sshd() {
    local d=$BENCH_TMP/sshd
    mkdir -p "$d" /run/sshd    # sshd insists on its privilege-separation dir
    ssh-keygen -q -t ed25519 -N '' -f "$d/host_key"
    ssh-keygen -q -t ed25519 -N '' -f "$d/client_key"
    cp "$d/client_key.pub" "$d/authorized_keys"
    SSHD_PORT=$(free_port)
    CLIENT_KEY=$d/client_key
    cat > "$d/sshd_config" <<EOF
Port $SSHD_PORT
ListenAddress 127.0.0.1
HostKey $d/host_key
AuthorizedKeysFile $d/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PidFile $d/sshd.pid
Subsystem sftp /usr/lib/openssh/sftp-server
EOF
    /usr/sbin/sshd -D -e -f "$d/sshd_config" 2>"$d/sshd.log" </dev/null &
    BENCH_PIDS+=($!)
    BENCH_PORTS+=("$SSHD_PORT")
    wait_port "$SSHD_PORT"
}

# A delay proxy in front of the sshd with ONE_WAY_MS. Sets PROXY_PORT. (Not to be called as
# $(...): the daemon would hold the pipe open and its pid would be lost with the subshell.)
# The Rust one (examples/delayproxy.rs, `cargo build --release --examples`) costs
# microseconds per chunk; the Python one costs enough per chunk to slow a protocol of many
# small messages by itself. BENCH_PROXY=python forces the Python one.
start_proxy() {
    local one_way_ms=$1
    PROXY_PORT=$(free_port)
    if [ "${BENCH_PROXY:-}" != python ] && [ -x "$TOP/target/release/examples/delayproxy" ]; then
        PROXY_KIND=delayproxy.rs
        "$TOP/target/release/examples/delayproxy" "$PROXY_PORT" 127.0.0.1 "$SSHD_PORT" \
            "$one_way_ms" >/dev/null 2>>"$BENCH_TMP/proxy.log" </dev/null &
    else
        PROXY_KIND=delayproxy.py
        python3 "$BENCH_DIR/delayproxy.py" "$PROXY_PORT" 127.0.0.1 "$SSHD_PORT" "$one_way_ms" \
            >/dev/null 2>>"$BENCH_TMP/proxy.log" </dev/null &
    fi
    BENCH_PIDS+=($!)
    BENCH_PORTS+=("$PROXY_PORT")
    wait_port "$PROXY_PORT"
}

# A HOME in DIR whose ssh config knows `Host bench` (root at 127.0.0.1 through PORT), with a
# bin/ssh that adds `-F` to it: ssh reads the config of the passwd home, not $HOME, and the
# reference hook runs plain `ssh`. Prints the config's path.
ssh_alias_home() {
    local dir=$1 port=$2
    [ -n "$dir" ] || die "ssh_alias_home needs a directory"
    mkdir -p "$dir/.ssh" "$dir/bin"
    cat > "$dir/.ssh/config" <<END
Host bench
    HostName 127.0.0.1
    Port $port
    User root
    IdentityFile $CLIENT_KEY
    IdentitiesOnly yes
    StrictHostKeyChecking no
    UserKnownHostsFile /dev/null
    BatchMode yes
    LogLevel ERROR
END
    # BENCH_SSH_CONFIG: more options for every tool's ssh, ';' between them (say
    # "KexAlgorithms curve25519-sha256;Ciphers aes128-gcm@openssh.com", to see what is left
    # when key exchange and cipher cost little CPU).
    if [ -n "${BENCH_SSH_CONFIG:-}" ]; then
        tr ';' '\n' <<<"$BENCH_SSH_CONFIG" | sed 's/^ */    /' >> "$dir/.ssh/config"
    fi
    printf '#!/bin/sh\nexec /usr/bin/ssh -F %s "$@"\n' "$dir/.ssh/config" > "$dir/bin/ssh"
    chmod +x "$dir/bin/ssh"
    echo "$dir/.ssh/config"
}

# The ssh command line outsftphook gets (as words) to reach the sshd through PORT.
ssh_words() {
    echo "ssh -F /dev/null -oIdentityFile=$CLIENT_KEY -oUserKnownHostsFile=/dev/null -oStrictHostKeyChecking=no -oPort=$1"
}

# Wall seconds of one `ssh root@127.0.0.1 true` through PORT: connection setup costs.
time_ssh_true() {
    local t0 t1
    t0=$(date +%s.%N)
    $(ssh_words "$1") -oLogLevel=ERROR -oBatchMode=yes root@127.0.0.1 true || die "ssh through port $1 failed"
    t1=$(date +%s.%N)
    awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f\n", b - a }'
}

wait_all() {
    local pid
    for pid in "$@"; do wait "$pid" || die "a dpkg-deb failed"; done
}

# COUNT .debs of 2-20 KB in DIR. The payload is random so that compression does not shrink
# it; names start with a..z so the pool spreads over letter directories as a real one does.
make_debs() {
    local dir=$1 count=$2 i name size p pids=()
    local letters=abcdefghijklmnopqrstuvwxyz
    mkdir -p "$dir"
    RANDOM=4242   # same sizes every time, so runs of the script compare
    for i in $(seq "$count"); do
        name=${letters:$((i % 26)):1}bench$i
        size=$((1300 + RANDOM % 18000))   # + ~700 bytes of deb overhead
        p=$dir/src/$name
        mkdir -p "$p/DEBIAN" "$p/usr/share/$name"
        printf 'Package: %s\nVersion: 1.0\nArchitecture: amd64\nSection: misc\nPriority: optional\nMaintainer: Bench <bench@example.org>\nDescription: benchmark package %s\n' \
            "$name" "$i" > "$p/DEBIAN/control"
        head -c "$size" /dev/urandom > "$p/usr/share/$name/payload"
        # gzip, not xz: xz would spend its time on incompressible data for nothing.
        dpkg-deb --root-owner-group -Zgzip -b "$p" "$dir/${name}_1.0_amd64.deb" >/dev/null &
        pids+=($!)
        # A few at a time. Waiting by pid: a bare `wait` would wait for the daemons too.
        if [ ${#pids[@]} = 8 ]; then wait_all "${pids[@]}"; pids=(); fi
    done
    wait_all "${pids[@]}"
    rm -rf "$dir/src"
}

# A reprepro repository REPO with CODENAME holding every .deb of DEBDIR. No outhook: the
# pushes are what we time, not this.
make_repo() {
    local repo=$1 codename=$2 debdir=$3
    mkdir -p "$repo/conf" "$repo/logs"
    cat > "$repo/conf/distributions" <<EOF
Codename: $codename
Architectures: amd64
Components: main
Description: outsftphook benchmark
EOF
    reprepro -b "$repo" --silent includedeb "$codename" "$debdir"/*.deb ||
        die "reprepro includedeb failed"
}

# REPO/conf/outsftphook.conf for a push through proxy PORT to REMOTE with MAXOPEN files;
# any further arguments are extra lines.
write_conf() {
    local repo=$1 port=$2 remote=$3 maxopen=$4 line
    shift 4
    {
        cat <<EOF
servername 127.0.0.1
username root
sshcommand $(ssh_words "$port")
targetdir $remote
maxopenfiles $maxopen
EOF
        for line in "$@"; do echo "$line"; done
    } > "$repo/conf/outsftphook.conf"
}

# Whether outsftphook accepts the outsftphook.conf line LINE: with an empty outlog it reads
# its configuration (exit 2 on an unknown key) and has nothing to send.
hook_accepts() {
    local repo=$1 line=$2 log rc=0
    printf 'servername 127.0.0.1\ntargetdir /nonexistent\n%s\n' "$line" > "$repo/conf/outsftphook.conf"
    rm -f "$repo"/logs/*
    log=$repo/logs/0000000000-probe.outlog
    : > "$log"
    "$HOOK" --basedir "$repo" --ignore-pending "$log" >/dev/null 2>&1 || rc=$?
    rm -f "$repo"/logs/*
    [ "$rc" = 0 ]
}

# An outlog naming every pool and dist file, as reprepro writes one after a full export;
# prints its path. Old logs are removed first: each run must start with nothing pending,
# and two runs in the same second would otherwise get the same name.
write_outlog() {
    local repo=$1 codename=$2 log f
    rm -f "$repo"/logs/*
    log=$repo/logs/$(printf '%010d' "$(date +%s)")-bench.outlog
    {
        (cd "$repo" && find pool -type f | sort) | sed 's/^/POOLNEW\t/'
        printf 'BEGIN-DISTRIBUTION\t%s\tdists/%s\n' "$codename" "$codename"
        (cd "$repo/dists/$codename" && find . -type f | sed 's|^\./||' | sort) | while read -r f; do
            printf 'DISTFILE\tdists/%s\t%s\t%s\n' "$codename" "$f" "$repo/dists/$codename/$f"
        done
        printf 'END-DISTRIBUTION\t%s\tdists/%s\n' "$codename" "$codename"
    } > "$log"
    echo "$log"
}

# Runs outsftphook on OUTLOG; prints the wall seconds. Fails (with its output) unless it
# exits 0. Its stderr goes to a file: ssh's warnings must not clutter the table.
timed_push() {
    local repo=$1 log=$2 t0 t1 rc=0
    t0=$(date +%s.%N)
    "$HOOK" --basedir "$repo" --ignore-pending "$log" >"$BENCH_TMP/hook.out" 2>&1 || rc=$?
    t1=$(date +%s.%N)
    if [ "$rc" != 0 ]; then
        cat "$BENCH_TMP/hook.out" >&2
        die "outsftphook exited $rc"
    fi
    awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f\n", b - a }'
}

#!/bin/bash
# Peak memory of a large push: an outlog of N new pool files (and a distribution's few
# files) pushed to an empty remote directory through a local OpenSSH `sftp-server` (no
# ssh, no root), everything on a tmpfs. One line per layout: files, directories made, wall
# seconds, and outsftphook's peak RSS (VmHWM, its own, not its server's).
#
#   contrib/bench/memory.sh            (after: cargo build --release)
#
# Layouts (BENCH_LAYOUTS, default "a b c d e f g"):
#   a  4 files per package directory (N/4 new directories), as a pool of small packages;
#   b  every file in a new directory of its own (N new directories);
#   c  all N files in one directory;
#   d  deep paths of about 200 characters, 4 files per directory, two new levels each;
#   e  the worst of b and d: deep paths of about 200 characters, every file in a new
#      directory of its own, two new levels each (2N new directories);
#   f  no pool files: N index files (DISTFILE lines) of N/100 distributions, 100 each (by
#      component and architecture), as a repository of many suites and snapshots;
#   g  all N files in one directory, with long names (paths of about 200 characters).
# Environment: BENCH_FILES (default 100000), BENCH_REPEAT (default 1: runs per layout,
# interleaved; the line shows the median wall and the largest RSS, min-max of each with
# more than one run), BENCH_MIRROR=1 also times `outsftphook mirror` of each tree into a
# fresh empty directory, BENCH_KEEP=1 keeps the temp dirs, HOOK=/path/to/outsftphook
# measures another binary, BENCH_HOOKS="OLD NEW" several (interleaved: each round runs
# every layout with each binary in turn).
set -eu

TOP=$(cd "$(dirname "$0")/../.." && pwd)
HOOK=${HOOK:-$TOP/target/release/outsftphook}
N=${BENCH_FILES:-100000}
LAYOUTS=${BENCH_LAYOUTS:-a b c d e f g}
REPEAT=${BENCH_REPEAT:-1}
SERVER=/usr/lib/openssh/sftp-server

die() { echo "memory.sh: $*" >&2; exit 1; }
HOOKS=${BENCH_HOOKS:-$HOOK}
for h in $HOOKS; do
    [ -x "$h" ] || die "$h is missing: run 'cargo build --release' first"
done
[ -x "$SERVER" ] || die "$SERVER is not installed"
[ "$(stat -f -c %T /dev/shm 2>/dev/null)" = tmpfs ] || die "/dev/shm is not a tmpfs"

TMP=$(mktemp -d /dev/shm/outsftphook-memory.XXXXXX)
cleanup() {
    if [ -n "${BENCH_KEEP:-}" ]; then echo "memory.sh: kept $TMP" >&2; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
# Our own copies: a rebuild while we measure must not swap a binary half-way.
COPIES=()
n=0
for h in $HOOKS; do
    n=$((n + 1))
    cp "$h" "$TMP/outsftphook-$n"
    COPIES+=("$TMP/outsftphook-$n")
    echo "binary $n: $h ($("$h" --version | awk '{ print $2 }'), of $(date -r "$h" '+%F %T'))"
done

# Makes repository $1 in layout $2: N tiny pool files, a dists/bench with two files, and
# the outlog naming them all (logs/). Prints "FILES DIRS" (DIRS: directories the push
# makes). Python: a shell loop takes minutes for 100 000 files.
make_repo() {
    python3 - "$1" "$2" "$N" <<'EOF'
import os, sys
repo, layout, n = sys.argv[1], sys.argv[2], int(sys.argv[3])

def path(k):
    if layout == "a":
        return f"pool/main/p{k // 400:03d}/pkg{k // 4:06d}/pkg{k // 4:06d}_{k % 4}.0_amd64.deb"
    if layout == "b":
        return f"pool/main/p{k // 1000:03d}/pkg{k:06d}/pkg{k:06d}_1.0_amd64.deb"
    if layout == "c":
        return f"pool/main/f/flat/file{k:06d}_1.0_amd64.deb"
    if layout == "d":
        d = k // 4
        return (f"pool/main/p{k // 400:03d}/{'long-source-package-name-' * 2}{d:06d}/"
                f"{'nested-directory-level-' * 2}{d:06d}/"
                f"{'long-binary-package-name-' * 2}{k:06d}_1.0_amd64.deb")
    if layout == "g":
        return f"pool/main/f/flat/{'long-binary-package-name-' * 6}{k:06d}_1.0_amd64.deb"
    if layout == "e":
        return (f"pool/main/p{k // 1000:03d}/{'long-source-package-name-' * 2}{k:06d}/"
                f"{'nested-directory-level-' * 2}{k:06d}/"
                f"{'long-binary-package-name-' * 2}{k:06d}_1.0_amd64.deb")
    sys.exit(f"unknown layout {layout}")

# Layout f: the dists' files, (dist dir, name); the pool has none.
ndists = max(1, n // 100) if layout == "f" else 1
def dist_files(d):
    if layout != "f":
        return [("dists/bench", name) for name in ("main/binary-amd64/Packages", "Release")]
    dist = f"dists/suite{d:04d}"
    names = [f"{c}/binary-{a}/Packages{x}" for c in ("main", "contrib", "non-free")
             for a in ("amd64", "arm64", "armhf", "i386", "ppc64el", "s390x", "riscv64", "mips64el")
             for x in ("", ".gz", ".xz", ".diff/Index")]
    names += [f"main/i18n/Translation-l{i:02d}.xz" for i in range(100 - len(names) - 1)]
    return [(dist, name) for name in names + ["Release"]]

paths = [] if layout == "f" else [path(k) for k in range(n)]
dirs = set()
for p in paths:
    parts = p.split("/")
    for i in range(1, len(parts)):
        dirs.add("/".join(parts[:i]))
for d in sorted(dirs):
    os.makedirs(os.path.join(repo, d), exist_ok=True)
for p in paths:
    with open(os.path.join(repo, p), "wb") as f:
        f.write(b"x")
files = len(paths)
os.makedirs(os.path.join(repo, "logs"), exist_ok=True)
os.makedirs(os.path.join(repo, "conf"), exist_ok=True)
with open(os.path.join(repo, "logs/0000000001-bench.outlog"), "w") as log:
    for p in paths:
        log.write(f"POOLNEW\t{p}\n")
    for d in range(ndists):
        ds = dist_files(d)
        dist = ds[0][0]
        log.write(f"BEGIN-DISTRIBUTION\t{dist[6:]}\t{dist}\n")
        for dist, name in ds:
            local = os.path.join(repo, dist, name)
            os.makedirs(os.path.dirname(local), exist_ok=True)
            with open(local, "w") as f:
                f.write(name + "\n")
            log.write(f"DISTFILE\t{dist}\t{name}\t{local}\n")
            parts = f"{dist}/{name}".split("/")
            for i in range(1, len(parts)):
                dirs.add("/".join(parts[:i]))
        files += len(ds)
        log.write(f"END-DISTRIBUTION\t{dist[6:]}\t{dist}\n")
print(files, len(dirs))
EOF
}

# Runs COMMAND...; prints "WALL_S PEAK_KB" where PEAK_KB is the VmHWM of COMMAND's own
# process (sampled every 5 ms; it only grows, and is read once more just before the process
# is reaped, so the peak is exact). Fails with its output unless it exits 0.
measured() {
    python3 - "$TMP/run.out" "$@" <<'EOF'
import os, sys, time
out, cmd = sys.argv[1], sys.argv[2:]
t0 = time.monotonic()
pid = os.fork()
if pid == 0:
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 1); os.dup2(fd, 2)
    os.execv(cmd[0], cmd)
peak = 0
def hwm():
    global peak
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]))
    except OSError:
        pass
while True:
    # WNOWAIT: a zombie's status is gone, so look while it still runs, then reap.
    done = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    if done is not None:
        break
    hwm()
    time.sleep(0.005)
wall = time.monotonic() - t0
_, status = os.waitpid(pid, 0)
if status != 0:
    sys.stderr.write(open(out).read())
    sys.exit(f"{cmd[0]} exited with status {status}")
print(f"{wall:.2f} {peak}")
EOF
}

# One push of repository $1 to a fresh remote dir; prints "WALL_S PEAK_KB".
push() {
    local repo=$1 files=$2 remote
    remote=$(mktemp -d "$TMP/remote.XXXXXX")
    printf 'sftpcommand %s -e -d %s\ntargetdir %s\n' "$SERVER" "$remote" "$remote" \
        > "$repo/conf/outsftphook.conf"
    # The journal is appended to the log, which is renamed .done: start each run from
    # the log as written.
    rm -rf "$repo/logs"
    mkdir "$repo/logs"
    cp "$repo/outlog.orig" "$repo/logs/0000000001-bench.outlog"
    measured "$HOOK" --basedir "$repo" --ignore-pending "$repo/logs/0000000001-bench.outlog"
    local got
    got=$(find "$remote" -type f | wc -l)
    [ "$got" = "$files" ] || die "$repo: the remote has $got files, not $files"
    rm -rf "$remote"
}

# `outsftphook mirror` of repository $1's pool and dists into a fresh remote dir.
mirror() {
    local repo=$1 files=$2 remote
    remote=$(mktemp -d "$TMP/remote.XXXXXX")
    printf 'sftpcommand %s -e -d %s\ntargetdir %s\n' "$SERVER" "$remote" "$remote" \
        > "$repo/conf/outsftphook.conf"
    measured "$HOOK" --basedir "$repo" mirror
    local got
    got=$(find "$remote" -type f | wc -l)
    [ "$got" = "$files" ] || die "$repo mirror: the remote has $got files, not $files"
    rm -rf "$remote"
}

declare -A INFO
for l in $LAYOUTS; do
    echo "memory.sh: making layout $l ($N files)" >&2
    INFO[$l]=$(make_repo "$TMP/repo-$l" "$l")
    cp "$TMP/repo-$l/logs/0000000001-bench.outlog" "$TMP/repo-$l/outlog.orig"
done

declare -A WALLS PEAKS MWALLS MPEAKS
for rep in $(seq "$REPEAT"); do
    for l in $LAYOUTS; do
        for n in $(seq ${#COPIES[@]}); do
            HOOK=${COPIES[$((n - 1))]}
            read -r files _ <<<"${INFO[$l]}"
            read -r w p < <(push "$TMP/repo-$l" "$files")
            echo "memory.sh: round $rep layout $l binary $n push: $w s, $((p / 1024)) MiB" >&2
            WALLS[$l,$n]+="$w "; PEAKS[$l,$n]+="$p "
            if [ -n "${BENCH_MIRROR:-}" ]; then
                read -r w p < <(mirror "$TMP/repo-$l" "$files")
                echo "memory.sh: round $rep layout $l binary $n mirror: $w s, $((p / 1024)) MiB" >&2
                MWALLS[$l,$n]+="$w "; MPEAKS[$l,$n]+="$p "
            fi
        done
    done
done

# "median (min-max)" of seconds; "max (min-max)" of KiB in MiB.
stats() {
    python3 - "$1" "$2" <<'EOF'
import statistics, sys
kind, xs = sys.argv[1], [float(x) for x in sys.argv[2].split()]
if kind == "kb":
    xs = [x / 1024 for x in xs]
    v = max(xs)
else:
    v = statistics.median(xs)
d = 1 if kind == "kb" else 2
r = f" ({min(xs):.{d}f}-{max(xs):.{d}f})" if len(xs) > 1 else ""
print(f"{v:.1f}{r}" if kind == "kb" else f"{v:.2f}{r}")
EOF
}

echo
echo "$(nproc) CPUs, kernel $(uname -r); local $SERVER -e -d on tmpfs; $REPEAT run(s) per layout, interleaved"
echo "wall: median (min-max); RSS: outsftphook's peak VmHWM in MiB, largest (min-max)"
printf '%-28s %6s %8s %8s %18s %18s\n' layout binary files dirs "wall s" "RSS MiB"
declare -A NAME=([a]="a 4 files per dir" [b]="b a new dir per file" [c]="c one dir" [d]="d deep ~200-char paths" [e]="e deep, a new dir per file" [f]="f 1000 dists of 100 files" [g]="g one dir, long names")
for l in $LAYOUTS; do
    read -r files dirs <<<"${INFO[$l]}"
    for n in $(seq ${#COPIES[@]}); do
        printf '%-28s %6s %8s %8s %18s %18s\n' "${NAME[$l]} push" "$n" "$files" "$dirs" \
            "$(stats s "${WALLS[$l,$n]}")" "$(stats kb "${PEAKS[$l,$n]}")"
        if [ -n "${BENCH_MIRROR:-}" ]; then
            printf '%-28s %6s %8s %8s %18s %18s\n' "${NAME[$l]} mirror" "$n" "$files" "$dirs" \
                "$(stats s "${MWALLS[$l,$n]}")" "$(stats kb "${MPEAKS[$l,$n]}")"
        fi
    done
done

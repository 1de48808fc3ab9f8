#!/usr/bin/env python3
"""Runs a command and reports its wall time and the CPU and memory of it and everything it
started, like /usr/bin/time but also counting grandchildren that outlive their parent.

    measure.py OUTFILE TIMEOUT_SECONDS COMMAND [ARGS...]

Writes one line to OUTFILE: "WALL USER SYS MAXRSS_KB STATUS ALLCPU". WALL is from the start of
COMMAND to its exit (leftover descendants do not count: the tool is done when it returns).
USER and SYS are summed over COMMAND and all its descendants; MAXRSS_KB is the peak resident
size of the largest single one of them (what the kernel keeps; not a sum). STATUS is the exit
status, 128+N for a signal, 124 when COMMAND ran over TIMEOUT_SECONDS and was killed.
ALLCPU is the CPU seconds of the cpuacct cgroup file BENCH_CPUACCT names (the bench's own
group: its servers and proxies too) from the start to 0.1 s after COMMAND's exit (the
servers wind down), or "-" without it.

We make ourselves a child subreaper, so that a process the tool leaves behind (say an ssh
it never waited for) is reparented to us, reaped by us and its CPU time counted.
"""

import ctypes
import os
import resource
import select
import signal
import sys
import time

PR_SET_CHILD_SUBREAPER = 36


def children():
    pids = []
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/children") as f:
                pids += [int(p) for p in f.read().split()]
        except OSError:
            pass
    return pids


def group_cpu():
    """Nanoseconds of CPU the bench's cgroup has used, or None without one."""
    path = os.environ.get("BENCH_CPUACCT")
    if not path:
        return None
    with open(path) as f:
        return int(f.read())


def main():
    out, timeout, cmd = sys.argv[1], float(sys.argv[2]), sys.argv[3:]
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        sys.exit("measure.py: prctl(PR_SET_CHILD_SUBREAPER) failed")
    cpu0 = group_cpu()
    t0 = time.monotonic()
    pid = os.fork()
    if pid == 0:
        os.setsid()  # own process group: a timeout kills the whole tool
        try:
            os.execvp(cmd[0], cmd)
        finally:
            os._exit(127)
    pidfd = os.pidfd_open(pid)
    ready, _, _ = select.select([pidfd], [], [], timeout)
    if not ready:
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    _, st = os.waitpid(pid, 0)
    wall = time.monotonic() - t0
    os.close(pidfd)
    if ready:
        status = os.waitstatus_to_exitcode(st)
        status = 128 - status if status < 0 else status
    else:
        status = 124
    # Reap what the tool left behind: a few seconds to finish, then it is killed.
    end = time.monotonic() + 5
    while True:
        try:
            got, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if got == 0:
            if time.monotonic() > end:
                for p in children():
                    try:
                        os.kill(p, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                end = time.monotonic() + 5
            time.sleep(0.01)
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    allcpu = "-"
    if cpu0 is not None:
        time.sleep(0.1)
        allcpu = f"{(group_cpu() - cpu0) / 1e9:.2f}"
    with open(out, "w") as f:
        f.write(f"{wall:.3f} {ru.ru_utime:.2f} {ru.ru_stime:.2f} {ru.ru_maxrss} {status} {allcpu}\n")


main()

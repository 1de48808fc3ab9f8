#!/usr/bin/env python3
"""An empty SFTP session, the part of the floor no push over `ssh -s HOST sftp` can avoid.

    sftpinit.py OUTFILE COMMAND [ARGS...]     e.g. sftpinit.py t ssh -s -- bench sftp

Starts COMMAND, sends SSH_FXP_INIT (version 3), waits for the server's SSH_FXP_VERSION,
then closes the server's input and waits for COMMAND to exit, as a push does once its work
is done. Writes the wall seconds from just before the start to that exit to OUTFILE:
Python's own start-up is not in them (`sftp -b /dev/null` would add its REALPATH and its
own start-up). Exits 1 with a message when no VERSION came.
"""

import os
import struct
import subprocess
import sys
import time

SSH_FXP_INIT = 1
SSH_FXP_VERSION = 2


def read_exact(fd, n):
    data = b""
    while len(data) < n:
        chunk = os.read(fd, n - len(data))
        if not chunk:
            sys.exit(f"sftpinit.py: the server closed after {len(data)} of {n} bytes")
        data += chunk
    return data


def main():
    out, cmd = sys.argv[1], sys.argv[2:]
    if not cmd:
        sys.exit("usage: sftpinit.py OUTFILE COMMAND [ARGS...]")
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0)
    p.stdin.write(struct.pack(">IBI", 5, SSH_FXP_INIT, 3))
    length, kind = struct.unpack(">IB", read_exact(p.stdout.fileno(), 5))
    if kind != SSH_FXP_VERSION or not 5 <= length <= 256 * 1024:
        sys.exit(f"sftpinit.py: the reply to INIT is type {kind}, length {length}")
    read_exact(p.stdout.fileno(), length - 1)  # the version and the extensions
    # Closing its input only now: sftp-server exits without sending what it has queued
    # when its input closes first.
    p.stdin.close()
    while os.read(p.stdout.fileno(), 65536):
        pass
    status = p.wait()
    wall = time.monotonic() - t0
    if status != 0:
        sys.exit(f"sftpinit.py: {cmd[0]} exited {status}")
    with open(out, "w") as f:
        f.write(f"{wall:.3f}\n")


main()

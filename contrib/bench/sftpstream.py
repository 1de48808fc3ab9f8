#!/usr/bin/env python3
"""Writes the SFTP v3 byte stream of an upload of a whole tree, as a client that costs
nothing and never waits would send it, for `ssh -s HOST sftp < STREAM > /dev/null`.

    sftpstream.py SRC_DIR REMOTE_DIR STREAM

Timed against the raw channel (`ssh HOST 'cat >/dev/null' < bytes`), it shows what the
SFTP server's work and the protocol cost on top of the link itself, with no client CPU and
no waiting for replies. It is not a strict floor: sent without pause, the requests pile up
in OpenSSH's sftp-server, which then spends more CPU on its input buffer than it does when a
client keeps a window (so a client may come out faster on some runs).

INIT, a MKDIR for every directory (parents first), then per file OPEN (write, create,
truncate), WRITEs of 255 KiB (OpenSSH's announced maximum) and CLOSE. Nothing is read back,
so the handle of each OPEN is assumed: OpenSSH's sftp-server hands out handle 0 again once
it is closed, a four-byte integer. The benchmark checks the remote tree afterwards.
"""

import os
import struct
import sys

INIT, OPEN, CLOSE, WRITE, MKDIR = 1, 3, 4, 6, 14
WRITE_CREAT_TRUNC = 0x02 | 0x08 | 0x10
CHUNK = 261120
HANDLE_0 = b"\0\0\0\0"


def string(b):
    return struct.pack(">I", len(b)) + b


class Stream:
    def __init__(self, out):
        self.out = out
        self.next_id = 0
        out.write(struct.pack(">IBI", 5, INIT, 3))

    def request(self, kind, *fields):
        body = struct.pack(">BI", kind, self.next_id) + b"".join(fields)
        self.next_id += 1
        self.out.write(struct.pack(">I", len(body)) + body)


def main():
    src, remote, out_path = sys.argv[1:4]
    remote = remote.rstrip("/").encode()
    dirs, files = [], []
    for top, subdirs, names in os.walk(src):
        subdirs.sort()
        rel = os.path.relpath(top, src)
        if rel != ".":
            dirs.append(rel)
        files += [os.path.normpath(os.path.join(rel, n)) for n in sorted(names)]
    no_attrs = struct.pack(">I", 0)
    with open(out_path, "wb") as out:
        s = Stream(out)
        for d in dirs:  # os.walk is top-down: parents come first
            s.request(MKDIR, string(remote + b"/" + d.encode()), no_attrs)
        handle = string(HANDLE_0)
        for f in files:
            s.request(OPEN, string(remote + b"/" + f.encode()),
                      struct.pack(">I", WRITE_CREAT_TRUNC), no_attrs)
            with open(os.path.join(src, f), "rb") as data:
                offset = 0
                while chunk := data.read(CHUNK):
                    s.request(WRITE, handle, struct.pack(">Q", offset), string(chunk))
                    offset += len(chunk)
            s.request(CLOSE, handle)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Asks an SFTP server the questions that decide how outsftphook talks to it, one line per
answer: its extensions, whether it answers in order, how it treats an exclusive open of an
existing file or a symlink, RENAME and posix-rename over an existing file or a symlink,
SYMLINK's argument order, READLINK of a relative link, OPENDIR of a missing directory, and
its exit status after a clean end of input. The README's server table was measured with it.

usage: serverprobe.py BASE -- COMMAND ARGS...
  BASE     an empty directory as the server names it ("." for its start directory)
  COMMAND  speaks SFTP on stdin/stdout: e.g. ssh -p PORT -s HOST sftp, or sftp-server -e

It creates files, links and a directory in BASE; run it on a scratch directory. Before
running, make BASE/rel a symlink to "bookworm" by hand (a relative link for READLINK).
"""
import struct
import subprocess
import sys
import time

READ, WRITE, CREAT, TRUNC, EXCL = 1, 2, 8, 0x10, 0x20
NAMES = {0: "OK", 1: "EOF", 2: "NO_SUCH_FILE", 3: "PERMISSION_DENIED", 4: "FAILURE",
         5: "BAD_MESSAGE", 8: "OP_UNSUPPORTED", 11: "FILE_ALREADY_EXISTS"}


class Peer:
    def __init__(self, argv, base):
        self.p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.base = base.encode().rstrip(b"/")
        self.id = 0

    def send(self, kind, body):
        self.p.stdin.write(struct.pack(">IB", len(body) + 1, kind) + body)
        self.p.stdin.flush()

    def recv(self):
        n = struct.unpack(">I", self.p.stdout.read(4))[0]
        data = self.p.stdout.read(n)
        return data[0], data[1:]

    def request(self, kind, body):
        self.id += 1
        self.send(kind, struct.pack(">I", self.id) + body)
        return self.id

    def call(self, kind, body):
        rid = self.request(kind, body)
        reply = self.recv()
        assert struct.unpack(">I", reply[1][:4])[0] == rid, "a reply out of order"
        return reply

    def path(self, name):
        return s(self.base + b"/" + name)


def s(b):
    return struct.pack(">I", len(b)) + b


def describe(reply):
    kind, d = reply
    if kind == 101:
        code = struct.unpack(">I", d[4:8])[0]
        n = struct.unpack(">I", d[8:12])[0]
        return f"{NAMES.get(code, code)} {d[12:12 + n].decode(errors='replace')!r}"
    if kind == 102:
        return "HANDLE"
    if kind == 104:
        n = struct.unpack(">I", d[8:12])[0]
        return f"NAME {d[12:12 + n]!r} (first of {struct.unpack('>I', d[4:8])[0]})"
    return f"reply type {kind}"


def main():
    base = sys.argv[1]
    assert sys.argv[2] == "--", __doc__
    peer = Peer(sys.argv[3:], base)
    peer.send(1, struct.pack(">I", 3))
    _, d = peer.recv()
    off, exts = 4, []
    while off < len(d):
        for _ in range(2):
            n = struct.unpack(">I", d[off:off + 4])[0]
            exts.append(d[off + 4:off + 4 + n])
            off += 4 + n
    pairs = list(zip(exts[::2], exts[1::2]))
    print("version", struct.unpack(">I", d[:4])[0])
    print("extensions", ", ".join(f"{n.decode()}={v!r}" for n, v in pairs))

    def open_(name, flags):
        return peer.call(3, peer.path(name) + struct.pack(">II", flags, 0))

    def close(reply):
        if reply[0] == 102:
            peer.call(4, s(reply[1][8:]))

    def put(name, data):
        r = open_(name, WRITE | CREAT | TRUNC)
        peer.call(6, s(r[1][8:]) + struct.pack(">Q", 0) + s(data))
        close(r)

    link_first = (b"symlink-order@rjk.greenend.org.uk", b"linkpath-targetpath") in pairs

    def symlink(target, link):
        # OpenSSH's order unless the server announces the draft's.
        args = peer.path(link) + s(target) if link_first else s(target) + peer.path(link)
        return peer.call(20, args)

    def ask(what, reply):
        print(f"{what}: {describe(reply)}")
        return reply

    put(b"existing", b"old")
    close(ask("EXCL open of an existing file", open_(b"existing", WRITE | CREAT | EXCL)))
    symlink(b"existing", b"link-to-existing")
    close(ask("EXCL open of a symlink to a file", open_(b"link-to-existing", WRITE | CREAT | EXCL)))
    symlink(b"nowhere", b"dangling")
    close(ask("EXCL open of a dangling symlink", open_(b"dangling", WRITE | CREAT | EXCL)))
    put(b"a", b"new")
    ask("RENAME over an existing file", peer.call(18, peer.path(b"a") + peer.path(b"existing")))
    if (b"posix-rename@openssh.com", b"1") in pairs:
        put(b"b", b"new")
        ask("posix-rename over an existing file",
            peer.call(200, s(b"posix-rename@openssh.com") + peer.path(b"b") + peer.path(b"existing")))
        put(b"c", b"new")
        ask("posix-rename over a symlink (see whether the link or its target changed)",
            peer.call(200, s(b"posix-rename@openssh.com") + peer.path(b"c") + peer.path(b"link-to-existing")))
    ask("SYMLINK l1 -> bookworm", symlink(b"bookworm", b"l1"))
    ask("READLINK of it", peer.call(19, peer.path(b"l1")))
    ask("READLINK of rel -> bookworm", peer.call(19, peer.path(b"rel")))
    r = ask("OPENDIR of a missing directory", peer.call(11, peer.path(b"missing")))
    if r[0] == 102:
        ask("  then READDIR", peer.call(12, s(r[1][8:])))
        close(r)
    ids = [peer.request(17, peer.path(b"existing")) if i % 2 else
           peer.request(3, peer.path(b"o%d" % i) + struct.pack(">II", WRITE | CREAT, 0))
           for i in range(40)]
    replies = [peer.recv() for _ in ids]
    print("40 STATs and OPENs answered in order:",
          [struct.unpack(">I", d[:4])[0] for _, d in replies] == ids)
    for r in replies:
        close(r)
    peer.p.stdin.close()
    started = time.time()
    print(f"exit status after end of input: {peer.p.wait()} ({time.time() - started:.2f} s)")


if __name__ == "__main__":
    main()

"""A process connects to the Workload API, is attested, then execs /bin/sh
with the connection kept open as fd 3; the shell sends a second request on
it. The server must answer it with the identity of the process that
connected (this interpreter), not of the binary running now (sh).

Usage: exec_after_connect.py SOCKET FIRST_REQUEST SECOND_REQUEST RESPONSE_FILE
Prints this interpreter's executable path, waits for "go" on stdin.
"""

import os
import socket
import sys


def main():
    sock_path, first, second, response = sys.argv[1:5]
    print(os.readlink("/proc/self/exe"), flush=True)
    if sys.stdin.readline().strip() != "go":
        return 2
    s = socket.socket(socket.AF_UNIX)
    s.connect(sock_path)
    with open(first, "rb") as f:
        s.sendall(f.read())
    s.settimeout(10)
    seen = b""
    while b"spiffe://example.org/launcher" not in seen:
        data = s.recv(65536)
        if not data:
            print("closed", flush=True)
            return 3
        seen += data
    print("attested", flush=True)
    # Back to blocking mode: the shell's cat shares this file description.
    s.settimeout(None)
    if s.fileno() != 3:
        os.dup2(s.fileno(), 3)
    os.set_inheritable(3, True)
    os.execv("/bin/sh", ["sh", "-c",
                         'cat "$1" >&3; timeout 3 cat <&3 > "$2"; exit 0',
                         "sh", second, response])


if __name__ == "__main__":
    sys.exit(main())

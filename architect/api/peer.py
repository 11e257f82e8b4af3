"""Which local user owns the other end of a TCP connection (Linux, from /proc/net/tcp{,6}).

A web server on loopback without a login must not answer another local user's processes
(ARCHITECTURE.md §10): every user of the machine can reach 127.0.0.1. The client's socket is
the line of /proc/net/tcp whose *local* address is the client's address and port (the
server's REMOTE_ADDR:REMOTE_PORT) and whose *remote* port is the server's port; its `uid`
column is the user that made the socket.

Lines of a socket no process holds any more (an orphan in FIN_WAIT, or TIME_WAIT) carry
inode 0 and, on older kernels, uid 0: they are never taken as an answer, so a client that
sends a request and closes its socket at once cannot pass for root.
"""

from __future__ import annotations

import ipaddress
import sys
from typing import Iterable

PROC_FILES = ("/proc/net/tcp", "/proc/net/tcp6")


def parse_address(token: str, byteorder: str = sys.byteorder):
    """'0100007F:1F90' → (IPv4Address('127.0.0.1'), 8080). The address is printed as 32-bit
    words in the kernel's byte order (each word little-endian on x86), the port as plain
    hex. IPv4-mapped IPv6 addresses come back as IPv4. ValueError if malformed."""
    addr_hex, sep, port_hex = token.partition(":")
    if not sep or len(addr_hex) not in (8, 32) or not port_hex:
        raise ValueError(f"not an address: {token!r}")
    raw = bytes.fromhex(addr_hex)
    if byteorder == "little":
        raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    ip = ipaddress.ip_address(raw)
    return normalize(ip), int(port_hex, 16)


def normalize(ip):
    """An address as compared here: IPv4-mapped IPv6 (::ffff:127.0.0.1) as its IPv4."""
    if isinstance(ip, str):
        ip = ipaddress.ip_address(ip.strip("[]").split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def find_owner(lines: Iterable[str], client_ip, client_port: int, server_port: int,
               byteorder: str = sys.byteorder) -> int | None:
    """The uid owning the client end of a connection to `server_port` from
    client_ip:client_port, given the lines of /proc/net/tcp or tcp6 (the header line is
    skipped). None when no live socket matches, or when two matches disagree (fail closed).
    Cheap: only lines whose local port matches are parsed further."""
    client_ip = normalize(client_ip)
    port_suffix = f":{client_port:04X}"
    found: set[int] = set()
    for line in lines:
        fields = line.split()
        # sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode ...
        if len(fields) < 10 or not fields[1].upper().endswith(port_suffix):
            continue
        try:
            local_ip, local_port = parse_address(fields[1], byteorder)
            _, remote_port = parse_address(fields[2], byteorder)
            uid, inode = int(fields[7]), int(fields[9])
        except ValueError:
            continue
        if local_port != client_port or local_ip != client_ip or remote_port != server_port:
            continue
        if inode == 0:  # no process holds this socket (orphan / TIME_WAIT): no owner to trust
            continue
        found.add(uid)
    return found.pop() if len(found) == 1 else None


def socket_owner(client_ip: str, client_port: int, server_port: int,
                 files: Iterable[str] = PROC_FILES) -> int | None:
    """Read /proc/net/tcp (and tcp6) and return the uid of the client's socket, or None."""
    try:
        ip = normalize(client_ip)
    except ValueError:
        return None
    for path in files:
        if ip.version == 6 and not path.endswith("6"):
            continue  # an IPv6 client socket is only in tcp6 (an IPv4 one may be in either)
        try:
            with open(path, encoding="ascii", errors="replace") as fh:
                next(fh, None)  # the header
                uid = find_owner(fh, ip, client_port, server_port)
        except OSError:
            continue
        if uid is not None:
            return uid
    return None

"""Ray cluster addresses: checked in configs without importing Ray, and probed before
joining, so an address that does not answer is one error line within seconds, not a hang."""

from __future__ import annotations

import socket

from ouroboros.errors import UserError

CONNECT_TIMEOUT_S = 10.0  # for the TCP probe of a head node


def split_address(address: str) -> tuple[str, int] | None:
    """(host, port) of ``HOST:PORT`` or ``ray://HOST:PORT``; None for ``auto``."""
    if address == "auto":
        return None
    rest = address.removeprefix("ray://")
    host, sep, port = rest.rpartition(":")
    host = host.strip("[]")  # [::1]:6379
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(address)
    return host, int(port)


def check_address(where: str, address: str) -> str:
    """`address` is ``auto``, ``HOST:PORT`` or ``ray://HOST:PORT``."""
    try:
        split_address(address)
    except ValueError:
        raise UserError(f"{where} must be auto, HOST:PORT or ray://HOST:PORT (a Ray head node, e.g. "
                        f"10.0.0.1:6379); got {address!r}") from None
    return address


def check_reachable(address: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Raise UserError unless something accepts TCP connections at `address` within `timeout` s."""
    where = split_address(address)
    if where is None:
        return
    try:
        with socket.create_connection(where, timeout=timeout):
            pass
    except OSError as exc:
        reason = "no answer" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
        raise UserError(f"the Ray cluster at {address} does not answer ({reason}); start its head with "
                        "`ray start --head` or give the address it printed with --ray-address") from None

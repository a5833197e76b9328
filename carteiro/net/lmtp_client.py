"""The queue's LMTP transport (RFC 2033): hands mail to a store or a list manager (Mailman 3's
`lmtp` runner, another Dovecot) over TCP or a Unix socket, and reads one reply per accepted
recipient after the data. `MuxTransport` sends each hop to the SMTP or LMTP client by its
protocol. No TLS, no AUTH (LMTP is for this host or a trusted network), no connection reuse.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from carteiro.net.smtp_stream import SessionFailed, StreamSession
from carteiro.queue.transport import Hop, Reply, SendResult, Transaction, Transport

log = logging.getLogger("carteiro.queue")


class LMTPClientTransport:
    def __init__(
        self,
        local_hostname: str,
        *,
        connect_timeout: float = 30.0,
        command_timeout: float = 300.0,
    ) -> None:
        self.local_hostname = local_hostname
        self.connect_timeout = connect_timeout
        self.command_timeout = command_timeout

    def has_idle(self, hop: Hop) -> bool:
        return False

    async def close(self) -> None:
        return None

    async def send(self, hop: Hop, txn: Transaction) -> SendResult:
        where = hop.address if hop.address.startswith("unix:") else f"{hop.address}:{hop.port}"
        try:
            async with asyncio.timeout(self.connect_timeout):
                if hop.address.startswith("unix:"):
                    reader, writer = await asyncio.open_unix_connection(hop.address[5:])
                else:
                    reader, writer = await asyncio.open_connection(hop.address, hop.port)
        except (OSError, TimeoutError) as e:
            return SendResult(
                session_error=Reply(451, "4.4.1", f"cannot connect to LMTP {where}: {e}"),
                try_next=True,
            )
        session = StreamSession(
            reader, writer, self.local_hostname, lmtp=True, timeout=self.command_timeout
        )
        try:
            await session.open()
            result = await session.transaction(txn)
            await session.quit()
            return result
        except SessionFailed as f:
            return f.result
        except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError) as e:
            return SendResult(
                session_error=Reply(451, "4.4.2", f"LMTP {where}: connection lost: {e!r}"),
            )
        finally:
            writer.close()
            with contextlib.suppress(OSError, TimeoutError):
                async with asyncio.timeout(5):
                    await writer.wait_closed()


class MuxTransport:
    """The queue's one Transport: SMTP hops to `smtp`, LMTP hops to `lmtp`."""

    def __init__(self, smtp: Transport, lmtp: Transport) -> None:
        self.smtp = smtp
        self.lmtp = lmtp

    def _for(self, hop: Hop) -> Transport:
        return self.lmtp if hop.protocol == "lmtp" else self.smtp

    async def send(self, hop: Hop, txn: Transaction) -> SendResult:
        return await self._for(hop).send(hop, txn)

    def has_idle(self, hop: Hop) -> bool:
        return self._for(hop).has_idle(hop)

    async def close(self) -> None:
        await self.smtp.close()
        await self.lmtp.close()

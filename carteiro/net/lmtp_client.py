"""The queue's LMTP transport (RFC 2033): hands mail to a store or a list manager (Mailman 3's
`lmtp` runner, another Dovecot) over TCP or a Unix socket, and reads one reply per accepted
recipient after the data. `MuxTransport` sends each hop to the SMTP or LMTP client by its
protocol. No TLS, no AUTH (LMTP is for this host or a trusted network), no connection reuse.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from carteiro.queue.transport import Hop, Reply, SendResult, Transaction, Transport

log = logging.getLogger("carteiro.queue")

MAX_REPLY_LINES = 100
MAX_LINE = 4096


class _Failed(Exception):
    def __init__(self, result: SendResult) -> None:
        self.result = result


def _stuff(message: bytes) -> bytes:
    """RFC 5321 4.5.2 dot-stuffing, and the terminating CRLF.CRLF."""
    if not message.endswith(b"\r\n"):
        message += b"\r\n"
    if message.startswith(b"."):
        message = b"." + message
    return message.replace(b"\r\n.", b"\r\n..") + b".\r\n"


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
        try:
            return await self._session(reader, writer, txn)
        except _Failed as f:
            return f.result
        except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError) as e:
            return SendResult(
                session_error=Reply(451, "4.4.2", f"LMTP {where}: connection lost: {e!r}"),
                try_next=False,
            )
        finally:
            writer.close()
            with contextlib.suppress(OSError, TimeoutError):
                async with asyncio.timeout(5):
                    await writer.wait_closed()

    async def _reply(self, reader: asyncio.StreamReader) -> Reply:
        lines: list[str] = []
        code = 0
        async with asyncio.timeout(self.command_timeout):
            while len(lines) < MAX_REPLY_LINES:
                raw = await reader.readuntil(b"\n")
                if len(raw) > MAX_LINE:
                    raise ValueError("reply line too long")
                text = raw.rstrip(b"\r\n").decode("utf-8", "replace")
                if len(text) < 3 or not text[:3].isdigit():
                    raise ValueError(f"bad reply line {text[:80]!r}")
                code = int(text[:3])
                lines.append(text[4:])
                if len(text) == 3 or text[3] != "-":
                    return Reply.parse(code, "\n".join(lines))
        raise ValueError("reply too long")

    async def _cmd(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, line: str
    ) -> Reply:
        writer.write(line.encode("utf-8") + b"\r\n")
        await writer.drain()
        return await self._reply(reader)

    async def _session(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, txn: Transaction
    ) -> SendResult:
        def fail(reply: Reply, try_next: bool = False) -> _Failed:
            return _Failed(SendResult(session_error=reply, try_next=try_next, remote_said=True))

        greeting = await self._reply(reader)
        if greeting.code != 220:
            raise fail(greeting, try_next=True)
        lhlo = await self._cmd(reader, writer, f"LHLO {self.local_hostname}")
        if lhlo.code != 250:
            raise fail(lhlo, try_next=True)
        # Reply.parse joins the lines; the keywords are the words that start each line
        ext = {word.upper() for word in lhlo.text.split()}
        params = ""
        if txn.body == "8BITMIME" and "8BITMIME" in ext:
            params += " BODY=8BITMIME"
        if txn.smtputf8:
            if "SMTPUTF8" not in ext:
                # RFC 6531 3.4: nowhere to send it without downgrading it
                raise _Failed(
                    SendResult(
                        recipients=tuple(
                            Reply(553, "5.6.7", "the LMTP server does not offer SMTPUTF8")
                            for _ in txn.recipients
                        )
                    )
                )
            params += " SMTPUTF8"
        mail = await self._cmd(reader, writer, f"MAIL FROM:<{txn.mail_from}>{params}")
        if not mail.ok:
            raise fail(mail)
        replies: list[Reply | None] = []
        for r in txn.recipients:
            rcpt = await self._cmd(reader, writer, f"RCPT TO:<{r.address}>")
            replies.append(None if rcpt.ok else rcpt)
        accepted = [i for i, rep in enumerate(replies) if rep is None]
        if not accepted:
            with contextlib.suppress(Exception):
                await self._cmd(reader, writer, "QUIT")
            return SendResult(recipients=tuple(r for r in replies if r is not None))
        data = await self._cmd(reader, writer, "DATA")
        if data.code != 354:
            raise fail(data)
        writer.write(_stuff(txn.message))
        await writer.drain()
        # RFC 2033 4.2: one reply per recipient RCPT accepted, in order
        for i in accepted:
            replies[i] = await self._reply(reader)
        with contextlib.suppress(Exception):
            await self._cmd(reader, writer, "QUIT")
        final = tuple(r if r is not None else Reply(451, "4.3.0", "no reply") for r in replies)
        return SendResult(recipients=final)


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

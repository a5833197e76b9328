"""A small SMTP/LMTP client over an already-open stream: the LMTP transport's, and the ODMR
server's once an ATRN turns the connection around (RFC 2645 5: the server becomes the client).

One session: greeting, EHLO or LHLO, then transactions, then QUIT. It reports replies as values
(SendResult); it never retries or bounces. Bounded: reply lines and line counts are capped.
"""

from __future__ import annotations

import asyncio
import contextlib

from carteiro.queue.transport import Reply, SendResult, Transaction

MAX_REPLY_LINES = 100
MAX_LINE = 4096


class SessionFailed(Exception):
    """The session cannot go on; `result` says why (for every recipient of the transaction)."""

    def __init__(self, result: SendResult) -> None:
        super().__init__(str(result.session_error))
        self.result = result


def dot_stuff(message: bytes) -> bytes:
    """RFC 5321 4.5.2 dot-stuffing, and the terminating CRLF.CRLF."""
    if not message.endswith(b"\r\n"):
        message += b"\r\n"
    if message.startswith(b"."):
        message = b"." + message
    return message.replace(b"\r\n.", b"\r\n..") + b".\r\n"


class StreamSession:
    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        local_hostname: str,
        *,
        lmtp: bool,
        timeout: float = 300.0,
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.local_hostname = local_hostname
        self.lmtp = lmtp
        self.timeout = timeout
        self.extensions: set[str] = set()
        self._last_lines: list[str] = []  # the text lines of the last reply

    async def reply(self) -> Reply:
        lines: list[str] = []
        async with asyncio.timeout(self.timeout):
            while len(lines) < MAX_REPLY_LINES:
                raw = await self.reader.readuntil(b"\n")
                if len(raw) > MAX_LINE:
                    raise ValueError("reply line too long")
                text = raw.rstrip(b"\r\n").decode("utf-8", "replace")
                if len(text) < 3 or not text[:3].isdigit():
                    raise ValueError(f"bad reply line {text[:80]!r}")
                lines.append(text[4:])
                if len(text) == 3 or text[3] != "-":
                    self._last_lines = lines
                    return Reply.parse(int(text[:3]), "\n".join(lines))
        raise ValueError("reply too long")

    async def command(self, line: str) -> Reply:
        self.writer.write(line.encode("utf-8") + b"\r\n")
        await self.writer.drain()
        return await self.reply()

    @staticmethod
    def _fail(reply: Reply, try_next: bool = False) -> SessionFailed:
        return SessionFailed(SendResult(session_error=reply, try_next=try_next, remote_said=True))

    async def open(self) -> None:
        """Read the greeting, say EHLO (LHLO), learn the extensions."""
        greeting = await self.reply()
        if greeting.code != 220:
            raise self._fail(greeting, try_next=True)
        hello = await self.command(f"{'LHLO' if self.lmtp else 'EHLO'} {self.local_hostname}")
        if hello.code != 250:
            raise self._fail(hello, try_next=True)
        self.extensions = {ln.split()[0].upper() for ln in self._last_lines[1:] if ln.split()}

    async def transaction(self, txn: Transaction) -> SendResult:
        """One message. LMTP: one reply per accepted recipient after the data (RFC 2033 4.2);
        SMTP: the one reply after the data is every accepted recipient's."""
        ext = self.extensions
        params = ""
        if txn.body == "8BITMIME" and "8BITMIME" in ext:
            params += " BODY=8BITMIME"
        if txn.smtputf8:
            if "SMTPUTF8" not in ext:
                # RFC 6531 3.4: nowhere to send it without downgrading it
                no = Reply(553, "5.6.7", "the next hop does not offer SMTPUTF8")
                return SendResult(recipients=tuple(no for _ in txn.recipients))
            params += " SMTPUTF8"
        mail = await self.command(f"MAIL FROM:<{txn.mail_from}>{params}")
        if not mail.ok:
            with contextlib.suppress(Exception):
                await self.command("RSET")
            return SendResult(recipients=tuple(mail for _ in txn.recipients))
        replies: list[Reply | None] = []
        for r in txn.recipients:
            rcpt = await self.command(f"RCPT TO:<{r.address}>")
            replies.append(None if rcpt.ok else rcpt)
        accepted = [i for i, rep in enumerate(replies) if rep is None]
        if not accepted:
            with contextlib.suppress(Exception):
                await self.command("RSET")
            return SendResult(recipients=tuple(r for r in replies if r is not None))
        data = await self.command("DATA")
        if data.code != 354:
            for i in accepted:
                replies[i] = data
        else:
            self.writer.write(dot_stuff(txn.message))
            await self.writer.drain()
            if self.lmtp:
                for i in accepted:
                    replies[i] = await self.reply()
            else:
                end = await self.reply()
                for i in accepted:
                    replies[i] = end
        final = tuple(r if r is not None else Reply(451, "4.3.0", "no reply") for r in replies)
        return SendResult(recipients=final)

    async def quit(self) -> None:
        with contextlib.suppress(Exception):
            await self.command("QUIT")

"""SMTP AUTH (RFC 4954) over the shared SASL machines of carteiro.proto.sasl (PLAIN, LOGIN).

An exchange turns client lines into either the next SMTP reply (334 challenge or an error) or the
(username, password) pair to check. It never logs or keeps a secret beyond the exchange.
"""

from __future__ import annotations

from carteiro.proto import sasl
from carteiro.proto.smtp import replies as R
from carteiro.proto.smtp.replies import Reply

Step = Reply | tuple[str, str]


def mechanisms() -> tuple[str, ...]:
    return tuple(sasl.MECHANISMS)


def _reply(step: sasl.Step) -> Step:
    if isinstance(step, sasl.Challenge):
        return Reply(334, "", sasl.encode_challenge(step.data).decode("ascii"))
    if isinstance(step, sasl.Success):
        return step.credentials.authcid, step.credentials.password
    if step.kind is sasl.FailureKind.CANCELLED:
        return R.R_501_AUTH_CANCELLED  # RFC 4954 4
    if step.kind is sasl.FailureKind.ENCODING:
        return R.R_501_AUTH_BAD_BASE64
    return R.R_535_AUTH_FAILED


class SaslExchange:
    def __init__(self, mechanism: str) -> None:
        server = sasl.server(mechanism)
        if server is None:
            raise ValueError(f"unsupported SASL mechanism {mechanism}")
        self._server = server

    def start(self, initial: str | None) -> Step:
        return _reply(self._server.start_wire(initial))

    def respond(self, line: bytes) -> Step:
        return _reply(self._server.respond(line))

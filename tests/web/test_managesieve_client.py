"""The webmail's ManageSieve client (web/managesieve.py) against a real third-party server:
Dovecot Pigeonhole, over STARTTLS with AUTHENTICATE PLAIN, every command the Settings page uses.
(tests/web/test_settings_http.py drives it against carteiro's own server.)"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from carteiro.testing.dovecot import DovecotInstance, sieve_available
from carteiro.web.imap import Endpoint
from carteiro.web.managesieve import ManageSieve, SieveAuthFailed, SieveNo
from carteiro.web.sieverules import Rule, Rules, Vacation, generate

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(sieve_available() is not None, reason=str(sieve_available())),
]


def test_against_dovecot_pigeonhole(tmp_path: Path) -> None:
    with DovecotInstance(tmp_path, users={"ann": "ann-pw"}, tls=True, sieve=True) as dc:
        ep = Endpoint("127.0.0.1", dc.sieve_port, "starttls", verify=False, timeout=10)

        async def run() -> None:
            with pytest.raises(SieveAuthFailed):
                await ManageSieve.login(ep, "ann", "wrong")
            async with await ManageSieve.login(ep, "ann", "ann-pw") as ms:
                assert "STARTTLS" not in ms.capabilities  # the list after TLS (RFC 5804 2.2)
                assert "fileinto" in ms.capabilities["SIEVE"].split()
                assert await ms.list_scripts() == []
                with pytest.raises(SieveNo) as bad:
                    await ms.check_script('require "fileinto";\r\nfileinto;\r\n')
                assert "line 2" in bad.value.text
                form = Rules(Vacation(True, "Away", "Back soon.\nÁ bientôt", 5))
                form.rules.append(Rule("from", "boss@example.org", "Work"))
                script = generate(form)
                await ms.check_script(script)
                await ms.put_script("webmail", script)
                await ms.put_script("other", "keep;\r\n")
                await ms.set_active("webmail")
                assert sorted(await ms.list_scripts()) == [("other", False), ("webmail", True)]
                assert (await ms.get_script("webmail")) == script
                await ms.set_active("")
                await ms.delete_script("other")
                with pytest.raises(SieveNo):
                    await ms.get_script("other")
                assert await ms.list_scripts() == [("webmail", False)]

        asyncio.run(run())

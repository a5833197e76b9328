"""The webmail (L4): an ASGI app that is an IMAP and SMTP submission client of any mail server.

It imports no server or store module and keeps no mail; see docs/web.md.
"""

"""Fetching mail from remote mailboxes (fetchmail's role): `[[fetch]]` entries polled by the
server, each message delivered once through the local delivery path."""

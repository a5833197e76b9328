"""Mailing lists ("exploders"), in Mailman 3's shape: a post goes through a chain of rules
(accept, hold, reject, discard), then a pipeline of handlers that make the copy the members get,
which goes to the outbound queue in batches with VERP senders. Lists live in their own SQLite file
(DATA/lists/lists.sqlite). Never touches sockets or the store's internals: app.py injects the queue,
the archive and DNS.
"""

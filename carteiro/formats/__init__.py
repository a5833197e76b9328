"""Mailbox import and export: the formats of Python's `mailbox` module, one module each.

message.py holds the type every format reads into and writes from; header.py the header-section and
date helpers they share; registry.py picks a format's reader or writer; transfer.py copies between
them and an account of the store. No format module touches the store.
"""

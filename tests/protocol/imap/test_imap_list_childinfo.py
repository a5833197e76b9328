"""LIST (SUBSCRIBED RECURSIVEMATCH) and CHILDINFO, after RFC 5258 section 5, examples 8, 9 and 10.

RFC 5258 3.3 (2B) and 3.5: CHILDINFO marks a mailbox with a subscribed descendant that the pattern
does not match; a descendant the pattern matches is listed itself, so CHILDINFO for it is
redundant (SHOULD NOT). The second half of example 9 (pattern "*") still shows CHILDINFO on
foo2, baz2 and eps2, against that rule and the first half of the same example; we follow the
rule. Responses come in name order (the RFC's follow its hierarchy). Our LIST always carries \\HasChildren/\\HasNoChildren (RFC 5258 4: a server MAY), which the
RFC's examples leave out unless RETURN (CHILDREN) is given. Session 1 logs in first."""

# ruff: noqa: F811  (pytest fixtures imported from imap_harness)

from __future__ import annotations

from imap_harness import (  # noqa: F401  (fixtures)
    PASSWORD,
    USER,
    directory,
    play,
    server,
    start_server,
    tls_files,
)

LOGIN = f'LOGIN {USER} "{PASSWORD}"'


async def _hierarchy(server, mailboxes, subscribed):  # type: ignore[no-untyped-def]
    """Only `mailboxes` (besides the defaults, none subscribed) and only `subscribed`."""
    acct = await server.account()
    for name in mailboxes:
        await acct.create_mailbox(name)
    for name in await acct.subscriptions():
        await acct.set_subscribed(name, False)
    for name in subscribed:
        await acct.set_subscribed(name, True)


EX8 = ["Foo", "Foo/Bar", "Foo/Baz", "Moo"]


async def test_example_8a_unsubscribed_parent_of_a_subscribed_child(server):
    await _hierarchy(server, EX8, ["Foo/Baz"])
    await play(
        server,
        f"""
C: a1 {LOGIN}
S: a1 OK <...>
C: C02 LIST (SUBSCRIBED) "" "*"
S: * LIST (\\HasNoChildren \\Subscribed) "/" Foo/Baz
S: C02 OK List completed.
C: C03 LIST (SUBSCRIBED) "" "%"
S: C03 OK List completed.
C: C04 LIST (SUBSCRIBED RECURSIVEMATCH) "" "%"
S: * LIST (\\HasChildren) "/" Foo ("CHILDINFO" ("SUBSCRIBED"))
S: C04 OK List completed.
C: C05 LIST (SUBSCRIBED RECURSIVEMATCH) "" "*"
S: * LIST (\\HasNoChildren \\Subscribed) "/" Foo/Baz
S: C05 OK List completed.
""",
    )


async def test_example_8a1_subscribed_parent(server):
    await _hierarchy(server, EX8, ["Foo", "Foo/Baz"])
    await play(
        server,
        f"""
C: a1 {LOGIN}
S: a1 OK <...>
C: C04 LIST (SUBSCRIBED RECURSIVEMATCH) "" "%"
S: * LIST (\\HasChildren \\Subscribed) "/" Foo ("CHILDINFO" ("SUBSCRIBED"))
S: C04 OK List completed.
C: C05 LIST (SUBSCRIBED RECURSIVEMATCH) "" "Foo*"
S: * LIST (\\HasChildren \\Subscribed) "/" Foo
S: * LIST (\\HasNoChildren \\Subscribed) "/" Foo/Baz
S: C05 OK List completed.
""",
    )


async def test_example_8a2_nonexistent_parent(server):
    await _hierarchy(server, ["Foo/Baz", "Moo"], ["Foo/Baz"])
    acct = await server.account()
    # Foo/Baz stays; Foo is no longer a mailbox. Our store keeps a \\Noselect placeholder for a
    # deleted parent (RFC 3501 6.3.4) where the RFC's server has no Foo at all (\\NonExistent).
    await acct.delete_mailbox("Foo")
    await play(
        server,
        f"""
C: a1 {LOGIN}
S: a1 OK <...>
C: C04 LIST (SUBSCRIBED RECURSIVEMATCH) "" "%"
S: * LIST (\\Noselect \\HasChildren) "/" Foo ("CHILDINFO" ("SUBSCRIBED"))
S: C04 OK List completed.
""",
    )


async def test_example_8b_and_8c_no_subscribed_child(server):
    await _hierarchy(server, EX8, [])
    await play(
        server,
        f"""
C: a1 {LOGIN}
S: a1 OK <...>
C: C04 LIST (SUBSCRIBED RECURSIVEMATCH) "" "%"
S: C04 OK List completed.
C: a2 SUBSCRIBE Foo
S: a2 OK Subscribe completed.
C: a3 SUBSCRIBE Moo
S: a3 OK Subscribe completed.
C: C05 LIST (SUBSCRIBED RECURSIVEMATCH) "" "%" RETURN (CHILDREN)
S: * LIST (\\HasChildren \\Subscribed) "/" Foo
S: * LIST (\\HasNoChildren \\Subscribed) "/" Moo
S: C05 OK List completed.
""",
    )


async def test_example_9_childinfo_only_for_children_the_pattern_misses(server):
    leaves = ["foo2/bar1", "foo2/bar2", "baz2/bar2", "baz2/bar22", "baz2/bar222"]
    leaves += ["eps2/mamba", "qux2/bar2"]
    await _hierarchy(server, leaves, [*leaves, "eps2"])
    acct = await server.account()
    await acct.delete_mailbox("qux2")  # RFC: qux2/bar2 exists, qux2 does not (ours: \\Noselect)
    await play(
        server,
        f"""
C: a1 {LOGIN}
S: a1 OK <...>
C: D03 LIST (RECURSIVEMATCH SUBSCRIBED) "" "*2"
S: * LIST (\\HasNoChildren \\Subscribed) "/" baz2/bar2
S: * LIST (\\HasNoChildren \\Subscribed) "/" baz2/bar22
S: * LIST (\\HasNoChildren \\Subscribed) "/" baz2/bar222
S: * LIST (\\HasChildren \\Subscribed) "/" eps2 ("CHILDINFO" ("SUBSCRIBED"))
S: * LIST (\\HasChildren) "/" foo2 ("CHILDINFO" ("SUBSCRIBED"))
S: * LIST (\\HasNoChildren \\Subscribed) "/" foo2/bar2
S: * LIST (\\HasNoChildren \\Subscribed) "/" qux2/bar2
S: D03 OK List completed.
C: D04 LIST (RECURSIVEMATCH SUBSCRIBED) "" "*"
S: * LIST (\\HasNoChildren \\Subscribed) "/" baz2/bar2
S: * LIST (\\HasNoChildren \\Subscribed) "/" baz2/bar22
S: * LIST (\\HasNoChildren \\Subscribed) "/" baz2/bar222
S: * LIST (\\HasChildren \\Subscribed) "/" eps2
S: * LIST (\\HasNoChildren \\Subscribed) "/" eps2/mamba
S: * LIST (\\HasNoChildren \\Subscribed) "/" foo2/bar1
S: * LIST (\\HasNoChildren \\Subscribed) "/" foo2/bar2
S: * LIST (\\HasNoChildren \\Subscribed) "/" qux2/bar2
S: D04 OK List completed.
""",
    )


async def test_example_10_childinfo_without_children(server):
    """CHILDINFO does not imply \\HasChildren: foo/bar is subscribed but does not exist."""
    await _hierarchy(server, ["foo/bar"], ["foo/bar"])
    acct = await server.account()
    await acct.delete_mailbox("foo/bar")
    await acct.set_subscribed("foo/bar", True)  # a subscription may outlive its mailbox
    await play(
        server,
        f"""
C: a1 {LOGIN}
S: a1 OK <...>
C: a2 LIST (SUBSCRIBED) "" "foo/*"
S: * LIST (\\NonExistent \\HasNoChildren \\Subscribed) "/" foo/bar
S: a2 OK List completed.
C: a3 LIST (SUBSCRIBED RECURSIVEMATCH) "" foo RETURN (CHILDREN)
S: * LIST (\\HasNoChildren) "/" foo ("CHILDINFO" ("SUBSCRIBED"))
S: a3 OK List completed.
""",
    )

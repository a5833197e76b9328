"""A frozen copy of THREAD REFERENCES and ORDEREDSUBJECT and of the thread rendering as they were
when the transcript and corpus tests (RFC 5256's examples, tricky subjects, broken References)
first passed: the reference the faster `carteiro.mail.threading` is compared with, answer for
answer, on random mailboxes (test_threading.py). Not used by the server."""

# ruff: noqa
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from carteiro.mail.sorting import Item
from carteiro.mime.sortkeys import casemap

ALGORITHMS = frozenset({"ORDEREDSUBJECT", "REFERENCES"})
# A link that would hang a subtree more than this deep below is refused, as a loop would be: the
# loop check walks up the tree, and a hostile mailbox could otherwise make every check O(n).
MAX_DEPTH = 1000


@dataclass(eq=False, slots=True)
class Node:
    """A message, or a dummy (item None) standing for one that is referred to but absent."""

    item: Item | None = None
    children: list[Node] = field(default_factory=list)
    parent: Node | None = None

    def key(self) -> tuple[float, int]:
        """Sent date and mailbox position; a dummy sorts as its first child (RFC 5256 2.2)."""
        node = self
        while node.item is None:
            if not node.children:
                return (0.0, 0)
            node = node.children[0]
        return node.item.sent, node.item.seq


def ordered_subject(items: Sequence[Item]) -> list[Node]:
    """RFC 5256 3 ORDEREDSUBJECT: by base subject then sent date; the first message of each
    subject is the parent of all the others; threads in the order of their first message."""
    by_subject: dict[str, Node] = {}
    roots: list[Node] = []
    for it in sorted(items, key=lambda i: (i.sent, i.seq)):
        node = Node(it)
        subj = casemap(it.fields.subject)  # the same subject to the collation (RFC 5256 4)
        root = by_subject.get(subj)
        if root is None:
            by_subject[subj] = node
            roots.append(node)
        else:
            node.parent = root
            root.children.append(node)
    return roots  # already ordered by (sent, seq) of each thread's first message


def _ancestor(node: Node, other: Node) -> bool:
    """Is `other` `node` or one of its ancestors?"""
    n: Node | None = node
    for _ in range(MAX_DEPTH):
        if n is None:
            return False
        if n is other:
            return True
        n = n.parent
    return True  # deeper than MAX_DEPTH: treated as a loop, the link is not made


def _loops(parent: Node, child: Node) -> bool:
    """Would linking parent -> child close a loop? Only if child is parent or one of its
    ancestors, which takes a child with children of its own: a new one is cheap to link (a
    References chain as long as the mailbox stays linear)."""
    return child is parent or (bool(child.children) and _ancestor(parent, child))


def _link(parent: Node, child: Node) -> None:
    if child.parent is not None:
        child.parent.children.remove(child)
    child.parent = parent
    parent.children.append(child)


def references(items: Sequence[Item]) -> list[Node]:
    """RFC 5256 2.2 REFERENCES (Jamie Zawinski's algorithm), steps 1 to 6."""
    table: dict[str, Node] = {}
    ordered = sorted(items, key=lambda i: i.seq)
    for it in ordered:
        # (1) a message without a Message-ID, or with one already taken, gets a unique one
        mid = it.fields.message_id
        node = table.get(mid) if mid else None
        if node is None or node.item is not None:
            if node is not None or not mid:
                mid = f"\0{it.seq}"
            node = table[mid] = Node(it)
        else:
            node.item = it  # the dummy made for a reference to it
        # (1A) link the references in order, each the parent of the next, keeping existing
        # parents and never making a loop
        prev: Node | None = None
        for ref in it.fields.references:
            cur = table.get(ref)
            if cur is None:
                cur = table[ref] = Node()
            if prev is not None and cur.parent is None and not _loops(prev, cur):
                _link(prev, cur)
            prev = cur
        # (1B) the last reference is the message's parent: References are authoritative, so
        # an earlier link goes; none if it would make a loop; no references, no parent
        if prev is not None and not _loops(prev, node):
            _link(prev, node)
        elif prev is None and node.parent is not None:
            node.parent.children.remove(node)
            node.parent = None
    # (2) the root set; (3) table discarded
    roots = [n for n in table.values() if n.parent is None]
    # (3) prune dummies
    roots = _prune(roots)
    # (4) sort the root set by sent date (dummies by their first child, after sorting those;
    # a message's own key needs no sorting yet: (6) sorts every tree)
    for r in roots:
        if r.item is None:
            _sort_tree(r)
    roots.sort(key=Node.key)
    # (5) gather threads whose root has the same base subject
    roots = _merge_subjects(roots)
    # (6) sort every set of siblings, deepest first, by sent date
    for r in roots:
        _sort_tree(r)
    roots.sort(key=Node.key)
    return roots


def _walk(roots: list[Node]) -> list[Node]:
    """Every node under `roots`, parents before children (no recursion: a hostile mailbox can
    make a tree as deep as it has messages)."""
    order: list[Node] = []
    stack = list(roots)
    while stack:
        n = stack.pop()
        order.append(n)
        stack.extend(n.children)
    return order


def _prune(roots: list[Node]) -> list[Node]:
    """(3) A dummy without children goes; a dummy with children gives way to them, except at
    the root when it has more than one (they are not promoted to the root)."""
    for n in reversed(_walk(roots)):  # children first
        kids: list[Node] = []
        for c in n.children:
            if c.item is not None:
                kids.append(c)
            elif c.children:
                kids.extend(c.children)
        for c in kids:
            c.parent = n
        n.children = kids
    out: list[Node] = []
    for r in roots:
        if r.item is not None or len(r.children) > 1:
            out.append(r)
        elif r.children:
            out.append(r.children[0])
    for r in out:
        r.parent = None
    return out


def _sort_tree(root: Node) -> None:
    if not root.children:
        return  # most threads are one message
    for n in reversed(_walk([root])):  # a dummy sorts by its first child: children first
        if len(n.children) > 1:
            n.children.sort(key=Node.key)


def _subject_of(node: Node) -> Node | None:
    """The message whose subject names the thread: the root, or a dummy root's first child."""
    if node.item is not None:
        return node
    return node.children[0] if node.children and node.children[0].item is not None else None


def _merge_subjects(roots: list[Node]) -> list[Node]:
    # (5A-C) the subject table: per base subject, a dummy over a message, a message that is
    # not a reply over one that is
    subjects: dict[str, Node] = {}
    keys: list[str] = []  # each root's collation key of its subject ("" none)
    for r in roots:
        m = _subject_of(r)
        if m is None or m.item is None or not m.item.fields.subject:
            keys.append("")
            continue
        subj = casemap(m.item.fields.subject)
        keys.append(subj)
        old = subjects.get(subj)
        if (
            old is None
            or (old.item is not None and r.item is None)
            or (
                old.item is not None
                and old.item.fields.reply
                and r.item is not None
                and not r.item.fields.reply
            )
        ):
            subjects[subj] = r
    # (5D) merge the other roots with that subject into the table's
    made: list[Node] = []
    for r, subj in zip(roots, keys, strict=True):
        t = subjects.get(subj) if subj else None
        if t is None or t is r:
            continue
        if t.item is None and r.item is None:
            for c in r.children:  # (i) both dummies: the children become siblings
                c.parent = t
            t.children.extend(r.children)
            r.children = []
        elif t.item is None or (
            r.item is not None and r.item.fields.reply and not t.item.fields.reply
        ):
            # (ii) the table's is a dummy, or (iii) this one is a reply and the table's is not:
            # this one becomes a child of the table's (a sibling of its children)
            r.parent = t
            t.children.append(r)
        else:
            # (iv) a new dummy holds both, and takes the table's place
            d = Node(children=[t, r])
            t.parent = r.parent = d
            subjects[subj] = d
            made.append(d)
    return [n for n in roots + made if n.parent is None and (n.item is not None or n.children)]


def render(node: Node, uid: bool) -> str:
    """A thread's members inside its parentheses (RFC 5256 5 thread-list): a chain of only
    children as numbers, two or more children as nested lists; a dummy has no number. No
    recursion: a hostile mailbox can make a thread as deep as it has messages."""
    out: list[str] = []
    stack: list[Node | str] = [node]
    while stack:
        x = stack.pop()
        if isinstance(x, str):
            out.append(x)
            continue
        numbers: list[str] = []
        cur = x
        while True:
            if cur.item is not None:
                numbers.append(str(cur.item.uid if uid else cur.item.seq))
            if len(cur.children) != 1:
                break
            cur = cur.children[0]
        out.append(" ".join(numbers))
        if cur.children:
            if numbers:
                out.append(" ")
            for k in reversed(cur.children):
                stack += [")", k, "("]
    return "".join(out)

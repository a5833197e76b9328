"""HTML mail made inert with nh3 (ammonia): no script, no event handler, no form, no javascript: or
data: link, no remote CSS; `cid:` images point at the message's own parts; remote images are
dropped (kept aside in data-src) unless the user allowed them for this message.

The result is still shown only in a sandboxed iframe under a Content-Security-Policy (defence in
depth: the sanitiser is the first wall, the CSP and the sandbox are the second and third).
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import quote

import nh3

TAGS = {
    "a", "abbr", "address", "b", "bdi", "bdo", "blockquote", "br", "caption", "center", "cite",
    "code", "col", "colgroup", "dd", "del", "details", "dfn", "div", "dl", "dt", "em", "font",
    "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "img", "ins", "kbd", "li", "mark", "ol", "p",
    "pre", "q", "s", "samp", "small", "span", "strike", "strong", "sub", "summary", "sup",
    "table", "tbody", "td", "tfoot", "th", "thead", "tr", "tt", "u", "ul", "var",
}  # fmt: skip
ATTRS = {
    "*": {"style", "title", "lang", "dir", "align", "valign", "width", "height", "bgcolor"},
    "a": {"href"},
    "img": {"src", "alt", "border"},
    "font": {"color", "face", "size"},
    "table": {"border", "cellpadding", "cellspacing"},
    "td": {"colspan", "rowspan", "nowrap"},
    "th": {"colspan", "rowspan", "nowrap"},
    "ol": {"start", "type"},
}
# No property that can load anything (background-image, list-style-image, content...) or move the
# message out of its box over our own page (position).
STYLE_PROPERTIES = {
    "color", "background-color", "font", "font-family", "font-size", "font-style",
    "font-weight", "text-align", "text-decoration", "text-indent", "line-height", "margin",
    "margin-left", "margin-right", "margin-top", "margin-bottom", "padding", "padding-left",
    "padding-right", "padding-top", "padding-bottom", "border", "border-collapse",
    "border-color", "border-style", "border-width", "width", "max-width", "height",
    "vertical-align", "white-space", "display",
}  # fmt: skip
SCHEMES = {"http", "https", "mailto", "cid"}


def sanitize(
    html: str, cid_url: Callable[[str], str], allow_remote: bool = False
) -> tuple[str, int]:
    """(safe HTML, number of remote images blocked)."""
    blocked = 0

    def attr(element: str, attribute: str, value: str) -> str | None:
        nonlocal blocked
        if element == "img" and attribute == "src":
            v = value.strip()
            low = v.lower()
            if low.startswith("cid:"):
                return cid_url(v[4:])
            if low.startswith(("http:", "https:")):
                if allow_remote:
                    return v
                blocked += 1
                return None
            return None
        # Absolute links only: a relative one would point into the webmail itself.
        absolute = value.strip().lower().startswith(("http:", "https:", "mailto:"))
        if element == "a" and attribute == "href" and not absolute:
            return None
        return value

    clean = nh3.clean(
        html,
        tags=TAGS,
        attributes=ATTRS,
        url_schemes=SCHEMES,
        attribute_filter=attr,
        filter_style_properties=STYLE_PROPERTIES,
        link_rel="noopener noreferrer nofollow",
        set_tag_attribute_values={"a": {"target": "_blank"}},
        strip_comments=True,
    )
    return clean, blocked


def cid_path(base: str) -> Callable[[str], str]:
    """cid:ID -> BASE/cid/ID (the message's part with Content-ID <ID>, RFC 2392)."""

    def url(cid: str) -> str:
        return f"{base}/cid/{quote(cid.strip('<>'), safe='')}"

    return url

"""What the HTML sanitizer keeps: tags, attributes, CSS properties, and the options.

Shared by :mod:`postwarden_policies.sanitize` (which has nh3 enforce it) and
:mod:`postwarden_policies.html_precheck` (which recognises HTML already
within it).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class HtmlOptions:
    remote_images: str  # "keep" | "strip"
    allowed_url_schemes: frozenset[str]


# HTML5's sectioning blocks too: dropped, they left their texts run together on one
# line ("<header>News</header><section>Dear" showed "NewsDear"). Ruby annotations
# (furigana over Japanese kanji): dropped, the reading ran on inline after the word.
TAGS = frozenset(
    """a abbr acronym address area article aside b bdi bdo big blockquote br caption center
    cite code col colgroup dd del dfn div dl dt em figcaption figure font footer h1 h2 h3 h4
    h5 h6 header hgroup hr i img ins kbd li main map mark nav ol p pre q rb rp rt rtc ruby s
    samp section small span strike strong sub sup table tbody td tfoot th thead tr tt u ul
    var wbr""".split()
)
# Tags whose content goes too, not just the tag: code, styles, frames, foreign XML.
DROP_WITH_CONTENT = frozenset(
    """script style title head svg math iframe object embed noembed noframes template
    frameset applet""".split()
)
# role and the ARIA labels templates write for screen readers: dropped, a reader
# announced each layout table (role="presentation") as a table of data, and read out
# spacer images and icons (aria-hidden) and links named only by an image (aria-label).
GENERIC_ATTRIBUTES = frozenset(
    """align valign width height bgcolor color dir lang title border cellpadding cellspacing
    style class face size hspace vspace nowrap role aria-label aria-hidden""".split()
)
ATTRIBUTES: dict[str, frozenset[str]] = {
    "*": GENERIC_ATTRIBUTES,
    "a": frozenset({"href", "name"}),
    # usemap: an image map's <map> and <area> links are kept, useless without it.
    "img": frozenset({"src", "alt", "usemap"}),
    "td": frozenset({"colspan", "rowspan", "headers", "scope"}),
    "th": frozenset({"colspan", "rowspan", "headers", "scope"}),
    "col": frozenset({"span"}),
    "colgroup": frozenset({"span"}),
    "ol": frozenset({"start", "type"}),
    "ul": frozenset({"type"}),
    "li": frozenset({"value"}),
    "area": frozenset({"href", "alt", "shape", "coords"}),
    "map": frozenset({"name"}),
    "table": frozenset({"summary"}),
}
# The background image a newsletter's hero table or cell paints (HTML's background
# attribute, on the elements readers paint it on): an image URL, judged as an img src.
ATTRIBUTES.update({tag: ATTRIBUTES.get(tag, frozenset()) | {"background"}
                   for tag in ("table", "thead", "tbody", "tfoot", "tr", "td", "th")})
# What readers load as an image: judged as one (data: only as a raster image, an
# http(s) one gone under remote_images: strip).
IMAGE_URL_ATTRIBUTES = frozenset({"src", "background"})
# Attributes kept only with these values (ASCII case-insensitively). A link opening
# another window needs the noopener (else that window can navigate the reader's away),
# which browsers imply for target="_blank" alone; nh3 adds no rel (rel="noopener
# noreferrer" went only on links in HTML it rewrote, never in HTML delivered as it came).
# A quoted reply's blockquote type="cite" is what Thunderbird and Apple Mail draw the
# quote bar by: without it a reply chain showed as one indented text.
# A table's frame and rules (its layout borders: which outer sides and inner lines
# are drawn) take keywords alone; dropped, a bordered price table lost its lines.
ATTRIBUTE_VALUES: dict[str, dict[str, frozenset[str]]] = {
    "a": {"target": frozenset({"_blank"})},
    "blockquote": {"type": frozenset({"cite"})},
    "table": {
        "frame": frozenset("void above below hsides lhs rhs vsides box border".split()),
        "rules": frozenset("none groups rows cols all".split()),
    },
}
# background, the shorthand templates set their colours with (background:#000 under
# color:#fff): without it a rewritten part showed such text white on white. A URL or
# image function in it is dropped with its declaration, as in any other (CSS_DANGER);
# its colour stays, as background-color (sanitize._background_colour); a background's
# or background-image's plain url() stays when it is an image URL an img src could have
# (sanitize._background_image), so the hero image with its size, repeat and position.
# mso-hide: Outlook ignores display:none on the preview text ("preheader") templates
# hide at the top; without it that text showed there once a part was rewritten.
# Layout that went with a rewrite (one HTML comment sends a part through nh3): a menu's
# list-style:none (its links showed bulleted), box-sizing (a full-width box with padding
# overflowed), one side's border or one corner's radius (dividers gone), overflow-wrap
# (long URLs ran off the screen), and Outlook's exact line heights and table spacing
# (its spacer rows grew, gaps opened between tables).
CSS_PROPERTIES = frozenset(
    """color background background-color font font-family font-size font-style font-weight
    font-variant text-align text-decoration text-indent text-transform letter-spacing word-spacing
    line-height white-space vertical-align direction margin margin-top margin-right
    margin-bottom margin-left padding padding-top padding-right padding-bottom padding-left
    border border-top border-right border-bottom border-left border-color border-style
    border-width border-collapse border-spacing border-radius width height max-width
    min-width max-height min-height display float clear list-style-type table-layout
    text-overflow overflow word-break word-wrap mso-hide list-style list-style-position
    box-sizing overflow-wrap overflow-x overflow-y box-shadow mso-line-height-rule
    mso-table-lspace mso-table-rspace background-image background-repeat background-position
    background-size""".split()
    + [f"border-{side}-{what}" for side in ("top", "right", "bottom", "left")
       for what in ("width", "style", "color")]
    + [f"border-{corner}-radius" for corner in ("top-left", "top-right", "bottom-right",
                                                "bottom-left")]
)
# Scripting, and every CSS function that loads a resource: url(), src(),
# image-set() (and -webkit-image-set()), image() and cross-fade() take URLs,
# even as plain strings.
CSS_DANGER = (
    "expression", "url(", "behavior", "javascript:", "-moz-binding", "@import",
    "src(", "image-set(", "image(", "cross-fade(",
)
# Document structure, not content: not reported as removed (the precheck lets a
# newsletter with <head><title> pass byte for byte). Whatever the head held that
# matters (style, script, meta, link, base) is counted by its own name.
NOT_COUNTED = frozenset({"html", "head", "title", "body", "tbody"})

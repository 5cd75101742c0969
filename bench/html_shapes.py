"""HTML shapes for the sanitizer's cost guard (postwarden_policies.html_cost): ordinary
and sloppy mail it must pass, and what would hold nh3's tree builder for seconds.
Shared by bench/html_cost.py (which times nh3 on them) and its tests."""

from __future__ import annotations

from bench.milter_throughput import html_60k

_NEWSLETTER = html_60k()[html_60k().index("<!DOCTYPE"):]

ORDINARY = [
    ("newsletter 60 KB", _NEWSLETTER),
    ("newsletter 240 KB with a script", _NEWSLETTER * 4 + "<script>x</script>"),
    ("20,000 unclosed <p>", "<p>x" * 20_000),
    ("20,000 unclosed <li>", "<ul>" + "<li>x" * 20_000),
    ("unclosed <font> in 3,000 cells", "<table>" + "".join(
        f"<tr><td><font color=#{i:06x}>x" for i in range(3_000)) + "</table>"),
    ("2,000 nested tables", "<table><tr><td>" * 2_000 + "x"),
    ("5,000 unclosed <dt> and <dd>", "<dl>" + "<dt>term<dd>meaning" * 5_000 + "</dl>"),
    ("a select of 5,000 unclosed <option>s", "<select>" + "<option>x" * 5_000 + "</select>"),
    ("2,000 lists in list items", "<ul><li>a<ul><li>b</ul></ul>" * 2_000),
    ("a select of 2,000 unclosed <optgroup>s",
     "<select>" + '<optgroup label="g"><option>one<option>two' * 2_000 + "</select>"),
    ("6,000 list items with <basefont>", "<ul>" + "<li><basefont size=2>x" * 6_000),
    ("6,000 list items with a <form>", "<ul>" + "<li><form>x" * 6_000),
    ("500 paragraphs with an unclosed <font>", "<p><font face=arial>Some text" * 500),
    ("2,000 headings in links closed inside",
     '<a href="https://x.test/"><h3>Title</a></h3>' * 2_000),
    ("a chart of 3,000 self-closed SVG circles", "<svg>" + "".join(
        f'<circle cx="{i}" cy="8" r="2"/><text>{i}</text>' for i in range(3_000)) + "</svg>"),
    ("<font> around 2,000 rows with <b> left open in cells",
     '<font face="Arial"><table>' + "".join(
         f"<tr><td><b>Product {i}</td><td>$9.99</td></tr>" for i in range(2_000)) + "</table>"),
    ("200 inline SVG icons in table cells", "<table>" + "".join(
        f'<tr><td><svg width="16" viewBox="0 0 16 16"><g><path d="M{i} 0L16 8z"/>'
        f'<circle cx="8" cy="8" r="4"></circle></g></svg> item {i}</td></tr>'
        for i in range(200)) + "</table>"),
]
COSTLY = [
    ("40,000 nested divs", "<div>" * 40_000 + "x" + "</div>" * 40_000),
    ("formatting reopened at every close",
     "<div>" * 1_000 + "".join(f"<b c={i}>" for i in range(1_000)) + "x</div>" * 1_000),
    # List items and options close only what the tree builder closes: each of these
    # nests as deep as it repeats.
    ("<li> under a special element, 6,000 deep", "<li><ul><x>" * 6_000),
    ("<dd> under a special element, 6,000 deep", "<dt><div><dd><section>x" * 6_000),
    ("<option> under a <div>, 8,000 deep", "<div><option>x" * 8_000),
    ("<optgroup> under an <option>, 8,000 deep", "<option><optgroup>" * 8_000),
    # Outside a table, the tree builder ignores a cell's start tag.
    ("<td> outside a table, 16,000 <rt>s deep", "<td><rt>x" * 16_000),
    # An end tag the tree builder ignores: </li> behind a list, </option> behind a
    # special element.
    ("</li> behind a list, 15,000 deep", "<li><ul></li>" * 15_000),
    ("</option> behind a list, 10,000 deep", "<option><ol></option>" * 10_000),
    # In SVG or MathML every start tag nests, and an end tag looks down through them all.
    ("</div> through 20,000 SVG elements", "</div><button><svg>" * 20_000),
    ("</x> through 30,000 MathML elements", "<math>" + "<tr></x>" * 30_000),
    # A formatting end tag over a special element (the adoption agency) leaves it open;
    # a ruby annotation closes the list item before it, so the next one nests.
    ("</a> over a list, 20,000 deep", "<a><ol></a>" * 20_000),
    ("<dt> in unclosed ruby annotations, 12,000 deep", "<ruby><dt><rt>" * 12_000),
    # The tokenizer looks each attribute up among the distinct ones before it.
    ("one tag with 40,000 distinct attributes",
     "<p " + " ".join(f"a{i}" for i in range(40_000)) + ">x"),
    ("5,000 distinct attributes, then 100,000 repeats of the last",
     "<p " + " ".join(f"a{i}" for i in range(5_000)) + " a4999" * 100_000 + ">x"),
]

"""The site as a reader sees it, in headless Chromium (issue 11, "Done when").

Every page is measured once at 1280 px and once at 390 px; the tests below read
that one measurement:

* visible input code takes at most 20 % of a derivation page's height, and at
  most 50 % of a practice or lesson page's;
* at 1280 px nothing overflows the text column: no math container, table,
  output block, code block, chain or figure is wider than the column or needs
  a scroll bar inside it;
* no raw LaTeX is left as text anywhere (tables included): no ``$``,
  ``\\begin``, ``\\frac``... outside rendered math and code;
* every step of every checked chain shows a proof mark, with a label, inside
  the column; evidence-only marks look different from proofs;
* at 390 px the page itself does not scroll sideways (a formula may scroll
  inside its own box).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from _sitebuild import BuiltSite

pytestmark = pytest.mark.site

MATHJAX_TIMEOUT_MS = 60_000
DERIVATION_CODE_SHARE = 0.20
PRACTICE_CODE_SHARE = 1 / 3
# Pages of executed runtime code ("practice" pages in the sense: the
# Practice section, the lessons, the layers' "in practice" pages and the
# performance page), whose code share is bounded; derivations separately.
RUNTIME_PAGES = ("practice/", "lessons/", "layers/", "performance/")

_MEASURE = r"""
() => {
  const col = document.querySelector("article.md-content__inner");
  const box = col.getBoundingClientRect();
  const style = getComputedStyle(col);
  const left = box.left + parseFloat(style.paddingLeft);
  const right = box.right - parseFloat(style.paddingRight);
  const shown = (el) => {
    if (el.closest("details:not([open])")) return false;
    const r = el.getBoundingClientRect();
    const s = getComputedStyle(el);
    return r.width > 0 && r.height > 0 && s.visibility !== "hidden";
  };
  const describe = (el) =>
    `${el.tagName.toLowerCase()}.${String(el.className).split(" ")[0]}: ` +
    (el.textContent || "").trim().replace(/\s+/g, " ").slice(0, 60);

  let code = 0;
  for (const el of col.querySelectorAll(".jp-CodeCell .jp-InputArea")) {
    if (shown(el)) code += el.getBoundingClientRect().height;
  }

  const overflows = [];
  const boxes = "mjx-container, table, .jp-OutputArea-output, pre, .chain, .chain-rhs, " +
                ".chain-why, .chain-where, img, svg:not(mjx-container svg), .arithmatex";
  for (const el of col.querySelectorAll(boxes)) {
    if (!shown(el) || el.closest(".md-clipboard, .md-code__nav")) continue;
    const r = el.getBoundingClientRect();
    // Content hidden behind a scroll bar counts only in a scroll box; other
    // boxes let it spill, and the spilled content is caught as "outside".
    const scrolls = ["auto", "scroll", "hidden"].includes(getComputedStyle(el).overflowX);
    const inside = scrolls ? Math.max(0, el.scrollWidth - el.clientWidth) : 0;
    const outside = Math.max(0, r.right - right, left - r.left);
    // A displayed formula or a table may be a scroll box itself: then its
    // own width fits and its scrollWidth tells whether anything is hidden.
    const over = Math.max(el.tagName === "MJX-CONTAINER" || el.tagName === "IMG" ||
                          el.tagName === "svg" ? 0 : inside, outside);
    if (over > 1) overflows.push(`${describe(el)} (${Math.round(over)} px)`);
  }

  const raw = [];
  const skip = "pre, code, script, style, textarea, mjx-container, .sympy-source, " +
               ".md-search, .md-nav, .md-header, .md-footer";
  const walker = document.createTreeWalker(col, NodeFilter.SHOW_TEXT, {
    acceptNode(node) {
      return node.parentElement.closest(skip) ? NodeFilter.FILTER_REJECT
                                              : NodeFilter.FILTER_ACCEPT;
    },
  });
  const tex = /\$|\\(begin|end|frac|left|right|operatorname|mathrm|text|partial|sum|delta)\b/;
  while (walker.nextNode()) {
    const text = walker.currentNode.textContent;
    if (tex.test(text) && shown(walker.currentNode.parentElement)) {
      raw.push(text.trim().slice(0, 80));
    }
  }

  const steps = [...col.querySelectorAll(".chain-step")].map((step) => {
    const mark = step.querySelector(".proof-mark");
    if (!mark) return { text: describe(step), mark: false };
    const r = mark.getBoundingClientRect();
    const label = mark.querySelector(".proof-label");
    const s = getComputedStyle(mark);
    return {
      text: describe(step.querySelector(".chain-rhs") || step),
      mark: r.width > 0 && r.height > 0 && s.visibility !== "hidden" && s.display !== "none",
      inside: r.left >= left - 1 && r.right <= right + 1,
      label: label ? label.textContent.trim() : "",
      kind: [...mark.classList].find((c) =>
        ["proof-proof", "proof-premise", "proof-evidence"].includes(c)) || "",
      look: `${s.color}|${s.borderTopStyle}|${s.backgroundColor}`,
      title: mark.getAttribute("title") || "",
    };
  });

  return {
    height: box.height,
    code,
    overflows,
    raw,
    steps,
    pageScroll: document.documentElement.scrollWidth - window.innerWidth,
  };
}
"""


@dataclass
class Reading:
    wide: dict[str, dict] = field(default_factory=dict)  # page -> measure at 1280 px
    phone: dict[str, dict] = field(default_factory=dict)  # page -> measure at 390 px


def _measure_all(browser, site_url: str, pages: list[str], width: int) -> dict[str, dict]:
    context = browser.new_context(viewport={"width": width, "height": 900})
    try:
        page = context.new_page()
        found = {}
        for path in pages:
            page.goto(site_url + path, wait_until="load")
            page.wait_for_function("window.__mathjaxDone === true", timeout=MATHJAX_TIMEOUT_MS)
            found[path] = page.evaluate(_MEASURE)
        return found
    finally:
        context.close()


@pytest.fixture(scope="module")
def reading(built_site: BuiltSite, site_url: str, browser) -> Reading:
    pages = [p for p in built_site.pages() if p != "404/"]
    return Reading(
        wide=_measure_all(browser, site_url, pages, 1280),
        phone=_measure_all(browser, site_url, pages, 390),
    )


def _report(problems: dict[str, list[str]]) -> str:
    return "\n".join(f"{page or '/'}\n    " + "\n    ".join(items)
                     for page, items in problems.items())


def test_derivation_and_practice_pages_show_little_code(reading: Reading) -> None:
    shares = {}
    for path, m in reading.wide.items():
        if path.startswith("derivations/"):
            limit = DERIVATION_CODE_SHARE
        elif path.startswith(RUNTIME_PAGES):
            limit = PRACTICE_CODE_SHARE
        else:
            continue
        shares[path] = (m["code"] / m["height"], limit)
    assert any(p.startswith("derivations/") for p in shares), "no derivation page measured"
    too_much = {p: f"input code is {s:.0%} of the page height (at most {lim:.0%})"
                for p, (s, lim) in shares.items() if s > lim}
    assert not too_much, "\n".join(f"{p}: {msg}" for p, msg in too_much.items())


def test_nothing_overflows_the_text_column(reading: Reading) -> None:
    problems = {p: m["overflows"] for p, m in reading.wide.items() if m["overflows"]}
    assert not problems, "wider than the text column at 1280 px:\n" + _report(problems)


def test_no_raw_latex_anywhere(reading: Reading) -> None:
    problems = {p: m["raw"] for p, m in reading.wide.items() if m["raw"]}
    assert not problems, "LaTeX left as text (not rendered):\n" + _report(problems)


def test_every_chain_step_carries_a_visible_proof_mark(reading: Reading) -> None:
    problems: dict[str, list[str]] = {}
    looks: dict[str, set[str]] = {}
    total = 0
    for path, m in reading.wide.items():
        for step in m["steps"]:
            total += 1
            if not step["mark"]:
                problems.setdefault(path, []).append(f"no visible proof mark: {step['text']}")
            elif not step["inside"]:
                problems.setdefault(path, []).append(f"mark outside the column: {step['text']}")
            elif not step["label"] or not step["title"]:
                problems.setdefault(path, []).append(f"mark without label: {step['text']}")
            else:
                looks.setdefault(step["kind"], set()).add(step["look"])
    assert total > 0, "no checked chain on any page"
    assert not problems, "chain steps without a visible proof mark:\n" + _report(problems)
    assert "proof-proof" in looks, "no step on the site shows a proof mark"
    assert "proof-premise" in looks, "no step on the site is marked as given"
    if "proof-evidence" in looks:
        assert not looks["proof-evidence"] & looks["proof-proof"], (
            "a check on examples looks the same as a proof")


def test_derivation_pages_show_their_chains(reading: Reading) -> None:
    # The marks above are only checked where chains are found: every
    # derivation page that proves something must show its chains as chains.
    without = [p for p, m in reading.wide.items()
               if p.startswith("derivations/") and not m["steps"]]
    assert not without, f"derivation pages without a displayed chain: {without}"


def test_the_page_does_not_scroll_sideways_on_a_phone(reading: Reading) -> None:
    wide = {p: f"scrolls {m['pageScroll']} px sideways at 390 px"
            for p, m in reading.phone.items() if m["pageScroll"] > 1}
    assert not wide, "\n".join(f"{p}: {msg}" for p, msg in wide.items())

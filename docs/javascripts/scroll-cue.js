// A figure or plot wider than the column scrolls sideways inside its box (on a
// phone, extra.css keeps it at a readable size). Mark each box whose content
// is wider than the box, so that extra.css can say so under it; checked again
// when the window is resized and after every instant navigation.
(function () {
  "use strict";
  const SELECTOR = [
    ".md-typeset figure.equation-graph",
    ".md-typeset p:has(> img.figure)",
    ".md-typeset .jupyter-wrapper .jp-OutputArea-output:has(> img.plot)",
  ].join(", ");

  function mark() {
    for (const box of document.querySelectorAll(SELECTOR)) {
      box.classList.toggle("scrolls-sideways", box.scrollWidth > box.clientWidth + 1);
    }
  }

  function watch() {
    mark();
    // images decode after the page is shown: measure again when each has loaded
    for (const img of document.querySelectorAll(".md-typeset img")) {
      if (!img.complete) img.addEventListener("load", mark, { once: true });
    }
  }

  window.addEventListener("resize", mark);
  if (window.document$ && typeof window.document$.subscribe === "function") {
    window.document$.subscribe(watch);  // Material's navigation.instant
  } else if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", watch);
  } else {
    watch();
  }
})();

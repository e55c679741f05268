// MathJax 3 configuration. Loaded before assets/mathjax/tex-chtml.js, which
// the site serves itself (copied from django-static-mathjax by the build hook).
//
// It departs from Material's documented snippet where that snippet left
// formulas blank or unrendered here:
// * notebook output (mkdocs-jupyter, SymPy's _repr_latex_) is delimited by $
//   and $$, so those delimiters are on next to \( \) and \[ \] (arithmatex);
// * ignoreHtmlClass is not ".*|": that hides every element without the
//   arithmatex class, including the math in notebook cells;
// * typesetting waits for Material's document$ instead of startup.typeset.
//
// Tests read two globals: window.__mathjaxErrors (every TeX error, and every
// merror left in the page) and window.__mathjaxDone (set once a typeset pass
// has finished, successfully or not).

window.__mathjaxErrors = [];
window.__mathjaxDone = false;

window.MathJax = {
  tex: {
    inlineMath: [["\\(", "\\)"], ["$", "$"]],
    displayMath: [["\\[", "\\]"], ["$$", "$$"]],
    processEscapes: true,
    processEnvironments: true,
    // Without noundefined an unknown macro is a TeX error that reaches
    // formatError, instead of being drawn in red and passing unnoticed.
    packages: { "[-]": ["noundefined"] },
    formatError(jax, error) {
      window.__mathjaxErrors.push(String(error.message || error));
      return jax.formatError(error);
    },
  },
  options: {
    ignoreHtmlClass: "tex2jax_ignore|mathjax_ignore",
    processHtmlClass: "tex2jax_process|mathjax_process|arithmatex",
  },
  startup: {
    typeset: false,
    ready() {
      MathJax.startup.defaultReady();
      MathJax.startup.promise.then(() => document$.subscribe(typesetPage));
    },
  },
};

function typesetPage() {
  window.__mathjaxDone = false;
  MathJax.startup.output.clearCache();
  MathJax.typesetClear();
  MathJax.texReset();
  MathJax.typesetPromise()
    .then(() => {
      fitWideFormulas();
      for (const node of document.querySelectorAll("mjx-merror")) {
        const message = node.getAttribute("data-mjx-error") || node.textContent;
        if (!window.__mathjaxErrors.includes(message)) {
          window.__mathjaxErrors.push(message);
        }
      }
    })
    .catch((error) => window.__mathjaxErrors.push(String(error)))
    .finally(() => {
      window.__mathjaxDone = true;
    });
}

// A formula a little wider than its box (the line breaking of a chain works
// from an estimate of the rendered width) is set in a smaller size, down to
// MIN_FIT of the text size; one that would need more stays as it is and
// scrolls inside its own box, as on a phone.
const MIN_FIT = 0.72;
const FIT_BOXES = ".chain-rhs, .chain-where, .jp-RenderedLatex, div.arithmatex";

function fitWideFormulas() {
  for (const box of document.querySelectorAll(FIT_BOXES)) {
    const style = getComputedStyle(box);
    const pad = parseFloat(style.paddingLeft) + parseFloat(style.paddingRight);
    const room = box.clientWidth - pad;
    const maths = [...box.querySelectorAll("mjx-container")];
    for (const math of maths) {
      // MathJax sets its own font-size (matching the text's x-height); the
      // fit multiplies that size, it does not replace it.
      if (math.dataset.fitSize === undefined) math.dataset.fitSize = math.style.fontSize || "100%";
      math.style.fontSize = math.dataset.fitSize;
    }
    // What the box holds (formula, delimiters reaching past it, a "where")
    // against the room it has; the formulas give up the difference.
    const need = box.scrollWidth - pad;
    const widths = maths.map((m) => m.getBoundingClientRect().width);
    const total = widths.reduce((a, b) => a + b, 0);
    if (need <= room + 0.5 || total === 0) continue;
    const scale = (total - (need - room)) / total;
    if (scale < MIN_FIT) continue;
    for (const math of maths) {
      const base = parseFloat(math.dataset.fitSize) || 100;
      math.style.fontSize = `${(base * Math.floor(scale * 100 - 1)) / 100}%`;
    }
  }
}

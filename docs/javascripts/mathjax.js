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

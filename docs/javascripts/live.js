// The live panel and the exercises: the page side of the live engine.
//
// Nothing is loaded until the reader asks (the load button, or a first
// "Derive" / "Check"). The engine runs in one module worker
// (live-worker.js) kept in this script's scope: with Material's
// navigation.instant the script survives page changes, so does the worker,
// and each new page's panel and exercises are bound through document$.
//
// The contract other checks rely on (issue 18): the panel [data-live=panel]
// holds [data-live=expr], [data-live=kind], [data-live=run] and the results
// [data-live=derivative] (its data-expr holds the derivative as SymPy text),
// [data-live=numpy], [data-live=check] (data-max-error) and [data-live=error].
// An exercise [data-exercise] holds [data-live=answer],
// [data-live=check-answer] and [data-live=verdict] (data-ok "true"/"false").

(function () {
  "use strict";

  const scriptUrl = document.currentScript ? document.currentScript.src : null;
  let worker = null;
  let ready = null; // a promise resolved when the engine has loaded
  let pending = new Map(); // request id -> {resolve, reject}
  let nextId = 1;
  const listeners = new Set(); // progress callbacks of the panels on the page

  window.__live = { loadSeconds: null, state: "idle" };

  function workerUrl() {
    const base = scriptUrl || new URL("javascripts/live.js", document.baseURI).href;
    return new URL("live-worker.js", base).href;
  }

  function notify(message) {
    for (const listener of listeners) listener(message);
  }

  // Start the worker once; later calls return the same promise.
  function load() {
    if (ready) return ready;
    window.__live.state = "loading";
    worker = new Worker(workerUrl(), { type: "module" });
    ready = new Promise((resolve, reject) => {
      worker.onmessage = (event) => {
        const msg = event.data;
        if (msg.type === "progress") notify(msg);
        else if (msg.type === "ready") {
          window.__live.loadSeconds = msg.seconds;
          window.__live.state = "ready";
          notify(msg);
          resolve();
        } else if (msg.type === "result" || msg.type === "failed") {
          if (msg.id === null) {
            window.__live.state = "failed";
            notify(msg);
            reject(new Error(msg.message));
            return;
          }
          const waiting = pending.get(msg.id);
          pending.delete(msg.id);
          if (!waiting) return;
          if (msg.type === "result") waiting.resolve(msg);
          else waiting.reject(new Error(msg.message));
        }
      };
      worker.onerror = (event) => {
        window.__live.state = "failed";
        const error = new Error(event.message || "the live engine could not start");
        notify({ type: "failed", id: null, message: error.message });
        reject(error);
      };
    });
    ready.catch(() => {});
    return ready;
  }

  // Stop a slow computation: the worker is terminated (Python cannot be
  // interrupted from outside) and a new one loads in the background.
  function restart() {
    if (worker) worker.terminate();
    for (const waiting of pending.values()) waiting.reject(new Error("cancelled"));
    pending = new Map();
    worker = null;
    ready = null;
    return load();
  }

  async function ask(request) {
    await load();
    const id = nextId++;
    return new Promise((resolve, reject) => {
      pending.set(id, { resolve, reject });
      worker.postMessage({ ...request, id });
    });
  }

  function typeset(elements) {
    if (window.MathJax && MathJax.typesetPromise) {
      return MathJax.typesetPromise(elements).catch((e) => window.__mathjaxErrors.push(String(e)));
    }
    return Promise.resolve();
  }

  function part(root, name) {
    return root.querySelector(`[data-live="${name}"]`);
  }

  function formatError(x) {
    return x === 0 ? "0" : x.toExponential(1);
  }

  // --- The panel -------------------------------------------------------------

  function bindPanel(panel) {
    if (panel.dataset.bound) return;
    panel.dataset.bound = "true";
    const loadButton = part(panel, "load");
    const status = part(panel, "status");
    const bar = part(panel, "progress");
    const run = part(panel, "run");
    const cancel = part(panel, "cancel");
    const error = part(panel, "error");
    const results = part(panel, "results");

    function onProgress(msg) {
      if (!panel.isConnected) return listeners.delete(onProgress);
      if (msg.type === "progress") {
        bar.hidden = false;
        bar.max = msg.of + 1;
        bar.value = msg.stage;
        status.textContent = `Loading ${msg.stage}/${msg.of}: ${msg.what}…`;
      } else if (msg.type === "ready") {
        bar.value = bar.max;
        bar.hidden = true;
        status.textContent = `Live engine loaded in ${msg.seconds.toFixed(1)} s.`;
        loadButton.hidden = true;
      } else if (msg.type === "failed") {
        bar.hidden = true;
        status.textContent = "";
        showError("The live engine did not load: " + msg.message);
      }
    }
    listeners.add(onProgress);
    if (window.__live.state === "ready") {
      loadButton.hidden = true;
      status.textContent = "Live engine loaded.";
    }

    function showError(message) {
      error.textContent = message;
      error.hidden = !message;
    }

    loadButton.addEventListener("click", () => {
      loadButton.disabled = true;
      load().catch(() => {});
    });

    async function derive() {
      showError("");
      run.disabled = true;
      cancel.hidden = false;
      const started = performance.now();
      if (window.__live.state !== "ready") status.textContent = "Loading the live engine…";
      try {
        const softmax = part(panel, "softmax");
        const reply = await ask({ op: "derive", text: part(panel, "expr").value,
                                  kind: part(panel, "kind").value,
                                  softmax: Boolean(softmax && softmax.checked) });
        const seconds = (performance.now() - started) / 1000;
        panel.dataset.seconds = seconds.toFixed(3);
        const result = reply.result;
        if (result.error) {
          results.hidden = true;
          showError(result.error);
          status.textContent = "";
        } else {
          await show(panel, result);
          status.textContent = `Derived in ${reply.seconds.toFixed(2)} s.`;
        }
      } catch (e) {
        showError(e.message === "cancelled" ? "Cancelled; the engine is restarting."
                                            : "The live engine failed: " + e.message);
      } finally {
        run.disabled = false;
        cancel.hidden = true;
        panel.dataset.runs = String(Number(panel.dataset.runs || 0) + 1);
      }
    }

    run.addEventListener("click", (event) => {
      event.preventDefault();
      derive();
    });
    part(panel, "form").addEventListener("submit", (event) => {
      event.preventDefault();
      derive();
    });
    cancel.addEventListener("click", () => {
      status.textContent = "Restarting the live engine…";
      restart().catch(() => {});
    });
  }

  async function show(panel, result) {
    const lhs = result.kind === "activation" ? "g'(z)" : "\\partial E/\\partial a";
    const derivative = part(panel, "derivative");
    derivative.dataset.expr = result.derivative_text;
    derivative.textContent = `\\(\\displaystyle ${lhs} = ${result.derivative}\\)`;
    part(panel, "steps").innerHTML = result.html;
    const deltas = part(panel, "deltas");
    deltas.innerHTML = result.deltas.map((d) => d.html).join("");
    part(panel, "numpy").textContent = result.numpy + (result.numpy_deltas ? "\n" + result.numpy_deltas : "");
    const check = part(panel, "check");
    const worst = result.check.max_error;
    check.dataset.maxError = String(worst);
    const rows = Object.entries(result.check.errors)
      .map(([what, e]) => `${what.replace(/_/g, " ")} ${formatError(e)}`).join(" · ");
    check.textContent = `Numeric check at ${result.check.points} points, ${result.check.method}: ` +
      `largest error ${formatError(worst)} (${rows}).`;
    check.classList.toggle("live-check-bad", !(worst < 1e-10));
    part(panel, "results").hidden = false;
    await typeset([derivative, part(panel, "steps"), deltas]);
  }

  // --- Exercises ---------------------------------------------------------------

  function bindExercise(box) {
    if (box.dataset.bound) return;
    box.dataset.bound = "true";
    const answer = part(box, "answer");
    const button = part(box, "check-answer");
    const verdict = part(box, "verdict");

    function say(ok, text) {
      verdict.dataset.ok = ok === null ? "" : String(ok);
      verdict.textContent = text;
      verdict.className = "live-verdict" + (ok === true ? " live-ok" : ok === false ? " live-wrong" : "");
    }

    async function check() {
      const text = answer.value.trim();
      if (!text) return say(false, "Type an answer first.");
      if (box.dataset.answerKind === "number") {
        const value = Number(text);
        const expected = Number(box.dataset.expected);
        const tolerance = Number(box.dataset.tolerance);
        if (!Number.isFinite(value)) return say(false, "Type a number (e.g. 0.25 or -1.5e-3).");
        const ok = Math.abs(value - expected) <= tolerance * Math.max(1, Math.abs(expected));
        const sign = !ok && Math.abs(value + expected) <= tolerance * Math.max(1, Math.abs(expected));
        return say(ok, ok ? "Right." : sign ? "Not quite: the sign is wrong." : "Not quite.");
      }
      button.disabled = true;
      say(null, window.__live.state === "ready" ? "Checking…" : "Loading the live engine to check…");
      try {
        const reply = await ask({ op: "check", answer: text, expected: box.dataset.expected,
                                  variables: box.dataset.variables });
        const r = reply.result;
        if (r.error) say(false, r.error);
        else if (r.ok) say(true, `Right: proven equal (${r.proof}).`);
        else say(false, `Not quite: ${r.hint}${/[.?!]$/.test(r.hint) ? "" : "."}`);
      } catch (e) {
        say(false, "The live engine failed: " + e.message);
      } finally {
        button.disabled = false;
      }
    }

    button.addEventListener("click", (event) => {
      event.preventDefault();
      check();
    });
    answer.addEventListener("keydown", (event) => {
      if (event.key === "Enter") {
        event.preventDefault();
        check();
      }
    });
  }

  function bindPage() {
    document.querySelectorAll('[data-live="panel"]').forEach(bindPanel);
    document.querySelectorAll("[data-exercise]").forEach(bindExercise);
  }

  if (window.document$ && document$.subscribe) document$.subscribe(bindPage);
  else document.addEventListener("DOMContentLoaded", bindPage);
})();

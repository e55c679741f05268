// The live engine: Pyodide in a module worker (Pyodide 314 refuses classic
// workers), running backprop_derived.live from the wheel the site was built
// with. Everything is read from assets/live/ of this site; the lock there
// lists exactly the wheels served beside it, with their sha256.
//
// Messages in:  {id, op: "derive", text, kind, softmax} | {id, op: "check", answer, expected, variables}
// Messages out: {type: "progress", stage, of, what} while loading,
//               {type: "ready", seconds}, {type: "result", id, result, seconds},
//               {type: "failed", id, message} when Python itself fails.

const BASE = new URL("../assets/live/", import.meta.url).href;
const STAGES = 3;

function progress(stage, what) {
  postMessage({ type: "progress", stage, of: STAGES, what });
}

async function start() {
  const started = performance.now();
  progress(1, "Python (Pyodide, 12 MB)");
  const { loadPyodide } = await import(BASE + "pyodide.mjs");
  const pyodide = await loadPyodide({ indexURL: BASE });
  progress(2, "SymPy, mpmath and this site's engine (7 MB)");
  // checkIntegrity: every wheel against the sha256 in the site's own lock
  await pyodide.loadPackage("backprop-derived", { checkIntegrity: true, messageCallback: () => {} });
  progress(3, "importing the engine");
  pyodide.runPython("import json\nfrom backprop_derived import live");
  postMessage({ type: "ready", seconds: (performance.now() - started) / 1000 });
  return pyodide;
}

const ready = start();
ready.catch((error) => postMessage({ type: "failed", id: null, message: String(error) }));

onmessage = async (event) => {
  const { id, op } = event.data;
  let pyodide;
  try {
    pyodide = await ready;
  } catch (error) {
    postMessage({ type: "failed", id, message: "the engine did not load: " + String(error) });
    return;
  }
  const started = performance.now();
  try {
    const args = pyodide.toPy(event.data);
    pyodide.globals.set("_request", args);
    const code = op === "check"
      ? "json.dumps(live.check_answer(_request['answer'], _request['expected'], _request['variables']))"
      : "json.dumps(live.derive(_request['text'], _request['kind'], "
        + "softmax=bool(_request.get('softmax', False))))";
    const result = JSON.parse(pyodide.runPython(code));
    args.destroy();
    postMessage({ type: "result", id, result, seconds: (performance.now() - started) / 1000 });
  } catch (error) {
    // live.py turns bad input into {"error"}; this is Python failing, shown as a message
    const message = String(error.message || error).trim().split("\n").pop();
    postMessage({ type: "failed", id, message });
  }
};

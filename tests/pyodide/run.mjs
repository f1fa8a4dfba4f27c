// Runs a Python file in Pyodide under Node.js, with the package's source mounted read-only at
// /src: `node run.mjs SRC_DIR SCRIPT.py`, then
// awaits the script's main(). Prints what the script prints; exit 1 on an error.
// Pyodide loads from its npm package alone: nothing is fetched.
import { readFileSync } from "node:fs";
import { loadPyodide } from "pyodide";

const [srcDir, script] = process.argv.slice(2);
const pyodide = await loadPyodide({ stdout: (s) => console.log(s), stderr: (s) => console.error(s) });
pyodide.FS.mkdirTree("/src");
pyodide.FS.mount(pyodide.FS.filesystems.NODEFS, { root: srcDir }, "/src");
try {
  await pyodide.runPythonAsync(readFileSync(script, "utf8"), { filename: script });
  await pyodide.runPythonAsync("await main()");
} catch (error) {
  console.error(String(error));
  process.exit(1);
}
// Timers the script left (a writer's next slice) would keep Node.js running until they fire.
process.exit(0);

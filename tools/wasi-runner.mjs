// Cargo runner for wasm32-wasip1 test binaries: `node tools/wasi-runner.mjs file.wasm [args]`.
// Node's built-in WASI (no download), so the filter's logic tests also run as wasm.
import { readFile } from "node:fs/promises";
import { WASI } from "node:wasi";
import { argv, env, exit } from "node:process";

const [file, ...args] = argv.slice(2);
const wasi = new WASI({ version: "preview1", args: [file, ...args], env, returnOnExit: true });
const module = await WebAssembly.compile(await readFile(file));
const instance = await WebAssembly.instantiate(module, wasi.getImportObject());
exit(wasi.start(instance));

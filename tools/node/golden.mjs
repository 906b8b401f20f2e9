// Run an edgenn package's golden vectors in onnxruntime's Node.js binding: proof that the package
// works in a client that is not Python.
//
//   npm ci --prefix tools/node                  # once: onnxruntime-node, pinned in package-lock.json
//   node tools/node/golden.mjs lenet5-pkg       # exit 0 when every file and every golden output holds
//   node tools/node/golden.mjs lenet5-pkg --json
//
// It checks manifest.json's own sha256 and every file's, and that no file was added; opens the
// model (a .onnx, an ORT-format file, the model of a Triton repository, or the file each golden
// case's candidate was served by in a tuned deployment) on the CPU provider with the package's
// thread count and session entries; reads each golden .npy, runs it, and holds each output to the
// tolerance the manifest records, by the rule `edgenn verify` applies (edgenn/runtime/manifest.py):
// integer outputs equal; "elementwise" |error| <= atol + rtol |golden|; "range" max |error| within
// max_relative of max |golden| (or under 1e-6). Exit 0 verified, 3 a check failed, 1 unreadable.
import { createHash } from 'node:crypto';
import { existsSync, lstatSync, readdirSync, readFileSync } from 'node:fs';
import { join, relative, resolve, sep } from 'node:path';
import ort from 'onnxruntime-node';

const args = process.argv.slice(2);
const asJson = args.includes('--json');
const folder = args.find((a) => !a.startsWith('--'));
if (!folder) {
  console.error('usage: node tools/node/golden.mjs PACKAGE [--json]');
  process.exit(2);
}

function fail(message, code = 1) {
  if (asJson) console.log(JSON.stringify({ error: message, passed: false }));
  else console.error(`Error: ${message}`);
  process.exit(code);
}

const sha256 = (data) => createHash('sha256').update(data).digest('hex');
const manifestPath = join(folder, 'manifest.json');
if (!existsSync(manifestPath)) fail(`${folder} has no manifest.json: not a package made by edgenn package`);
let manifest;
let manifestText;
try {
  manifestText = readFileSync(manifestPath, 'utf8');
  manifest = JSON.parse(manifestText);
} catch (e) {
  fail(`${manifestPath} is unreadable or damaged (${e.message})`);
}
if (manifest.format !== 'edgenn.package' || !(manifest.version >= 1 && manifest.version <= 1)) {
  fail(`${manifestPath} is not a package this script reads (format ${manifest.format}, version ${manifest.version})`);
}
// the manifest's own digest: the sha256 of its text with the digest written as 64 zeros
const sealed = `"manifest_sha256": "${manifest.manifest_sha256}"`;
const zeros = `"manifest_sha256": "${'0'.repeat(64)}"`;
if (manifestText.split(sealed).length !== 2 || sha256(manifestText.replace(sealed, zeros)) !== manifest.manifest_sha256) {
  fail(`${manifestPath} was changed after packaging (its own sha256 does not match)`);
}

// ---------------------------------------------------------------------------- files and digests
const root = resolve(folder);
function safe(name) {
  const parts = String(name).split('/');
  const path = resolve(root, ...parts);
  if (name.startsWith('/') || name.includes('\\') || parts.some((p) => p === '..' || p === '' || p === '.') ||
      !(path === root || path.startsWith(root + sep))) {
    fail(`${manifestPath} lists ${JSON.stringify(name)}, which is not a path inside the package`);
  }
  return path;
}

function filesUnder(dir) {
  const out = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...filesUnder(path));
    else out.push(relative(root, path).split(sep).join('/'));
  }
  return out;
}

const problems = [];
for (const [name, digest] of Object.entries(manifest.files)) {
  const path = safe(name);
  if (!existsSync(path)) problems.push(`${name}: missing`);
  else if (lstatSync(path).isSymbolicLink()) problems.push(`${name}: a link, not the packaged file`);
  else if (sha256(readFileSync(path)) !== digest) problems.push(`${name}: changed since packaging (sha256 differs)`);
}
for (const name of filesUnder(root)) {
  if (name !== 'manifest.json' && !(name in manifest.files)) {
    problems.push(`${name}: not in the manifest (added after packaging)`);
  }
}
for (const golden of manifest.golden) {
  for (const name of [...Object.values(golden.inputs), ...Object.values(golden.outputs)]) {
    if (!(name in manifest.files)) fail(`${manifestPath}: ${JSON.stringify(name)} is not among the files it lists`);
  }
}
if (problems.length) fail(`${folder} does not verify: file ${problems[0]}`, 3);

// ---------------------------------------------------------------------------- .npy files
const NPY_TYPES = {
  '<f4': ['float32', Float32Array],
  '<f8': ['float64', Float64Array],
  '<f2': ['float16', Uint16Array],
  '<i8': ['int64', BigInt64Array],
  '<i4': ['int32', Int32Array],
  '|i1': ['int8', Int8Array],
  '|u1': ['uint8', Uint8Array],
  '|b1': ['bool', Uint8Array],
};

function readNpy(path) {
  const bytes = readFileSync(path);
  if (bytes.readUInt8(0) !== 0x93 || bytes.toString('latin1', 1, 6) !== 'NUMPY') fail(`${path} is not a .npy file`);
  const major = bytes.readUInt8(6);
  const headerLength = major === 1 ? bytes.readUInt16LE(8) : bytes.readUInt32LE(8);
  const start = major === 1 ? 10 : 12;
  const header = bytes.toString('latin1', start, start + headerLength);
  const descr = /'descr':\s*'([^']+)'/.exec(header)?.[1];
  const shapeText = /'shape':\s*\(([^)]*)\)/.exec(header)?.[1];
  if (descr === undefined || shapeText === undefined) fail(`${path} has no readable .npy header`);
  if (/'fortran_order':\s*True/.test(header)) fail(`${path}: Fortran-ordered arrays are not read here`);
  const shape = shapeText.split(',').map((s) => s.trim()).filter(Boolean).map(Number);
  const type = NPY_TYPES[descr];
  if (!type) fail(`${path}: dtype ${descr} is not read here`);
  const [ortType, ArrayType] = type;
  const offset = start + headerLength;
  const count = shape.reduce((a, b) => a * b, 1);
  const copy = bytes.buffer.slice(bytes.byteOffset + offset, bytes.byteOffset + offset + count * ArrayType.BYTES_PER_ELEMENT);
  const data = new ArrayType(copy);
  return { ortType, data: ortType === 'bool' ? Uint8Array.from(data, (v) => v !== 0) : data, shape };
}

function toNumbers(data, ortType) {
  if (ortType === 'float16') return Array.from(data, halfToFloat);
  return Array.from(data, Number);
}

function halfToFloat(h) {
  const sign = h & 0x8000 ? -1 : 1;
  const exponent = (h >> 10) & 0x1f;
  const fraction = h & 0x3ff;
  if (exponent === 0) return sign * 2 ** -14 * (fraction / 1024);
  if (exponent === 31) return fraction ? NaN : sign * Infinity;
  return sign * 2 ** (exponent - 15) * (1 + fraction / 1024);
}

// ---------------------------------------------------------------------------- the tolerance rule
function check(name, golden, got, tolerance) {
  if (golden.shape.join('x') !== got.dims.join('x')) {
    return { name, passed: false, reason: `shape ${got.dims.join('x')}, golden ${golden.shape.join('x')}` };
  }
  if (golden.ortType !== got.type) return { name, passed: false, reason: `dtype ${got.type}, golden ${golden.ortType}` };
  const a = toNumbers(golden.data, golden.ortType);
  const b = toNumbers(got.data, got.type);
  if (!golden.ortType.startsWith('float')) {  // integers and booleans: equal or not
    const equal = a.every((v, i) => v === b[i]);
    return { name, max_abs_error: equal ? 0 : Infinity, relative_to_range: equal ? 0 : 1, passed: equal };
  }
  let maxAbs = 0;
  let scale = 0;
  let elementwise = true;
  for (let i = 0; i < a.length; i++) {
    const same = (Number.isNaN(a[i]) && Number.isNaN(b[i])) || (!Number.isFinite(a[i]) && a[i] === b[i]);
    let diff = same ? 0 : Math.abs(a[i] - b[i]);
    if (Number.isNaN(diff)) diff = Infinity;
    maxAbs = Math.max(maxAbs, diff);
    if (Number.isFinite(a[i])) scale = Math.max(scale, Math.abs(a[i]));
    const bound = tolerance.atol + tolerance.rtol * (Number.isFinite(a[i]) ? Math.abs(a[i]) : 0);
    if (!(diff <= bound)) elementwise = false;
  }
  const relative = maxAbs ? maxAbs / Math.max(scale, 1e-12) : 0;
  const passed = tolerance.kind === 'elementwise' ? elementwise : maxAbs <= Math.max(tolerance.max_relative * scale, 1e-6);
  return { name, max_abs_error: maxAbs, relative_to_range: relative, passed };
}

// ---------------------------------------------------------------------------- sessions
const session = manifest.session || {};
const LEVELS = { disable: 'disabled', basic: 'basic', extended: 'extended', layout: 'layout', all: 'all' };

const notes = [];

function sessionOptions(settings) {
  const options = { executionProviders: ['cpu'], graphOptimizationLevel: LEVELS[settings.graph_optimization] || 'all' };
  const threads = settings.threads ?? session.threads;
  if (threads) {
    options.intraOpNumThreads = threads;
    options.interOpNumThreads = 1;
  }
  if ((settings.disabled_optimizers || []).length) {
    notes.push(`onnxruntime-node cannot disable ${settings.disabled_optimizers.join(", ")}: it ran with them on`);
  }
  const extra = {};
  for (const [key, value] of Object.entries(settings.config_entries || {})) {
    // "session.load_model_format" -> { session: { load_model_format: ... } }: how the binding takes entries
    const parts = key.split('.');
    let node = extra;
    for (const part of parts.slice(0, -1)) node = node[part] ??= {};
    node[parts[parts.length - 1]] = value;
  }
  if (Object.keys(extra).length) options.extra = extra;
  return options;
}

// The file and session settings of a golden case: the package's model, or in a deployment the file and
// the session of the candidate that served the case when it was packaged.
function modelFor(candidate) {
  if (manifest.model_format !== 'deployment') return { path: safe(manifest.model), settings: session };
  const deploy = JSON.parse(readFileSync(safe(`${manifest.model}/deploy.json`), 'utf8'));
  const chosen = deploy.candidates.find((c) => c.id === candidate);
  if (!chosen) fail(`${manifest.model}/deploy.json does not list the candidate ${candidate} a golden case names`);
  return { path: safe(`${manifest.model}/${chosen.file}`), settings: chosen.session || {} };
}

const sessions = new Map();
async function open({ path, settings }) {
  const key = `${path} ${JSON.stringify(settings)}`;
  if (!sessions.has(key)) sessions.set(key, await ort.InferenceSession.create(path, sessionOptions(settings)));
  return sessions.get(key);
}

// ---------------------------------------------------------------------------- run
const results = [];
for (const golden of manifest.golden) {
  const target = modelFor(golden.candidate);
  const path = target.path;
  let model;
  try {
    model = await open(target);
  } catch (e) {
    fail(`onnxruntime-node cannot load ${path}: ${e.message.split('\n')[0]}`);
  }
  const feeds = {};
  for (const [name, file] of Object.entries(golden.inputs)) {
    const array = readNpy(safe(file));
    feeds[name] = new ort.Tensor(array.ortType, array.data, array.shape);
  }
  const started = process.hrtime.bigint();
  let outputs;
  try {
    outputs = await model.run(feeds);
  } catch (e) {
    fail(`onnxruntime-node could not run ${path} on golden case ${golden.name}: ${e.message.split('\n')[0]}`, 3);
  }
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  for (const [name, file] of Object.entries(golden.outputs)) {
    const outcome = outputs[name]
      ? check(name, readNpy(safe(file)), outputs[name], golden.tolerance)
      : { name, passed: false, reason: 'the model gives no such output' };
    results.push({ case: golden.name, file: path, ms, ...outcome });
  }
}

const wrote = manifest.ort && Object.keys(manifest.ort).length ? manifest.machine?.libraries?.onnxruntime : undefined;
if (wrote && wrote !== ort.env.versions.common) {
  notes.push(`the ORT file was written by onnxruntime ${wrote}; this is onnxruntime-node ${ort.env.versions.common}`);
}
const passed = results.length > 0 && results.every((r) => r.passed);
if (asJson) {
  console.log(JSON.stringify({ folder, passed, onnxruntime_node: ort.env.versions.common, notes, results }, null, 2));
} else {
  console.log(`${folder}: ${manifest.kind} package, ${manifest.model}, in onnxruntime-node (Node.js ${process.version})`);
  const width = Math.max(...results.map((r) => `${r.case}  ${r.name}`.length));
  for (const r of results) {
    const figures = r.reason ?? `max abs ${r.max_abs_error.toExponential(2)}, ${r.relative_to_range.toExponential(2)} of max |golden|`;
    const label = `${r.case}  ${r.name}`.padEnd(width);
    console.log(`  ${label}  ${figures}  ${r.passed ? 'ok' : 'FAILS'}  (${r.ms.toFixed(2)} ms, first call)`);
  }
  for (const note of new Set(notes)) console.log(`note: ${note}`);
  console.log(passed ? 'verified in Node.js' : 'NOT verified in Node.js');
}
process.exit(passed ? 0 : 3);

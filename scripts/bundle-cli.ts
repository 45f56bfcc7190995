// The `clawbox` command as one CommonJS file (dist/bundle/clawbox.cjs), run from a V8 code cache by its launcher
// (dist/bundle/launch.cjs, from src/cli/launch.ts), which bin/clawbox runs. Why: unbundled, a `clawbox run` spent
// about 170 ms after Node's start before its first Docker request, resolving, reading and compiling some 280 module
// files; from the bundle and its cache, about 45 ms (README, "Start time"). Whitespace is minified (names are kept,
// for readable stack traces): a file a third smaller measured about 15 ms less per start.
//
// dockerode is bundled, with runner/dockerode-bundled.ts in place of runner/dockerode.ts. The parts of it that
// clawbox does not use (BuildKit sessions over gRPC, docker-modem's SSH transport) become stand-ins that load the
// real file from node_modules on their first call, as runner/dockerode.ts arranges outside the bundle.
// pino and pino-pretty stay outside: pino's transports start worker threads from files beside pino's own modules.
//
// Three more things docker-modem and dockerode do at every start, for work a `clawbox run` never asks for, are put
// off (deferDockerModemWork): loading the https and zlib modules (an engine over TLS; compressed build contexts),
// loading `debug` (with tty), and formatting every request's options with util.inspect for a debug line that is
// off unless DEBUG is set. The loads were 5-7 ms of a `clawbox run`'s module initialisation (README, "Start time").
import { copyFileSync, mkdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build, type Plugin } from 'esbuild';

/** Each deferred part: how its package requires it, and the file the stand-in loads at run time. */
const DEFERRED = [
  { request: './session', from: /[\\/]dockerode[\\/]lib$/, load: 'dockerode/lib/session.js' },
  { request: './ssh', from: /[\\/]docker-modem[\\/]lib$/, load: 'docker-modem/lib/ssh.js' },
];

const deferDockerodeParts: Plugin = {
  name: 'clawbox-defer-dockerode-parts',
  setup(b) {
    b.onResolve({ filter: /^\.\/dockerode\.js$/ }, (args) =>
      args.resolveDir.endsWith('runner') ? { path: join(args.resolveDir, 'dockerode-bundled.ts') } : undefined,
    );
    for (const part of DEFERRED) {
      b.onResolve({ filter: new RegExp(`^${part.request.replace('.', '\\.')}$`) }, (args) =>
        part.from.test(args.resolveDir) ? { path: part.load, namespace: 'deferred' } : undefined,
      );
      b.onResolve({ filter: new RegExp(`^${part.load.replace(/[./]/g, '\\$&')}$`) }, () => ({ path: part.load, external: true }));
    }
    // Both parts export one function, called as a plain function.
    b.onLoad({ filter: /.*/, namespace: 'deferred' }, (args) => ({
      contents: `let real = null;
module.exports = function deferred(...args) {
  real ??= require(${JSON.stringify(args.path)});
  return real.apply(this, args);
};`,
      loader: 'js',
    }));
  },
};

/** Built-in modules that a package loads at its start but uses only on paths clawbox's CLI seldom takes. */
const LAZY_BUILTINS = [
  { request: 'https', from: /[\\/]docker-modem[\\/]lib$/ },
  { request: 'zlib', from: /[\\/]dockerode[\\/]lib$/ },
];

/** The one debug line docker-modem formats whether or not it is printed; the guard is debug's own flag. */
const MODEM_SENDING = "debug('Sending: %s', util.inspect(";

const deferDockerModemWork: Plugin = {
  name: 'clawbox-defer-docker-modem-work',
  setup(b) {
    for (const lazy of LAZY_BUILTINS) {
      b.onResolve({ filter: new RegExp(`^${lazy.request}$`) }, (args) =>
        lazy.from.test(args.resolveDir) ? { path: lazy.request, namespace: 'lazy-builtin' } : undefined,
      );
    }
    // The packages keep the module object (docker-modem makes it the prototype of its own wrapper), so the
    // stand-in is an object that loads the real module on its first property read.
    b.onLoad({ filter: /.*/, namespace: 'lazy-builtin' }, (args) => ({
      contents: `let real = null;
module.exports = new Proxy({}, {
  get(_target, key) {
    real ??= require(${JSON.stringify(`node:${args.path}`)});
    return real[key];
  },
});`,
      loader: 'js',
    }));
    // `debug` from node_modules (outside the bundle) only when DEBUG asks for output; else a debug function that
    // is off, as the real one is without DEBUG.
    b.onResolve({ filter: /^debug$/ }, (args) =>
      /[\\/]docker-modem[\\/]lib$/.test(args.resolveDir) ? { path: 'debug', namespace: 'debug-when-asked' } : undefined,
    );
    b.onResolve({ filter: /^debug$/, namespace: 'debug-when-asked' }, () => ({ path: 'debug', external: true }));
    b.onLoad({ filter: /.*/, namespace: 'debug-when-asked' }, () => ({
      contents: `module.exports = function debugFor(namespace) {
  if (process.env.DEBUG) return require('debug')(namespace);
  const off = () => undefined;
  off.enabled = false;
  return off;
};`,
      loader: 'js',
    }));
    b.onLoad({ filter: /[\\/]docker-modem[\\/]lib[\\/]modem\.js$/ }, (args) => {
      const source = readFileSync(args.path, 'utf8');
      const parts = source.split(MODEM_SENDING);
      // A docker-modem that no longer has the line (or has it twice) is a build error, not a silent miss.
      if (parts.length !== 2) throw new Error(`${args.path}: expected one "${MODEM_SENDING}", found ${parts.length - 1}`);
      return { contents: parts.join(`if (debug.enabled) ${MODEM_SENDING}`), loader: 'js' };
    });
  },
};

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const outDir = join(root, 'dist', 'bundle');
mkdirSync(outDir, { recursive: true });

const commonJs = {
  bundle: true,
  platform: 'node',
  format: 'cjs',
  target: 'node20',
  // Modules that find files beside themselves (the seccomp profile, images/, the launcher's bundle) do it from
  // import.meta.url: in a CommonJS file that is the file's own URL, and what they look for is copied or found there.
  define: { 'import.meta.url': '__clawboxBundleUrl' },
  banner: { js: "const __clawboxBundleUrl = require('node:url').pathToFileURL(__filename).href;" },
  legalComments: 'none',
  // The launcher reads the bundle as latin1, which is exact for ASCII and faster than UTF-8 (code-cache.ts).
  charset: 'ascii',
  minifyWhitespace: true,
  minifySyntax: true,
  logLevel: 'warning',
} as const;

await build({
  ...commonJs,
  entryPoints: [join(root, 'src', 'cli', 'main.ts')],
  outfile: join(outDir, 'clawbox.cjs'),
  external: ['pino', 'pino-pretty'],
  plugins: [deferDockerodeParts, deferDockerModemWork],
});
await build({ ...commonJs, entryPoints: [join(root, 'src', 'cli', 'launch.ts')], outfile: join(outDir, 'launch.cjs') });
copyFileSync(join(root, 'runner', 'seccomp-default.json'), join(outDir, 'seccomp-default.json'));

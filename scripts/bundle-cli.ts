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
import { copyFileSync, mkdirSync } from 'node:fs';
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
  minifyWhitespace: true,
  minifySyntax: true,
  logLevel: 'warning',
} as const;

await build({
  ...commonJs,
  entryPoints: [join(root, 'src', 'cli', 'main.ts')],
  outfile: join(outDir, 'clawbox.cjs'),
  external: ['pino', 'pino-pretty'],
  plugins: [deferDockerodeParts],
});
await build({ ...commonJs, entryPoints: [join(root, 'src', 'cli', 'launch.ts')], outfile: join(outDir, 'launch.cjs') });
copyFileSync(join(root, 'runner', 'seccomp-default.json'), join(outDir, 'seccomp-default.json'));

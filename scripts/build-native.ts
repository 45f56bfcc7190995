// Compiles proxy/native/udp-batch.c into dist/native/udp-batch.node (the DNS front's batched datagram I/O,
// proxy/udp-batch.ts) against the headers of the Node that runs this script.
//
// Without a C compiler or Node's headers it says so and leaves the part out: the gateway then answers DNS through
// node:dgram, a measured ~3 µs more CPU per query, and logs why at start. A compile error is a defect and fails the
// build. scripts/setup.sh installs gcc; Node's headers come with the nodejs package (include/node beside bin/).
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const source = join(root, 'proxy', 'native', 'udp-batch.c');
const outDir = join(root, 'dist', 'native');
const out = join(outDir, 'udp-batch.node');
const headers = [process.env.CLAWBOX_NODE_HEADERS, join(dirname(process.execPath), '..', 'include', 'node')].find(
  (dir): dir is string => dir !== undefined && existsSync(join(dir, 'node_api.h')) && existsSync(join(dir, 'uv.h')),
);
const compiler = ['cc', 'gcc'].find((cc) => spawnSync(cc, ['--version'], { stdio: 'ignore' }).status === 0);

rmSync(out, { force: true });
if (headers === undefined || compiler === undefined) {
  const missing = headers === undefined ? `Node's headers (node_api.h, uv.h under ${join(dirname(process.execPath), '..', 'include', 'node')})` : 'a C compiler (cc or gcc)';
  console.warn(`build-native: skipped, no ${missing}: the gateway will answer DNS one datagram at a time (node:dgram)`);
} else {
  mkdirSync(outDir, { recursive: true });
  const args = ['-O2', '-Wall', '-Wextra', '-Werror', '-fPIC', '-shared', '-fvisibility=hidden', `-I${headers}`, '-o', out, source];
  const result = spawnSync(compiler, args, { encoding: 'utf8' });
  if (result.status !== 0) {
    console.error(`build-native: ${compiler} ${args.join(' ')} failed:\n${result.stderr}`);
    process.exit(1);
  }
}

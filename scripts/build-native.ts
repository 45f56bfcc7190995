// Compiles the gateway's native parts against the headers of the Node that runs this script:
//   proxy/native/udp-batch.c -> dist/native/udp-batch.node  (the DNS front's batched datagram I/O, proxy/udp-batch.ts)
//   proxy/native/tcp-relay.c -> dist/native/tcp-relay.node  (the tunnels' dial and relay, proxy/tcp-relay.ts)
//   proxy/native/shared-cells.c -> dist/native/shared-cells.node  (memory the cluster workers share, proxy/worker-loads.ts)
//
// Without a C compiler or Node's headers it says so and leaves them out: the gateway then answers DNS through
// node:dgram and relays tunnels through node:net, as measured slower, and logs why at start. A compile error is a
// defect and fails the build. scripts/setup.sh installs gcc; Node's headers come with the nodejs package
// (include/node beside bin/).
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const outDir = join(root, 'dist', 'native');
const parts = [
  { name: 'udp-batch', without: 'the gateway will answer DNS one datagram at a time (node:dgram)' },
  { name: 'tcp-relay', without: 'the gateway will relay tunnels through node:net' },
  { name: 'shared-cells', without: 'the gateway workers will not balance connections by load' },
] as const;
const headers = [process.env.CLAWBOX_NODE_HEADERS, join(dirname(process.execPath), '..', 'include', 'node')].find(
  (dir): dir is string => dir !== undefined && existsSync(join(dir, 'node_api.h')) && existsSync(join(dir, 'uv.h')),
);
const compiler = ['cc', 'gcc'].find((cc) => spawnSync(cc, ['--version'], { stdio: 'ignore' }).status === 0);

for (const part of parts) rmSync(join(outDir, `${part.name}.node`), { force: true });
if (headers === undefined || compiler === undefined) {
  const missing = headers === undefined ? `Node's headers (node_api.h, uv.h under ${join(dirname(process.execPath), '..', 'include', 'node')})` : 'a C compiler (cc or gcc)';
  for (const part of parts) console.warn(`build-native: ${part.name} skipped, no ${missing}: ${part.without}`);
} else {
  mkdirSync(outDir, { recursive: true });
  for (const part of parts) {
    const source = join(root, 'proxy', 'native', `${part.name}.c`);
    const out = join(outDir, `${part.name}.node`);
    const args = ['-O2', '-Wall', '-Wextra', '-Werror', '-fPIC', '-shared', '-fvisibility=hidden', `-I${headers}`, '-o', out, source];
    const result = spawnSync(compiler, args, { encoding: 'utf8' });
    if (result.status !== 0) {
      console.error(`build-native: ${compiler} ${args.join(' ')} failed:\n${result.stderr}`);
      process.exit(1);
    }
  }
}

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GATEWAY_COMMAND_LINE_V8_FLAGS } from '../../proxy/heap-tuning.js';

// The package's bin. It needs the build (npm run build, which `npm test` runs first).
const ROOT = join(import.meta.dirname, '..', '..');
const BIN_DIR = join(ROOT, 'bin');
const BIN = join(BIN_DIR, 'clawbox');
/** A file that does not exist: Node warns at start when the variable names it, so the warning shows it was kept. */
const MISSING_CA = join(tmpdir(), 'clawbox-no-such-ca.pem');
const KEPT = `Ignoring extra certs from \`${MISSING_CA}\``;

function run(command: string, args: string[], dockerHost: string | undefined, cwd?: string): SpawnSyncReturns<string> {
  const env: NodeJS.ProcessEnv = { ...process.env, NODE_EXTRA_CA_CERTS: MISSING_CA };
  if (dockerHost === undefined) delete env.DOCKER_HOST;
  else env.DOCKER_HOST = dockerHost;
  return spawnSync(command, args, { env, cwd, encoding: 'utf8', timeout: 30_000 });
}

describe('the clawbox executable (bin/clawbox)', () => {
  for (const dockerHost of [undefined, 'unix:///var/run/docker.sock']) {
    it(`drops NODE_EXTRA_CA_CERTS before Node starts when the engine is local (DOCKER_HOST ${dockerHost ?? 'unset'})`, () => {
      const ran = run(BIN, ['--help'], dockerHost);
      assert.equal(ran.status, 0, ran.stderr);
      assert.match(ran.stdout, /^Usage: clawbox <command>/);
      assert.ok(!ran.stderr.includes('extra certs'), `Node still read the variable: ${ran.stderr}`);
    });
  }

  for (const dockerHost of ['tcp://127.0.0.1:2376', 'ssh://builder@engine.test']) {
    it(`keeps it for an engine over the network (DOCKER_HOST ${dockerHost})`, () => {
      const ran = run(BIN, ['--help'], dockerHost);
      assert.equal(ran.status, 0, ran.stderr);
      assert.ok(ran.stderr.includes(KEPT), `expected Node's warning about the kept variable, got: ${ran.stderr}`);
    });
  }

  it('finds the tree through a link, as npm links a bin, and when run by a bare name', (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'clawbox-bin-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const link = join(dir, 'clawbox');
    symlinkSync(BIN, link);
    const linked = run(link, ['--help'], undefined);
    assert.equal(linked.status, 0, linked.stderr);
    assert.match(linked.stdout, /^Usage: clawbox <command>/);
    const bare = run('sh', ['clawbox', '--help'], undefined, BIN_DIR);
    assert.equal(bare.status, 0, bare.stderr);
    assert.match(bare.stdout, /^Usage: clawbox <command>/);
  });

  it('runs the bundle through its CommonJS launcher, and the modules as they are in a build without a bundle', (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'clawbox-tree-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    // Node's main script, as the process saw it: the CLI passes process.argv[1] on to its detached helpers.
    const preload = join(dir, 'main-script.cjs');
    writeFileSync(preload, "process.on('exit', () => process.stderr.write('main=' + process.argv[1] + '\\n'));");
    const mainScript = (bin: string): string => {
      const ran = spawnSync(bin, ['--help'], { env: { ...process.env, NODE_OPTIONS: `--require ${preload}` }, encoding: 'utf8', timeout: 30_000 });
      assert.equal(ran.status, 0, ran.stderr);
      assert.match(ran.stdout, /^Usage: clawbox <command>/);
      return /^main=(.*)$/m.exec(ran.stderr)?.[1] ?? '';
    };
    assert.equal(mainScript(BIN), join(ROOT, 'dist', 'bundle', 'launch.cjs'));
    // A tree with the CLI's modules and no bundle: what `tsc` alone builds.
    const tree = join(dir, 'tree');
    mkdirSync(join(tree, 'bin'), { recursive: true });
    mkdirSync(join(tree, 'dist'));
    copyFileSync(BIN, join(tree, 'bin', 'clawbox'));
    symlinkSync(join(ROOT, 'dist', 'src'), join(tree, 'dist', 'src'));
    assert.equal(mainScript(join(tree, 'bin', 'clawbox')), join(tree, 'dist', 'src', 'cli', 'main.js'));
  });

  it("starts `clawbox proxy` with the gateway's command-line V8 flags, and other commands without them", (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'clawbox-flags-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const preload = join(dir, 'exec-argv.cjs');
    writeFileSync(preload, "process.on('exit', () => process.stderr.write('execArgv=' + JSON.stringify(process.execArgv) + '\\n'));");
    const execArgv = (args: string[]): string[] => {
      const ran = spawnSync(BIN, args, { env: { ...process.env, NODE_OPTIONS: `--require ${preload}` }, encoding: 'utf8', timeout: 30_000 });
      assert.equal(ran.status, 0, ran.stderr);
      return JSON.parse(/^execArgv=(.*)$/m.exec(ran.stderr)?.[1] ?? 'null') as string[];
    };
    const proxy = execArgv(['proxy', '--help']);
    for (const flag of GATEWAY_COMMAND_LINE_V8_FLAGS) assert.ok(proxy.includes(flag), `clawbox proxy ran with ${JSON.stringify(proxy)}`);
    const other = execArgv(['--help']);
    for (const flag of GATEWAY_COMMAND_LINE_V8_FLAGS) assert.ok(!other.includes(flag), `clawbox --help ran with ${JSON.stringify(other)}`);
  });

  it('passes arguments and the exit code through', () => {
    const ran = run(BIN, ['no-such-command'], undefined);
    assert.equal(ran.status, 2);
    assert.match(ran.stderr, /unknown command 'no-such-command'/);
  });
});

/**
 * Builds clawbox's two images without a container registry: openclaw-sandbox from a debootstrap root filesystem
 * (images/sandbox/build.sh) and clawbox-gateway on top of it (images/gateway/build.sh). Each image is labelled with a
 * digest of its build inputs; a build whose digest matches the existing image's label is skipped.
 */
import { createHash } from 'node:crypto';
import { createReadStream, existsSync, mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import type Dockerode from 'dockerode';
import { ClawboxError } from '../src/errors.js';
import { childProcess } from './child-process.js';
import { dockerodeClass } from './dockerode.js';

export const SANDBOX_IMAGE = 'openclaw-sandbox:latest';
export const GATEWAY_IMAGE = 'clawbox-gateway:latest';
export const DIGEST_LABEL = 'dev.clawbox.image-digest';
export const DEFAULT_CACHE_DIR = '/var/cache/clawbox';

export type ImageKind = 'sandbox' | 'gateway';

export interface BuildOptions {
  /** Rebuild even when the image's digest label matches (the cached root filesystem is still reused). */
  readonly force?: boolean;
  /** Called with a short step name ('sandbox: debootstrap bookworm minbase …', 'gateway: up to date'). */
  readonly onProgress?: (step: string) => void;
  /** Which images; default both. The gateway needs a built clawbox (`npm run build`). */
  readonly images?: readonly ImageKind[];
  readonly docker?: Dockerode;
  /** The clawbox tree holding images/, dist/, package.json; default: the one this module belongs to. */
  readonly root?: string;
  readonly cacheDir?: string;
  /** The node binary copied into the gateway image; default /usr/bin/node. */
  readonly nodeBinary?: string;
  readonly mirror?: string;
  readonly suite?: string;
}

export interface BuiltImage {
  readonly kind: ImageKind;
  readonly image: string;
  readonly digest: string;
  /** false when the existing image was already up to date. */
  readonly built: boolean;
}

/** The clawbox tree: the nearest ancestor of this module with images/ and package.json (works from dist/ too). */
export function clawboxRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, 'package.json')) && existsSync(join(dir, 'images', 'sandbox', 'build.sh'))) return dir;
    const parent = dirname(dir);
    if (parent === dir) throw new Error('cannot find the clawbox tree (images/sandbox/build.sh) above runner/images');
    dir = parent;
  }
}

export async function buildImages(options: BuildOptions = {}): Promise<BuiltImage[]> {
  const docker = options.docker ?? new (dockerodeClass())();
  const root = options.root ?? clawboxRoot();
  const kinds = options.images ?? ['sandbox', 'gateway'];
  const progress = options.onProgress ?? (() => undefined);
  const mirror = options.mirror ?? process.env.CLAWBOX_MIRROR ?? 'http://deb.debian.org/debian';
  const suite = options.suite ?? process.env.CLAWBOX_SUITE ?? 'bookworm';
  const cacheDir = options.cacheDir ?? DEFAULT_CACHE_DIR;
  const env = { ...process.env, CLAWBOX_MIRROR: mirror, CLAWBOX_SUITE: suite };

  await pingDocker(docker);
  const results: BuiltImage[] = [];
  const sandboxDigest = sandboxInputsDigest(root, mirror, suite);
  // The gateway builds FROM the sandbox image, so asking for the gateway implies an up-to-date sandbox.
  const needSandbox = kinds.includes('sandbox') || kinds.includes('gateway');
  if (needSandbox) {
    const current = await imageDigest(docker, SANDBOX_IMAGE);
    if (current === sandboxDigest && options.force !== true) {
      progress('sandbox: up to date');
      results.push({ kind: 'sandbox', image: SANDBOX_IMAGE, digest: sandboxDigest, built: false });
    } else {
      mkdirSync(cacheDir, { recursive: true });
      const tarball = join(cacheDir, `sandbox-rootfs-${sandboxDigest.replace(/^sha256:/, '').slice(0, 16)}.tar`);
      const script = join(root, 'images', 'sandbox', 'build.sh');
      if (existsSync(tarball)) {
        progress('sandbox: reuse cached root filesystem');
      } else {
        await runScript(script, ['rootfs', tarball], env, (step) => progress(`sandbox: ${step}`));
        pruneCache(cacheDir, 'sandbox-rootfs-', tarball);
      }
      const previous = await imageId(docker, SANDBOX_IMAGE);
      await runScript(script, ['import', tarball, SANDBOX_IMAGE, sandboxDigest], env, (step) => progress(`sandbox: ${step}`));
      await removeIfReplaced(docker, SANDBOX_IMAGE, previous);
      results.push({ kind: 'sandbox', image: SANDBOX_IMAGE, digest: sandboxDigest, built: true });
    }
  }
  if (kinds.includes('gateway')) {
    const nodeBinary = options.nodeBinary ?? '/usr/bin/node';
    if (!existsSync(join(root, 'dist', 'src', 'cli', 'main.js'))) {
      throw new ClawboxError('IMAGE_MISSING', `cannot build ${GATEWAY_IMAGE}: ${join(root, 'dist')} has no built clawbox; run 'npm run build' first`);
    }
    progress('gateway: hash inputs');
    const digest = await gatewayInputsDigest(root, sandboxDigest, nodeBinary);
    const current = await imageDigest(docker, GATEWAY_IMAGE);
    if (current === digest && options.force !== true) {
      progress('gateway: up to date');
      results.push({ kind: 'gateway', image: GATEWAY_IMAGE, digest, built: false });
    } else {
      const previous = await imageId(docker, GATEWAY_IMAGE);
      const script = join(root, 'images', 'gateway', 'build.sh');
      await runScript(script, [root, GATEWAY_IMAGE, digest, SANDBOX_IMAGE], { ...env, CLAWBOX_NODE: nodeBinary }, (step) =>
        progress(`gateway: ${step}`),
      );
      await removeIfReplaced(docker, GATEWAY_IMAGE, previous);
      results.push({ kind: 'gateway', image: GATEWAY_IMAGE, digest, built: true });
    }
  }
  return results;
}

/** The local image's inspect record; throws IMAGE_MISSING, saying how to build it, when there is none. */
export async function requireImage(docker: Dockerode, image: string): Promise<Dockerode.ImageInspectInfo> {
  const info = await inspectImage(docker, image);
  if (info === null) {
    throw new ClawboxError('IMAGE_MISSING', `image ${image} does not exist locally; build it with 'clawbox images build' (no registry needed; with one, images/*/Dockerfile also work)`);
  }
  return info;
}

/** The dev.clawbox.image-digest label of a local image, or null when the image or label is absent. */
export async function imageDigest(docker: Dockerode, image: string): Promise<string | null> {
  const info = await inspectImage(docker, image);
  return info === null ? null : digestLabelOf(info);
}

/** The digest label an image was built with (what `clawbox images build` compares to skip a rebuild). */
export function digestLabelOf(info: Dockerode.ImageInspectInfo): string | null {
  return info.Config?.Labels?.[DIGEST_LABEL] ?? null;
}

export function sandboxInputsDigest(root: string, mirror: string, suite: string): string {
  const dir = join(root, 'images', 'sandbox');
  return sha256Parts(['sandbox/1', read(join(dir, 'build.sh')), read(join(dir, 'packages.txt')), mirror, suite]);
}

export async function gatewayInputsDigest(root: string, sandboxDigest: string, nodeBinary: string): Promise<string> {
  const dir = join(root, 'images', 'gateway');
  return sha256Parts([
    'gateway/1',
    sandboxDigest,
    read(join(dir, 'build.sh')),
    read(join(dir, 'Dockerfile')),
    await hashFile(nodeBinary),
    treeDigest(join(root, 'dist'), GATEWAY_SKIPS_DIST),
    read(join(root, 'package.json')),
    read(join(root, 'package-lock.json')),
  ]);
}

/**
 * What of dist/ the gateway image leaves out (images/gateway/build.sh removes the same): the gateway runs
 * dist/src/cli/main.js, not the CLI bundle, and the bundle's directory also holds code caches that runs write.
 */
export const GATEWAY_SKIPS_DIST = ['bundle'] as const;

/** A digest of every file under `dir` (relative path and content), in a stable order, but the top-level `skip` entries. */
export function treeDigest(dir: string, skip: readonly string[] = []): string {
  const hash = createHash('sha256');
  const walk = (d: string): void => {
    for (const entry of readdirSync(d, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1))) {
      const full = join(d, entry.name);
      if (d === dir && skip.includes(entry.name)) continue;
      if (entry.isDirectory()) walk(full);
      else if (entry.isFile()) {
        hash.update(`${relative(dir, full)}\0`);
        hash.update(readFileSync(full));
        hash.update('\0');
      }
    }
  };
  walk(dir);
  return hash.digest('hex');
}

function sha256Parts(parts: readonly string[]): string {
  const hash = createHash('sha256');
  // Length-prefixed so that moving text between parts changes the digest.
  for (const part of parts) hash.update(`${Buffer.byteLength(part)}:${part}`);
  return `sha256:${hash.digest('hex')}`;
}

function read(path: string): string {
  return readFileSync(path, 'utf8');
}

function hashFile(path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const hash = createHash('sha256');
    createReadStream(path)
      .on('data', (chunk) => hash.update(chunk))
      .on('error', reject)
      .on('end', () => resolve(hash.digest('hex')));
  });
}

async function pingDocker(docker: Dockerode): Promise<void> {
  try {
    await docker.ping();
  } catch (err) {
    throw new ClawboxError('DOCKER_UNAVAILABLE', `cannot reach the Docker daemon: ${(err as Error).message}`, { cause: err });
  }
}

async function inspectImage(docker: Dockerode, image: string): Promise<Dockerode.ImageInspectInfo | null> {
  try {
    return await docker.getImage(image).inspect();
  } catch (err) {
    if ((err as { statusCode?: number }).statusCode === 404) return null;
    throw err;
  }
}

async function imageId(docker: Dockerode, image: string): Promise<string | null> {
  return (await inspectImage(docker, image))?.Id ?? null;
}

/** Drops the image a rebuild untagged, so rebuilds do not pile up dangling images; in-use ones stay. */
async function removeIfReplaced(docker: Dockerode, image: string, previousId: string | null): Promise<void> {
  if (previousId === null || previousId === (await imageId(docker, image))) return;
  try {
    await docker.getImage(previousId).remove({ noprune: false });
  } catch {
    // Still used by a container or as a parent: leaving it is harmless.
  }
}

function pruneCache(dir: string, prefix: string, keep: string): void {
  for (const name of readdirSync(dir)) {
    const full = join(dir, name);
    if (name.startsWith(prefix) && full !== keep) rmSync(full, { force: true });
  }
}

/** Runs a build script, reporting its `step: …` lines; the error carries the script's last stderr lines. */
function runScript(script: string, args: readonly string[], env: NodeJS.ProcessEnv, onStep: (step: string) => void): Promise<void> {
  const { spawn } = childProcess();
  return new Promise((resolve, reject) => {
    const child = spawn('bash', [script, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    let pending = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      pending += chunk;
      const lines = pending.split('\n');
      pending = lines.pop() ?? '';
      for (const line of lines) if (line.startsWith('step: ')) onStep(line.slice(6));
    });
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
      stderr = (stderr + chunk).slice(-4000);
    });
    child.on('error', reject);
    child.on('close', (code) => {
      if (code === 0) resolve();
      else {
        const tail = stderr.trim().split('\n').slice(-15).join('\n');
        reject(new ClawboxError('IMAGE_MISSING', `${script} ${args[0] ?? ''} failed (exit ${code ?? 'signal'}):\n${tail}`));
      }
    });
  });
}

import { createRequire, Module } from 'node:module';
import type Dockerode from 'dockerode';

const requireHere = createRequire(import.meta.url);

/**
 * Parts that dockerode 5 and docker-modem require when they load, although clawbox never uses them. Measured
 * here, they are about 110 ms of the 230 ms a `clawbox run` spends loading modules:
 * - dockerode's BuildKit sessions over gRPC (`@grpc/grpc-js`, `@grpc/proto-loader`, ~75 ms): clawbox builds no
 *   image through BuildKit;
 * - docker-modem's SSH transport (`ssh2`, ~40 ms): clawbox talks to the engine's socket, or to DOCKER_HOST over tcp.
 * Each is replaced by a stand-in that loads the real module on its first call, so `DOCKER_HOST=ssh://…` and
 * BuildKit still work, paying the load only then.
 */
const DEFERRED = ['dockerode/lib/session.js', 'docker-modem/lib/ssh.js'] as const;

let loaded: typeof Dockerode | null = null;

/** The Dockerode class, loaded once, with the parts above deferred. */
export function dockerodeClass(): typeof Dockerode {
  if (loaded !== null) return loaded;
  // Resolved from dockerode's own place: docker-modem may sit inside dockerode's node_modules.
  const fromDockerode = createRequire(requireHere.resolve('dockerode'));
  for (const file of DEFERRED) defer(fromDockerode, fromDockerode.resolve(file));
  loaded = requireHere('dockerode') as typeof Dockerode;
  return loaded;
}

/**
 * Puts a stand-in for the module at `path` into the require cache; dockerode's `require` then gets the stand-in.
 * Both deferred modules export one function, called as a plain function.
 */
function defer(resolver: NodeJS.Require, path: string): void {
  if (resolver.cache[path] !== undefined) return;
  let real: ((...args: unknown[]) => unknown) | null = null;
  const standIn = new Module(path);
  standIn.filename = path;
  standIn.loaded = true;
  standIn.exports = function deferred(this: unknown, ...args: unknown[]): unknown {
    if (real === null) {
      // Load the real file in place of the stand-in; from then on the cache holds the real module.
      delete resolver.cache[path];
      real = resolver(path) as (...args: unknown[]) => unknown;
    }
    return real.apply(this, args);
  };
  resolver.cache[path] = standIn;
}

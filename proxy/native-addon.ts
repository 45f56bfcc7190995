/**
 * Loads one of the gateway's compiled parts (`proxy/native/*.c`, built into `dist/native/` by `npm run build`,
 * scripts/build-native.ts), or says why it cannot be used: not built, or built for another Node. Each is loaded
 * once per process; its caller falls back to Node's own path and logs the reason.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const loaded = new Map<string, { readonly addon: unknown } | { readonly unavailable: string }>();

/** `name`: the part's file name without `.node` (`udp-batch`, `tcp-relay`); found from proxy/ (tsx) or dist/proxy/. */
export function loadNativeAddon<T>(name: string, moduleUrl: string = import.meta.url): T | string {
  let entry = loaded.get(name);
  if (entry === undefined) {
    const here = dirname(fileURLToPath(moduleUrl));
    const path = [join(here, '..', 'native', `${name}.node`), join(here, '..', 'dist', 'native', `${name}.node`)].find((candidate) => existsSync(candidate));
    if (path === undefined) {
      entry = { unavailable: `proxy/native/${name}.c is not built (npm run build compiles it when a C compiler and Node headers are present)` };
    } else {
      try {
        entry = { addon: createRequire(moduleUrl)(path) };
      } catch (err) {
        entry = { unavailable: `${path} does not load: ${(err as Error).message}` };
      }
    }
    loaded.set(name, entry);
  }
  return 'addon' in entry ? (entry.addon as T) : entry.unavailable;
}

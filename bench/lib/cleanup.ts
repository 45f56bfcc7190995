/**
 * One place that undoes everything the bench did to the machine (children, loopback aliases, temp dirs), in
 * reverse order, exactly once: on normal exit, on error and on SIGINT/SIGTERM. The actions are synchronous so
 * they also run from the 'exit' handler, which cannot await.
 */
type Action = { readonly name: string; readonly fn: () => void };

const actions: Action[] = [];
let done = false;

export function onCleanup(name: string, fn: () => void): void {
  actions.push({ name, fn });
}

export function cleanupNow(): void {
  if (done) return;
  done = true;
  for (const action of actions.reverse()) {
    try {
      action.fn();
    } catch (err) {
      process.stderr.write(`[bench] cleanup '${action.name}' failed: ${err instanceof Error ? err.message : String(err)}\n`);
    }
  }
}

export function installCleanupHandlers(): void {
  process.on('exit', cleanupNow);
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(signal, () => {
      process.stderr.write(`[bench] ${signal}: cleaning up\n`);
      cleanupNow();
      process.exit(130);
    });
  }
  process.on('uncaughtException', (err) => {
    process.stderr.write(`[bench] fatal: ${err.stack ?? err.message}\n`);
    cleanupNow();
    process.exit(1);
  });
  process.on('unhandledRejection', (err) => {
    process.stderr.write(`[bench] fatal (rejection): ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    cleanupNow();
    process.exit(1);
  });
}

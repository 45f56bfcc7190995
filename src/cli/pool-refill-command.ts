import { connectDocker } from '../../runner/docker-client.js';
import { runRefillJob, type RefillJob } from '../../runner/pool-refill.js';
import { sweepPoolEntries } from '../../runner/pool.js';
import { serveResidentRunner } from './resident-runner.js';

/**
 * `clawbox pool-refill` (internal, not in the usage text): the detached helper that `clawbox run` leaves to top
 * the warm pool and the network holders up. Its job comes as JSON on stdin from the run that started it; nobody
 * reads its output. When the config keeps a resident runner (`pool.runner_idle_timeout`; by default a config with a
 * pool or holders does), the helper then serves the next runs (resident-runner.ts) until none came for that long.
 */
export async function poolRefillCommand(): Promise<number> {
  let text = '';
  process.stdin.setEncoding('utf8');
  for await (const chunk of process.stdin) text += chunk as string;
  const job = JSON.parse(text) as RefillJob;
  const docker = await connectDocker();
  await runRefillJob(docker, job);
  if (job.runnerIdleMs > 0 && (await serveResidentRunner(job.stateDir, job.runnerIdleMs))) {
    // No run came for as long as the pool's sandboxes wait (by default): those it refilled, and the network holders,
    // which wait as long, have expired, and go now rather than at the next run's sweep or `clawbox gc`, which may be
    // long in coming.
    await sweepPoolEntries(docker, job.stateDir).catch(() => undefined);
  }
  return 0;
}

import { connectDocker } from '../../runner/docker-client.js';
import { runRefillJob, type RefillJob } from '../../runner/pool-refill.js';

/**
 * `clawbox pool-refill` (internal, not in the usage text): the detached helper that `clawbox run` leaves to top
 * the warm pool up. Its job comes as JSON on stdin from the run that started it; nobody reads its output.
 */
export async function poolRefillCommand(): Promise<number> {
  let text = '';
  process.stdin.setEncoding('utf8');
  for await (const chunk of process.stdin) text += chunk as string;
  const job = JSON.parse(text) as RefillJob;
  await runRefillJob(await connectDocker(), job);
  return 0;
}

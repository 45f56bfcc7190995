/**
 * The memory the gateway's cluster workers share their loads in (`proxy/worker-loads.ts`,
 * `proxy/native/shared-cells.c`), across real processes: what one publishes the other reads, a slot cleared or
 * not yet live is nobody's least loaded, and a process given no memory says why instead of failing. How the
 * cluster balances with it is cli-proxy.test.ts's (*who accepts*).
 */
import assert from 'node:assert/strict';
import { fork, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { closeSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { INHERITED_FD, SLOT_ENV, SLOTS_ENV, WorkerLoads } from '../../proxy/worker-loads.js';

const CHILD = join(fileURLToPath(new URL('.', import.meta.url)), '..', 'fixtures', 'worker-loads-child.ts');

interface ChildSays {
  readonly slot?: number;
  readonly least?: { readonly slot: number; readonly load: number } | null;
  readonly unavailable?: string;
}

function start(env: NodeJS.ProcessEnv, fd: number | null): { child: ChildProcess; next: () => Promise<ChildSays> } {
  const stdio: Array<'inherit' | 'ipc' | number> = ['inherit', 'inherit', 'inherit', 'ipc'];
  if (fd !== null) stdio.push(fd);
  const child = fork(CHILD, [], { execArgv: ['--import', 'tsx'], env: { ...process.env, ...env }, stdio });
  const said: ChildSays[] = [];
  const waiting: Array<(m: ChildSays) => void> = [];
  child.on('message', (m: ChildSays) => {
    const w = waiting.shift();
    if (w) w(m);
    else said.push(m);
  });
  const next = (): Promise<ChildSays> => {
    const m = said.shift();
    return m ? Promise.resolve(m) : new Promise((resolve) => waiting.push(resolve));
  };
  return { child, next };
}

describe('WorkerLoads: loads shared between processes', () => {
  const children: ChildProcess[] = [];
  after(() => {
    for (const child of children) child.kill('SIGKILL');
  });

  it('shows each process what the other publishes, counting connections on their way to it', async () => {
    const made = WorkerLoads.create(3);
    if (typeof made === 'string') assert.fail(made);
    const { loads, fd } = made;
    try {
      const { child, next } = start({ [SLOT_ENV]: '1', [SLOTS_ENV]: '3' }, fd);
      children.push(child);
      assert.deepEqual(await next(), { slot: 1, least: null }, 'nobody else is live yet');
      assert.deepEqual(loads.leastLoadedOther(0), { slot: 1, load: 0 });

      child.send({ op: 'publish', busy: 7 });
      await next();
      assert.deepEqual(loads.leastLoadedOther(0), { slot: 1, load: 7 });
      loads.addIncoming(1, 2);
      assert.deepEqual(loads.leastLoadedOther(0), { slot: 1, load: 9 }, 'handed to it, not yet passed on');
      loads.addIncoming(1, -2);

      loads.setLive(0, true);
      loads.publishBusy(0, 4);
      loads.setLive(2, true);
      loads.publishBusy(2, 12);
      child.send({ op: 'least' });
      assert.deepEqual(await next(), { slot: 1, least: { slot: 0, load: 4 } }, 'the fewest of the others, itself left out');
      loads.publishBusy(0, 20);
      child.send({ op: 'least' });
      assert.deepEqual(await next(), { slot: 1, least: { slot: 2, load: 12 } });

      // Its process died: the primary clears its slot before a replacement takes it.
      child.send({ op: 'exit' });
      await once(child, 'exit');
      assert.deepEqual(loads.leastLoadedOther(0), { slot: 1, load: 7 }, 'its slot still says what it published last');
      loads.clear(1);
      assert.deepEqual(loads.leastLoadedOther(0), { slot: 2, load: 12 }, 'until cleared: then it is nobody');
    } finally {
      closeSync(fd);
    }
  });

  it('says why a worker cannot balance: no slot given, or no memory at the descriptor it was told of', async () => {
    assert.equal(WorkerLoads.inherited({}), 'the primary gave no shared memory');
    assert.equal(WorkerLoads.inherited({ [SLOT_ENV]: '3', [SLOTS_ENV]: '2' }), 'the primary gave no shared memory');
    const { child, next } = start({ [SLOT_ENV]: '0', [SLOTS_ENV]: '2' }, null);
    children.push(child);
    const said = await next();
    assert.match(String(said.unavailable), new RegExp(`^mmap of descriptor ${INHERITED_FD}: `));
    child.kill('SIGKILL');
  });
});

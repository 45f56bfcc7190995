import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { describeHelperThreadPriority, HELPER_THREAD_NICE, lowerHelperThreadPriority } from '../../proxy/helper-threads.js';
import { assertHelperNice } from '../fixtures/thread-nice.js';

const ROOT = join(import.meta.dirname, '..', '..');

/** Runs the lowering in a fresh node (this runner's own threads stay as they are) and reads back every thread's nice. */
function lowerInChild(): { readonly result: unknown; readonly nice: Record<string, number>; readonly pid: number } {
  const script = `
    const { lowerHelperThreadPriority } = await import(${JSON.stringify(join(ROOT, 'proxy', 'helper-threads.ts'))});
    const { threadNice } = await import(${JSON.stringify(join(ROOT, 'test', 'fixtures', 'thread-nice.ts'))});
    const result = lowerHelperThreadPriority();
    console.log(JSON.stringify({ result, nice: threadNice(process.pid), pid: process.pid }));`;
  return JSON.parse(execFileSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { encoding: 'utf8' })) as ReturnType<typeof lowerInChild>;
}

describe("a gateway process's helper threads", () => {
  it('go to nice 5, every thread but the event loop', () => {
    const { result, nice, pid } = lowerInChild();
    assertHelperNice(nice, pid);
    assert.deepEqual(result, { nice: HELPER_THREAD_NICE, threads: Object.keys(nice).length - 1 });
  });

  it('are left as they are, with the reason, where the threads cannot be listed', () => {
    const result = lowerHelperThreadPriority(HELPER_THREAD_NICE, '/nonexistent/task');
    assert.deepEqual(result, { unavailable: "cannot list this process's threads in /nonexistent/task (ENOENT)" });
    assert.equal(describeHelperThreadPriority(result), "not lowered: cannot list this process's threads in /nonexistent/task (ENOENT)");
    assert.equal(describeHelperThreadPriority({ nice: 19, threads: 6 }), 'nice 19 (6 threads)');
  });
});

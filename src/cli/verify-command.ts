import { loadConfig } from '../config/load.js';
import { verifySandbox, type CheckResult } from '../../runner/verify.js';
import { parseCommandArgs } from './args.js';

export const VERIFY_HELP = `Usage: clawbox verify [--config FILE] [--json]

Runs the seed document's "Testing your sandbox" checks in a real sandbox with your config: network (direct
connections, metadata, the host, DNS and the gateway's refusals), filesystem (the host's /etc/passwd, /root,
/var/log and $HOME) and process isolation (ps, PID 1). Exit code 0 when every check passes, 1 otherwise.`;

function table(results: readonly CheckResult[]): string {
  const width = Math.max(...results.map((r) => r.check.length));
  return results
    .map((r) => `${r.passed ? 'PASS' : 'FAIL'}  ${r.group.padEnd(10)}  ${r.check.padEnd(width)}  ${r.detail}`)
    .join('\n');
}

export async function verifyCommand(args: readonly string[]): Promise<number> {
  const { values } = parseCommandArgs('verify', args, { config: { type: 'string' }, json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } });
  if (values.help) {
    process.stdout.write(`${VERIFY_HELP}\n`);
    return 0;
  }
  const source = loadConfig(values.config);
  const results = await verifySandbox(source.config.sandbox, source.text, (step) => process.stderr.write(`clawbox: ${step}\n`));
  const failed = results.filter((r) => !r.passed).length;
  if (values.json) process.stdout.write(`${JSON.stringify(results)}\n`);
  else process.stdout.write(`${table(results)}\n\n${failed === 0 ? `all ${results.length} checks passed` : `${failed} of ${results.length} checks FAILED`}\n`);
  return failed === 0 ? 0 : 1;
}

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { reportError } from '../../src/cli/errors.js';
import { ClawboxError, EXIT_ABORTED } from '../../src/errors.js';

describe('the CLI reports errors', () => {
  const reported = (err: unknown): { code: number; text: string } => {
    let text = '';
    const code = reportError(err, (t) => (text += t));
    return { code, text };
  };

  it('exits 2 for what the user must fix, 130 for a run stopped before its tool started, 1 for the rest', () => {
    assert.equal(reported(new ClawboxError('CLI_USAGE', 'bad flag')).code, 2);
    assert.equal(reported(new ClawboxError('CONFIG_INVALID', 'bad key')).code, 2);
    assert.equal(reported(new ClawboxError('ABORTED', 'stopped before the tool started')).code, EXIT_ABORTED);
    assert.equal(EXIT_ABORTED, 130);
    assert.equal(reported(new ClawboxError('SANDBOX_FAILED', 'engine said no')).code, 1);
    assert.equal(reported(new Error('boom')).code, 1);
  });

  it('names the error and each detail on its own line', () => {
    const { text } = reported(new ClawboxError('CONFIG_INVALID', 'config.yml has 2 error(s)', { details: ['a (line 1): x', 'b (line 2): y'] }));
    assert.equal(text, 'clawbox: config.yml has 2 error(s)\n  - a (line 1): x\n  - b (line 2): y\n');
    assert.match(reported(new Error('boom')).text, /^clawbox: unexpected error: Error: boom/);
  });
});

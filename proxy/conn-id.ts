import { randomBytes } from 'node:crypto';

// A per-process prefix keeps ids unique across gateway restarts writing to the same audit file.
const prefix = randomBytes(3).toString('hex');
let counter = 0;

/** Short, unique connection id that ties a decision line to its close line. */
export function nextConnId(): string {
  counter += 1;
  return `${prefix}-${counter.toString(36)}`;
}

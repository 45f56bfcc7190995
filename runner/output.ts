import { Writable } from 'node:stream';

function formatBytes(n: number): string {
  if (n >= 1024 ** 3 && n % 1024 ** 3 === 0) return `${n / 1024 ** 3}gb`;
  if (n >= 1024 ** 2 && n % 1024 ** 2 === 0) return `${n / 1024 ** 2}mb`;
  if (n >= 1024 && n % 1024 === 0) return `${n / 1024}kb`;
  return `${n} bytes`;
}

/**
 * One output stream of the tool, passed on up to `limit` bytes. Past the limit a visible marker is written once
 * and the rest is read and dropped, so the tool keeps running instead of blocking on a full pipe.
 */
export class CappedOutput extends Writable {
  private passed = 0;
  private seen = 0;
  private marked = false;

  constructor(
    private readonly target: NodeJS.WritableStream | null,
    private readonly limit: number,
    private readonly name: 'stdout' | 'stderr',
  ) {
    super();
  }

  get truncated(): boolean {
    return this.marked;
  }

  get bytesSeen(): number {
    return this.seen;
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.seen += chunk.length;
    if (!this.target) return callback();
    const room = this.limit - this.passed;
    if (room > 0) {
      const part = chunk.length <= room ? chunk : chunk.subarray(0, room);
      this.passed += part.length;
      this.target.write(part);
    }
    if (chunk.length > room && !this.marked) {
      this.marked = true;
      this.target.write(`\n[clawbox: ${this.name} truncated at ${formatBytes(this.limit)}; the tool keeps running; raise sandbox.logging.max_output_size to see more]\n`);
    }
    callback();
  }
}

/** Keeps what it is given, as text (a probe's output, a test's view of a tool). */
export class TextCollector extends Writable {
  private readonly chunks: Buffer[] = [];
  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: () => void): void {
    this.chunks.push(chunk);
    callback();
  }
  get text(): string {
    return Buffer.concat(this.chunks).toString('utf8');
  }
}

/**
 * Traffic a sandbox sends past the gateway never reaches it, so the gateway cannot audit it. The host firewall
 * (`runner/firewall.ts`) logs such packets to the kernel log with a prefix before dropping them; the runner reads
 * the log around each run and turns its sandbox's attempts into audit lines (channel `direct`).
 */
import { closeSync, constants, openSync, readFileSync, readSync } from 'node:fs';

export const DIRECT_LOG_PREFIX = 'clawbox-direct: ';

export interface DirectAttempt {
  readonly source: string;
  readonly destination: string;
  readonly protocol: string;
  /** 0 for protocols without ports (ICMP). */
  readonly port: number;
  /** Source port: retransmissions of one attempt share it. */
  readonly sourcePort: number;
}

/** `... clawbox-direct: IN=clawbox-sbx0 OUT= ... SRC=10.213.0.9 DST=192.0.2.1 ... PROTO=TCP SPT=4711 DPT=80 ...` */
export function parseDirectAttempt(message: string): DirectAttempt | null {
  const at = message.indexOf(DIRECT_LOG_PREFIX);
  if (at < 0) return null;
  const fields = new Map<string, string>();
  for (const part of message.slice(at + DIRECT_LOG_PREFIX.length).split(' ')) {
    const eq = part.indexOf('=');
    if (eq > 0) fields.set(part.slice(0, eq), part.slice(eq + 1));
  }
  const source = fields.get('SRC');
  const destination = fields.get('DST');
  if (!source || !destination) return null;
  return {
    source,
    destination,
    protocol: fields.get('PROTO') ?? '?',
    port: Number(fields.get('DPT') ?? 0),
    sourcePort: Number(fields.get('SPT') ?? 0),
  };
}

/** One read of /dev/kmsg returns one record, at most this long (the kernel's limit, CONSOLE_EXT_LOG_MAX). */
const record = Buffer.alloc(8192);

/**
 * A position in the kernel log (/dev/kmsg, root only). Opening it reads up to the present, so `readNew` returns
 * only what was logged since; null when this host does not let us read the log.
 *
 * /dev/kmsg can only be read record by record from its oldest record (Node has no lseek for its SEEK_END), and a
 * run opens a cursor before its tool starts: so a record's sequence number is read from its bytes, and only the
 * records after the cursor are decoded. (Decoding all of them cost about 5 ms of a run's start for the ~2000
 * records of this machine's log.) Reading them still costs about 4 ms: a pooled sandbox's run skips it, with a
 * bookmark taken when the sandbox was created.
 */
export class KernelLogCursor {
  private constructor(private lastSequence: number) {}

  static open(): KernelLogCursor | null {
    try {
      const cursor = new KernelLogCursor(-1);
      cursor.read(false);
      return cursor;
    } catch {
      return null;
    }
  }

  /**
   * `open` for a process with other work under way: a library caller refills its pool while its tool runs, and
   * a read of the whole log at once (about 4 ms here) would hold up the tool's output. Other callbacks run
   * between slices of `slice` records.
   */
  static async openPatiently(slice = 256): Promise<KernelLogCursor | null> {
    const cursor = new KernelLogCursor(-1);
    let fd: number;
    try {
      fd = openSync('/dev/kmsg', constants.O_RDONLY | constants.O_NONBLOCK);
    } catch {
      return null;
    }
    try {
      while (!cursor.readFrom(fd, null, slice)) await new Promise((resolve) => setImmediate(resolve));
      return cursor;
    } catch {
      return null;
    } finally {
      closeSync(fd);
    }
  }

  /**
   * The cursor a `bookmark` was taken of, in this process or another; null when the host has booted since
   * (sequence numbers start again at each boot) or the text is not a bookmark.
   */
  static fromBookmark(bookmark: string | undefined): KernelLogCursor | null {
    const match = /^([0-9a-f-]{36}):(-1|\d{1,15})$/.exec(bookmark ?? '');
    const boot = bootId();
    if (!match || boot === null || match[1] !== boot) return null;
    return new KernelLogCursor(Number(match[2]));
  }

  /**
   * Where the kernel log stands now, as a bookmark (`openPatiently`, then `bookmark`); null where the log cannot
   * be read. A sandbox's is read once its address is found free and before its start (`createStartedSandbox`'s
   * `labelsOnceAddressed` for a pooled one, `whileCreating` for a cold one): its last holder has stopped by then, so
   * no record after the bookmark is that holder's.
   */
  static async bookmarkNow(): Promise<string | null> {
    return (await KernelLogCursor.openPatiently())?.bookmark() ?? null;
  }

  /**
   * Where this cursor is, as text to keep (a label): this boot's id and the last sequence number read; null on
   * a host that does not tell its boot's id.
   */
  bookmark(): string | null {
    const boot = bootId();
    return boot === null ? null : `${boot}:${this.lastSequence}`;
  }

  /** Messages logged since the last call. */
  readNew(): string[] {
    return this.read(true);
  }

  private read(decode: boolean): string[] {
    const fd = openSync('/dev/kmsg', constants.O_RDONLY | constants.O_NONBLOCK);
    const messages: string[] = [];
    try {
      this.readFrom(fd, decode ? messages : null, Infinity);
    } finally {
      closeSync(fd);
    }
    return messages;
  }

  /**
   * Reads up to `limit` records from `fd`, decoding into `messages` (unless null) those after the cursor. True
   * once the log is read to its end.
   */
  private readFrom(fd: number, messages: string[] | null, limit: number): boolean {
    for (let n = 0; n < limit; n++) {
      let length: number;
      try {
        length = readSync(fd, record, 0, record.length, null);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'EAGAIN') return true;
        if (code === 'EPIPE') continue; // records were overwritten while we read; the next read resumes
        throw err;
      }
      const sequence = sequenceOf(record, length);
      if (!(sequence > this.lastSequence)) continue;
      this.lastSequence = sequence;
      if (messages === null) continue;
      // "priority,sequence,timestamp,flags;message"
      const text = record.toString('utf8', 0, length);
      messages.push(text.slice(text.indexOf(';') + 1).trimEnd());
    }
    return false;
  }
}

let thisBoot: string | null | undefined;

function bootId(): string | null {
  if (thisBoot === undefined) {
    try {
      thisBoot = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
    } catch {
      thisBoot = null;
    }
  }
  return thisBoot;
}

const COMMA = 0x2c;
const DIGIT_0 = 0x30;

/** The sequence number of a record "priority,sequence,…": its second field; NaN if it has none. */
export function sequenceOf(bytes: Uint8Array, length: number): number {
  let at = bytes.indexOf(COMMA);
  if (at < 0 || at >= length) return NaN;
  let sequence = 0;
  let digits = 0;
  for (at += 1; at < length; at++, digits++) {
    const digit = bytes[at] - DIGIT_0;
    if (digit < 0 || digit > 9) break;
    sequence = sequence * 10 + digit;
  }
  return digits > 0 && at < length && bytes[at] === COMMA ? sequence : NaN;
}

/** The sandbox's attempts among `messages`, one per connection attempt (retransmissions folded), at most `max`. */
export function attemptsOf(messages: readonly string[], source: string, max = 100): DirectAttempt[] {
  const seen = new Map<string, DirectAttempt>();
  for (const message of messages) {
    const attempt = parseDirectAttempt(message);
    if (!attempt || attempt.source !== source) continue;
    const key = `${attempt.protocol} ${attempt.destination} ${attempt.port} ${attempt.sourcePort}`;
    if (!seen.has(key) && seen.size < max) seen.set(key, attempt);
  }
  return [...seen.values()];
}

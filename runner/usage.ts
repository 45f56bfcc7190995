import { readFileSync } from 'node:fs';

export interface Usage {
  readonly peakMemoryBytes: number | null;
  readonly cpuTimeMs: number | null;
}

/**
 * Samples the container's cgroup (v1, cgroupfs driver: /sys/fs/cgroup/<controller>/docker/<id>) while it runs.
 * The cgroup disappears when the container exits, so the last sample is what we report; a tool that ends
 * before the first sample reports null rather than a guess.
 */
export class UsageSampler {
  private peak: number | null = null;
  private cpuNs: number | null = null;
  private readonly timer: NodeJS.Timeout;

  constructor(private readonly containerId: string, intervalMs = 100, private readonly root = '/sys/fs/cgroup') {
    this.sample();
    this.timer = setInterval(() => this.sample(), intervalMs);
    this.timer.unref();
  }

  sample(): void {
    const memory = readNumber(`${this.root}/memory/docker/${this.containerId}/memory.max_usage_in_bytes`);
    if (memory !== null) this.peak = Math.max(this.peak ?? 0, memory);
    const cpu = readNumber(`${this.root}/cpuacct/docker/${this.containerId}/cpuacct.usage`);
    if (cpu !== null) this.cpuNs = cpu;
  }

  stop(): Usage {
    clearInterval(this.timer);
    this.sample();
    return { peakMemoryBytes: this.peak, cpuTimeMs: this.cpuNs === null ? null : Math.round(this.cpuNs / 1e6) };
  }
}

function readNumber(path: string): number | null {
  try {
    const value = Number(readFileSync(path, 'utf8').trim());
    return Number.isFinite(value) ? value : null;
  } catch {
    return null;
  }
}

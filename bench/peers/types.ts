import type { Child } from '../lib/child.js';
import type { NpmPeer } from './install.js';

/** A proxy or resolver under test, started with our own config on our own ports. */
export interface RunningPeer {
  readonly name: string;
  readonly child: Child;
  /** HTTP proxy (CONNECT and absolute-URI), "127.0.0.1:port". */
  readonly http?: string;
  readonly socks?: string;
  /** DNS (UDP) port on 127.0.0.1. */
  readonly dnsPort?: number;
  /** Its log / audit file: every connection leaves a line there, as configured in production. */
  readonly logFile: string;
}

export interface PeerContext {
  /** Private temp dir for configs and logs (removed at exit). */
  readonly dir: string;
  /** Package directories of the npm peers that installed (bench/.peers/node_modules/...). */
  readonly npmPeerDirs: Partial<Record<NpmPeer, string>>;
  /** When set, clawbox runs under `node --cpu-prof` writing into this dir. */
  readonly cpuProfileDir?: string;
  /** When set, clawbox also runs with `--trace-gc-nvp`, and every line of its output comes here. */
  readonly gcTrace?: (line: string) => void;
}

/** The most file descriptors a child may hold: 9,000 idle tunnels need two each plus the listeners. */
export const NOFILE = 20000;

import type { Socket } from 'node:net';
import type { ServerResponse } from 'node:http';
import { STATUS_CODES } from 'node:http';
import type { Deny } from '../src/policy/types.js';
import { httpStatusOf } from './errors.js';
import type { OpenResult } from './types.js';

/** Header values must stay on one line of printable ASCII whatever a reason quotes. */
function headerSafe(text: string): string {
  return text.replace(/[^\x20-\x7e]/g, '?').slice(0, 512);
}

export interface Refusal {
  readonly status: number;
  readonly rule?: string;
  readonly message: string;
}

export function denial(decision: Deny): Refusal {
  return { status: 403, rule: decision.rule, message: `${decision.reason} (rule ${decision.rule})` };
}

/** The refusal for a connector outcome that is not a connection: 403 with the rule, 502/504, or 503 (audit). */
export function refusalOf(result: Exclude<OpenResult, { ok: true }>): Refusal {
  switch (result.kind) {
    case 'deny':
      return denial(result.decision);
    case 'upstream':
      return { status: httpStatusOf(result.failure), message: result.message };
    case 'audit':
      return { status: 503, message: result.message };
  }
}

/** 503 is the gateway's own failure (its audit trail); the other 5xx are the upstream's. */
function errorKindOf(status: number): string {
  if (status === 403) return 'denied';
  if (status === 503) return 'audit';
  return status >= 500 ? 'upstream' : 'bad-request';
}

function headersOf(refusal: Refusal, bodyLength: number): Record<string, string | number> {
  return {
    'Content-Type': 'text/plain; charset=utf-8',
    'Content-Length': bodyLength,
    'X-Clawbox-Error': errorKindOf(refusal.status),
    ...(refusal.rule === undefined ? {} : { 'X-Clawbox-Rule': headerSafe(refusal.rule) }),
    'X-Clawbox-Reason': headerSafe(refusal.message),
    Connection: 'close',
  };
}

/** The refusal on a raw socket (CONNECT, client errors), then the socket is ended. */
export function refuseOnSocket(socket: Socket, refusal: Refusal): void {
  if (!socket.writable) {
    socket.destroy();
    return;
  }
  const body = `clawbox: ${refusal.message}\n`;
  const headers = headersOf(refusal, Buffer.byteLength(body));
  const lines = Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join('');
  socket.end(`HTTP/1.1 ${refusal.status} ${STATUS_CODES[refusal.status] ?? 'Error'}\r\n${lines}\r\n${body}`);
  // A client that never reads must not hold the socket open.
  socket.setTimeout(2000, () => socket.destroy());
}

/** The refusal as an HTTP response (absolute-URI requests). */
export function refuseOnResponse(res: ServerResponse, refusal: Refusal): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const body = `clawbox: ${refusal.message}\n`;
  res.shouldKeepAlive = false;
  res.writeHead(refusal.status, headersOf(refusal, Buffer.byteLength(body)));
  res.end(body);
}

import type { UpstreamFailure } from './types.js';

/** One place that turns a socket or resolver error code into the gateway's upstream failure kinds. */
export function upstreamFailureOf(code: string | undefined): UpstreamFailure {
  switch (code) {
    case 'ENOTFOUND':
      return 'dns-not-found';
    case 'ESERVFAIL':
    case 'ETIMEOUT':
    case 'EDNS':
      return 'dns-failed';
    case 'ECONNREFUSED':
      return 'refused';
    case 'ETIMEDOUT':
      return 'timeout';
    case 'ECONNRESET':
    case 'EPIPE':
      return 'reset';
    case undefined:
    default:
      return 'unreachable';
  }
}

/** HTTP status for each failure: 504 for time-outs, 502 for everything else (RFC 9110 §15.6). */
export function httpStatusOf(failure: UpstreamFailure): 502 | 504 {
  return failure === 'timeout' ? 504 : 502;
}

/** SOCKS5 reply codes (RFC 1928 §6) for each failure. */
export function socksReplyOf(failure: UpstreamFailure): number {
  switch (failure) {
    case 'dns-not-found':
    case 'dns-failed':
    case 'unreachable':
      return 0x04; // Host unreachable
    case 'refused':
      return 0x05; // Connection refused
    case 'timeout':
      return 0x06; // TTL expired: the closest RFC 1928 has to a connect time-out
    case 'reset':
      return 0x01; // General SOCKS server failure
  }
}

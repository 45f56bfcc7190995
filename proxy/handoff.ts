/**
 * Passing an accepted connection to another gateway worker: its native handle goes over the cluster's IPC
 * channel (child_process's 'net.Native'), through the primary.
 *
 * Why the handle and not the `net.Socket`: a process that receives a `net.Socket` builds one that starts reading
 * at once, and while the primary's channel waits for the previous handle's acknowledgement, the bytes such a socket
 * reads (a client's CONNECT head, sent right after its connect) would be dropped when it is passed on. A bare
 * handle reads nothing until the worker that serves it wraps it. The sending front accepts with
 * `pauseOnConnect`, so its own socket never read either.
 *
 * `_handle` and `new Socket({ handle })` are the two places this leans on Node's internals; they are how
 * child_process itself sends and rebuilds sockets, and the integration tests of who accepts (`cli-proxy.test.ts`)
 * fail if either stops working (a burst must reach both workers, every byte through).
 */
import type { SendHandle } from 'node:child_process';
import { Socket, type SocketConstructorOpts } from 'node:net';

/** A connection's native handle, opaque outside this module. */
export type ConnectionHandle = object & { readonly __connectionHandle: unique symbol };

export function handleOf(socket: Socket): ConnectionHandle | null {
  return (socket as unknown as { _handle: ConnectionHandle | null })._handle;
}

/** The handle's socket in the receiving worker, paused: the front that serves it starts reading. */
export function socketOf(handle: ConnectionHandle): Socket {
  // Frozen: node:net's Socket constructor copies its options with a spread, which from an options literal promotes
  // ~500 bytes per socket and from a frozen one nothing (`frozen-accept.ts`).
  const options: SocketConstructorOpts & { handle: ConnectionHandle; pauseOnCreate: boolean } = Object.freeze({
    handle,
    readable: true,
    writable: true,
    allowHalfOpen: true,
    pauseOnCreate: true,
  });
  return new Socket(options);
}

/** Closes the sender's copy once the handle has left (the receiver holds its own descriptor). */
export function closeHandle(handle: ConnectionHandle): void {
  (handle as unknown as { close(): void }).close();
}

/** The handle as `process.send` / `worker.send` take it (their types name only sockets and servers). */
export function asSendHandle(handle: ConnectionHandle): SendHandle {
  return handle as unknown as SendHandle;
}

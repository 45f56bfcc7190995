/**
 * `clawbox run` handed to a resident runner (resident-runner.ts), from the CLI's launcher before it loads the
 * bundle: the command line goes over the runner's socket, the tool's output comes back and is written here, and
 * Ctrl-C or SIGTERM here stops the tool there. Without a runner, or when the runner declines (its config does not
 * keep a runner, or the arguments are not for it), the launcher runs the command itself, as it always did.
 */
import { lstatSync } from 'node:fs';
import { connect } from 'node:net';
import { ANSWER_TIMEOUT_MS, encodeFrame, FRAME, FrameReader, readRunnerPid, runnerSocket, type RunnerRequest } from './runner-protocol.js';

export type RunnerOutcome = { readonly served: true; readonly exitCode: number } | { readonly served: false };

const NOT_SERVED: RunnerOutcome = { served: false };

/** Runs the request in the runner `pidFile` names, if there is one that answers. */
export function runThroughResidentRunner(pidFile: string, request: RunnerRequest): Promise<RunnerOutcome> {
  const pid = readRunnerPid(pidFile);
  if (pid === null) return Promise.resolve(NOT_SERVED); // no runner
  const socketPath = runnerSocket(pidFile, pid);
  // Only a socket of this user's: another user's could answer with output of its own making.
  try {
    const st = lstatSync(socketPath);
    if (!st.isSocket() || st.uid !== process.getuid?.()) return Promise.resolve(NOT_SERVED);
  } catch {
    return Promise.resolve(NOT_SERVED); // no runner
  }
  return new Promise((resolve) => {
    const socket = connect(socketPath);
    const reader = new FrameReader();
    let accepted = false;
    let settled = false;
    const abort = (): void => {
      if (!socket.destroyed) socket.write(encodeFrame(FRAME.abort));
    };
    const finish = (outcome: RunnerOutcome): void => {
      if (settled) return;
      settled = true;
      clearTimeout(unanswered);
      process.removeListener('SIGINT', abort);
      process.removeListener('SIGTERM', abort);
      socket.destroy();
      resolve(outcome);
    };
    // A runner that takes the request and never answers must not hang the command. Nor may the command then run
    // here: the runner may have started the tool just before the answer's deadline.
    const unanswered = setTimeout(() => {
      process.stderr.write(
        `clawbox: the resident runner (pid ${pid}) did not answer within ${ANSWER_TIMEOUT_MS / 1000} s; stop it with 'clawbox gc --all', or run with CLAWBOX_RUNNER=off\n`,
      );
      finish({ served: true, exitCode: 1 });
    }, ANSWER_TIMEOUT_MS);
    socket.once('connect', () => socket.write(encodeFrame(FRAME.request, JSON.stringify(request))));
    socket.on('data', (chunk: Buffer) => {
      let frames;
      try {
        frames = reader.push(chunk);
      } catch (err) {
        process.stderr.write(`clawbox: ${(err as Error).message}\n`);
        finish(accepted ? { served: true, exitCode: 1 } : NOT_SERVED);
        return;
      }
      for (const frame of frames) {
        switch (frame.type) {
          case FRAME.declined:
            finish(NOT_SERVED);
            return;
          case FRAME.accepted:
            accepted = true;
            clearTimeout(unanswered);
            // As the CLI does: the first Ctrl-C stops the tool, a second one ends this process at once.
            process.once('SIGINT', abort);
            process.once('SIGTERM', abort);
            break;
          case FRAME.stdout:
            process.stdout.write(frame.payload);
            break;
          case FRAME.stderr:
            process.stderr.write(frame.payload);
            break;
          case FRAME.exit:
            finish({ served: true, exitCode: frame.payload.readInt32BE(0) });
            return;
          default:
        }
      }
    });
    socket.on('error', () => undefined); // 'close' follows and decides
    socket.once('close', () => {
      if (settled) return;
      // Before its accepted frame the runner started nothing: the command runs here instead.
      if (!accepted) {
        finish(NOT_SERVED);
        return;
      }
      process.stderr.write('clawbox: the resident runner stopped during the run; the next run sweeps what it left\n');
      finish({ served: true, exitCode: 1 });
    });
  });
}

/**
 * Relaying bytes between a client socket and its upstream once a connection is allowed.
 *
 * - Backpressure (NODE-03): `pipe` pauses the reading side while the writing side's buffer is
 *   full, so a slow reader never makes the proxy buffer an unbounded amount.
 * - Half-close (NODE-04): both sockets are created with allowHalfOpen; when one side ends, the
 *   other side's write half is ended (FIN forwarded) and the other direction keeps flowing.
 *   The pair is torn down once both directions ended, or at the first error on either socket.
 * - Idle (CON-12): a pair with no bytes in either direction for idleMs is destroyed.
 * - Exactly one `done` call per pair, after both sockets are closed (no fd outlives it).
 */
import type { Socket } from 'node:net';
import type { Writable } from 'node:stream';

export interface RelayResult {
  /** Bytes written to the upstream over the connection's life (held bytes included). */
  readonly up: number;
  readonly down: number;
  /** The first error seen on either socket, or 'idle' after the idle timeout. */
  readonly error: string | null;
}

export interface RelayOptions {
  readonly idleMs: number;
  /** Monotonic milliseconds (the proxy's Clock). */
  readonly now: () => number;
  /** Insert a checking stage into the client-to-upstream direction (plain HTTP). */
  readonly upTransform?: NodeJS.ReadWriteStream & Writable;
  readonly done: (r: RelayResult) => void;
}

export function relay(client: Socket, upstream: Socket, options: RelayOptions): void {
  let error: string | null = null;
  let finished = false;
  let closed = 0;
  const finish = () => {
    if (finished) return;
    finished = true;
    clearInterval(idleTimer);
    options.done({
      up: upstream.bytesWritten,
      down: client.bytesWritten,
      error,
    });
  };
  const fail = (why: string) => {
    error ??= why;
    client.destroy();
    upstream.destroy();
  };
  // A socket that closed cannot carry either direction any more: the other one is closed too,
  // after what is already written to it has left (a clean close comes after both FINs anyway).
  const onClose = (other: Socket) => () => {
    closed++;
    if (closed === 2) finish();
    else other.destroySoon();
  };
  client.once('close', onClose(upstream));
  upstream.once('close', onClose(client));
  client.on('error', (err) => fail(`client: ${err.message}`));
  upstream.on('error', (err) => fail(`upstream: ${err.message}`));

  // Idle: one timer for the pair, watching the byte counters (cheaper than a timer per chunk).
  let last = -1;
  let lastChange = options.now();
  const idleTimer = setInterval(
    () => {
      const total = client.bytesRead + upstream.bytesRead + client.bytesWritten + upstream.bytesWritten;
      const now = options.now();
      if (total !== last) {
        last = total;
        lastChange = now;
      } else if (now - lastChange >= options.idleMs) fail('idle');
    },
    Math.max(25, Math.floor(options.idleMs / 4)),
  );
  idleTimer.unref();

  // Once both directions delivered their FIN, both sockets are done.
  let ended = 0;
  const onEnded = () => {
    ended++;
    if (ended === 2) {
      client.destroySoon();
      upstream.destroySoon();
    }
  };
  client.once('end', onEnded);
  upstream.once('end', onEnded);

  if (options.upTransform) {
    const t = options.upTransform;
    t.on('error', (err: Error) => fail(`check: ${err.message}`));
    client.pipe(t).pipe(upstream);
  } else {
    client.pipe(upstream);
  }
  upstream.pipe(client);
  client.resume();
}

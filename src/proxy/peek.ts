/**
 * Read a client's first bytes until a parser has what it needs, holding every byte: nothing
 * reaches a server before the verdict, and everything held is written upstream in order after
 * it (early data included). Bounded in time; the parser bounds the bytes.
 */
import type net from 'node:net';

/** What the parser says about the bytes so far: a result, a reason to refuse, or "more". */
export type PeekStep<T> = { readonly done: T } | { readonly fail: string } | null;

export type Peeked<T> =
  | { readonly kind: 'done'; readonly value: T; readonly held: Buffer }
  | { readonly kind: 'fail'; readonly reason: string; readonly held: Buffer };

/**
 * Collect from `socket` (after `first`, which is parsed before anything is read) until `read`
 * decides, the deadline passes ('timeout') or the client closes ('client_closed'). The socket is
 * paused when this resolves; it never rejects.
 */
export function peek<T>(
  socket: net.Socket,
  first: Buffer,
  timeoutMs: number,
  read: (held: Buffer) => PeekStep<T>,
): Promise<Peeked<T>> {
  return new Promise((resolve) => {
    let held = first;
    let settled = false;
    const finish = (r: Peeked<T>) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('end', onEnd);
      socket.off('close', onEnd);
      socket.pause();
      resolve(r);
    };
    const step = () => {
      const r = read(held);
      if (r === null) return;
      if ('done' in r) finish({ kind: 'done', value: r.done, held });
      else finish({ kind: 'fail', reason: r.fail, held });
    };
    const onEnd = () => finish({ kind: 'fail', reason: 'client_closed', held });
    const onData = (chunk: Buffer) => {
      held = held.length === 0 ? chunk : Buffer.concat([held, chunk]);
      step();
    };
    const timer = setTimeout(() => finish({ kind: 'fail', reason: 'timeout', held }), timeoutMs);
    if (held.length > 0) step();
    if (settled) return;
    socket.on('data', onData);
    socket.once('end', onEnd);
    socket.once('close', onEnd);
    socket.resume();
  });
}

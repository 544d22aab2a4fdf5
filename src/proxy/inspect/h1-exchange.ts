/**
 * HTTP/1.1 on both sides of an inspected connection. The decrypted bytes are relayed as they
 * are (no re-serialization: what passes reaches the server byte for byte), with two readers:
 *   - client to server, the request gate (../http-gate.ts): every request head is parsed
 *     strictly and judged before any of its bytes go upstream; bodies are framed to find the
 *     next head (keep-alive, pipelining); bytes after an Upgrade request wait for the answer;
 *   - server to client, the response framer: counts answered requests and sees 101.
 * A refused request stops the client direction at once. Its answer (403 with the reason, 400
 * for framing, 431 for size) is written after every earlier response has reached the client,
 * then both sides close.
 */
import type { Duplex } from 'node:stream';
import { GateError, HttpGate } from '../http-gate.ts';
import type { HeadLimits, RequestHead } from '../http-head.ts';
import { ResponseFramer } from './response-framer.ts';

export interface H1Judge {
  /** Null: forward the request; else refuse it with this status and reason. */
  (head: RequestHead): { status: number; reason: string } | null;
  /** A framing error refused before any judgement (no head, or an unreadable one). */
  framing(reason: string): void;
}

export interface H1Result {
  readonly up: number;
  readonly down: number;
  readonly error: string | null;
}

const STATUS_TEXT: Record<number, string> = {
  400: 'Bad Request',
  403: 'Forbidden',
  431: 'Request Header Fields Too Large',
  502: 'Bad Gateway',
};

/** namegate's own answer: the reason as a short text (no body for HEAD: RFC 9110 9.3.2). */
export function plainResponse(status: number, reason: string, method: string | null = null): Buffer {
  const body = `namegate: ${reason}\n`;
  return Buffer.from(
    `HTTP/1.1 ${status} ${STATUS_TEXT[status] ?? 'Error'}\r\nContent-Type: text/plain\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${method === 'HEAD' ? '' : body}`,
    'latin1',
  );
}

export function framingStatus(reason: string): number {
  return reason === 'too_large' ? 431 : 400;
}

export function h1Exchange(
  client: Duplex,
  upstream: Duplex,
  judge: H1Judge,
  limits: HeadLimits,
  idleMs: number,
  done: (r: H1Result) => void,
): void {
  let up = 0;
  let down = 0;
  let error: string | null = null;
  let refusal: Buffer | null = null;
  let finished = false;
  let upgradePending = false;

  /** Tear both sides down at once (errors, idle); `done` follows when both have closed. */
  const abort = (why: string) => {
    error ??= why;
    client.destroy();
    upstream.destroy();
  };
  const flushRefusal = () => {
    if (refusal === null || framer.outstanding > 0) return;
    const answer = refusal;
    refusal = null;
    client.end(answer);
    upstream.destroy();
  };

  const framer = new ResponseFramer(limits.maxHeadBytes * 4, {
    onComplete: (status) => {
      if (upgradePending && framer.outstanding === 0) {
        upgradePending = false;
        gate.resolveUpgrade(status === 101);
      }
      flushRefusal();
    },
  });
  const gate = new HttpGate(
    (head) => {
      const r = judge(head);
      if (r === null) return null;
      refusal = plainResponse(r.status, r.reason, head.method);
      return r.reason;
    },
    limits,
    (head) => {
      framer.expect(head.method);
      if (head.upgrade !== null) upgradePending = true;
    },
    { holdUpgrades: true },
  );

  gate.on('error', (err: Error) => {
    client.unpipe(gate);
    client.pause();
    if (err instanceof GateError && err.head === null) {
      judge.framing(err.reason);
      refusal = plainResponse(framingStatus(err.reason), err.reason);
    }
    if (refusal === null) return abort(`refused: ${err.message}`);
    flushRefusal();
  });
  gate.on('data', (chunk: Buffer) => {
    up += chunk.length;
    if (!upstream.write(chunk)) {
      gate.pause();
      upstream.once('drain', () => gate.resume());
    }
  });
  gate.on('end', () => upstream.end());
  client.pipe(gate);

  upstream.on('data', (chunk: Buffer) => {
    down += chunk.length;
    if (!client.write(chunk)) {
      upstream.pause();
      client.once('drain', () => upstream.resume());
    }
    try {
      framer.feed(chunk);
    } catch (err) {
      abort(`upstream: ${(err as Error).message}`);
    }
  });
  upstream.on('end', () => {
    framer.end();
    if (refusal !== null) flushRefusal();
    else client.end();
  });

  let closed = 0;
  const onClose = () => {
    if (++closed < 2 || finished) return;
    finished = true;
    done({ up, down, error });
  };
  // The client gone: nothing left to deliver to. The server gone: deliver what it sent, then end.
  client.once('close', () => {
    upstream.destroy();
    onClose();
  });
  upstream.once('close', () => {
    // A refusal still waiting for earlier responses: those cannot complete now; answer anyway.
    const answer = refusal;
    refusal = null;
    if (answer === null) client.end();
    else client.end(answer);
    onClose();
  });
  client.on('error', (e: Error) => abort(`client: ${e.message}`));
  upstream.on('error', (e: Error) => abort(`upstream: ${e.message}`));
  const idle = () => abort('idle');
  (client as Duplex & { setTimeout?: (ms: number, cb: () => void) => void }).setTimeout?.(idleMs, idle);
  (upstream as Duplex & { setTimeout?: (ms: number, cb: () => void) => void }).setTimeout?.(idleMs, idle);
}

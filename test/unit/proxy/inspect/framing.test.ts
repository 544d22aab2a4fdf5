import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { BodyFramer, FramingError } from '../../../../src/proxy/http-body.ts';
import { ResponseFramer } from '../../../../src/proxy/inspect/response-framer.ts';

/** Feed `bytes` to a response framer in the given cut points; the statuses completed. */
function frame(methods: string[], bytes: string, cuts: number[] = []): number[] {
  const done: number[] = [];
  const f = new ResponseFramer(16_384, { onComplete: (s) => done.push(s) });
  for (const m of methods) f.expect(m);
  const buf = Buffer.from(bytes, 'latin1');
  let at = 0;
  for (const c of [...cuts.filter((x) => x > 0 && x < buf.length)].sort((a, b) => a - b)) {
    f.feed(buf.subarray(at, c));
    at = c;
  }
  f.feed(buf.subarray(at));
  return done;
}

const chunked = 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n';
const sized = 'HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc';
const head = 'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n';

describe('ResponseFramer', () => {
  test('counts responses framed by length and chunks, HEAD without a body, 1xx interim', () => {
    assert.deepEqual(
      frame(['GET', 'GET', 'HEAD'], `HTTP/1.1 100 Continue\r\n\r\n${sized}${chunked}${head}`),
      [200, 200, 200],
    );
  });
  test('204 and 304 have no body', () => {
    assert.deepEqual(
      frame(
        ['GET', 'GET'],
        'HTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n',
      ),
      [204, 304],
    );
  });
  test('101 completes the upgrade at once', () => {
    assert.deepEqual(
      frame(['GET'], 'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x05hello'),
      [101],
    );
  });
  test('property: any cut of the byte stream gives the same responses', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 1, max: 200 }), { maxLength: 8 }), (cuts) => {
        assert.deepEqual(frame(['GET', 'GET', 'HEAD'], `${sized}${chunked}${head}`, cuts), [200, 200, 200]);
      }),
    );
  });
  test('a response it cannot frame is an error, never a guess', () => {
    assert.throws(
      () => frame(['GET'], 'HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n'),
      FramingError,
    );
    assert.throws(
      () => frame(['GET'], 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n'),
      FramingError,
    );
    assert.throws(() => frame(['GET'], 'SSH-2.0-x\r\n\r\n'), FramingError);
  });
});

describe('BodyFramer', () => {
  test('take stops at the end of the body; feed holds an incomplete size line', () => {
    const b = new BodyFramer({ kind: 'chunked' });
    assert.equal(b.take(Buffer.from('3\r')), 0);
    const f = new BodyFramer({ kind: 'chunked' });
    assert.equal(f.feed(Buffer.from('3\r')), 2);
    assert.equal(f.feed(Buffer.from('\nabc\r\n0\r\n\r\nNEXT')), 11);
    assert.ok(f.done);
  });
});

/**
 * Original destination lookup without root (NODE-01): the internal `_handle.fd` field still exists on this
 * Node (24), the addon loads and answers null (ENOENT) for a connection nothing redirected, the
 * conntrack listing parser, and the conntrack fallback against a stand-in binary. The real
 * REDIRECT path (addon and conntrack) runs in test/integration/proxy.
 */
import assert from 'node:assert/strict';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, type TestContext, test } from 'node:test';
import {
  conntrackOriginalDst,
  loadSockoptAddon,
  originalDestinationFor,
  parseConntrack,
  socketFd,
} from '../../../src/proxy/original-dst.ts';

/** A connected pair on loopback; the server side is handed to `use`. */
async function withServerSocket<T>(t: TestContext, use: (s: net.Socket) => T | Promise<T>): Promise<T> {
  const server = net.createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => server.close());
  const accepted = new Promise<net.Socket>((r) => server.once('connection', r));
  const c = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
  t.after(() => c.destroy());
  const s = await accepted;
  t.after(() => s.destroy());
  return use(s);
}

describe('original destination', () => {
  test(`socket._handle.fd exists on Node ${process.versions.node} (internal field the addon path needs)`, async (t) => {
    const fd = await withServerSocket(t, (s) => socketFd(s));
    assert.equal(typeof fd, 'number');
    assert.ok(fd! > 2);
  });

  test('the addon loads and answers null (ENOENT) for a connection no rule redirected', async (t) => {
    const addon = loadSockoptAddon();
    if (typeof addon === 'string') return t.skip(`addon not built: ${addon}`);
    const r = await withServerSocket(t, (s) => addon.getOriginalDst(socketFd(s)!, 4));
    if (r === null) assert.ok(addon.lastErrno() > 0);
    else assert.equal(r.address, '127.0.0.1'); // a conntrack entry without NAT names the address itself
    assert.throws(() => addon.getOriginalDst(-1, 4), /fd must be/);
    assert.throws(() => addon.getOriginalDst(3, 5 as 4), /family 4 or 6/);
  });

  test('a missing addon: method addon fails closed, auto falls back to conntrack', () => {
    const before = process.env['NAMEGATE_SOCKOPT_ADDON'];
    process.env['NAMEGATE_SOCKOPT_ADDON'] = '/nonexistent/sockopt.node';
    try {
      const strict = originalDestinationFor('addon');
      assert.equal(strict.method, 'none');
      assert.equal(strict.lookup(new net.Socket()), null);
      assert.equal(originalDestinationFor('auto').method, 'conntrack');
    } finally {
      if (before === undefined) delete process.env['NAMEGATE_SOCKOPT_ADDON'];
      else process.env['NAMEGATE_SOCKOPT_ADDON'] = before;
    }
  });

  test('parseConntrack picks the entry redirected to our port', () => {
    const text = [
      'tcp      6 431999 ESTABLISHED src=10.0.1.1 dst=203.0.113.10 sport=40000 dport=443 src=203.0.113.10 dst=10.0.1.1 sport=443 dport=40000 [ASSURED] mark=0 use=1',
      'tcp      6 431999 ESTABLISHED src=10.0.1.1 dst=203.0.113.11 sport=40000 dport=443 src=10.0.1.254 dst=10.0.1.1 sport=15001 dport=40000 [ASSURED] mark=0 use=1',
      'udp      17 29 src=10.0.1.1 dst=10.0.0.53 sport=40000 dport=53 src=10.0.0.53 dst=10.0.1.1 sport=53 dport=40000 mark=0 use=1',
    ].join('\n');
    assert.deepEqual(parseConntrack(text, '10.0.1.1', 40000, 15001), { address: '203.0.113.11', port: 443 });
    assert.equal(parseConntrack(text, '10.0.1.1', 40001, 15001), null);
    assert.equal(parseConntrack(text, '10.0.1.2', 40000, 15001), null);
    assert.equal(parseConntrack('garbage\nsrc=1 dst=2', '10.0.1.1', 40000, 15001), null);
    const v6 =
      'tcp      6 431999 ESTABLISHED src=fd00:1::1 dst=2001:db8:2::10 sport=50000 dport=443 src=fd00:1::fe dst=fd00:1::1 sport=15001 dport=50000 [ASSURED] mark=0 use=1';
    assert.deepEqual(parseConntrack(v6, 'fd00:1::1', 50000, 15001), { address: '2001:db8:2::10', port: 443 });
  });

  test('the conntrack fallback runs the tool with the client tuple and parses its output', async (t) => {
    const dir = await mkdtemp(path.join(tmpdir(), 'ng-ct-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const fake = path.join(dir, 'conntrack');
    const argsFile = path.join(dir, 'args');
    await writeFile(
      fake,
      `#!/bin/sh\necho "$@" > ${argsFile}\n` +
        'echo "tcp 6 100 ESTABLISHED src=127.0.0.1 dst=198.51.100.9 sport=$9 dport=443 src=127.0.0.1 dst=127.0.0.1 sport=$LPORT dport=$9 [ASSURED] use=1"\n',
    );
    await chmod(fake, 0o755);
    const got = await withServerSocket(t, async (s) => {
      process.env['LPORT'] = String(s.localPort);
      try {
        return await conntrackOriginalDst(fake)(s);
      } finally {
        delete process.env['LPORT'];
      }
    });
    assert.deepEqual(got, { address: '198.51.100.9', port: 443 });
    const failing = path.join(dir, 'failing');
    await writeFile(failing, '#!/bin/sh\nexit 1\n');
    await chmod(failing, 0o755);
    assert.equal(await withServerSocket(t, (s) => conntrackOriginalDst(failing)(s)), null);
  });
});

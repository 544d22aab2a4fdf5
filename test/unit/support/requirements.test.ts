/**
 * test/support/requirements.ts: a suite that cannot run here skips with the reason, except under
 * CI, where the same unmet need fails the run (a CI run cannot pass with its end-to-end suites
 * skipped).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { skipUnless, underCi, unmet } from '../../support/requirements.ts';

const MISSING = { root: false, tools: ['namegate-no-such-tool'], files: ['/nonexistent/namegate-file'] };

test('an unmet need is a skip reason naming what is missing', () => {
  const why = skipUnless(MISSING, {});
  assert.equal(typeof why, 'string');
  assert.match(String(why), /namegate-no-such-tool/);
  assert.match(String(why), /\/nonexistent\/namegate-file/);
  assert.match(String(why), /scripts\/deps\.sh/);
});

test('under CI the same unmet need throws instead of skipping', () => {
  for (const CI of ['true', '1', 'TRUE'])
    assert.throws(
      () => skipUnless(MISSING, { CI }),
      /CI=true: this suite cannot run here \(missing: namegate-no-such-tool/,
    );
});

test('needs that are met: no skip, under CI or not', () => {
  const met = { root: false, tools: ['sh'], files: ['/'] };
  assert.equal(unmet(met), null);
  assert.equal(skipUnless(met, {}), false);
  assert.equal(skipUnless(met, { CI: 'true' }), false);
});

test('CI is on for "true" and "1" only', () => {
  assert.equal(underCi({ CI: 'true' }), true);
  assert.equal(underCi({ CI: '1' }), true);
  assert.equal(underCi({ CI: 'false' }), false);
  assert.equal(underCi({ CI: '' }), false);
  assert.equal(underCi({}), false);
});

/** What the enforce tests share. */
import assert from 'node:assert/strict';
import { parse } from 'yaml';
import { validateNative } from '../../../src/formats/native.ts';
import type { Policy } from '../../../src/policy/model.ts';

/** A policy from native YAML through the real validator; a problem fails the test. */
export function policy(yaml: string): Policy {
  const r = validateNative(parse(yaml));
  assert.deepEqual(r.errors, []);
  assert.ok(r.policy);
  return r.policy;
}

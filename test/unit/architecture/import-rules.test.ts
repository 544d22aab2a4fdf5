/**
 * The house rules are a test: dependency-cruiser with .dependency-cruiser.cjs passes on src/
 * (also run by `make lint`), and a forbidden import in a small tree fails with a message that
 * names the rule it breaks. Each case writes its own tree to a temporary folder.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, test } from 'node:test';
import { promisify } from 'node:util';

const ROOT = path.resolve(import.meta.dirname, '../../..');
const CONFIG = path.join(ROOT, '.dependency-cruiser.cjs');
const DEPCRUISE = path.join(ROOT, 'node_modules/dependency-cruiser/bin/dependency-cruiser.mjs');

async function cruise(cwd: string): Promise<{ code: number; output: string }> {
  try {
    const r = await promisify(execFile)(
      process.execPath,
      [DEPCRUISE, 'src', '--config', CONFIG, '--output-type', 'err-long'],
      { cwd, timeout: 60_000, maxBuffer: 4 * 1024 * 1024 },
    );
    return { code: 0, output: r.stdout + r.stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : -1, output: (e.stdout ?? '') + (e.stderr ?? '') };
  }
}

/** A tree of files (path -> content) in a fresh folder; removed after the test. */
async function tree(
  t: { after(fn: () => Promise<void>): void },
  files: Record<string, string>,
): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'namegate-imports-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  for (const [file, text] of Object.entries(files)) {
    await mkdir(path.dirname(path.join(dir, file)), { recursive: true });
    await writeFile(path.join(dir, file), text);
  }
  return dir;
}

const leaf = 'export const x = 1;\n';

describe('import rules (dependency-cruiser)', () => {
  test('src/ follows the rules', async () => {
    const r = await cruise(ROOT);
    assert.equal(r.code, 0, r.output);
    assert.match(r.output, /no dependency violations/);
  });

  const cases: Array<{ rule: string; files: Record<string, string> }> = [
    {
      rule: 'policy-imports-only-core',
      files: {
        'src/policy/bad.ts': "import { x } from '../datapath/datapath.ts';\nexport const y = x;\n",
        'src/datapath/datapath.ts': leaf,
      },
    },
    {
      rule: 'datapath-knows-elements-not-rules',
      files: {
        'src/datapath/bad.ts': "import type { Policy } from '../policy/model.ts';\nexport type P = Policy;\n",
        'src/policy/model.ts': 'export interface Policy { readonly name: string }\n',
      },
    },
    {
      rule: 'core-imports-nothing',
      files: {
        'src/core/bad.ts': "import { x } from '../observe/log.ts';\nexport const y = x;\n",
        'src/observe/log.ts': leaf,
      },
    },
    {
      rule: 'store-imports-only-core',
      files: {
        'src/store/bad.ts': "import { x } from '../identity/identity.ts';\nexport const y = x;\n",
        'src/identity/identity.ts': leaf,
      },
    },
    {
      rule: 'dns-imports-only-lower-layers',
      files: {
        'src/dns/bad.ts': "import { x } from '../config/schema.ts';\nexport const y = x;\n",
        'src/config/schema.ts': leaf,
      },
    },
    {
      rule: 'agent-imports-no-lab-or-cli',
      files: {
        'src/agent/bad.ts': "import { x } from '../lab/lab.ts';\nexport const y = x;\n",
        'src/lab/lab.ts': leaf,
      },
    },
    {
      rule: 'no-file-cycle',
      files: {
        'src/policy/a.ts': "import { b } from './b.ts';\nexport const a = () => b;\n",
        'src/policy/b.ts': "import { a } from './a.ts';\nexport const b = () => a;\n",
      },
    },
  ];

  for (const c of cases) {
    test(`a forbidden import fails and names the rule: ${c.rule}`, async (t) => {
      const dir = await tree(t, c.files);
      const r = await cruise(dir);
      assert.notEqual(r.code, 0, `expected a violation\n${r.output}`);
      assert.ok(r.output.includes(`error ${c.rule}:`), `the message names ${c.rule}\n${r.output}`);
    });
  }

  test('an allowed import passes', async (t) => {
    const dir = await tree(t, {
      'src/policy/ok.ts': "import { x } from '../core/names.ts';\nexport const y = x;\n",
      'src/core/names.ts': leaf,
    });
    const r = await cruise(dir);
    assert.equal(r.code, 0, r.output);
  });
});

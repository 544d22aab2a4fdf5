/**
 * Read policy files and folders in any supported dialect (detected from apiVersion and kind),
 * convert foreign documents to native ones and validate them. Bounded: file size, number of
 * files, documents per file and YAML alias expansion all have limits, and a problem in one
 * document never hides the others.
 */
import { readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { parseAllDocuments } from 'yaml';
import { API_GROUP, type Policy, policyRefText } from '../policy/model.ts';
import type { ImportContext, ImportResult } from './importer.ts';
import { NATIVE_KINDS, type NativeDocument, type Problem, validateNative } from './native.ts';
import { type Dialect, findImporter } from './registry.ts';

export const LOAD_LIMITS = {
  fileBytes: 16 * 1024 * 1024,
  files: 10_000,
  documentsPerFile: 10_000,
  yamlAliases: 100,
  folderDepth: 8,
} as const;

/** A problem located in a file, a document of it and a field of that document. */
export interface FileProblem extends Problem {
  readonly file: string;
  /** 0-based index of the YAML document in the file; -1 for the file itself. */
  readonly document: number;
  /** "Kind namespace/name" of the document, when known. */
  readonly object: string;
}

export interface LoadedPolicy {
  readonly policy: Policy;
  readonly file: string;
  readonly dialect: Dialect;
}

export interface LoadReport {
  readonly policies: LoadedPolicy[];
  readonly errors: FileProblem[];
  readonly warnings: FileProblem[];
  /** Native documents (converted when foreign), for `convert`. */
  readonly documents: Array<{ file: string; dialect: Dialect; document: NativeDocument }>;
}

export interface LoadOptions {
  readonly context?: ImportContext;
  /** Accept only this foreign dialect (convert --from); native documents are always read. */
  readonly only?: Dialect;
}

export function formatProblem(p: FileProblem): string {
  // A document without a name ("a document must be a mapping") is found by its number instead.
  const unnamed = p.document >= 0 && !p.object.includes(' ');
  const file = unnamed && p.file !== '' ? `${p.file} (document ${p.document + 1})` : p.file;
  const where = [file, p.object].filter((s) => s !== '').join(': ');
  return `${where === '' ? '' : `${where}: `}${p.path === '' ? '' : `${p.path}: `}${p.message}`;
}

/** Expand paths (files or folders) to the YAML/JSON files under them, sorted. */
export async function policyFiles(paths: readonly string[]): Promise<string[]> {
  const out: string[] = [];
  const walk = async (p: string, depth: number): Promise<void> => {
    const info = await stat(p);
    if (info.isDirectory()) {
      if (depth > LOAD_LIMITS.folderDepth) return;
      const entries = (await readdir(p, { withFileTypes: true })).sort((a, b) =>
        a.name.localeCompare(b.name),
      );
      for (const e of entries) {
        if (e.name.startsWith('.')) continue;
        const child = path.join(p, e.name);
        if (e.isDirectory()) await walk(child, depth + 1);
        else if (/\.(ya?ml|json)$/i.test(e.name)) await walk(child, depth + 1);
      }
      return;
    }
    if (out.length >= LOAD_LIMITS.files) throw new Error(`more than ${LOAD_LIMITS.files} policy files`);
    out.push(p);
  };
  for (const p of paths) await walk(p, 0);
  return out;
}

export async function loadPolicies(paths: readonly string[], options: LoadOptions = {}): Promise<LoadReport> {
  const report: LoadReport = { policies: [], errors: [], warnings: [], documents: [] };
  let files: string[];
  try {
    files = await policyFiles(paths);
  } catch (err) {
    report.errors.push({ file: '', document: -1, object: '', path: '', message: describeFsError(err) });
    return report;
  }
  for (const file of files) {
    let text: string;
    try {
      const info = await stat(file);
      if (info.size > LOAD_LIMITS.fileBytes) {
        throw new Error(`the file has ${info.size} bytes; at most ${LOAD_LIMITS.fileBytes} are read`);
      }
      text = await readFile(file, 'utf8');
    } catch (err) {
      report.errors.push({ file, document: -1, object: '', path: '', message: describeFsError(err) });
      continue;
    }
    loadText(text, file, options, report);
  }
  checkDuplicates(report);
  return report;
}

/** Parse and load the documents of one text (a file's content). */
export function loadText(text: string, file: string, options: LoadOptions, report: LoadReport): void {
  const context = options.context ?? { defaultNamespace: 'default' };
  const docs = parseDocuments(text, file, report);
  docs.forEach((doc, index) => {
    for (const item of expandLists(doc)) loadDocument(item, file, index, context, options, report);
  });
}

function parseDocuments(text: string, file: string, report: LoadReport): unknown[] {
  const parsed = parseAllDocuments(text, { prettyErrors: true, uniqueKeys: true });
  const list = Array.isArray(parsed) ? parsed : [parsed];
  if (list.length > LOAD_LIMITS.documentsPerFile) {
    report.errors.push({
      file,
      document: -1,
      object: '',
      path: '',
      message: `more than ${LOAD_LIMITS.documentsPerFile} documents in one file`,
    });
    return [];
  }
  const out: unknown[] = [];
  list.forEach((doc, index) => {
    if (doc.errors.length > 0) {
      const first = doc.errors[0];
      report.errors.push({
        file,
        document: index,
        object: '',
        path: '',
        // The first line of the message; the code frame after it would not fit on one line.
        message: `not valid YAML: ${first?.message.split('\n')[0]?.replace(/:$/, '') ?? 'parse error'}`,
      });
      out.push(undefined);
      return;
    }
    try {
      out.push(doc.toJS({ maxAliasCount: LOAD_LIMITS.yamlAliases }));
    } catch (err) {
      report.errors.push({
        file,
        document: index,
        object: '',
        path: '',
        message: `not valid YAML: ${describeFsError(err)}`,
      });
      out.push(undefined);
    }
  });
  return out;
}

/** `kind: List` (kubectl get -o yaml) holds its documents under items. */
function expandLists(doc: unknown): unknown[] {
  if (
    isRecord(doc) &&
    typeof doc['kind'] === 'string' &&
    doc['kind'].endsWith('List') &&
    Array.isArray(doc['items'])
  ) {
    return doc['items'].slice(0, LOAD_LIMITS.documentsPerFile);
  }
  return [doc];
}

function loadDocument(
  doc: unknown,
  file: string,
  index: number,
  context: ImportContext,
  options: LoadOptions,
  report: LoadReport,
): void {
  if (doc === undefined || doc === null) return; // empty document (a stray ---) or a parse error already reported
  if (!isRecord(doc)) {
    report.errors.push({
      file,
      document: index,
      object: '',
      path: '',
      message: 'a document must be a mapping',
    });
    return;
  }
  const apiVersion = typeof doc['apiVersion'] === 'string' ? doc['apiVersion'] : '';
  const kind = typeof doc['kind'] === 'string' ? doc['kind'] : '';
  const object = describeObject(doc);
  const at = (p: Problem): FileProblem => ({
    file,
    document: index,
    object,
    path: p.path,
    message: p.message,
  });

  if (apiVersion.startsWith(`${API_GROUP}/`) || NATIVE_KINDS.includes(kind as never)) {
    const result = validateNative(doc, context.defaultNamespace);
    report.errors.push(...result.errors.map(at));
    report.warnings.push(...result.warnings.map(at));
    if (result.policy) {
      report.policies.push({ policy: result.policy, file, dialect: 'native' });
      report.documents.push({ file, dialect: 'native', document: doc as unknown as NativeDocument });
    }
    return;
  }
  const importer = findImporter(apiVersion, kind);
  if (importer && options.only !== undefined && options.only !== importer.dialect) {
    report.warnings.push(
      at({
        path: '',
        message: `skipped: a ${importer.dialect} document, and only ${options.only} was asked for`,
      }),
    );
    return;
  }
  if (!importer) {
    report.warnings.push(
      at({
        path: '',
        message: `ignored: ${apiVersion || '(no apiVersion)'} ${kind || '(no kind)'} is not a policy namegate reads`,
      }),
    );
    return;
  }
  let imported: ImportResult;
  try {
    imported = importer.convert(doc, context);
  } catch (err) {
    // An importer bug must not take the whole load down, and must not produce a policy.
    report.errors.push(at({ path: '', message: `could not convert: ${describeFsError(err)}` }));
    return;
  }
  report.errors.push(...imported.errors.map(at));
  report.warnings.push(...imported.warnings.map(at));
  if (imported.errors.length > 0) return;
  for (const native of imported.documents) {
    const result = validateNative(native, context.defaultNamespace);
    const nativeAt = (p: Problem): FileProblem => ({
      file,
      document: index,
      object: `${object} -> ${native.kind} ${native.metadata.namespace ? `${native.metadata.namespace}/` : ''}${native.metadata.name}`,
      path: p.path,
      message: p.message,
    });
    report.errors.push(...result.errors.map(nativeAt));
    if (result.policy) {
      report.policies.push({ policy: result.policy, file, dialect: importer.dialect });
      report.documents.push({ file, dialect: importer.dialect, document: native });
    }
  }
}

function checkDuplicates(report: LoadReport): void {
  const seen = new Map<string, string>();
  for (const { policy, file } of report.policies) {
    const key = `${policy.ref.kind}/${policyRefText(policy.ref)}`;
    const first = seen.get(key);
    if (first !== undefined) {
      report.errors.push({
        file,
        document: -1,
        object: `${policy.ref.kind} ${policyRefText(policy.ref)}`,
        path: 'metadata.name',
        message: `defined twice (also in ${first})`,
      });
    } else {
      seen.set(key, file);
    }
  }
}

function describeObject(doc: Record<string, unknown>): string {
  const kind = typeof doc['kind'] === 'string' ? doc['kind'] : '';
  const meta = isRecord(doc['metadata']) ? doc['metadata'] : {};
  const name = typeof meta['name'] === 'string' ? meta['name'] : '';
  const ns = typeof meta['namespace'] === 'string' ? `${meta['namespace']}/` : '';
  return [kind, name === '' ? '' : `${ns}${name}`].filter((s) => s !== '').join(' ');
}

export function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function describeFsError(err: unknown): string {
  if (err && typeof err === 'object' && 'code' in err) {
    const e = err as NodeJS.ErrnoException;
    if (e.code === 'ENOENT') return `no such file or folder: ${e.path ?? ''}`;
    if (e.code === 'EACCES') return `permission denied: ${e.path ?? ''}`;
  }
  return err instanceof Error ? err.message : String(err);
}

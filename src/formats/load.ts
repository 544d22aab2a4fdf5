/**
 * Read policy files and folders in any supported dialect (detected from apiVersion and kind),
 * convert foreign documents to native ones and validate them. Bounded: file size, number of
 * files, documents per file and YAML alias expansion all have limits, and a problem in one
 * document never hides the others.
 */
import { readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { type Document, isCollection, isPair, parseAllDocuments, visit } from 'yaml';
import { API_GROUP, type Policy, policyRefText } from '../policy/model.ts';
import type { ImportContext, ImportResult } from './importer.ts';
import { NATIVE_KINDS, type NativeDocument, type Problem, validateNative } from './native.ts';
import { type Dialect, findImporter, type RegisteredImporter } from './registry.ts';

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
  const converted: Converted[] = [];
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
    loadInto(text, file, options, report, converted);
  }
  checkSets(converted, report);
  checkDuplicates(report);
  return report;
}

/** Parse and load the documents of one text (a file's content). */
export function loadText(text: string, file: string, options: LoadOptions, report: LoadReport): void {
  const converted: Converted[] = [];
  loadInto(text, file, options, report, converted);
  checkSets(converted, report);
}

/** A foreign document that converted without errors, and what it added to the report. */
interface Converted {
  readonly importer: RegisteredImporter;
  readonly doc: Record<string, unknown>;
  readonly at: (p: Problem) => FileProblem;
  readonly policies: readonly LoadedPolicy[];
  readonly documents: LoadReport['documents'];
}

function loadInto(
  text: string,
  file: string,
  options: LoadOptions,
  report: LoadReport,
  converted: Converted[],
): void {
  const context = options.context ?? { defaultNamespace: 'default' };
  const docs = parseDocuments(text, file, report);
  docs.forEach((doc, index) => {
    for (const item of expandLists(doc)) {
      const c = loadDocument(item, file, index, context, options, report);
      if (c) converted.push(c);
    }
  });
}

/** The importers' checks over all their documents read together; a document that fails is taken out. */
function checkSets(converted: readonly Converted[], report: LoadReport): void {
  const rejected = new Set<unknown>();
  for (const importer of new Set(converted.map((c) => c.importer))) {
    if (!importer.checkSet) continue;
    const mine = converted.filter((c) => c.importer === importer);
    const problems = importer.checkSet(mine.map((c) => c.doc));
    mine.forEach((c, i) => {
      const list = problems[i] ?? [];
      if (list.length === 0) return;
      report.errors.push(...list.map(c.at));
      for (const p of c.policies) rejected.add(p);
      for (const d of c.documents) rejected.add(d);
    });
  }
  if (rejected.size === 0) return;
  const keepPolicies = report.policies.filter((p) => !rejected.has(p));
  const keepDocuments = report.documents.filter((d) => !rejected.has(d));
  report.policies.splice(0, report.policies.length, ...keepPolicies);
  report.documents.splice(0, report.documents.length, ...keepDocuments);
}

function parseDocuments(text: string, file: string, report: LoadReport): unknown[] {
  // 'silent': the library would print its own warnings to the console; they become problems here.
  const parsed = parseAllDocuments(text, { prettyErrors: true, uniqueKeys: true, logLevel: 'silent' });
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
    const problem = (message: string): void => {
      report.errors.push({ file, document: index, object: '', path: '', message });
      out.push(undefined);
    };
    // Before the YAML errors: a template's placeholders often break the YAML too, and "render
    // it first" is the message that helps.
    // Up to the next document: a placeholder that broke the YAML may lie past this one's range.
    const placeholder = findPlaceholder(text, doc.range[0], list[index + 1]?.range[0] ?? text.length);
    if (placeholder) {
      problem(
        `an unrendered template: ${JSON.stringify(placeholder.text)} at line ${placeholder.line}; ` +
          'render it first (helm template, kustomize build, ...) and give namegate the result',
      );
      return;
    }
    if (doc.errors.length > 0) {
      // The first line of the message; the code frame after it would not fit on one line.
      problem(`not valid YAML: ${firstLine(doc.errors[0]?.message ?? 'parse error')}`);
      return;
    }
    for (const w of doc.warnings) {
      report.warnings.push({
        file,
        document: index,
        object: '',
        path: '',
        message: `YAML: ${firstLine(w.message)}`,
      });
    }
    if (hasCollectionKey(doc)) {
      problem('not valid YAML for Kubernetes: a mapping key is itself a mapping or a list');
      return;
    }
    try {
      out.push(doc.toJS({ maxAliasCount: LOAD_LIMITS.yamlAliases }));
    } catch (err) {
      problem(`not valid YAML: ${describeFsError(err)}`);
    }
  });
  return out;
}

function firstLine(message: string): string {
  return message.split('\n')[0]?.replace(/:$/, '') ?? message;
}

/** A `{{ ... }}` placeholder (Helm, Go templates) outside comments, between two offsets. */
export function findPlaceholder(
  text: string,
  from: number,
  to: number,
): { text: string; line: number } | undefined {
  const part = text.slice(from, to);
  const re = /\{\{.*?\}\}/g;
  for (let m = re.exec(part); m !== null; m = re.exec(part)) {
    const lineStart = part.lastIndexOf('\n', m.index) + 1;
    const before = part.slice(lineStart, m.index);
    if (/(^|\s)#/.test(before)) continue; // a comment
    const line = text.slice(0, from + m.index).split('\n').length;
    return { text: m[0].length > 60 ? `${m[0].slice(0, 57)}...` : m[0], line };
  }
  return undefined;
}

/**
 * JSON (and so Kubernetes) has only string keys; the library would stringify a collection key
 * and print a warning about it.
 */
function hasCollectionKey(doc: Document): boolean {
  let found = false;
  visit(doc, {
    Pair(_, pair) {
      if (isPair(pair) && isCollection(pair.key)) {
        found = true;
        return visit.BREAK;
      }
      return undefined;
    },
  });
  return found;
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
): Converted | undefined {
  if (doc === undefined || doc === null) return undefined; // empty document (a stray ---) or a parse error already reported
  if (!isRecord(doc)) {
    report.errors.push({
      file,
      document: index,
      object: '',
      path: '',
      message: 'a document must be a mapping',
    });
    return undefined;
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
    return undefined;
  }
  const importer = findImporter(apiVersion, kind);
  if (importer && options.only !== undefined && options.only !== importer.dialect) {
    report.warnings.push(
      at({
        path: '',
        message: `skipped: a ${importer.dialect} document, and only ${options.only} was asked for`,
      }),
    );
    return undefined;
  }
  if (!importer) {
    report.warnings.push(
      at({
        path: '',
        message: `ignored: ${apiVersion || '(no apiVersion)'} ${kind || '(no kind)'} is not a policy namegate reads`,
      }),
    );
    return undefined;
  }
  let imported: ImportResult;
  try {
    imported = importer.convert(doc, context);
  } catch (err) {
    // An importer bug must not take the whole load down, and must not produce a policy.
    report.errors.push(at({ path: '', message: `could not convert: ${describeFsError(err)}` }));
    return undefined;
  }
  report.errors.push(...imported.errors.map(at));
  report.warnings.push(...imported.warnings.map(at));
  if (imported.errors.length > 0) return undefined;
  const policies: LoadedPolicy[] = [];
  const documents: LoadReport['documents'] = [];
  const errorsBefore = report.errors.length;
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
      policies.push({ policy: result.policy, file, dialect: importer.dialect });
      documents.push({ file, dialect: importer.dialect, document: native });
    }
  }
  // All or nothing per foreign document: part of its conversion would be a policy nobody wrote.
  if (report.errors.length > errorsBefore) return undefined;
  report.policies.push(...policies);
  report.documents.push(...documents);
  return { importer, doc, at, policies, documents };
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

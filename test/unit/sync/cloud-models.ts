/**
 * Validators for request files against the clouds' own published models, read from the Python
 * packages that ship them (scripts/cloud-models.sh installs them): botocore's service-2.json
 * shapes (AWS) and the Compute discovery document (Google). Only what the models state is
 * checked: members and properties that exist, required members, types, enums, string lengths
 * and patterns, list bounds, read-only properties, method parameter patterns.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { gunzipSync } from 'node:zlib';

const ROOT = path.resolve(import.meta.dirname, '../../..');

function modelPaths(): { botocore: string; compute: string } {
  const out = execFileSync(path.join(ROOT, 'scripts/cloud-models.sh'), ['--print'], { encoding: 'utf8' });
  const get = (k: string) => (out.match(new RegExp(`^${k}=(.*)$`, 'm'))?.[1] ?? '').trim();
  const paths = { botocore: get('botocore'), compute: get('compute') };
  for (const p of Object.values(paths)) {
    if (!existsSync(p))
      throw new Error(`${p} is missing: run scripts/cloud-models.sh (scripts/deps.sh --test does)`);
  }
  return paths;
}

interface Shape {
  type: string;
  required?: string[];
  members?: Record<string, { shape: string }>;
  member?: { shape: string };
  key?: { shape: string };
  value?: { shape: string };
  enum?: string[];
  min?: number;
  max?: number;
  pattern?: string;
}

export interface BotocoreModel {
  readonly shapes: Record<string, Shape>;
  readonly operations: Record<string, { input: { shape: string } }>;
}

export function botocoreModel(service: string): BotocoreModel {
  const dir = path.join(modelPaths().botocore, service);
  const version = readdirSync(dir).sort().at(-1) as string;
  const base = path.join(dir, version, 'service-2.json');
  const text = existsSync(base)
    ? readFileSync(base, 'utf8')
    : gunzipSync(readFileSync(`${base}.gz`)).toString('utf8');
  return JSON.parse(text) as BotocoreModel;
}

/** Problems of `value` as the input of `operation` ("path: message"); [] when it is valid. */
export function validateOperationInput(model: BotocoreModel, operation: string, value: unknown): string[] {
  const op = model.operations[operation];
  if (!op) return [`no operation ${operation}`];
  const out: string[] = [];
  shapeCheck(model, op.input.shape, value, operation, out);
  return out;
}

function shapeCheck(model: BotocoreModel, name: string, v: unknown, at: string, out: string[]): void {
  const s = model.shapes[name];
  if (!s) {
    out.push(`${at}: unknown shape ${name}`);
    return;
  }
  switch (s.type) {
    case 'structure': {
      if (typeof v !== 'object' || v === null || Array.isArray(v))
        return void out.push(`${at}: not a structure`);
      const o = v as Record<string, unknown>;
      for (const r of s.required ?? []) if (!(r in o)) out.push(`${at}.${r}: required`);
      for (const [k, val] of Object.entries(o)) {
        const m = s.members?.[k];
        if (!m) out.push(`${at}.${k}: not a member of ${name}`);
        else shapeCheck(model, m.shape, val, `${at}.${k}`, out);
      }
      return;
    }
    case 'list': {
      if (!Array.isArray(v)) return void out.push(`${at}: not a list`);
      if (s.min !== undefined && v.length < s.min) out.push(`${at}: fewer than ${s.min} items`);
      if (s.max !== undefined && v.length > s.max) out.push(`${at}: more than ${s.max} items`);
      for (const [i, x] of v.entries()) shapeCheck(model, s.member?.shape as string, x, `${at}[${i}]`, out);
      return;
    }
    case 'map': {
      if (typeof v !== 'object' || v === null) return void out.push(`${at}: not a map`);
      for (const [k, val] of Object.entries(v)) {
        shapeCheck(model, s.key?.shape as string, k, `${at}{${k}}`, out);
        shapeCheck(model, s.value?.shape as string, val, `${at}.${k}`, out);
      }
      return;
    }
    case 'string': {
      if (typeof v !== 'string') return void out.push(`${at}: not a string`);
      if (s.enum && !s.enum.includes(v)) out.push(`${at}: ${v} is not one of ${s.enum.join(', ')}`);
      if (s.min !== undefined && v.length < s.min) out.push(`${at}: shorter than ${s.min}`);
      if (s.max !== undefined && v.length > s.max) out.push(`${at}: longer than ${s.max}`);
      if (s.pattern && !new RegExp(s.pattern, 'su').test(v))
        out.push(`${at}: ${v} does not match ${s.pattern}`);
      return;
    }
    case 'integer':
    case 'long': {
      if (!Number.isInteger(v)) return void out.push(`${at}: not an integer`);
      if (s.min !== undefined && (v as number) < s.min) out.push(`${at}: below ${s.min}`);
      if (s.max !== undefined && (v as number) > s.max) out.push(`${at}: above ${s.max}`);
      return;
    }
    case 'boolean':
      if (typeof v !== 'boolean') out.push(`${at}: not a boolean`);
      return;
    default:
      out.push(`${at}: shape type ${s.type} not checked here`);
  }
}

interface Schema {
  $ref?: string;
  type?: string;
  format?: string;
  enum?: string[];
  readOnly?: boolean;
  properties?: Record<string, Schema>;
  items?: Schema;
  additionalProperties?: Schema;
}

export interface Discovery {
  readonly schemas: Record<string, Schema>;
  readonly resources: Record<
    string,
    {
      methods: Record<
        string,
        { parameters: Record<string, { pattern?: string; required?: boolean }>; request?: { $ref: string } }
      >;
    }
  >;
}

export function computeDiscovery(): Discovery {
  return JSON.parse(readFileSync(modelPaths().compute, 'utf8')) as Discovery;
}

/** Problems of `value` as the request body of resource.method, and of its path parameters. */
export function validateMethodRequest(
  doc: Discovery,
  resource: string,
  method: string,
  params: Record<string, string>,
  body: unknown,
): string[] {
  const m = doc.resources[resource]?.methods[method];
  if (!m) return [`no method ${resource}.${method}`];
  const out: string[] = [];
  for (const [k, p] of Object.entries(m.parameters)) {
    const v = params[k];
    if (v === undefined) {
      if (p.required) out.push(`parameter ${k}: required`);
      continue;
    }
    if (p.pattern && !new RegExp(`^(?:${p.pattern})$`).test(v))
      out.push(`parameter ${k}: ${v} does not match ${p.pattern}`);
  }
  for (const k of Object.keys(params)) if (!(k in m.parameters)) out.push(`parameter ${k}: unknown`);
  if (m.request && body !== undefined) schemaCheck(doc, { $ref: m.request.$ref }, body, method, out);
  return out;
}

function schemaCheck(doc: Discovery, schema: Schema, v: unknown, at: string, out: string[]): void {
  const s = schema.$ref ? (doc.schemas[schema.$ref] as Schema) : schema;
  if (s.readOnly) out.push(`${at}: read-only (output only)`);
  if (s.enum && !s.enum.includes(v as string))
    out.push(`${at}: ${String(v)} is not one of ${s.enum.join(', ')}`);
  switch (s.type) {
    case 'object': {
      if (typeof v !== 'object' || v === null || Array.isArray(v))
        return void out.push(`${at}: not an object`);
      for (const [k, val] of Object.entries(v)) {
        const p = s.properties?.[k] ?? s.additionalProperties;
        if (!p) out.push(`${at}.${k}: not a property`);
        else schemaCheck(doc, p, val, `${at}.${k}`, out);
      }
      return;
    }
    case 'array':
      if (!Array.isArray(v)) return void out.push(`${at}: not an array`);
      for (const [i, x] of v.entries()) schemaCheck(doc, s.items as Schema, x, `${at}[${i}]`, out);
      return;
    case 'string':
      if (typeof v !== 'string') out.push(`${at}: not a string`);
      return;
    case 'integer':
      if (!Number.isInteger(v)) out.push(`${at}: not an integer`);
      else if (s.format === 'int32' && ((v as number) < -(2 ** 31) || (v as number) >= 2 ** 31))
        out.push(`${at}: not int32`);
      return;
    case 'boolean':
      if (typeof v !== 'boolean') out.push(`${at}: not a boolean`);
      return;
    default:
      out.push(`${at}: schema type ${s.type} not checked here`);
  }
}

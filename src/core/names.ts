/**
 * Canonical domain names: the two ways text becomes a name, which agree on every name.
 *
 * Canonical means: lowercase, no trailing dot, IDNA A-labels, only letters, digits, hyphen and
 * underscore, labels of 1..63 octets and a name of at most 253 octets.
 *
 * - `tryWireName` reads a name as a client sent it: the DNS question, the TLS server_name, the
 *   HTTP Host, the CONNECT target and `namegate check --name`. Clients send A-labels, so only
 *   ASCII is accepted; nothing is mapped except case. A wire name that is not canonical is
 *   rejected in every one of those places alike (reason `name_invalid`).
 * - `tryCanonicalName` reads a name a person wrote in a policy or a setting. It also takes
 *   U-labels (`bücher.de` is `xn--bcher-kva.de`), but only in the form IDNA keeps as it is:
 *   text that UTS #46 would *map* (the dots U+3002, U+FF0E, U+FF61, fullwidth letters, soft
 *   hyphens, decomposed accents) is an error, never quietly another name.
 *
 * So a name a policy may write is exactly a name a client may send, up to A-label/U-label.
 */
import { isIP } from 'node:net';
import { domainToASCII, domainToUnicode } from 'node:url';
import { ErrorCode, NamegateError } from './errors.ts';

/** A name that went through `canonicalName`. Only that function creates one. */
export type CanonicalName = string & { readonly __brand: 'CanonicalName' };

export const MAX_NAME_OCTETS = 253;
export const MAX_LABEL_OCTETS = 63;
/** Input longer than this is rejected before any work (IDN input can shrink, never by this much). */
const MAX_INPUT_CHARS = 1024;

/** Which rule a rejected name broke; stable, used in tests and logs. */
export type NameRule =
  | 'empty'
  | 'too-long'
  | 'empty-label'
  | 'label-too-long'
  | 'bad-character'
  | 'idna'
  | 'bad-punycode'
  | 'ip-literal'
  | 'numeric-tld'
  /** A wire name with a character outside ASCII (clients send A-labels). */
  | 'not-ascii'
  /** Policy text IDNA would map to something else (U+3002 as a dot, fullwidth letters). */
  | 'idna-mapped';

export class NameError extends NamegateError {
  readonly rule: NameRule;
  readonly label: string | null;
  readonly input: string;

  constructor(input: string, rule: NameRule, label: string | null, detail: string) {
    super(ErrorCode.NameInvalid, `${JSON.stringify(clip(input))}: ${detail}`);
    this.name = 'NameError';
    this.rule = rule;
    this.label = label;
    this.input = input;
  }
}

function clip(s: string): string {
  return s.length > 80 ? `${s.slice(0, 77)}...` : s;
}

// Plain LDH+underscore ASCII (any case, dots) needs no IDNA mapping: lowercasing is all
// UTS #46 would do to it. Anything else goes through domainToASCII.
const PLAIN_ASCII = /^[A-Za-z0-9_.-]+$/;
// ASCII outside letters, digits, "-", "_" and "." is never part of a name, and must be rejected
// before IDNA: domainToASCII runs the URL host parser, which percent-decodes ("a%2eb" -> "a.b"),
// drops tabs and newlines, and cuts the host at "/", "\\", "?" or "#"
// ("allowed.com/.evil.net" -> "allowed.com").
// (Written as "not non-ASCII and not allowed" so the regex holds no control characters.)
const BAD_ASCII = /[^\u0080-\uffffA-Za-z0-9_.-]/;
const LABEL_CHARS = /^[a-z0-9_-]+$/;
const NUMERIC_LABEL = /^(?:[0-9]+|0x[0-9a-f]*)$/;

/**
 * The checks both readers start with: not empty, not too long, and one trailing dot (the root)
 * removed; "a.." keeps an empty label, which the label checks refuse.
 */
function withoutRoot(input: string): string | NameError {
  if (input.length === 0) return new NameError(input, 'empty', null, 'a name may not be empty');
  if (input.length > MAX_INPUT_CHARS) {
    return new NameError(input, 'too-long', null, `a name may have at most ${MAX_NAME_OCTETS} octets`);
  }
  const name = input.endsWith('.') ? input.slice(0, -1) : input;
  if (name.length === 0) return new NameError(input, 'empty', null, 'a name may not be only the root');
  return name;
}

/**
 * Canonicalize a domain name or throw a NameError naming the label and the rule it broke.
 */
export function canonicalName(input: string): CanonicalName {
  const result = tryCanonicalName(input);
  if (result instanceof NameError) throw result;
  return result;
}

/** Like canonicalName but returns the error instead of throwing (hot paths, validation). */
export function tryCanonicalName(input: string): CanonicalName | NameError {
  const name = withoutRoot(input);
  if (typeof name !== 'string') return name;
  if (PLAIN_ASCII.test(name)) return checkLabels(input, name.toLowerCase());
  if (BAD_ASCII.test(name)) return badAscii(input, name);
  const ascii = domainToASCII(name);
  if (ascii === '') return idnaFailure(input, name);
  const checked = checkLabels(input, ascii);
  if (typeof checked !== 'string') return checked;
  return unmapped(input, name, checked);
}

/**
 * Read a name as a client sent it on the wire (DNS question, SNI, Host, CONNECT target): ASCII
 * letters, digits, hyphen, underscore and dots only, one trailing dot allowed, case folded.
 * Anything else is a NameError; no IDNA mapping ever runs, so U+3002 is never a dot here.
 */
export function tryWireName(input: string): CanonicalName | NameError {
  const name = withoutRoot(input);
  if (typeof name !== 'string') return name;
  if (PLAIN_ASCII.test(name)) return checkLabels(input, name.toLowerCase());
  if (BAD_ASCII.test(name)) return badAscii(input, name);
  return notAscii(input, name);
}

/** Throwing form of tryWireName. */
export function wireName(input: string): CanonicalName {
  const result = tryWireName(input);
  if (result instanceof NameError) throw result;
  return result;
}

function notAscii(input: string, name: string): NameError {
  const label = name.split('.').find((l) => !PLAIN_ASCII.test(l)) ?? name;
  const c = [...label].find((ch) => ch.charCodeAt(0) > 0x7f) ?? '?';
  const code = `U+${(c.codePointAt(0) ?? 0).toString(16).toUpperCase().padStart(4, '0')}`;
  const ascii = tryCanonicalName(name);
  const hint = typeof ascii === 'string' ? `; a client sends the A-label form ${JSON.stringify(ascii)}` : '';
  return new NameError(
    input,
    'not-ascii',
    label,
    `label ${JSON.stringify(clip(label))} contains ${code}; a name on the wire is ASCII only${hint}`,
  );
}

/**
 * Policy text with non-ASCII labels must be U-labels as they are: each label, lowercased, is
 * what its A-label decodes to. Anything UTS #46 maps (dot variants, fullwidth, soft hyphen,
 * decomposed accents) would quietly stand for another spelling, so it is refused.
 */
function unmapped(input: string, text: string, ascii: CanonicalName): CanonicalName | NameError {
  const written = text.split('.');
  const labels = ascii.split('.');
  const mapped = (label: string | null) =>
    new NameError(
      input,
      'idna-mapped',
      label,
      `IDNA maps ${JSON.stringify(clip(label ?? text))} to another spelling; write the name as clients send it (${JSON.stringify(ascii)}) or in U-labels`,
    );
  if (written.length !== labels.length) {
    const joined = written.find((l) => domainToASCII(l).includes('.')) ?? null;
    return mapped(joined);
  }
  for (let i = 0; i < written.length; i++) {
    const w = written[i]!;
    const a = labels[i]!;
    const expected = PLAIN_ASCII.test(w) ? a : domainToUnicode(a);
    if (w.toLowerCase() !== expected) return mapped(w);
  }
  return ascii;
}

function badAscii(input: string, name: string): NameError {
  const bare = name.startsWith('[') && name.endsWith(']') ? name.slice(1, -1) : name;
  if (isIP(bare) !== 0) {
    return new NameError(input, 'ip-literal', null, 'an IP address is not a domain name');
  }
  const label = name.split('.').find((l) => BAD_ASCII.test(l)) ?? name;
  const bad = label.match(BAD_ASCII)?.[0] ?? '?';
  return new NameError(
    input,
    'bad-character',
    label,
    `label ${JSON.stringify(clip(label))} contains ${JSON.stringify(bad)}; only letters, digits, hyphen and underscore are allowed`,
  );
}

/** Find the label that made IDNA fail, so the error can name it. */
function idnaFailure(input: string, name: string): NameError {
  for (const label of name.split('.')) {
    if (label === '') continue;
    if (domainToASCII(label) === '') {
      return new NameError(
        input,
        'idna',
        label,
        `label ${JSON.stringify(label)} is not a valid internationalized label (UTS #46)`,
      );
    }
  }
  const last = name.split('.').pop() ?? '';
  if (NUMERIC_LABEL.test(last.toLowerCase())) {
    return new NameError(
      input,
      'numeric-tld',
      last,
      `the last label ${JSON.stringify(last)} may not be numeric`,
    );
  }
  return new NameError(input, 'idna', null, 'not a valid internationalized name (UTS #46)');
}

function checkLabels(input: string, name: string): CanonicalName | NameError {
  if (name.length > MAX_NAME_OCTETS) {
    return new NameError(
      input,
      'too-long',
      null,
      `the name has ${name.length} octets; at most ${MAX_NAME_OCTETS} are allowed`,
    );
  }
  if (isIP(name) !== 0) {
    return new NameError(input, 'ip-literal', null, 'an IP address is not a domain name');
  }
  const labels = name.split('.');
  for (const label of labels) {
    if (label.length === 0) {
      return new NameError(input, 'empty-label', '', 'empty label (two dots in a row, or a leading dot)');
    }
    if (label.length > MAX_LABEL_OCTETS) {
      return new NameError(
        input,
        'label-too-long',
        label,
        `label ${JSON.stringify(clip(label))} has ${label.length} octets; at most ${MAX_LABEL_OCTETS} are allowed`,
      );
    }
    if (!LABEL_CHARS.test(label)) {
      const bad = [...label].find((c) => !/[a-z0-9_-]/.test(c)) ?? '?';
      return new NameError(
        input,
        'bad-character',
        label,
        `label ${JSON.stringify(label)} contains ${JSON.stringify(bad)}; only letters, digits, hyphen and underscore are allowed`,
      );
    }
    if (label.startsWith('xn--') && !isValidPunycodeLabel(label)) {
      return new NameError(
        input,
        'bad-punycode',
        label,
        `label ${JSON.stringify(label)} is not valid punycode`,
      );
    }
  }
  const last = labels[labels.length - 1] ?? '';
  if (NUMERIC_LABEL.test(last)) {
    // WHATWG hosts ending in a number are IPv4 forms; treat them as such everywhere.
    return new NameError(
      input,
      'numeric-tld',
      last,
      `the last label ${JSON.stringify(last)} may not be numeric`,
    );
  }
  return name as CanonicalName;
}

/** An xn-- label must decode to Unicode and encode back to exactly itself. */
function isValidPunycodeLabel(label: string): boolean {
  const unicode = domainToUnicode(label);
  if (unicode === label || unicode === '') return false;
  return domainToASCII(unicode) === label;
}

/** Split a canonical name into labels (left to right). */
export function labelsOf(name: CanonicalName): string[] {
  return name.split('.');
}

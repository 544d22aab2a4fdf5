/**
 * Canonical domain names: the one function every component uses to turn text into a name.
 *
 * Canonical means: lowercase, no trailing dot, IDNA A-labels (UTS #46 through WHATWG's
 * domainToASCII), only letters, digits, hyphen and underscore, labels of 1..63 octets and a
 * name of at most 253 octets. Policies, the DNS proxy, the proxies and the CLI all call
 * `canonicalName`, so a name that passes one of them passes all of them in the same spelling.
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
  | 'numeric-tld';

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
 * Canonicalize a domain name or throw a NameError naming the label and the rule it broke.
 */
export function canonicalName(input: string): CanonicalName {
  const result = tryCanonicalName(input);
  if (result instanceof NameError) throw result;
  return result;
}

/** Like canonicalName but returns the error instead of throwing (hot paths, validation). */
export function tryCanonicalName(input: string): CanonicalName | NameError {
  if (input.length === 0) return new NameError(input, 'empty', null, 'a name may not be empty');
  if (input.length > MAX_INPUT_CHARS) {
    return new NameError(input, 'too-long', null, `a name may have at most ${MAX_NAME_OCTETS} octets`);
  }
  // One trailing dot (the root) is allowed and removed; "a.." keeps an empty label and fails below.
  let name = input.endsWith('.') ? input.slice(0, -1) : input;
  if (name.length === 0) return new NameError(input, 'empty', null, 'a name may not be only the root');

  if (PLAIN_ASCII.test(name)) {
    name = name.toLowerCase();
  } else if (BAD_ASCII.test(name)) {
    return badAscii(input, name);
  } else {
    const ascii = domainToASCII(name);
    if (ascii === '') return idnaFailure(input, name);
    name = ascii;
  }
  return checkLabels(input, name);
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

/**
 * network-policy-api AdminNetworkPolicy (policy.networking.k8s.io/v1alpha1) and
 * ClusterNetworkPolicy (v1alpha2, v1beta1) -> ClusterEgressPolicy. Only egress rules that accept
 * traffic to domainNames or networks have a namegate meaning.
 *
 * NPEP-133's wildcard, kept exactly: "*.example.com" matches ONE OR MORE labels in front of
 * example.com (never example.com itself) -> native "**.example.com".
 *
 * Rule order: the API evaluates the Admin tier, then NetworkPolicy, then the Baseline tier;
 * within a tier policies by priority (lower first; equal priorities in no defined order) and a
 * policy's rules top to bottom, and the first match decides. Accept and Deny end the evaluation;
 * Pass skips the rest of its tier (Admin: on to NetworkPolicy and Baseline; Baseline: on to the
 * default, which allows). namegate is an allow-only union, so a Deny or Pass is dropped with a
 * warning when that cannot widen anything (it comes after every Accept it could shrink, only
 * covers in-cluster peers or addresses namegate never learns from DNS, or is a Baseline Pass,
 * which Kubernetes follows with an allow anyway), and is an error otherwise: in one policy
 * (convert), and across the policies read together (`checkSet`, by tier and priority).
 */
import type { Cidr } from '../core/ip.ts';
import type { LabelSelector } from '../policy/selector.ts';
import { validateSelector } from '../policy/selector.ts';
import {
  absent,
  admitPattern,
  Conversion,
  child,
  cidrsOverlap,
  coversEverything,
  nativeDocument,
  nativePorts,
  neverLearned,
  PatternFlags,
  type PortSpan,
  readCidr,
  readList,
  readMeta,
  readPortNumber,
  readRecord,
  readSelector,
  readString,
  sourceText,
  warnUnknown,
} from './foreign-common.ts';
import type { ImportContext, Importer, ImportResult } from './importer.ts';
import { LIMITS, type Problem } from './native.ts';
import type { RuleInput } from './native-schema.ts';

const DIALECT = 'network-policy-api';

interface Flavour {
  readonly accept: string;
  /**
   * Fields of a rule that may hold ports: v1alpha1 `ports`, later `protocols`. v1alpha2 had
   * AdminNetworkPolicy's `ports` before `protocols` (kube-network-policies' tests still use it):
   * either is read, never both, and never ignored (that would widen the rule to every port).
   */
  readonly portsFields: ReadonlyArray<'ports' | 'protocols'>;
  readonly tiered: boolean;
}

const FLAVOURS: Record<string, Flavour> = {
  'policy.networking.k8s.io/v1alpha1 AdminNetworkPolicy': {
    accept: 'Allow',
    portsFields: ['ports'],
    tiered: false,
  },
  'policy.networking.k8s.io/v1alpha2 ClusterNetworkPolicy': {
    accept: 'Accept',
    portsFields: ['protocols', 'ports'],
    tiered: true,
  },
  'policy.networking.k8s.io/v1beta1 ClusterNetworkPolicy': {
    accept: 'Accept',
    portsFields: ['protocols'],
    tiered: true,
  },
};

export const npepImporter = {
  dialect: 'npep',
  title: 'network-policy-api',
  summary: 'AdminNetworkPolicy / ClusterNetworkPolicy domainNames (network-policy-api)',
  kinds: [
    {
      group: 'policy.networking.k8s.io',
      version: 'v1alpha1',
      plural: 'adminnetworkpolicies',
      kind: 'AdminNetworkPolicy',
      namespaced: false,
    },
    {
      group: 'policy.networking.k8s.io',
      version: 'v1alpha2',
      plural: 'clusternetworkpolicies',
      kind: 'ClusterNetworkPolicy',
      namespaced: false,
    },
  ],
  convert: convertNpep,
  checkSet: checkNpepSet,
} as const satisfies Importer;

/** One egress rule, read. */
interface ReadRule {
  readonly path: string;
  readonly action: 'accept' | 'deny' | 'pass';
  readonly actionText: string;
  readonly domains: Array<{ name: string } | { pattern: string }>;
  /** Field path of each domain, for the pattern checks. */
  readonly domainPaths: string[];
  readonly networks: Cidr[];
  /** A peer with no field this importer knows: per the API, "fail closed". */
  readonly unknownPeer: boolean;
  readonly inCluster: boolean;
  /** undefined: every port; []: no port namegate can allow. */
  readonly ports: PortSpan[] | undefined;
}

/** A policy document, read: where Kubernetes places it (tier, priority), whom it selects, its rules. */
interface ReadPolicy {
  readonly apiVersion: string;
  readonly kind: string;
  readonly meta: NonNullable<ReturnType<typeof readMeta>>;
  readonly spec: Record<string, unknown>;
  /** AdminNetworkPolicy (v1alpha1) is the Admin tier. */
  readonly tier: Tier;
  readonly priority: number;
  readonly subject: Subject;
  /** Whether spec.egress holds any rule at all. */
  readonly hasEgress: boolean;
  readonly rules: readonly ReadRule[];
}

type Tier = 'Admin' | 'Baseline';
type Subject = { podSelector: LabelSelector; namespaceSelector: LabelSelector };

/** Read a document; null (with errors in `c`) when it cannot be read whole. */
function readNpep(c: Conversion, doc: Record<string, unknown>): ReadPolicy | null {
  const policy = readPolicy(c, doc);
  if (!policy) return null;
  const { flavour, spec } = policy;
  if (!absent(spec['ingress'])) c.warn('spec.ingress', 'ignored: namegate governs egress only');
  const subject = convertSubject(c, spec['subject']);
  const tier = readTier(c, spec, flavour);
  const priority = readPriority(c, spec['priority']);
  const egressPath = 'spec.egress';
  const list = readList(c, spec['egress'], egressPath, LIMITS.rulesPerPolicy) ?? [];
  const rules: ReadRule[] = [];
  list.forEach((r, i) => {
    const rule = readRule(c, r, child(egressPath, i), flavour);
    if (rule) rules.push(rule);
  });
  if (c.failed || !subject || !tier || priority === undefined) return null;
  return { ...policy, tier, priority, subject, hasEgress: list.length > 0, rules };
}

function convertNpep(doc: Record<string, unknown>, _context: ImportContext): ImportResult {
  const c = new Conversion();
  const policy = readNpep(c, doc);
  if (!policy) return c.result([]);
  const { apiVersion, kind, meta, spec, subject, tier, rules: read } = policy;
  const egressPath = 'spec.egress';
  if (!policy.hasEgress) {
    c.warn(egressPath, 'no egress rules: the policy does not affect egress, so there is nothing to convert');
    return c.result([]);
  }

  const flags = new PatternFlags();
  const state: RuleOrder = { rules: [], shadowedBy: null, droppedDeny: false };
  read.forEach((rule, i) => {
    if (state.shadowedBy !== null) {
      c.warn(
        rule.path,
        `not converted: the earlier rule ${state.shadowedBy} matches all of this rule's traffic first`,
      );
    } else if (rule.action === 'accept') {
      convertAccept(c, rule, flags, state);
    } else {
      convertDenyOrPass(c, rule, read.slice(i + 1), state, tier);
    }
  });
  if (c.failed) return c.result([]);
  warnLostOrder(c, spec, egressPath, state);
  return c.result([
    nativeDocument({
      kind: 'ClusterEgressPolicy',
      name: meta.name,
      namespace: null,
      source: sourceText(apiVersion, kind, meta),
      parts: { ...subject, rules: state.rules, flags },
    }),
  ]);
}

/**
 * Across the policies read together: an Accept rule that Kubernetes may never reach for some
 * traffic because a Deny (or, in the Admin tier, a Pass) of a policy it evaluates first takes
 * that traffic is an error, since namegate's union would allow it. Policies whose subjects
 * cannot overlap (different values for one label key) never meet; equal priorities in one tier
 * have no defined order, so each counts as first.
 */
function checkNpepSet(docs: readonly Record<string, unknown>[]): Problem[][] {
  const read = docs.map((d) => readNpep(new Conversion(), d));
  return read.map((q, qi) => {
    const problems: Problem[] = [];
    if (!q) return problems;
    for (const accept of q.rules) {
      if (accept.action !== 'accept' || !hasExternalPeer(accept)) continue;
      const conflict = firstConflict(read, qi, q, accept);
      if (conflict) {
        const { policy: p, rule } = conflict;
        problems.push({
          path: accept.path,
          message:
            `${p.kind} ${p.meta.name} (tier ${p.tier}, priority ${p.priority}) comes first in Kubernetes, and its ` +
            `${rule.actionText} rule ${rule.path} can take away part of what this rule accepts; namegate is allow-only ` +
            'and cannot keep that order. Narrow one of them, or move the accepted traffic to a policy that comes first',
        });
      }
    }
    return problems;
  });
}

function firstConflict(
  read: readonly (ReadPolicy | null)[],
  qi: number,
  q: ReadPolicy,
  accept: ReadRule,
): { policy: ReadPolicy; rule: ReadRule } | undefined {
  for (const [pi, p] of read.entries()) {
    if (!p || pi === qi || !comesFirst(p, q) || subjectsDisjoint(p.subject, q.subject)) continue;
    for (const rule of p.rules) {
      if (rule.action === 'accept' || !endsEvaluation(rule, p.tier, q.tier)) continue;
      if (!cannotShrink(rule, accept)) return { policy: p, rule };
    }
  }
  return undefined;
}

/** Does Kubernetes evaluate p before q (or in no defined order against it)? */
function comesFirst(p: ReadPolicy, q: ReadPolicy): boolean {
  if (p.tier !== q.tier) return p.tier === 'Admin';
  return p.priority <= q.priority;
}

/**
 * Does this Deny or Pass of a policy in `from` keep traffic from an Accept in `to`? Deny always;
 * an Admin Pass hands the traffic to NetworkPolicy (and Baseline), so it keeps it from later
 * Admin rules only; a Baseline Pass ends in the default allow, never taking anything away.
 */
function endsEvaluation(rule: ReadRule, from: Tier, to: Tier): boolean {
  if (rule.action === 'deny') return true;
  return from === 'Admin' && to === 'Admin';
}

/** A Deny or Pass that cannot match anything the Accept would let namegate allow. */
function cannotShrink(denyOrPass: ReadRule, accept: ReadRule): boolean {
  if (denyOrPass.unknownPeer) return false;
  if (!hasExternalPeer(denyOrPass)) return true;
  if (portsDisjoint(denyOrPass.ports, accept.ports)) return true;
  return (
    denyOrPass.networks.every(neverLearned) &&
    accept.networks.every((n) => denyOrPass.networks.every((d) => !cidrsOverlap(n, d)))
  );
}

function portsDisjoint(a: PortSpan[] | undefined, b: PortSpan[] | undefined): boolean {
  if (a === undefined || b === undefined) return false;
  return a.every((x) => b.every((y) => x.protocol !== y.protocol || x.to < y.from || y.to < x.from));
}

/** Two subjects that no pod can be in both: one label key required with two different values. */
function subjectsDisjoint(a: Subject, b: Subject): boolean {
  const conflict = (x: LabelSelector, y: LabelSelector) =>
    Object.entries(x.matchLabels ?? {}).some(([k, v]) => {
      const other = y.matchLabels?.[k];
      return other !== undefined && other !== v;
    });
  return conflict(a.namespaceSelector, b.namespaceSelector) || conflict(a.podSelector, b.podSelector);
}

/** The document's flavour (kind and version), metadata and spec; null (with errors) when unreadable. */
function readPolicy(
  c: Conversion,
  doc: Record<string, unknown>,
): {
  apiVersion: string;
  kind: string;
  flavour: Flavour;
  meta: NonNullable<ReturnType<typeof readMeta>>;
  spec: Record<string, unknown>;
} | null {
  const apiVersion = String(doc['apiVersion']);
  const kind = String(doc['kind']);
  const flavour = FLAVOURS[`${apiVersion} ${kind}`];
  if (!flavour) {
    c.error(
      'apiVersion',
      `${apiVersion} ${kind} is not supported; expected AdminNetworkPolicy v1alpha1 or ClusterNetworkPolicy v1alpha2/v1beta1`,
    );
    return null;
  }
  const meta = readMeta(c, doc, false, '');
  warnUnknown(c, doc, '', ['apiVersion', 'kind', 'metadata', 'spec', 'status']);
  const spec = readRecord(c, doc['spec'], 'spec');
  if (!meta || !spec) return null;
  warnUnknown(c, spec, 'spec', [
    'priority',
    'subject',
    'ingress',
    'egress',
    ...(flavour.tiered ? ['tier'] : []),
  ]);
  return { apiVersion, kind, flavour, meta, spec };
}

/** ClusterNetworkPolicy's tier: Admin, or Baseline (which NetworkPolicy overrides in Kubernetes). */
function readTier(c: Conversion, spec: Record<string, unknown>, flavour: Flavour): Tier | undefined {
  if (!flavour.tiered) return 'Admin';
  const tier = spec['tier'];
  if (tier !== 'Admin' && tier !== 'Baseline') {
    c.error('spec.tier', 'expected Admin or Baseline');
    return undefined;
  }
  if (tier === 'Baseline') {
    c.warn(
      'spec.tier',
      'Baseline: a NetworkPolicy that selects a pod decides instead of these rules in Kubernetes; namegate applies ' +
        "them as well, so the pod's traffic must pass both (the NetworkPolicy is enforced by the cluster's network plugin)",
    );
  }
  return tier;
}

/** spec.priority: 0-1000, lower first. */
function readPriority(c: Conversion, value: unknown): number | undefined {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value > 1000) {
    c.error('spec.priority', 'expected a whole number from 0 to 1000');
    return undefined;
  }
  return value;
}

/** The rules converted so far, and what the rule order did to them. */
interface RuleOrder {
  readonly rules: RuleInput[];
  /** The rule that matches everything (a Deny or Pass of all): later rules never match. */
  shadowedBy: string | null;
  /** A Deny or Pass was dropped (its policy's priority then no longer overrides anything). */
  droppedDeny: boolean;
}

const hasExternalPeer = (rule: ReadRule) => rule.domains.length > 0 || rule.networks.length > 0;

/** An Accept rule: its domain names and networks become one native rule. */
function convertAccept(c: Conversion, rule: ReadRule, flags: PatternFlags, state: RuleOrder): void {
  if (!hasExternalPeer(rule)) {
    if (rule.inCluster) {
      c.warn(
        rule.path,
        'in-cluster peers (namespaces, pods, nodes) are left to NetworkPolicy; nothing converted',
      );
    }
    return;
  }
  if (rule.ports !== undefined && rule.ports.length === 0) {
    c.warn(rule.path, 'no port namegate can allow: the rule is not converted');
    return;
  }
  rule.domains.forEach((d, k) => {
    admitPattern(c, 'name' in d ? d.name : d.pattern, rule.domainPaths[k] ?? rule.path, flags, DIALECT);
  });
  const native = rule.ports === undefined ? undefined : nativePorts(rule.ports);
  state.rules.push({
    ...(rule.domains.length > 0 ? { toFQDNs: rule.domains } : {}),
    ...(rule.networks.length > 0 ? { toCIDRs: rule.networks.map((n) => ({ cidr: n.text })) } : {}),
    ...(native ? { ports: native } : {}),
  });
}

/**
 * A Deny or Pass rule: namegate is allow-only, so it is dropped, and that is only sound when no
 * later Accept rule could lose part of what it accepts; otherwise the policy is an error.
 */
function convertDenyOrPass(
  c: Conversion,
  rule: ReadRule,
  after: readonly ReadRule[],
  state: RuleOrder,
  tier: Tier,
): void {
  const verb = rule.actionText;
  const passTo = tier === 'Admin' ? 'NetworkPolicy (then the Baseline tier)' : 'the default, which allows';
  if (!hasExternalPeer(rule) && !rule.unknownPeer) {
    c.warn(rule.path, `${verb} to in-cluster peers is left to NetworkPolicy; not converted`);
    return;
  }
  state.droppedDeny = true;
  if (rule.ports === undefined && (rule.unknownPeer || coversEverything(rule.networks))) {
    state.shadowedBy = rule.path;
    c.warn(
      rule.path,
      verb === 'Deny'
        ? 'Deny of everything: namegate already denies what no rule allows, so this is kept by governing the subject'
        : `Pass of everything: Kubernetes hands the rest to ${passTo}; namegate denies what no rule allows (narrower)`,
    );
    return;
  }
  const later = after.filter((r) => r.action === 'accept' && hasExternalPeer(r));
  const harmless = !endsEvaluation(rule, tier, tier) || later.every((a) => cannotShrink(rule, a));
  if (!harmless) {
    c.error(
      rule.path,
      `${verb} before an accepting rule can take away part of what that rule accepts; namegate is allow-only and ` +
        `cannot keep the order. Move the ${verb} rule after the accepting rules or narrow them`,
    );
    return;
  }
  const why =
    later.length === 0
      ? 'namegate denies what no rule allows' +
        (verb === 'Pass' ? ` (Kubernetes would hand this traffic to ${passTo}: narrower)` : '')
      : !endsEvaluation(rule, tier, tier)
        ? `Kubernetes hands this traffic to ${passTo}, so the later rules lose nothing (narrower)`
        : 'it cannot take away what the later rules accept (other ports, or addresses namegate never learns from DNS answers)';
  c.warn(rule.path, `${verb} is not converted: ${why}`);
}

/** What the order of Kubernetes' rules meant and namegate cannot keep: priority, and the fall-through. */
function warnLostOrder(
  c: Conversion,
  spec: Record<string, unknown>,
  egressPath: string,
  state: RuleOrder,
): void {
  if (state.droppedDeny && !absent(spec['priority'])) {
    c.warn(
      'spec.priority',
      'kept by checking, not by order: a Deny/Pass of this policy that could take away what a later policy accepts is an error when both are read together (namegate unites the allows of all policies); policies it is not read with are not checked',
    );
  }
  if (state.shadowedBy === null) {
    c.warn(
      egressPath,
      'traffic no rule matches falls through to NetworkPolicy in Kubernetes (allowed when none selects the pod); ' +
        'namegate governs the subject and denies it (narrower). End the rules with a Deny to 0.0.0.0/0 and ::/0 to say so',
    );
  }
}

/** subject.namespaces or subject.pods {namespaceSelector, podSelector}. */
function convertSubject(
  c: Conversion,
  value: unknown,
): { podSelector: LabelSelector; namespaceSelector: LabelSelector } | undefined {
  const subject = readRecord(c, value, 'spec.subject');
  if (!subject) return undefined;
  warnUnknown(c, subject, 'spec.subject', ['namespaces', 'pods']);
  const hasNs = !absent(subject['namespaces']);
  const hasPods = !absent(subject['pods']);
  if (hasNs === hasPods) {
    c.error('spec.subject', 'set exactly one of namespaces or pods');
    return undefined;
  }
  let out: { podSelector: LabelSelector; namespaceSelector: LabelSelector } | undefined;
  if (hasNs) {
    const ns = readSelector(c, subject['namespaces'], 'spec.subject.namespaces');
    if (ns) out = { podSelector: {}, namespaceSelector: ns };
  } else {
    const pods = readRecord(c, subject['pods'], 'spec.subject.pods');
    if (!pods) return undefined;
    warnUnknown(c, pods, 'spec.subject.pods', ['namespaceSelector', 'podSelector']);
    const ns = readSelector(c, pods['namespaceSelector'], 'spec.subject.pods.namespaceSelector');
    const pod = readSelector(c, pods['podSelector'], 'spec.subject.pods.podSelector');
    if (ns && pod) out = { podSelector: pod, namespaceSelector: ns };
  }
  if (!out) return undefined;
  const before = c.errors.length;
  const nsPath = hasNs ? 'spec.subject.namespaces' : 'spec.subject.pods.namespaceSelector';
  for (const [p, m] of validateSelector(out.namespaceSelector, nsPath)) c.error(p, m);
  for (const [p, m] of validateSelector(out.podSelector, 'spec.subject.pods.podSelector')) c.error(p, m);
  return c.errors.length > before ? undefined : out;
}

const PEER_FIELDS = ['namespaces', 'pods', 'nodes', 'networks', 'domainNames'];

function readRule(c: Conversion, value: unknown, path: string, flavour: Flavour): ReadRule | undefined {
  const rule = readRecord(c, value, path);
  if (!rule) return undefined;
  warnUnknown(c, rule, path, ['name', 'action', 'to', ...flavour.portsFields]);
  const actionText = rule['action'];
  const action =
    actionText === flavour.accept
      ? 'accept'
      : actionText === 'Deny'
        ? 'deny'
        : actionText === 'Pass'
          ? 'pass'
          : undefined;
  if (action === undefined) {
    c.error(child(path, 'action'), `expected ${flavour.accept}, Deny or Pass`);
    return undefined;
  }
  const domains: ReadRule['domains'] = [];
  const domainPaths: string[] = [];
  const networks: Cidr[] = [];
  let unknownPeer = false;
  let inCluster = false;
  const toPath = child(path, 'to');
  const to = readList(c, rule['to'], toPath, 100);
  if (to && to.length === 0) c.error(toPath, 'a rule needs at least one peer');
  (to ?? []).forEach((p, j) => {
    const at = child(toPath, j);
    const peer = readRecord(c, p, at);
    if (!peer) return;
    const keys = Object.keys(peer).filter((k) => !absent(peer[k]));
    const known = keys.filter((k) => PEER_FIELDS.includes(k));
    if (known.length === 0) {
      // The API's rule for peers from a newer version: an accepting rule matches nothing, a
      // Deny or Pass rule matches everything.
      unknownPeer = true;
      c.warn(
        at,
        `no peer type this importer knows (${keys.join(', ') || 'empty'}): read as ${action === 'accept' ? 'matching nothing' : 'matching everything'}, as the API says`,
      );
      return;
    }
    warnUnknown(c, peer, at, PEER_FIELDS);
    if (known.length > 1)
      c.error(at, 'a peer sets exactly one of namespaces, pods, nodes, networks or domainNames');
    for (const k of ['namespaces', 'pods', 'nodes']) if (known.includes(k)) inCluster = true;
    const netPath = child(at, 'networks');
    (readList(c, peer['networks'], netPath, 25) ?? []).forEach((n, k) => {
      const cidr = readCidr(c, n, child(netPath, k));
      if (cidr) networks.push(cidr);
    });
    const domPath = child(at, 'domainNames');
    const names = readList(c, peer['domainNames'], domPath, 25) ?? [];
    if (names.length > 0 && action !== 'accept') {
      c.error(domPath, `domainNames are allowed only in ${flavour.accept} rules`);
      return;
    }
    names.forEach((n, k) => {
      const entry = convertDomainName(c, n, child(domPath, k));
      if (entry) {
        domains.push(entry);
        domainPaths.push(child(domPath, k));
      }
    });
  });
  const ports = readRulePorts(c, rule, path, flavour);
  return {
    path,
    action,
    actionText: String(actionText),
    domains,
    domainPaths,
    networks,
    unknownPeer,
    inCluster,
    ports,
  };
}

/** The rule's ports from whichever port field its version has (v1alpha2: either, not both). */
function readRulePorts(
  c: Conversion,
  rule: Record<string, unknown>,
  path: string,
  flavour: Flavour,
): PortSpan[] | undefined {
  const present = flavour.portsFields.filter((f) => !absent(rule[f]));
  if (present.length > 1) {
    c.error(path, 'set one of protocols or ports, not both');
    return [];
  }
  if (present[0] === 'ports') return readAnpPorts(c, rule['ports'], child(path, 'ports'));
  if (present[0] === 'protocols') return readProtocols(c, rule['protocols'], child(path, 'protocols'));
  return undefined;
}

// NPEP's DomainName validation (with the A-z typo of early releases fixed, as upstream did).
const DOMAIN_NAME =
  /^(\*\.)?([a-zA-Z0-9]([-a-zA-Z0-9_]*[a-zA-Z0-9])?\.)+[a-zA-Z0-9]([-a-zA-Z0-9_]*[a-zA-Z0-9])?\.?$/;

/** An NPEP DomainName -> native name, or pattern "**." + rest for "*." (one or more labels). */
export function convertDomainName(
  c: Conversion,
  value: unknown,
  path: string,
): { name: string } | { pattern: string } | undefined {
  const text = readString(c, value, path);
  if (text === undefined) return undefined;
  if (!DOMAIN_NAME.test(text)) {
    c.error(
      path,
      `${JSON.stringify(text)} is not a valid domainName: at least two labels, letters, digits, "-" and "_", and "*." only as a prefix`,
    );
    return undefined;
  }
  const name = text.toLowerCase().replace(/\.$/, '');
  if (!name.startsWith('*.')) return { name };
  const rest = name.slice(2);
  c.warn(
    path,
    `${JSON.stringify(text)}: in network-policy-api "*" matches one or more labels (not ${rest} itself); converted to "**.${rest}"`,
  );
  return { pattern: `**.${rest}` };
}

/** v1alpha1 `ports`: portNumber {protocol, port}, portRange {protocol, start, end}, namedPort. */
function readAnpPorts(c: Conversion, value: unknown, path: string): PortSpan[] | undefined {
  if (absent(value)) return undefined;
  const list = readList(c, value, path, 100);
  if (!list) return [];
  const spans: PortSpan[] = [];
  list.forEach((p, i) => {
    const at = child(path, i);
    const port = readRecord(c, p, at);
    if (!port) return;
    warnUnknown(c, port, at, ['portNumber', 'portRange', 'namedPort']);
    if (!absent(port['namedPort'])) {
      c.warn(
        child(at, 'namedPort'),
        'not converted: a named port names a container port of a pod, never of an outside destination',
      );
    }
    if (!absent(port['portNumber'])) {
      const pn = readRecord(c, port['portNumber'], child(at, 'portNumber'));
      if (!pn) return;
      warnUnknown(c, pn, child(at, 'portNumber'), ['protocol', 'port']);
      const protocol = readProtocol(c, pn['protocol'], child(child(at, 'portNumber'), 'protocol'));
      const n = readPortNumber(c, pn['port'], child(child(at, 'portNumber'), 'port'));
      if (protocol && n !== undefined) spans.push({ protocol, from: n, to: n });
    }
    if (!absent(port['portRange'])) {
      const range = readRecord(c, port['portRange'], child(at, 'portRange'));
      if (!range) return;
      warnUnknown(c, range, child(at, 'portRange'), ['protocol', 'start', 'end']);
      const protocol = readProtocol(c, range['protocol'], child(child(at, 'portRange'), 'protocol'));
      const span = readRange(c, range['start'], range['end'], child(at, 'portRange'));
      if (protocol && span) spans.push({ protocol, ...span });
    }
  });
  return spans;
}

/** v1alpha2/v1beta1 `protocols`: {tcp|udp|sctp: {destinationPort: {number} | {range}}} or a named port. */
function readProtocols(c: Conversion, value: unknown, path: string): PortSpan[] | undefined {
  if (absent(value)) return undefined;
  const list = readList(c, value, path, 100);
  if (!list) return [];
  const spans: PortSpan[] = [];
  list.forEach((p, i) => {
    const at = child(path, i);
    const proto = readRecord(c, p, at);
    if (!proto) return;
    warnUnknown(c, proto, at, ['tcp', 'udp', 'sctp', 'destinationNamedPort']);
    if (!absent(proto['destinationNamedPort'])) {
      c.warn(
        child(at, 'destinationNamedPort'),
        'not converted: a named port names a container port of a pod, never of an outside destination',
      );
    }
    if (!absent(proto['sctp'])) c.warn(child(at, 'sctp'), 'not converted: namegate governs TCP and UDP only');
    for (const [field, protocol] of [
      ['tcp', 'TCP'],
      ['udp', 'UDP'],
    ] as const) {
      if (absent(proto[field])) continue;
      const fp = child(at, field);
      const body = readRecord(c, proto[field], fp);
      if (!body) continue;
      warnUnknown(c, body, fp, ['destinationPort']);
      if (absent(body['destinationPort'])) {
        spans.push({ protocol, from: 1, to: 65535 });
        continue;
      }
      const dp = readRecord(c, body['destinationPort'], child(fp, 'destinationPort'));
      if (!dp) continue;
      const dpPath = child(fp, 'destinationPort');
      warnUnknown(c, dp, dpPath, ['number', 'range']);
      if (absent(dp['number']) === absent(dp['range'])) {
        c.error(dpPath, 'set exactly one of number or range');
        continue;
      }
      if (!absent(dp['number'])) {
        const n = readPortNumber(c, dp['number'], child(dpPath, 'number'));
        if (n !== undefined) spans.push({ protocol, from: n, to: n });
      } else {
        const range = readRecord(c, dp['range'], child(dpPath, 'range'));
        if (!range) continue;
        warnUnknown(c, range, child(dpPath, 'range'), ['start', 'end']);
        const span = readRange(c, range['start'], range['end'], child(dpPath, 'range'));
        if (span) spans.push({ protocol, ...span });
      }
    }
  });
  return spans;
}

function readProtocol(c: Conversion, value: unknown, path: string): 'TCP' | 'UDP' | undefined {
  const protocol = absent(value) ? 'TCP' : value;
  if (protocol === 'TCP' || protocol === 'UDP') return protocol;
  if (protocol === 'SCTP') c.warn(path, 'not converted: namegate governs TCP and UDP only');
  else c.error(path, 'expected TCP, UDP or SCTP');
  return undefined;
}

function readRange(
  c: Conversion,
  start: unknown,
  end: unknown,
  path: string,
): { from: number; to: number } | undefined {
  const from = readPortNumber(c, start, child(path, 'start'));
  const to = readPortNumber(c, end, child(path, 'end'));
  if (from === undefined || to === undefined) return undefined;
  if (to < from) {
    c.error(child(path, 'end'), `end ${to} is below start ${from}`);
    return undefined;
  }
  return { from, to };
}

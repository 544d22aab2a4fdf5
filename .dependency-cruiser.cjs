/**
 * The house rules of src/: which folder may import which. `make lint` runs dependency-cruiser
 * with this file (scripts/check-imports.sh); a forbidden import fails with the rule's name.
 * docs/architecture.md explains the layers; each rule's comment says why it exists.
 *
 * TypeScript 7 has no compiler API for dependency-cruiser to use, so .ts files are parsed with
 * swc (@swc/core); type-only imports count like any other.
 */

/**
 * Each folder, the name of its rule, the folders it may import, and why; lowest layer first. A
 * folder may import only folders listed before it, so no two folders can import each other (no
 * folder cycle). Nothing lists `lab` but `cli`: only the CLI (and tests) use the lab.
 */
/** Every component folder: what config maps sections onto, and the agent composes. */
const COMPONENTS = ['core', 'observe', 'policy', 'store', 'datapath', 'identity', 'formats', 'enforce', 'dns', 'proxy', 'k8s', 'sync', 'flows'];

const LAYERS = [
  ['core', 'core-imports-nothing', [], 'names, addresses, errors, time: the ground floor imports nothing of ours'],
  ['observe', 'observe-imports-nothing', [], 'logs, metrics and health are plumbing every folder may use, so they depend on nothing'],
  ['policy', 'policy-imports-only-core', ['core'], 'the policy engine is pure: decisions from policies and names, no I/O, no other part'],
  ['store', 'store-imports-only-core', ['core'], 'the learned store keeps (source, name) -> IPs and knows nothing of rules or the kernel'],
  ['datapath', 'datapath-knows-elements-not-rules', ['core', 'observe'], 'the datapath knows elements, not rules: it never imports policy'],
  ['identity', 'identity-imports-only-core-observe-policy', ['core', 'observe', 'policy'], 'identities are what policies select; nothing above them'],
  ['formats', 'formats-imports-only-core-policy', ['core', 'policy'], 'documents become policy values; parsing never touches I/O beyond files'],
  [
    'enforce',
    'enforce-imports-only-lower-layers',
    ['core', 'observe', 'policy', 'identity', 'store', 'datapath'],
    'the glue from policy, identity and the store down to datapath elements',
  ],
  [
    'dns',
    'dns-imports-only-lower-layers',
    ['core', 'observe', 'policy', 'identity', 'store', 'datapath', 'enforce'],
    'the DNS proxy is an edge: it reads everything below it and is read by nothing but the proxies',
  ],
  [
    'proxy',
    'proxy-imports-only-lower-layers',
    ['core', 'observe', 'policy', 'identity', 'store', 'dns'],
    'the SNI and CONNECT proxies are an edge; they share the upstream DNS client with dns',
  ],
  [
    'k8s',
    'k8s-imports-only-lower-layers',
    ['core', 'observe', 'policy', 'identity', 'formats'],
    'Kubernetes sources produce identities and policies; they never reach the edge or the kernel',
  ],
  [
    'sync',
    'sync-imports-only-lower-layers',
    ['core', 'observe', 'policy', 'identity', 'store', 'datapath', 'enforce', 'dns', 'k8s'],
    'namegate sync reuses the DNS client, the TTL clamps, the static state and the datapath sets, and writes NetworkPolicies through the k8s client; it takes its settings as values',
  ],
  [
    'flows',
    'flows-imports-only-lower-layers',
    ['core', 'observe', 'policy', 'identity', 'datapath', 'dns', 'proxy'],
    'flow events are read off the decisions below (DNS, proxy and kernel records) and served; nothing below reads them',
  ],
  [
    'recommend',
    'recommend-imports-flows-formats-policy',
    ['core', 'policy', 'formats', 'flows'],
    'policies recommended from flow events, written and checked in the policy formats; pure, no I/O',
  ],
  [
    'config',
    'config-imports-no-agent-lab-cli',
    COMPONENTS,
    'config maps file sections to each component settings type; components never read config',
  ],
  [
    'agent',
    'agent-imports-no-lab-or-cli',
    [...COMPONENTS, 'recommend', 'config'],
    'the one composition root: it may wire anything but the lab and the CLI',
  ],
  [
    'lab',
    'lab-imports-only-lower-layers',
    ['core', 'observe', 'policy', 'formats', 'config', 'k8s'],
    "the lab is a test bed; only the CLI and tests use it (its Kubernetes node is driven with namegate's own API client)",
  ],
  [
    'cli',
    'cli-is-the-top',
    [...COMPONENTS, 'recommend', 'config', 'agent', 'lab'],
    'the command line sits on top and may use everything',
  ],
];

const FOLDERS = LAYERS.map(([folder]) => folder);

/** One rule per folder: nothing under src/ outside the folder itself and the ones it may import. */
const layerRules = LAYERS.map(([folder, name, allowed, why]) => ({
  name,
  comment: `src/${folder} may import ${allowed.length === 0 ? 'no other folder' : allowed.map((f) => `src/${f}`).join(', ')}: ${why}.`,
  severity: 'error',
  from: { path: `^src/${folder}/` },
  to: { path: '^src/', pathNot: [`^src/${folder}/`, ...allowed.map((f) => `^src/${f}/`)] },
}));

module.exports = {
  forbidden: [
    ...layerRules,
    {
      name: 'every-file-in-a-known-folder',
      comment: `Every source file lives in one of the folders the rules know (${FOLDERS.join(', ')}); a new folder gets a layer in .dependency-cruiser.cjs and a line in docs/architecture.md.`,
      severity: 'error',
      from: { path: '^src/', pathNot: `^src/(${FOLDERS.join('|')})/` },
      to: {},
    },
    {
      name: 'no-file-cycle',
      comment:
        'No import cycle between files, except the deliberate ones: the nft executor interface lazily loads its two implementations, which implement that interface.',
      severity: 'error',
      from: { pathNot: '^src/datapath/nft-executor(-addon|-spawn)?[.]ts$' },
      to: { circular: true },
    },
    {
      name: 'no-unresolvable-import',
      comment: 'An import that resolves to nothing is a typo or a missing dependency.',
      severity: 'error',
      from: {},
      to: { couldNotResolve: true },
    },
    {
      name: 'no-test-code-in-src',
      comment: 'src/ never imports tests, benchmarks or scripts.',
      severity: 'error',
      from: { path: '^src/' },
      to: { path: '^(test|bench|scripts)/' },
    },
  ],
  options: {
    parser: 'swc',
    // With swc, type-only imports are seen without the TypeScript compiler API.
    tsPreCompilationDeps: false,
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '(^|/)node_modules/' },
    moduleSystems: ['es6'],
  },
};

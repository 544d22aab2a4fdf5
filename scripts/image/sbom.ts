/**
 * The SBOM written next to each image archive: SPDX 2.3 JSON listing every Debian package, every
 * npm package and every other component (the Node.js binary, a Go binary, a C program) inside,
 * each with a package URL, and how the image contains them.
 *
 * Why our own writer: the generators that read both dpkg and npm (syft, trivy, cdxgen) are a
 * multi-minute Go build with about a gigabyte of modules, or hundreds of npm packages, for what is
 * here a list the builder already holds exactly. The images also carry the distroless dpkg
 * records (/var/lib/dpkg/status.d), so any scanner can cross-check this list.
 */
import { createHash } from 'node:crypto';
import { canonicalJson, isoTime } from './oci.ts';

export interface Component {
  readonly name: string;
  readonly version: string;
  /** Package URL (purl). */
  readonly purl: string;
  readonly supplier?: string;
  readonly license?: string;
  readonly homepage?: string | null;
  readonly sha256?: string;
  readonly comment?: string;
}

export interface SbomInput {
  readonly image: string;
  /** Manifest digest of the image. */
  readonly digest: string;
  readonly created: number;
  readonly components: readonly Component[];
}

function spdxId(c: Component, i: number): string {
  return `SPDXRef-Package-${i}-${c.name.replace(/[^A-Za-z0-9.-]/g, '-')}`;
}

/** A license string SPDX accepts as an expression, else NOASSERTION. */
function licenseField(license: string | undefined): string {
  if (!license) return 'NOASSERTION';
  return /^[A-Za-z0-9.+-]+( (AND|OR) [A-Za-z0-9.+-]+)*$/.test(license) ? license : 'NOASSERTION';
}

export function spdxDocument(input: SbomInput): string {
  const hex = input.digest.replace(/^sha256:/, '');
  const imageId = 'SPDXRef-Image';
  const [name] = input.image.split(':');
  const packages: Record<string, unknown>[] = [
    {
      SPDXID: imageId,
      name: input.image,
      versionInfo: input.digest,
      downloadLocation: 'NOASSERTION',
      filesAnalyzed: false,
      primaryPackagePurpose: 'CONTAINER',
      externalRefs: [
        {
          referenceCategory: 'PACKAGE-MANAGER',
          referenceType: 'purl',
          referenceLocator: `pkg:oci/${name?.split('/').at(-1)}@sha256%3A${hex}`,
        },
      ],
    },
  ];
  const relationships: Record<string, unknown>[] = [
    { spdxElementId: 'SPDXRef-DOCUMENT', relationshipType: 'DESCRIBES', relatedSpdxElement: imageId },
  ];
  input.components.forEach((c, i) => {
    const id = spdxId(c, i);
    packages.push({
      SPDXID: id,
      name: c.name,
      versionInfo: c.version,
      supplier: c.supplier ? `Organization: ${c.supplier}` : 'NOASSERTION',
      downloadLocation: c.homepage ?? 'NOASSERTION',
      filesAnalyzed: false,
      licenseConcluded: 'NOASSERTION',
      licenseDeclared: licenseField(c.license),
      copyrightText: 'NOASSERTION',
      ...(c.sha256 ? { checksums: [{ algorithm: 'SHA256', checksumValue: c.sha256 }] } : {}),
      ...(c.comment ? { comment: c.comment } : {}),
      externalRefs: [
        { referenceCategory: 'PACKAGE-MANAGER', referenceType: 'purl', referenceLocator: c.purl },
      ],
    });
    relationships.push({ spdxElementId: imageId, relationshipType: 'CONTAINS', relatedSpdxElement: id });
  });
  const body = {
    spdxVersion: 'SPDX-2.3',
    dataLicense: 'CC0-1.0',
    SPDXID: 'SPDXRef-DOCUMENT',
    name: `${input.image}@${input.digest}`,
    documentNamespace: `https://namegate.invalid/spdx/${encodeURIComponent(input.image)}/${hex}-${createHash(
      'sha256',
    )
      .update(canonicalJson(input.components))
      .digest('hex')
      .slice(0, 16)}`,
    creationInfo: { created: isoTime(input.created), creators: ['Tool: namegate-image-builder'] },
    documentDescribes: [imageId],
    packages,
    relationships,
  };
  return `${JSON.stringify(body, null, 2)}\n`;
}

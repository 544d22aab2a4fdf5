/**
 * How a policy's verdicts take effect: Enforce drops what is not allowed, Audit lets it pass and
 * logs and counts the would-be drop. Policies carry it and the datapath programs it per source,
 * so it lives below both.
 */
export type Mode = 'Enforce' | 'Audit';

/**
 * The transport protocols a grant names. Policies, the datapath's elements and the proxies all
 * speak of the same two, so the word lives here rather than in any one of them.
 */
export type Protocol = 'TCP' | 'UDP';

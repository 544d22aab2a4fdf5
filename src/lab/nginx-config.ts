/**
 * nginx in the lab's internet: one server block per name, HTTPS and HTTP, on every address of its
 * site (published and spare, IPv4 and IPv6). Each answers with a body naming itself, so a test can
 * tell which virtual host served it. Pure: text from the plan.
 */
import path from 'node:path';
import type { LabPlan } from './plan.ts';
import { statePaths } from './plan.ts';

/** The body every virtual host answers with. */
export function helloBody(name: string): string {
  return `hello from ${name}`;
}

export function certPaths(plan: LabPlan, name: string): { cert: string; key: string } {
  const dir = statePaths(plan).ca;
  return { cert: path.join(dir, `${name}.crt`), key: path.join(dir, `${name}.key`) };
}

export function nginxConfig(plan: LabPlan): string {
  const p = statePaths(plan);
  const tmp = path.join(p.nginx, 'tmp');
  const out = [
    '# Written by namegate lab up; removed by namegate lab down.',
    'worker_processes 1;',
    'daemon off;',
    'master_process on;',
    `pid ${path.join(p.nginx, 'nginx.pid')};`,
    `error_log ${path.join(p.logs, 'nginx-error.log')} notice;`,
    'events { worker_connections 512; }',
    'http {',
    '  default_type text/plain;',
    '  log_format lab \'$remote_addr -> $server_addr:$server_port sni=$ssl_server_name host=$host $status "$request"\';',
    `  access_log ${path.join(p.logs, 'nginx-access.log')} lab;`,
    `  client_body_temp_path ${tmp}/body;`,
    `  proxy_temp_path ${tmp}/proxy;`,
    `  fastcgi_temp_path ${tmp}/fastcgi;`,
    `  uwsgi_temp_path ${tmp}/uwsgi;`,
    `  scgi_temp_path ${tmp}/scgi;`,
    // nginx's own default: a connection a test holds stays open while the test works (a loaded
    // machine takes seconds), so only the datapath ever ends it.
    '  keepalive_timeout 75s;',
    '  server_tokens off;',
  ];
  for (const site of plan.sites) {
    const addrs = [...site.ipv4, ...site.spare4, ...[...site.ipv6, ...site.spare6].map((a) => `[${a}]`)];
    for (const name of site.names) {
      const cert = certPaths(plan, name);
      out.push('  server {');
      for (const a of addrs) out.push(`    listen ${a}:443 ssl;`, `    listen ${a}:80;`);
      out.push(
        `    server_name ${name};`,
        `    ssl_certificate ${cert.cert};`,
        `    ssl_certificate_key ${cert.key};`,
        `    location / { return 200 "${helloBody(name)}\\n"; }`,
        '  }',
      );
    }
  }
  out.push('}', '');
  return out.join('\n');
}

/** The TCP sockets nginx listens on when it is ready ("addr:port", IPv6 in brackets). */
export function nginxSockets(plan: LabPlan): string[] {
  const out = new Set<string>();
  for (const site of plan.sites) {
    for (const a of [...site.ipv4, ...site.spare4]) out.add(`${a}:443`).add(`${a}:80`);
    for (const a of [...site.ipv6, ...site.spare6]) out.add(`[${a}]:443`).add(`[${a}]:80`);
  }
  return [...out];
}

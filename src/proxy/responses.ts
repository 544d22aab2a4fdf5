/** What a refused client is told: a TLS alert, or an HTTP response carrying only a reason code. */

/** A fatal TLS alert record with the given description. */
export function tlsAlert(description: number): Buffer {
  return Buffer.from([21, 3, 3, 0, 2, 2, description]);
}

export const ALERT_ACCESS_DENIED = 49;

const STATUS_TEXT: Record<number, string> = {
  200: 'Connection Established',
  400: 'Bad Request',
  403: 'Forbidden',
  408: 'Request Timeout',
  431: 'Request Header Fields Too Large',
  502: 'Bad Gateway',
  504: 'Gateway Timeout',
};

/** A complete response that closes the connection; the body is the reason code, nothing else. */
export function httpResponse(status: number, reason: string): Buffer {
  const body = `namegate: ${reason}\n`;
  return Buffer.from(
    `HTTP/1.1 ${status} ${STATUS_TEXT[status] ?? 'Error'}\r\nContent-Type: text/plain\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`,
    'latin1',
  );
}

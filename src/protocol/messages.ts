// Builders for the v3 messages the gateway writes, and typed readers for the few it must look inside.
//
// A message is a Buffer holding the whole frame: type byte (absent for startup packets), Int32 length
// that counts itself, then the body. Readers take such a frame and never keep a reference to it.

export const PROTOCOL_3_0 = 196608; // 3 << 16
export const SSL_REQUEST_CODE = 80877103;
export const GSSENC_REQUEST_CODE = 80877104;
export const CANCEL_REQUEST_CODE = 80877102;

/** Longest startup packet PostgreSQL itself accepts (MAX_STARTUP_PACKET_LENGTH). */
export const MAX_STARTUP_PACKET_BYTES = 10000;

// ---------------------------------------------------------------- writing

/** Frame a typed message around a body. */
export function frame(type: string, body?: Buffer): Buffer {
  const len = body ? body.length : 0;
  const out = Buffer.allocUnsafe(5 + len);
  out[0] = type.charCodeAt(0);
  out.writeInt32BE(4 + len, 1);
  if (body) body.copy(out, 5);
  return out;
}

function cstr(s: string): Buffer {
  const b = Buffer.from(s + '\0', 'utf8');
  return b;
}

function int32(n: number): Buffer {
  const b = Buffer.allocUnsafe(4);
  b.writeInt32BE(n, 0);
  return b;
}

function int16(n: number): Buffer {
  const b = Buffer.allocUnsafe(2);
  b.writeInt16BE(n, 0);
  return b;
}

const AUTH_OK = frame('R', int32(0));
export function authenticationOk(): Buffer {
  return AUTH_OK;
}
export function authenticationCleartextPassword(): Buffer {
  return frame('R', int32(3));
}
export function authenticationMD5Password(salt: Buffer): Buffer {
  return frame('R', Buffer.concat([int32(5), salt]));
}
export function authenticationSASL(mechanisms: string[]): Buffer {
  return frame('R', Buffer.concat([int32(10), ...mechanisms.map(cstr), Buffer.from([0])]));
}
export function authenticationSASLContinue(data: Buffer): Buffer {
  return frame('R', Buffer.concat([int32(11), data]));
}
export function authenticationSASLFinal(data: Buffer): Buffer {
  return frame('R', Buffer.concat([int32(12), data]));
}

export function parameterStatus(name: string, value: string): Buffer {
  return frame('S', Buffer.concat([cstr(name), cstr(value)]));
}

export function backendKeyData(pid: number, secret: number): Buffer {
  return frame('K', Buffer.concat([int32(pid), int32(secret)]));
}

export type TxStatus = 'I' | 'T' | 'E';
const RFQ: Record<TxStatus, Buffer> = {
  I: frame('Z', Buffer.from('I')),
  T: frame('Z', Buffer.from('T')),
  E: frame('Z', Buffer.from('E')),
};
export function readyForQuery(status: TxStatus): Buffer {
  return RFQ[status];
}

export function negotiateProtocolVersion(newestMinor: number, unrecognized: string[]): Buffer {
  return frame('v', Buffer.concat([int32((3 << 16) | newestMinor), int32(unrecognized.length), ...unrecognized.map(cstr)]));
}

export interface ErrorFields {
  severity: string;
  code: string;
  message: string;
  detail?: string;
  hint?: string;
}

function fieldsBody(f: ErrorFields): Buffer {
  const parts: Buffer[] = [cstr('S' + f.severity), cstr('V' + f.severity), cstr('C' + f.code), cstr('M' + f.message)];
  if (f.detail) parts.push(cstr('D' + f.detail));
  if (f.hint) parts.push(cstr('H' + f.hint));
  parts.push(Buffer.from([0]));
  return Buffer.concat(parts);
}

export function errorResponse(f: ErrorFields): Buffer {
  return frame('E', fieldsBody(f));
}

/** An untyped startup packet: protocol 3.0 and name/value pairs. */
export function startupMessage(params: Record<string, string>): Buffer {
  const parts: Buffer[] = [int32(PROTOCOL_3_0)];
  for (const [k, v] of Object.entries(params)) parts.push(cstr(k), cstr(v));
  parts.push(Buffer.from([0]));
  const body = Buffer.concat(parts);
  return Buffer.concat([int32(body.length + 4), body]);
}

export function sslRequest(): Buffer {
  return Buffer.concat([int32(8), int32(SSL_REQUEST_CODE)]);
}

export function cancelRequest(pid: number, secret: number): Buffer {
  return Buffer.concat([int32(16), int32(CANCEL_REQUEST_CODE), int32(pid), int32(secret)]);
}

export function passwordMessage(password: string): Buffer {
  return frame('p', cstr(password));
}

export function saslInitialResponse(mechanism: string, data: Buffer): Buffer {
  return frame('p', Buffer.concat([cstr(mechanism), int32(data.length), data]));
}

export function saslResponse(data: Buffer): Buffer {
  return frame('p', data);
}

export function query(sql: string): Buffer {
  return frame('Q', cstr(sql));
}

const TERMINATE = frame('X');
export function terminate(): Buffer {
  return TERMINATE;
}

const SYNC = frame('S');
export function sync(): Buffer {
  return SYNC;
}

/** Bind with text parameters and text results. */
export function bind(statement: string, params: readonly (string | null)[] = [], portal = ''): Buffer {
  const parts: Buffer[] = [cstr(portal), cstr(statement), int16(0), int16(params.length)];
  for (const p of params) {
    if (p === null) parts.push(int32(-1));
    else {
      const v = Buffer.from(p, 'utf8');
      parts.push(int32(v.length), v);
    }
  }
  parts.push(int16(0));
  return frame('B', Buffer.concat(parts));
}

export function execute(portal = '', maxRows = 0): Buffer {
  return frame('E', Buffer.concat([cstr(portal), int32(maxRows)]));
}

export function describe(kind: 'S' | 'P', name: string): Buffer {
  return frame('D', Buffer.concat([Buffer.from(kind), cstr(name)]));
}

/** Parse + Bind + Execute + Sync for a one-shot extended query with text parameters and text results. */
export function extendedQuery(sql: string, params: (string | null)[]): Buffer {
  return Buffer.concat([frame('P', Buffer.concat([cstr(''), cstr(sql), int16(0)])), bind('', params), execute(), SYNC]);
}

/** Parse with a statement name, query text and parameter type OIDs. */
export function parse(name: string, sql: string, paramTypes: readonly number[] = []): Buffer {
  const types = Buffer.allocUnsafe(2 + 4 * paramTypes.length);
  types.writeInt16BE(paramTypes.length, 0);
  paramTypes.forEach((oid, i) => types.writeUInt32BE(oid >>> 0, 2 + 4 * i));
  return frame('P', Buffer.concat([cstr(name), cstr(sql), types]));
}

/** Close of a prepared statement ('S') or portal ('P'). */
export function close(kind: 'S' | 'P', name: string): Buffer {
  return frame('C', Buffer.concat([Buffer.from(kind), cstr(name)]));
}

const PARSE_COMPLETE = frame('1');
export function parseComplete(): Buffer {
  return PARSE_COMPLETE;
}

const CLOSE_COMPLETE = frame('3');
export function closeComplete(): Buffer {
  return CLOSE_COMPLETE;
}

export function commandComplete(tag: string): Buffer {
  return frame('C', cstr(tag));
}

/** RowDescription of text columns (type 25), as the gateway's own answers use. */
export function rowDescription(names: readonly string[]): Buffer {
  const parts: Buffer[] = [int16(names.length)];
  for (const n of names) parts.push(cstr(n), int32(0), int16(0), int32(25), int16(-1), int32(-1), int16(0));
  return frame('T', Buffer.concat(parts));
}

/** DataRow of text values. */
export function dataRow(values: readonly (string | null)[]): Buffer {
  const parts: Buffer[] = [int16(values.length)];
  for (const v of values) {
    if (v === null) parts.push(int32(-1));
    else {
      const b = Buffer.from(v, 'utf8');
      parts.push(int32(b.length), b);
    }
  }
  return frame('D', Buffer.concat(parts));
}

/** Copy of a message whose body starts with one NUL-terminated name, with that name replaced (Bind's statement comes second: see renameBind). */
function replaceCString(msg: Buffer, at: number, end: number, name: string): Buffer {
  const nb = Buffer.from(name, 'utf8');
  const out = Buffer.allocUnsafe(msg.length - (end - at) + nb.length);
  msg.copy(out, 0, 0, at);
  nb.copy(out, at);
  msg.copy(out, at + nb.length, end);
  out.writeInt32BE(out.length - 1, 1);
  return out;
}

/** Bind with its statement name replaced (the portal name, first, is kept). */
export function renameBind(msg: Buffer, statement: string): Buffer {
  const p = cstringEnd(msg, 5);
  return replaceCString(msg, p + 1, cstringEnd(msg, p + 1), statement);
}

/** Describe or Close ('S' kind) with the statement name replaced. */
export function renameTarget(msg: Buffer, statement: string): Buffer {
  return replaceCString(msg, 6, cstringEnd(msg, 6), statement);
}

// ---------------------------------------------------------------- reading

/** Reads NUL-terminated strings from a body; throws RangeError when a string is unterminated. */
export class BodyReader {
  private off: number;
  constructor(private readonly buf: Buffer, start: number) {
    this.off = start;
  }
  get remaining(): number {
    return this.buf.length - this.off;
  }
  cstring(): string {
    const end = this.buf.indexOf(0, this.off);
    if (end < 0) throw new RangeError('unterminated string');
    const s = this.buf.toString('utf8', this.off, end);
    this.off = end + 1;
    return s;
  }
  int32(): number {
    if (this.remaining < 4) throw new RangeError('truncated message');
    const v = this.buf.readInt32BE(this.off);
    this.off += 4;
    return v;
  }
  bytes(n: number): Buffer {
    if (n < 0 || this.remaining < n) throw new RangeError('truncated message');
    // Copy: the caller may keep this past the life of the frame.
    const b = Buffer.from(this.buf.subarray(this.off, this.off + n));
    this.off += n;
    return b;
  }
}

export interface StartupPacket {
  kind: 'startup';
  major: number;
  minor: number;
  params: Map<string, string>;
}
export type UntypedPacket =
  | StartupPacket
  | { kind: 'ssl' }
  | { kind: 'gssenc' }
  | { kind: 'cancel'; pid: number; secret: number };

/** Decode an untyped startup-phase packet (length word included). Throws RangeError on malformed input. */
export function readUntypedPacket(pkt: Buffer): UntypedPacket {
  if (pkt.length < 8) throw new RangeError('startup packet too short');
  const code = pkt.readInt32BE(4);
  if (code === SSL_REQUEST_CODE && pkt.length === 8) return { kind: 'ssl' };
  if (code === GSSENC_REQUEST_CODE && pkt.length === 8) return { kind: 'gssenc' };
  if (code === CANCEL_REQUEST_CODE) {
    if (pkt.length !== 16) throw new RangeError('cancel request has the wrong length');
    return { kind: 'cancel', pid: pkt.readInt32BE(8), secret: pkt.readInt32BE(12) };
  }
  const major = code >>> 16;
  const minor = code & 0xffff;
  const params = new Map<string, string>();
  const r = new BodyReader(pkt, 8);
  if (major === 3) {
    for (;;) {
      if (r.remaining === 0) throw new RangeError('startup packet lacks its terminator');
      const name = r.cstring();
      if (name === '') break;
      params.set(name, r.cstring());
    }
    if (r.remaining !== 0) throw new RangeError('trailing bytes after the startup packet');
  }
  return { kind: 'startup', major, minor, params };
}

/** Authentication request subtype ('R' messages) and its payload. */
export function readAuthentication(msg: Buffer): { code: number; data: Buffer } {
  const code = msg.readInt32BE(5);
  return { code, data: Buffer.from(msg.subarray(9)) };
}

export function readParameterStatus(msg: Buffer): [string, string] {
  const r = new BodyReader(msg, 5);
  return [r.cstring(), r.cstring()];
}

export function readBackendKeyData(msg: Buffer): { pid: number; secret: number } {
  return { pid: msg.readInt32BE(5), secret: msg.readInt32BE(9) };
}

export function readReadyForQuery(msg: Buffer): TxStatus {
  return String.fromCharCode(msg[5]!) as TxStatus;
}

/** Fields of an ErrorResponse or NoticeResponse, keyed by their one-letter codes. */
export function readErrorFields(msg: Buffer): Map<string, string> {
  const out = new Map<string, string>();
  let off = 5;
  while (off < msg.length && msg[off] !== 0) {
    const code = String.fromCharCode(msg[off]!);
    const end = msg.indexOf(0, off + 1);
    if (end < 0) break;
    out.set(code, msg.toString('utf8', off + 1, end));
    off = end + 1;
  }
  return out;
}

/** The password message body: for SASLInitialResponse, mechanism + data; otherwise the raw body. */
export function readSASLInitialResponse(msg: Buffer): { mechanism: string; data: Buffer } {
  const r = new BodyReader(msg, 5);
  const mechanism = r.cstring();
  const len = r.int32();
  const data = len < 0 ? Buffer.alloc(0) : r.bytes(len);
  return { mechanism, data };
}

export function readPasswordString(msg: Buffer): string {
  return new BodyReader(msg, 5).cstring();
}

/** Bytes of every DataRow column (null for SQL NULL), as copies. */
export function readDataRowBytes(msg: Buffer): (Buffer | null)[] {
  const n = msg.readInt16BE(5);
  const out: (Buffer | null)[] = [];
  let off = 7;
  for (let i = 0; i < n; i++) {
    const len = msg.readInt32BE(off);
    off += 4;
    if (len < 0) out.push(null);
    else {
      out.push(Buffer.from(msg.subarray(off, off + len)));
      off += len;
    }
  }
  return out;
}

/** Text of every DataRow column (null for SQL NULL). */
export function readDataRow(msg: Buffer): (string | null)[] {
  return readDataRowBytes(msg).map((b) => (b === null ? null : b.toString('utf8')));
}

/** Offset of the NUL ending the string that starts at off; RangeError when there is none. */
function cstringEnd(msg: Buffer, off: number): number {
  const end = msg.indexOf(0, off);
  if (end < 0) throw new RangeError('unterminated string');
  return end;
}

export interface ParseMessage {
  name: string;
  sql: string;
  /** Parameter type OIDs as sent (0 = unspecified). */
  paramTypes: number[];
}

export function readParse(msg: Buffer): ParseMessage {
  const nameEnd = cstringEnd(msg, 5);
  const sqlEnd = cstringEnd(msg, nameEnd + 1);
  let off = sqlEnd + 1;
  if (off + 2 > msg.length) throw new RangeError('truncated message');
  const n = msg.readInt16BE(off);
  off += 2;
  if (n < 0 || off + 4 * n > msg.length) throw new RangeError('truncated message');
  const paramTypes: number[] = [];
  for (let i = 0; i < n; i++) paramTypes.push(msg.readUInt32BE(off + 4 * i));
  return { name: msg.toString('utf8', 5, nameEnd), sql: msg.toString('utf8', nameEnd + 1, sqlEnd), paramTypes };
}

/** The statement name a Bind refers to. */
export function readBindStatement(msg: Buffer): string {
  const p = cstringEnd(msg, 5);
  return msg.toString('utf8', p + 1, cstringEnd(msg, p + 1));
}

/** Describe and Close: 'S' (statement) or 'P' (portal), and the name. */
export function readTarget(msg: Buffer): { kind: number; name: string } {
  if (msg.length < 7) throw new RangeError('truncated message');
  return { kind: msg[5]!, name: msg.toString('utf8', 6, cstringEnd(msg, 6)) };
}

/** The SQL text of a simple Query message. */
export function readQuery(msg: Buffer): string {
  return msg.toString('utf8', 5, cstringEnd(msg, 5));
}

/** NotificationResponse: the notifying backend's pid, the channel and the payload. */
export function readNotification(msg: Buffer): { pid: number; channel: string; payload: string } {
  if (msg.length < 11) throw new RangeError('truncated message');
  const chEnd = cstringEnd(msg, 9);
  return { pid: msg.readInt32BE(5), channel: msg.toString('utf8', 9, chEnd), payload: msg.toString('utf8', chEnd + 1, cstringEnd(msg, chEnd + 1)) };
}

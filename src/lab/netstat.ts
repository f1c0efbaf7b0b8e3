/**
 * The parser of `netstat -tanoe` output (net-tools; `-p` optional), into the same SsSocket
 * shape as ss.ts gives, for hosts where ss is missing. netstat reads /proc/net/tcp and tcp6, so
 * it has states, queues, timers, uid and inode, but no TCP info (`details` is null), no socket
 * cookie and no shutdown marks.
 *
 * A line, with its columns as net-tools 2.10 prints them (netstat.c, tcp_do_one):
 *
 *   tcp   0   0 127.0.0.1:7000   127.0.0.1:39782   ESTABLISHED 0   492201   4/python3   keepalive (7198.38/0/0)
 *   proto rq  sq local           foreign           state       uid inode    (-p)        timer (-o)
 *
 * What differs from ss, and is mapped here so that keys and states compare:
 * - States are TIME_WAIT, FIN_WAIT1...: mapped to ss's names; CLOSE is ss's UNCONN.
 * - `tcp6` lines print an IPv4-mapped address without its `::ffff:` (net-tools strips it):
 *   `198.18.0.10:7010` on a tcp6 line is ss's `[::ffff:198.18.0.10]:7010`.
 * - The timer `kind (seconds left/retransmits/keepalive probes)`, seconds in 1/100: `on`,
 *   `keepalive`, `timewait`, `probe` (ss's `persist`: the zero-window probe timer), `off`
 *   (no timer: null), `unkn-N`. The count is the retransmits for `on`, the probes for
 *   `keepalive` and `probe`, as ss reports them (both come from the same icsk fields).
 * - `-p` gives one process per socket (the first found in /proc), as `PID/name`, the name cut
 *   to fit 19 characters with the PID; no fd (ProcessRef.fd is -1).
 * - Without `-W` netstat cuts an address and port longer than 22 characters to fit its column
 *   (addr_do_one): `2001:db8:1234:5678::1:36214` prints as `2001:db8:1234:567:36214`, a wrong
 *   address. A tcp6 endpoint of exactly 23 characters may be cut: it is refused, unless the
 *   options say the text came from `netstat -W`.
 * - Outside the C locale net-tools translates the state names: run it with LC_ALL=C.
 */
import type { Endpoint, ProcessRef, Rejected, SocketTimer, SsParse, SsSocket, TcpState } from './ss';

export interface NetstatOptions {
  /** The text came from `netstat -W` (--wide), which never cuts addresses short. */
  wide?: boolean;
}

const STATES = new Map<string, TcpState>([
  ['ESTABLISHED', 'ESTAB'], ['SYN_SENT', 'SYN-SENT'], ['SYN_RECV', 'SYN-RECV'], ['FIN_WAIT1', 'FIN-WAIT-1'],
  ['FIN_WAIT2', 'FIN-WAIT-2'], ['TIME_WAIT', 'TIME-WAIT'], ['CLOSE', 'UNCONN'], ['CLOSE_WAIT', 'CLOSE-WAIT'],
  ['LAST_ACK', 'LAST-ACK'], ['LISTEN', 'LISTEN'], ['CLOSING', 'CLOSING'],
]);

const TIMER_KINDS = new Map<string, SocketTimer['kind'] | null>([
  ['off', null], ['on', 'on'], ['keepalive', 'keepalive'], ['timewait', 'timewait'], ['probe', 'persist'],
]);

/** The columns after State, from the header line; without one, `-tanoe` with an optional `-p`. */
interface Layout {
  userInode: boolean;
  program: boolean | 'maybe';
  timer: boolean | 'maybe';
}

const DEFAULT_LAYOUT: Layout = { userInode: true, program: 'maybe', timer: 'maybe' };

/** Parses `netstat -tan[oep]` output (with or without its two header lines). Never throws. */
export function parseNetstat(text: string, options: NetstatOptions = {}): SsParse {
  const sockets: SsSocket[] = [];
  const rejected: Rejected[] = [];
  let layout = DEFAULT_LAYOUT;
  for (let pos = 0; pos < text.length;) {
    let nl = text.indexOf('\n', pos);
    if (nl < 0) nl = text.length;
    const line = text.slice(pos, nl).trim();
    pos = nl + 1;
    if (line === '' || line.startsWith('Active Internet connections') || line.startsWith('(')) continue;
    if (line.startsWith('Proto ')) {
      layout = {
        userInode: / User +Inode/.test(line),
        program: line.includes('PID/Program name'),
        timer: line.endsWith(' Timer'),
      };
      continue;
    }
    const s = parseLine(line, layout, options.wide === true);
    if (typeof s === 'string') rejected.push({ line: line.slice(0, 200), reason: s });
    else sockets.push(s);
  }
  return { sockets, rejected };
}

/** The six first columns, found in one native match: netstat pads them with many spaces. */
const COLUMNS = /^(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s*/;

function parseLine(line: string, layout: Layout, wide: boolean): SsSocket | string {
  // Proto, Recv-Q, Send-Q, Local Address, Foreign Address, State.
  const m = COLUMNS.exec(line);
  if (!m) return 'fewer than 6 columns (Proto, Recv-Q, Send-Q, Local Address, Foreign Address, State)';
  const [all, proto, rq, sq, localText, peerText, stateText] = m as unknown as [string, string, string, string, string, string, string];
  const i = all.length;
  const family = proto === 'tcp' ? 4 : proto === 'tcp6' ? 6 : null;
  if (family === null) return `not a TCP line (${proto.slice(0, 20)})`;
  if (!DIGITS.test(rq) || !DIGITS.test(sq)) return 'Recv-Q or Send-Q not a number';
  const local = netstatEndpoint(localText, family, wide);
  if (typeof local === 'string') return `local address ${local}`;
  const peer = netstatEndpoint(peerText, family, wide);
  if (typeof peer === 'string') return `foreign address ${peer}`;
  const state = STATES.get(stateText);
  if (!state) return `unknown state ${stateText.slice(0, 20)} (outside the C locale netstat translates them: run it with LC_ALL=C)`;

  // The timer is the last column and the only one ending with ')': `kind (secs/retr/probes)`.
  let rest = line.slice(i).trim();
  let timer: SocketTimer | null = null;
  const open = rest.endsWith(')') ? rest.lastIndexOf(' (') : -1;
  if (open >= 0 && layout.timer !== false) {
    const kindStart = rest.lastIndexOf(' ', open - 1) + 1;
    const t = netstatTimer(rest.slice(kindStart, open), rest.slice(open + 2, -1));
    if (typeof t !== 'string') {
      timer = t;
      rest = rest.slice(0, kindStart).trimEnd();
    } else if (layout.timer === true) return t;
    // Without a header, a program name may end with `)` too: then there is no timer.
  } else if (layout.timer === true) return 'no Timer column (kind (seconds/retransmits/probes))';

  let uid = 0;
  let inode: number | null = null;
  if (layout.userInode) {
    const m = USER_INODE.exec(rest);
    if (!m) return 'no User and Inode columns';
    if (!DIGITS.test(m[1]!)) return `User ${m[1]!.slice(0, 20)} is a name, not a uid (run netstat with -n)`;
    if (!DIGITS.test(m[2]!)) return 'Inode not a number';
    uid = Number(m[1]);
    inode = Number(m[2]);
    rest = m[3]!;
  }

  const processes: ProcessRef[] = [];
  if (rest !== '' && layout.program !== false) {
    // `PID/name`, the name as net-tools cut it (it may hold spaces); `-` when it found none.
    if (rest !== '-') {
      const m = /^(\d+)\/(.*)$/.exec(rest);
      if (!m) return `PID/Program name unreadable: ${rest.slice(0, 40)}`;
      processes.push({ name: m[2]!, pid: Number(m[1]), fd: -1 });
    }
  } else if (rest !== '') return `unexpected columns: ${rest.slice(0, 40)}`;

  return {
    state, recvQ: Number(rq), sendQ: Number(sq), local, peer,
    timer, uid, inode, sk: null, shutdown: null, processes, details: null,
  };
}

/** `127.0.0.1:7000`, `0.0.0.0:*`, `::1:7002`, `:::*`; on tcp6, `198.18.0.10:7010` is IPv4-mapped. */
function netstatEndpoint(text: string, family: 4 | 6, wide: boolean): Endpoint | string {
  const colon = text.lastIndexOf(':');
  if (colon <= 0) return `${text.slice(0, 60)} has no port`;
  const portText = text.slice(colon + 1);
  let port: number | null = null;
  if (portText !== '*') {
    port = /^\d{1,5}$/.test(portText) ? Number(portText) : NaN;
    if (!(port <= 65535)) return `${text.slice(0, 60)}: bad port`;
  }
  const host = text.slice(0, colon);
  if (IPV4.test(host)) return { address: family === 6 ? `::ffff:${host}` : host, port, family };
  if (family === 4) return `${text.slice(0, 60)} is not an IPv4 address`;
  if (!isIpv6(host)) return `${text.slice(0, 60)} is not a whole IPv6 address (netstat cuts long addresses unless run with -W)`;
  if (!wide && text.length === 23) return `${text} may be cut short (23 characters: netstat cuts longer ones unless run with -W)`;
  return { address: host, port, family: 6 };
}

const IPV4 = /^\d{1,3}(?:\.\d{1,3}){3}$/;
const DIGITS = /^\d+$/;
const USER_INODE = /^(\S+) +(\S+) *(.*)$/;

/**
 * inet_ntop's IPv6 text: 8 groups of 1 to 4 hex digits, or fewer around one `::`; the last 32
 * bits may be an IPv4 address. A cut address fails this most of the time (`2001:db8:1234:567`).
 */
function isIpv6(text: string): boolean {
  let groups = 0;
  let digits = 0;
  let gap = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x3a) {
      if (text.charCodeAt(i + 1) === 0x3a) {
        if (gap) return false;
        gap = true;
        if (digits) groups++;
        digits = 0;
        i++;
        if (i + 1 === text.length) return groups <= 7;
        continue;
      }
      if (digits === 0) return false;
      groups++;
      digits = 0;
    } else if (c === 0x2e) {
      // An IPv4 address ends the text: two groups' worth.
      const start = text.lastIndexOf(':', i) + 1;
      if (start === 0 || !IPV4.test(text.slice(start))) return false;
      groups += 2;
      return gap ? groups <= 7 : groups === 8;
    } else if ((c >= 0x30 && c <= 0x39) || ((c | 0x20) >= 0x61 && (c | 0x20) <= 0x66)) {
      if (++digits > 4) return false;
    } else return false;
  }
  if (digits) groups++;
  else if (!gap || !text.endsWith('::')) return false;
  return gap ? groups <= 7 : groups === 8;
}

/** The -o column: `on (0.20/1/0)` and the like; null for `off`. */
function netstatTimer(kindText: string, numbers: string): SocketTimer | null | string {
  const kind = /^unkn-\d+$/.test(kindText) ? 'unknown' : TIMER_KINDS.get(kindText);
  if (kind === undefined) return `timer: unknown kind ${kindText.slice(0, 20)}`;
  const m = /^(\d+)\.(\d{2})\/(\d+)\/(\d+)$/.exec(numbers);
  if (!m) return `timer: not (seconds/retransmits/probes): ${numbers.slice(0, 40)}`;
  if (kind === null) return null;
  // Seconds with two decimals (1/100 s, USER_HZ): exact in whole ms.
  const ms = Number(m[1]) * 1000 + Number(m[2]) * 10;
  const count = kind === 'keepalive' || kind === 'persist' ? Number(m[4]) : Number(m[3]);
  return { kind, ms, count };
}

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { labEnv } from './exec';
import { silentLogger } from './log';
import { fuzzInputs } from '../../test/support/fuzz';
import { parseNetstat } from './netstat';
import { Sandbox } from './sandbox';
import { connectionKey, parseSs, type SsSocket } from './ss';

const fixture = (name: string) => readFileSync(join(__dirname, 'fixtures', name), 'utf8');
const summary = (s: SsSocket) => `${s.state} ${connectionKey(s)}`;

/**
 * Builds one of each socket the lab meets, in a namespace where the caller has added SOCKETS_RULES:
 * listeners (IPv4, IPv6, dual-stack), ESTAB with a keepalive timer and with unanswered keepalive
 * probes, TIME-WAIT, FIN-WAIT-2 and CLOSE-WAIT, a SYN-SENT whose SYN is dropped, a sender blocked
 * by a zero window (persist timer), IPv6 with unread data, IPv4 to the dual-stack listener.
 * With `children`, a second process shares every socket and has a listener of its own; its comm
 * (what ss prints) and argv[0] (what netstat prints) hold spaces, quotes and parentheses.
 * Prints `ready` when all is in place; sleeps until killed. The fixtures netstat-*.txt and
 * ss-tanoiep-shared.txt were captured from it, in a lab namespace, on kernel 6.18 with
 * iproute2 6.1 and net-tools 2.10.
 */
const SOCKETS_PY = String.raw`
import ctypes, os, socket, sys, time
A4, A6, ST = socket.AF_INET, socket.AF_INET6, socket.SOL_SOCKET

def listen(family, addr, port, rcvbuf=0, v6only=True):
    s = socket.socket(family, socket.SOCK_STREAM)
    s.setsockopt(ST, socket.SO_REUSEADDR, 1)
    if family == A6:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1 if v6only else 0)
    if rcvbuf:
        s.setsockopt(ST, socket.SO_RCVBUF, rcvbuf)
    s.bind((addr, port))
    s.listen(16)
    return s

def pair(listener, addr, port):
    c = socket.create_connection((addr, port))
    return c, listener.accept()[0]

keep = []
l4 = listen(A4, '127.0.0.1', 7000)
l6 = listen(A6, '::1', 7002)
dual = listen(A6, '::', 7006, v6only=False)
lp = listen(A4, '127.0.0.1', 7003, rcvbuf=2048)
lk = listen(A4, '127.0.0.1', 7007)
keep += [l4, l6, dual, lp, lk]

c, a = pair(l4, '127.0.0.1', 7000)
c.setsockopt(ST, socket.SO_KEEPALIVE, 1)
keep += [c, a]

c, a = pair(l4, '127.0.0.1', 7000)
c.close()
time.sleep(0.05)
a.close()

c, a = pair(l4, '127.0.0.1', 7000)
c.shutdown(socket.SHUT_WR)
keep += [c, a]

c, a = pair(l6, '::1', 7002)
c.sendall(b'x' * 10)
keep += [c, a]

keep += pair(dual, '127.0.0.1', 7006)

s = socket.socket()
s.setblocking(False)
s.connect_ex(('127.0.0.1', 7001))
keep.append(s)

c = socket.socket()
c.setsockopt(ST, socket.SO_SNDBUF, 4096)
c.connect(('127.0.0.1', 7003))
keep += [c, lp.accept()[0]]
c.setblocking(False)
try:
    while True:
        c.send(b'y' * 65536)
except BlockingIOError:
    pass

c, a = pair(lk, '127.0.0.1', 7007)
c.setsockopt(ST, socket.SO_KEEPALIVE, 1)
c.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 1)
c.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 1)
c.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 100)
keep += [c, a]

if 'children' in sys.argv:
    r, w = os.pipe()
    os.set_inheritable(w, True)
    for x in keep:
        os.set_inheritable(x.fileno(), True)
    child = '''
import ctypes, os, socket, sys, time
ctypes.CDLL(None).prctl(15, b'a "b" (c) d', 0, 0, 0)
s = socket.socket()
s.bind(('127.0.0.1', 7005))
s.listen()
os.write(int(sys.argv[1]), b'.')
time.sleep(3600)
'''
    if os.fork() == 0:
        # argv[0] is not a path: Python then needs PYTHONHOME to find its library.
        env = dict(os.environ, PYTHONHOME=sys.base_prefix + ':' + sys.base_exec_prefix)
        os.execve(sys.executable, ['my "srv" (v2)', '-c', child, str(w)], env)
    os.read(r, 1)

time.sleep(2.5)
print('ready', flush=True)
time.sleep(3600)
`;

/** SYNs to 7001 vanish; 7007's server answers nothing after the handshake (keepalive probes go unanswered). */
const SOCKETS_RULES = [
  ['-A', 'INPUT', '-p', 'tcp', '--dport', '7001', '-j', 'DROP'],
  ['-A', 'INPUT', '-p', 'tcp', '--sport', '7007', '!', '--tcp-flags', 'SYN', 'SYN', '-j', 'DROP'],
];

/** The sockets of netstat-tanoe.txt, as ss names them; ss-tanoe.txt is ss's view of the same, a second later. */
const CAPTURED = [
  'LISTEN 127.0.0.1:7000>0.0.0.0:*',
  'LISTEN 127.0.0.1:7003>0.0.0.0:*',
  'LISTEN 127.0.0.1:7005>0.0.0.0:*',
  'LISTEN 127.0.0.1:7007>0.0.0.0:*',
  'ESTAB 127.0.0.1:7007>127.0.0.1:60820',
  'SYN-SENT 127.0.0.1:58866>127.0.0.1:7001',
  'CLOSE-WAIT 127.0.0.1:7000>127.0.0.1:41030',
  'ESTAB 127.0.0.1:52344>127.0.0.1:7006',
  'ESTAB 127.0.0.1:7000>127.0.0.1:41004',
  'ESTAB 127.0.0.1:60820>127.0.0.1:7007',
  'ESTAB 127.0.0.1:33218>127.0.0.1:7003',
  'ESTAB 127.0.0.1:41004>127.0.0.1:7000',
  'TIME-WAIT 127.0.0.1:41016>127.0.0.1:7000',
  'FIN-WAIT-2 127.0.0.1:41030>127.0.0.1:7000',
  'ESTAB 127.0.0.1:7003>127.0.0.1:33218',
  'LISTEN [::1]:7002>[::]:*',
  'LISTEN [::]:7006>[::]:*',
  'ESTAB [::1]:59416>[::1]:7002',
  'ESTAB [::ffff:127.0.0.1]:7006>[::ffff:127.0.0.1]:52344',
  'ESTAB [::1]:7002>[::1]:59416',
];

test('real netstat -tanoe: states, addresses, timers, uid and inode as ss names them', () => {
  const { sockets, rejected } = parseNetstat(fixture('netstat-tanoe.txt'));
  assert.deepEqual(rejected, []);
  assert.deepEqual(sockets.map(summary), CAPTURED);
  const at = (k: string) => sockets.find((s) => connectionKey(s) === k)!;
  const synSent = at('127.0.0.1:58866>127.0.0.1:7001');
  assert.deepEqual(synSent.timer, { kind: 'on', ms: 480, count: 2 }, 'on (0.48/2/0): two SYNs retransmitted so far');
  assert.equal(synSent.sendQ, 1, 'the SYN counts as one byte in Send-Q');
  assert.deepEqual(at('127.0.0.1:60820>127.0.0.1:7007').timer, { kind: 'keepalive', ms: 470, count: 2 }, 'keepalive (0.47/0/2): two probes unanswered');
  assert.deepEqual(at('127.0.0.1:41004>127.0.0.1:7000').timer, { kind: 'keepalive', ms: 7_197_380, count: 0 }, 'the default 2 h idle');
  assert.deepEqual(at('127.0.0.1:33218>127.0.0.1:7003').timer, { kind: 'persist', ms: 660, count: 0 }, 'netstat calls the zero-window probe timer "probe"');
  assert.equal(at('127.0.0.1:33218>127.0.0.1:7003').sendQ, 6144);
  const timeWait = at('127.0.0.1:41016>127.0.0.1:7000');
  assert.deepEqual(timeWait.timer, { kind: 'timewait', ms: 57_430, count: 0 });
  assert.equal(timeWait.inode, 0, 'a TIME-WAIT socket has no inode');
  const listener = at('127.0.0.1:7000>0.0.0.0:*');
  assert.equal(listener.timer, null, '"off" is no timer');
  assert.equal(listener.sendQ, 0, 'netstat prints 0 where ss prints the backlog (16)');
  assert.equal(listener.uid, 0);
  assert.equal(listener.inode, 1_709_016);
  assert.equal(listener.details, null);
  assert.deepEqual(listener.processes, []);
  assert.equal(at('[::1]:7002>[::1]:59416').recvQ, 10, 'ten bytes unread');
  assert.deepEqual(at('[::]:7006>[::]:*').local, { address: '::', port: 7006, family: 6 });
  assert.deepEqual(at('[::ffff:127.0.0.1]:7006>[::ffff:127.0.0.1]:52344').peer,
    { address: '::ffff:127.0.0.1', port: 52344, family: 6 }, 'printed as 127.0.0.1 on a tcp6 line');
});

test('real captures of one socket set: netstat and ss agree but for the dual-stack listener', () => {
  const viaSs = parseSs(fixture('ss-tanoe.txt'));
  assert.deepEqual(viaSs.rejected, []);
  const ssView = viaSs.sockets.map((s) => `${summary(s)} ${s.timer?.kind ?? '-'}`);
  const nsView = parseNetstat(fixture('netstat-tanoe.txt')).sockets.map((s) => `${summary(s)} ${s.timer?.kind ?? '-'}`);
  assert.deepEqual(ssView.filter((x) => !nsView.includes(x)), ['LISTEN *:7006>*:* -']);
  assert.deepEqual(nsView.filter((x) => !ssView.includes(x)), ['LISTEN [::]:7006>[::]:* -']);
});

test('real netstat -tanoep: one process per socket, a name with spaces, quotes and parentheses', () => {
  const { sockets, rejected } = parseNetstat(fixture('netstat-tanoep.txt'));
  assert.deepEqual(rejected, []);
  assert.deepEqual(sockets.map(summary), CAPTURED);
  const own = sockets.find((s) => s.local.port === 7005)!;
  assert.deepEqual(own.processes, [{ name: 'my "srv" (v2)', pid: 46, fd: -1 }], 'argv[0], spaces and all; netstat prints no fd');
  const shared = sockets.find((s) => connectionKey(s) === '127.0.0.1:7000>0.0.0.0:*')!;
  assert.deepEqual(shared.processes, [{ name: 'python3', pid: 5, fd: -1 }], 'two processes hold it; netstat names the first it finds');
  assert.deepEqual(sockets.find((s) => s.state === 'TIME-WAIT')!.processes, [], '"-": no process');
});

test('timers: kind, time left and the count ss would give', () => {
  const line = (timer: string) => `tcp        0      0 10.0.0.2:80             10.0.0.1:4000           ESTABLISHED 1000       4242       ${timer}`;
  const timerOf = (t: string) => {
    const r = parseNetstat(line(t));
    assert.deepEqual(r.rejected, [], t);
    return r.sockets[0]!.timer;
  };
  assert.deepEqual(timerOf('on (0.20/1/0)'), { kind: 'on', ms: 200, count: 1 });
  assert.deepEqual(timerOf('keepalive (7195.55/0/2)'), { kind: 'keepalive', ms: 7_195_550, count: 2 });
  assert.deepEqual(timerOf('timewait (59.93/0/0)'), { kind: 'timewait', ms: 59_930, count: 0 });
  assert.deepEqual(timerOf('probe (1.65/0/3)'), { kind: 'persist', ms: 1650, count: 3 });
  assert.deepEqual(timerOf('unkn-7 (1.00/2/0)'), { kind: 'unknown', ms: 1000, count: 2 });
  assert.equal(timerOf('off (0.00/0/0)'), null);
  assert.equal(parseNetstat(line('off (0.00/0/0)')).sockets[0]!.uid, 1000);
});

test('every state netstat prints maps to ss\'s name', () => {
  const states: Record<string, string> = {
    ESTABLISHED: 'ESTAB', SYN_SENT: 'SYN-SENT', SYN_RECV: 'SYN-RECV', FIN_WAIT1: 'FIN-WAIT-1', FIN_WAIT2: 'FIN-WAIT-2',
    TIME_WAIT: 'TIME-WAIT', CLOSE: 'UNCONN', CLOSE_WAIT: 'CLOSE-WAIT', LAST_ACK: 'LAST-ACK', LISTEN: 'LISTEN', CLOSING: 'CLOSING',
  };
  for (const [netstat, ss] of Object.entries(states)) {
    const r = parseNetstat(`tcp 0 0 127.0.0.1:1 127.0.0.1:2 ${netstat} 0 1 off (0.00/0/0)`);
    assert.equal(r.sockets[0]?.state, ss, netstat);
  }
});

test('IPv6 addresses netstat cut short are refused; with -W they are whole', () => {
  // Captured in a namespace with 2001:db8:1234:5678::1 on lo: a listener on it and a connection to it.
  const cut = parseNetstat(fixture('netstat-tanoe-ipv6-cut.txt'));
  assert.deepEqual(cut.sockets.map(summary), ['LISTEN [::]:7010>[::]:*']);
  assert.deepEqual(cut.rejected.map((r) => r.reason), [
    'local address 2001:db8:1234:5678:7011 is not a whole IPv6 address (netstat cuts long addresses unless run with -W)',
    'local address 2001:db8:1234:5678:7011 is not a whole IPv6 address (netstat cuts long addresses unless run with -W)',
    'local address 2001:db8:1234:567:60756 is not a whole IPv6 address (netstat cuts long addresses unless run with -W)',
  ]);
  const wide = parseNetstat(fixture('netstat-tanoeW-ipv6.txt'), { wide: true });
  assert.deepEqual(wide.rejected, []);
  assert.deepEqual(wide.sockets.map(summary), [
    'LISTEN [2001:db8:1234:5678::1]:7011>[::]:*',
    'LISTEN [::]:7010>[::]:*',
    'ESTAB [2001:db8:1234:5678::1]:7011>[2001:db8:1234:5678::1]:60756',
    'ESTAB [2001:db8:1234:5678::1]:60756>[2001:db8:1234:5678::1]:7011',
  ]);
  // Exactly 23 characters: whole or cut, netstat does not say. Without -W it is refused.
  const exact = 'tcp6       0      0 2001:db8::1234:5678:443 :::*                    LISTEN      0          1          off (0.00/0/0)';
  assert.match(parseNetstat(exact).rejected[0]?.reason ?? '', /may be cut short/);
  assert.equal(parseNetstat(exact, { wide: true }).sockets[0]?.local.address, '2001:db8::1234:5678');
});

test('the header decides the columns; without it, -tanoe with an optional -p', () => {
  const noTimer = [
    'Proto Recv-Q Send-Q Local Address           Foreign Address         State       User       Inode      PID/Program name    ',
    'tcp        0      0 127.0.0.1:7000          0.0.0.0:*               LISTEN      0          408801     31/nginx: worker (x)',
  ].join('\n');
  const r = parseNetstat(noTimer);
  assert.deepEqual(r.rejected, []);
  assert.equal(r.sockets[0]!.timer, null);
  assert.deepEqual(r.sockets[0]!.processes, [{ name: 'nginx: worker (x)', pid: 31, fd: -1 }]);
  const plain = parseNetstat('Proto Recv-Q Send-Q Local Address           Foreign Address         State      \ntcp        0      0 127.0.0.1:7000          0.0.0.0:*               LISTEN     ');
  assert.deepEqual(plain.rejected, []);
  assert.equal(plain.sockets[0]!.inode, null);
  const headless = parseNetstat('tcp        0      0 127.0.0.1:7000          0.0.0.0:*               LISTEN      0          408801     31/python3           off (0.00/0/0)');
  assert.deepEqual(headless.sockets[0]!.processes, [{ name: 'python3', pid: 31, fd: -1 }]);
});

test('malformed lines are rejected with a reason, the good ones around them kept', () => {
  const text = [
    'Active Internet connections (servers and established)',
    'Proto Recv-Q Send-Q Local Address           Foreign Address         State       User       Inode      Timer',
    'tcp        0      0 127.0.0.1:1             127.0.0.1:2             ESTABLISHED 0          11         off (0.00/0/0)',
    'udp        0      0 127.0.0.1:53            0.0.0.0:*                           0          12         off (0.00/0/0)',
    'tcp        x      0 127.0.0.1:1             127.0.0.1:2             ESTABLISHED 0          13         off (0.00/0/0)',
    'tcp        0      0 127.0.0.1:1             127.0.0.1:2             VERBUNDEN   0          14         off (0.00/0/0)',
    'tcp        0      0 localhost:1             127.0.0.1:2             ESTABLISHED 0          15         off (0.00/0/0)',
    'tcp        0      0 127.0.0.1:1             127.0.0.1:2             ESTABLISHED root       16         off (0.00/0/0)',
    'tcp        0      0 127.0.0.1:1             127.0.0.1:2             ESTABLISHED 0          17         soon (1.00/0/0)',
    'tcp        0      0 127.0.0.1:1             127.0.0.1:2             ESTABLISHED 0          18',
    'tcp        0      0 127.0.0.1:1',
    'tcp        0      0 127.0.0.1:7000          0.0.0.0:*               LISTEN      0          19         off (0.00/0/0)',
  ].join('\n');
  const { sockets, rejected } = parseNetstat(text);
  assert.deepEqual(sockets.map((s) => s.inode), [11, 19]);
  assert.deepEqual(rejected.map((r) => r.reason.replace(/ \(.*$/, '').replace(/:.*$/, '')), [
    'not a TCP line',
    'Recv-Q or Send-Q not a number',
    'unknown state VERBUNDEN',
    'local address localhost',
    'User root is a name, not a uid',
    'timer',
    'no Timer column',
    'fewer than 6 columns',
  ]);
});

test('fuzz: random, truncated and mutated lines never throw', () => {
  const real = `${fixture('netstat-tanoe.txt')}\n${fixture('netstat-tanoep.txt')}\n${fixture('netstat-tanoe-ipv6-cut.txt')}`.split('\n');
  const alphabet = 'tcp6 ESTABLISHED LISTEN_TIME_WAIT:()[].%*/0123456789abcdef\t "-onkeepalive\u00e9\u4e2d';
  let parsed = 0;
  let i = 0;
  for (const line of fuzzInputs((rand) => real[Math.floor(rand() * real.length)]!, alphabet, { count: 5000, seed: 4242, maxRandom: 160 })) {
    i++;
    const r = parseNetstat(line, { wide: i % 2 === 0 });
    parsed += r.sockets.length;
    for (const s of r.sockets) {
      assert.ok(Number.isInteger(s.recvQ) && Number.isInteger(s.sendQ), line);
      if (s.timer) assert.ok(Number.isFinite(s.timer.ms) && s.timer.ms >= 0, line);
    }
  }
  assert.ok(parsed > 100, 'some truncated and mutated real lines still parse');
});

test('live: ss -tanoe and netstat -tanoe see the same sockets, states and timer kinds', { timeout: 60_000 }, async (t) => {
  for (const tool of ['ss', 'netstat', 'python3', 'iptables', 'unshare', 'nsenter']) {
    if (spawnSync('which', [tool], { env: labEnv(), stdio: 'ignore' }).status !== 0) return t.skip(`${tool} is not installed`);
  }
  let sandbox: Sandbox;
  try {
    sandbox = await Sandbox.create({ log: silentLogger, label: 'netstat-test' });
  } catch (error) {
    return t.skip(`no namespace: ${(error as Error).message}`);
  }
  try {
    for (const rule of SOCKETS_RULES) await sandbox.exec(['iptables', '-w', '5', ...rule]);
    const argv = sandbox.enter(['python3', '-c', SOCKETS_PY]);
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], env: labEnv() });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (d: string) => { stderr += d; });
    const ready = await new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), 20_000);
      createInterface({ input: child.stdout }).on('line', (l) => { if (l === 'ready') { clearTimeout(timer); resolve(true); } });
      child.once('exit', () => { clearTimeout(timer); resolve(false); });
    });
    assert.ok(ready, `the socket builder did not get ready: ${stderr.slice(-2000)}`);
    const ss = parseSs((await sandbox.exec(['env', 'LC_ALL=C', 'ss', '-tanoe'])).stdout);
    const ns = parseNetstat((await sandbox.exec(['env', 'LC_ALL=C', 'netstat', '-tanoe'])).stdout);
    child.kill('SIGKILL');
    assert.deepEqual(ss.rejected, []);
    assert.deepEqual(ns.rejected, []);
    // ss prints `*` for a dual-stack listener's address; netstat cannot tell it from a v6-only
    // one and prints `::` (/proc/net/tcp6 has no such flag). Everything else must agree.
    const dualStack = (s: SsSocket): SsSocket => (s.local.family === null ? { ...s, local: { address: '::', port: s.local.port, family: 6 }, peer: { address: '::', port: null, family: 6 } } : s);
    const view = (list: SsSocket[]) => list.map((s) => `${summary(s)} ${s.timer?.kind ?? 'no timer'}`).sort();
    assert.deepEqual(view(ns.sockets), view(ss.sockets.map(dualStack)));
    const kinds = new Set<string>(ns.sockets.map((s) => s.timer?.kind ?? 'none'));
    for (const k of ['on', 'keepalive', 'timewait', 'persist', 'none']) assert.ok(kinds.has(k), `a ${k} timer among ${[...kinds].join(', ')}`);
    t.diagnostic(`${ns.sockets.length} sockets agree: ${[...kinds].join(', ')}`);
  } finally {
    await sandbox.dispose();
  }
});

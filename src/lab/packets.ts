import { spawn, type ChildProcessByStdio } from 'node:child_process';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { measureClockOffset, toMonotonic, type ClockOffset } from './clock';
import { LabError } from './errors';
import { installHint, labEnv } from './exec';
import type { Logger } from './log';
import { PacketClassifier } from './packetClassify';
import { decodeFrame, type Packet } from './packetDecode';
import { MAX_RECORD, PcapReader, type PcapRecord } from './pcap';
import { missingTools } from './preflight';
import { firstChild, type Sandbox } from './sandbox';
import { samplesDir } from './samples';
import type { TimelineEvent } from './timeline';

/**
 * Packets on the timeline. A capturer inside the lab's namespace (tcpdump, or
 * samples/python/capture.py on an AF_PACKET socket where tcpdump cannot run) writes a pcap
 * stream on stdout; pcap.ts reads it in whatever pieces it arrives, packetDecode.ts decodes
 * TCP and the ICMP errors that quote a TCP header, and packetClassify.ts classifies each
 * segment per direction (syn, data, retransmit, keepalive, ...). This file runs the capturer
 * and chains the three.
 *
 * Duplicates: on lo the kernel hands a packet socket each packet twice (leaving and
 * arriving); libpcap and capture.py keep only the arrival. With `-i any` on a namespace that
 * forwards, a segment is seen on both interfaces; the classifier keeps interfaces apart where
 * the link type names them.
 */

/**
 * pcap bytes in, timeline events out: the reader, the decoder and the classifier in a row.
 * What the capture and a replay of its bytes (in any chunking) both use.
 */
export class PcapEventStream {
  private readonly reader: PcapReader;
  private readonly classifier: PacketClassifier;
  /** Records that were not TCP or an ICMP error about TCP. */
  skipped = 0;
  packets = 0;

  constructor(
    readonly clock: ClockOffset,
    private readonly onEvent: (e: TimelineEvent) => void,
    private readonly onPacket?: (p: Packet) => void,
    maxFlows?: number,
  ) {
    this.classifier = new PacketClassifier(maxFlows);
    this.reader = new PcapReader((r) => this.record(r));
  }

  push(chunk: Uint8Array): void {
    this.reader.push(chunk);
  }

  get error(): string | undefined {
    return this.reader.error;
  }

  get linktype(): number | undefined {
    return this.reader.linktype;
  }

  private record(r: PcapRecord): void {
    const p = decodeFrame(r.linktype, r.data, r.origLen, toMonotonic(this.clock, r.sec, r.nsec));
    if (!p) {
      this.skipped++;
      return;
    }
    this.packets++;
    this.onPacket?.(p);
    this.onEvent(this.classifier.classify(p));
  }
}

// ---------------------------------------------------------------------------------------
// The capturer
// ---------------------------------------------------------------------------------------

export type CaptureMethod = 'tcpdump' | 'af_packet';

export interface PacketCaptureOptions {
  sandbox: Pick<Sandbox, 'enter' | 'mode' | 'mappedSubIds'>;
  log: Logger;
  onEvent: (e: TimelineEvent) => void;
  /** Every decoded packet, before classification. */
  onPacket?: (p: Packet) => void;
  /** The pcap stream as it arrives (to save a capture for Wireshark, or replay it). */
  onPcap?: (chunk: Buffer) => void;
  /** Called once if the capturer stops before dispose(), with why. */
  onStopped?: (reason: string) => void;
  /** A device inside the namespace, or `any` (default `lo`). */
  interface?: string;
  /** `auto` (the default): tcpdump where it can run, else the AF_PACKET sample. */
  method?: 'auto' | CaptureMethod;
  /** The Python that runs capture.py (default python3). */
  python?: string;
  /** Bytes kept per packet: headers only (default 160; TCP/ICMP decoding needs ≤ 128). */
  snaplen?: number;
  readyTimeoutMs?: number;
  maxFlows?: number;
}

export interface CaptureChoice {
  method: CaptureMethod;
  /** Why this method, for the log and the report. */
  note: string;
}

/** Picks the capturer from what is installed and how the sandbox runs (pure, for tests). */
export function chooseCaptureMethod(o: {
  requested: 'auto' | CaptureMethod;
  mode: 'root' | 'rootless';
  mappedSubIds: boolean;
  tcpdump: boolean;
  python: boolean;
  pythonName?: string;
}): CaptureChoice {
  const py = o.pythonName ?? 'python3';
  const noTcpdump = !o.tcpdump
    ? `tcpdump is not installed (${installHint('tcpdump')})`
    : o.mode === 'rootless' && !o.mappedSubIds
      ? 'tcpdump cannot run in this namespace: without sub-id mapping (--map-auto) setgroups is denied, so tcpdump cannot drop privileges, even with -Z root (apt-get install uidmap; give the user ranges in /etc/subuid and /etc/subgid)'
      : undefined;
  if (o.requested === 'tcpdump' || (o.requested === 'auto' && !noTcpdump)) {
    if (noTcpdump) throw new LabError(noTcpdump, { field: 'method', value: 'tcpdump' });
    return { method: 'tcpdump', note: o.mode === 'root' ? 'tcpdump, as root' : 'tcpdump inside the user namespace (sub-ids mapped, so it may drop privileges)' };
  }
  const why = o.requested === 'af_packet' ? 'asked for the AF_PACKET capture' : noTcpdump!;
  if (!o.python) {
    throw new LabError(`cannot capture packets: ${why}, and ${py} is not installed for the AF_PACKET fallback`, {
      field: 'method', value: o.requested, hint: [installHint('tcpdump'), installHint('python3')].join('; '),
    });
  }
  return { method: 'af_packet', note: `capture.py on an AF_PACKET socket: ${why}` };
}

export function validInterface(name: string): string {
  if (name === 'any' || /^[A-Za-z0-9_.:@-]{1,15}$/.test(name)) return name;
  throw new LabError('not a network interface name', { field: 'interface', value: name });
}

/** The argv of the capturer, inside the namespace. */
export function captureArgv(method: CaptureMethod, o: { interface: string; snaplen: number; mode: 'root' | 'rootless'; python?: string }): string[] {
  if (method === 'af_packet') {
    return [o.python ?? 'python3', join(samplesDir(), 'python', 'capture.py'), '--interface', o.interface, '--snaplen', String(o.snaplen)];
  }
  return [
    'tcpdump', '-i', o.interface, '-n',
    // -U: write each packet out as it comes; --immediate-mode: no kernel batching (TPACKET_V3 blocks).
    '-U', '--immediate-mode', '--time-stamp-precision=nano', '-s', String(o.snaplen), '-w', '-',
    // Rootless, tcpdump's default drop to the `tcpdump` user is fine too once sub-ids are
    // mapped; `-Z root` keeps the namespace's root (no more than the lab user on the host).
    // As real root, the default drop is the least privilege.
    ...(o.mode === 'rootless' ? ['-Z', 'root'] : []),
    'tcp or icmp or icmp6',
  ];
}

export interface CaptureStats {
  packets: number;
  /** pcap records that were not TCP or ICMP errors about TCP. */
  skipped: number;
  /** Why the pcap stream became unreadable, if it did. */
  streamError?: string;
  /** What the capturer printed on stderr (the last 4 KiB): tcpdump's drop counts at the end. */
  stderr: string;
}

/**
 * A running packet capture inside a sandbox. `start` resolves once the capturer listens (a
 * packet sent after that is seen); `dispose` stops it and resolves after the last event.
 */
export class PacketCapture {
  private stderrText = '';
  private disposing = false;
  private readonly closed: Promise<void>;

  private constructor(
    readonly method: CaptureMethod,
    readonly note: string,
    readonly argv: readonly string[],
    private readonly child: ChildProcessByStdio<null, Readable, Readable>,
    private readonly stream: PcapEventStream,
    private readonly log: Logger,
  ) {
    this.closed = new Promise((resolve) => child.once('close', () => resolve()));
  }

  static async start(options: PacketCaptureOptions): Promise<PacketCapture> {
    const iface = validInterface(options.interface ?? 'lo');
    const snaplen = options.snaplen ?? 160;
    if (!Number.isInteger(snaplen) || snaplen < 96 || snaplen > MAX_RECORD) {
      throw new LabError('snaplen must be 96-262144 bytes', { field: 'snaplen', value: snaplen });
    }
    const path = labEnv().PATH ?? '';
    const python = options.python ?? 'python3';
    const { sandbox } = options;
    const choice = chooseCaptureMethod({
      requested: options.method ?? 'auto', mode: sandbox.mode, mappedSubIds: sandbox.mappedSubIds,
      tcpdump: missingTools(['tcpdump'], path).length === 0, python: missingTools([python], path).length === 0, pythonName: python,
    });
    try {
      return await PacketCapture.launch(choice, iface, snaplen, options);
    } catch (e) {
      if (choice.method !== 'tcpdump' || (options.method ?? 'auto') !== 'auto' || missingTools([python], path).length) throw e;
      const why = e instanceof Error ? e.message : String(e);
      options.log.warn(`tcpdump did not start (${why}); capturing with capture.py instead`);
      return PacketCapture.launch({ method: 'af_packet', note: `capture.py on an AF_PACKET socket: tcpdump failed: ${why}` }, iface, snaplen, options);
    }
  }

  private static async launch(choice: CaptureChoice, iface: string, snaplen: number, o: PacketCaptureOptions): Promise<PacketCapture> {
    const argv = o.sandbox.enter(captureArgv(choice.method, { interface: iface, snaplen, mode: o.sandbox.mode, python: o.python }));
    o.log.command(argv, 'capture');
    // REALTIME - MONOTONIC, measured once per capture (1-3 ms of busy waiting).
    const stream = new PcapEventStream(measureClockOffset(), o.onEvent, o.onPacket, o.maxFlows);
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], env: labEnv() });
    const capture = new PacketCapture(choice.method, choice.note, argv, child, stream, o.log);
    child.stdout.on('data', (chunk: Buffer) => {
      o.onPcap?.(chunk);
      if (stream.error) return;
      stream.push(chunk);
      if (stream.error) o.log.warn(`packets: the ${choice.method} output stopped making sense (${stream.error}); no more packet events`);
    });
    let onEarlyExit: (code: number | null, signal: NodeJS.Signals | null) => void = () => {};
    const ready = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => fail(new LabError(`${choice.method} did not start listening within ${o.readyTimeoutMs ?? 5000} ms`)), o.readyTimeoutMs ?? 5000);
      const fail = (e: Error) => {
        clearTimeout(timer);
        reject(e);
      };
      child.stderr.setEncoding('utf8').on('data', (d: string) => {
        capture.stderrText = (capture.stderrText + d).slice(-4096);
        // tcpdump: "listening on lo, link-type EN10MB ..."; capture.py says the same.
        if (/listening on /.test(capture.stderrText)) {
          clearTimeout(timer);
          resolve();
        }
      });
      child.once('error', (e: NodeJS.ErrnoException) => fail(e.code === 'ENOENT' ? new LabError('nsenter is not installed', { hint: installHint('nsenter') }) : e));
      onEarlyExit = (code, signal) => fail(new LabError(`${choice.method} exited (${signal ?? code}): ${capture.stderrText.trim() || 'no message'}`));
      child.once('exit', onEarlyExit);
    });
    try {
      await ready;
    } catch (e) {
      await capture.dispose();
      throw e;
    }
    child.removeListener('exit', onEarlyExit);
    child.once('exit', (code, signal) => {
      if (capture.disposing) return;
      const reason = `${choice.method} stopped (${signal ?? `exit ${code}`}): ${capture.stderrText.trim().split('\n').pop() ?? ''}`;
      o.log.warn(reason);
      o.onStopped?.(reason);
    });
    o.log.info(`packets: ${choice.note}`);
    return capture;
  }

  get stats(): CaptureStats {
    return { packets: this.stream.packets, skipped: this.stream.skipped, streamError: this.stream.error, stderr: this.stderrText };
  }

  get clock(): ClockOffset {
    return this.stream.clock;
  }

  get linktype(): number | undefined {
    return this.stream.linktype;
  }

  /**
   * Stops the capturer and waits until its last packet has been read. The signal goes to
   * nsenter's child (the capturer itself): nsenter forwards none, and killing nsenter would
   * orphan the capturer. tcpdump flushes and exits on SIGTERM; capture.py flushed already.
   */
  async dispose(): Promise<void> {
    if (!this.disposing) {
      this.disposing = true;
      if (this.child.exitCode === null && this.child.signalCode === null) this.signal('SIGTERM');
    }
    const wait = (ms: number) => Promise.race([this.closed.then(() => true), new Promise<false>((r) => setTimeout(() => r(false), ms).unref())]);
    if (await wait(2000)) return;
    this.log.warn(`${this.method} did not stop on SIGTERM; killing it`);
    this.signal('SIGKILL');
    if (!(await wait(2000))) this.log.warn(`${this.method} (pid ${this.child.pid}) did not exit after SIGKILL`);
  }

  private signal(sig: NodeJS.Signals): void {
    const pid = this.child.pid;
    if (pid === undefined) return;
    // nsenter may have gone, or not forked yet: then nsenter itself.
    const target = firstChild(pid) ?? pid;
    try { process.kill(target, sig); } catch { /* gone */ }
    if (sig === 'SIGKILL' && target !== pid) {
      try { process.kill(pid, sig); } catch { /* gone */ }
    }
  }
}

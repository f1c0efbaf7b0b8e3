import { LINUX_DEFAULTS } from '../timers';
import { client, on, server } from './common';
import type { Scenario } from './types';

/** What the client of a manual lab does, so a fault shows up the way the user wants to see it. */
export type ManualClient = 'requests' | 'keepalive' | 'idle';

export const MANUAL_CLIENTS: Readonly<Record<ManualClient, { label: string; detail: string }>> = {
  requests: {
    label: 'a request every second',
    detail: 'an echo request each second on one connection: a dropped path shows retransmissions, then ETIMEDOUT',
  },
  keepalive: {
    label: 'idle, with keepalive (idle 2 s, interval 1 s, 2 probes)',
    detail: 'one request, then silence: only the keepalive probes notice a dead path',
  },
  idle: {
    label: 'idle, no keepalive',
    detail: 'one request, then silence: a half-open connection that nothing detects',
  },
};

const STEPS: Record<ManualClient, string[]> = {
  requests: ['connect,requests:1'],
  keepalive: ['connect,request,idle', '--keepalive', '2,1,2'],
  idle: ['connect,request,idle'],
};

/**
 * A lab with no script: an echo server and a client, started as in the scenarios, then faults
 * applied and lifted by hand (LiveLab.perform). Its one check never settles, so the run lasts
 * until the user stops it; the timers stay the kernel's unless the user's settings lower them.
 */
export function manualScenario(kind: ManualClient = 'requests'): Scenario {
  const [steps, ...flags] = STEPS[kind];
  return {
    id: 'manual',
    title: `Manual lab: ${MANUAL_CLIENTS[kind].label}`,
    section: 'established',
    summary: `An echo server and a client (${MANUAL_CLIENTS[kind].detail}); apply and lift faults from the Lab Session view.`,
    procs: [server('echo'), client(steps!, ...flags)],
    expect: [{
      kind: 'quiet', proc: 'lab', types: ['manual-end'], for: 1e9, from: on.lab('begin'), primary: true,
      says: 'nothing is judged: the lab runs until you stop it',
    }],
    deadline: 1e9,
    openEnded: true,
    explanation: 'A manual lab judges nothing: the timeline, the sockets and the programs\' output show what each fault does.',
    defaults: () => ({ seconds: Infinity, how: `no scenario: the kernel's own timers (tcp_retries2=${LINUX_DEFAULTS.retries2}, keepalive ${LINUX_DEFAULTS.keepaliveTime} s) unless settings lower them` }),
    fixes: [],
  };
}

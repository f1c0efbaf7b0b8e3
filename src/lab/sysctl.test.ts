import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LabError } from './errors';
import type { Exec } from './exec';
import { checkSysctl, setSysctl } from './sysctl';

test('per-namespace sysctls are written as name=value argv, never through a shell', async () => {
  const ran: string[][] = [];
  const exec: Exec = async (argv) => { ran.push([...argv]); return { stdout: '', stderr: '', code: 0 }; };
  await setSysctl(exec, 'net.ipv4.tcp_syn_retries', 1);
  await setSysctl(exec, 'net.ipv4.ip_local_port_range', [40000, 40009]);
  assert.deepEqual(ran, [
    ['sysctl', '-q', '-w', 'net.ipv4.tcp_syn_retries=1'],
    ['sysctl', '-q', '-w', 'net.ipv4.ip_local_port_range=40000 40009'],
  ]);
});

test('unknown names, host-wide knobs and out-of-range values are refused before anything runs', async () => {
  const exec: Exec = async () => assert.fail('nothing may run for a refused sysctl');
  for (const [name, value, field] of [
    ['kernel.panic', 1, 'sysctl'],
    ['net.ipv4.tcp_syn_retries; reboot', 1, 'sysctl'],
    ['net.ipv4.tcp_syn_retries', 0, 'net.ipv4.tcp_syn_retries'],
    ['net.ipv4.tcp_syn_retries', 1.5, 'net.ipv4.tcp_syn_retries'],
    ['net.ipv4.tcp_syn_retries', '1', 'net.ipv4.tcp_syn_retries'],
    ['net.ipv4.tcp_tw_reuse', 3, 'net.ipv4.tcp_tw_reuse'],
    ['net.ipv4.ip_local_port_range', [50000, 40000], 'net.ipv4.ip_local_port_range'],
    ['net.ipv4.ip_local_port_range', 40000, 'net.ipv4.ip_local_port_range'],
  ] as const) {
    await assert.rejects(setSysctl(exec, name, value as never), (e: unknown) => e instanceof LabError && e.field === field);
  }
  assert.throws(() => checkSysctl('__proto__', 1), LabError);
});

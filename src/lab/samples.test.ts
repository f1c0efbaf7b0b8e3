import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { executableBy, pythonFor, realPython } from './samples';

test('executableBy reads the mode bits on the way, as the kernel checks them', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tcplab-exec-'));
  try {
    const file = join(dir, 'prog');
    writeFileSync(file, '#!/bin/sh\n');
    chmodSync(file, 0o755);
    const me = { uid: process.getuid!(), gid: process.getgid!() };
    const other = { uid: 4_000_000, gid: 4_000_000 };
    chmodSync(dir, 0o700);
    assert.equal(executableBy(file, me.uid, me.gid), true, 'the owner');
    assert.equal(executableBy(file, other.uid, other.gid), false, 'a folder of mode 700 on the way');
    chmodSync(dir, 0o711);
    assert.equal(executableBy(file, other.uid, other.gid), true, 'search permission is enough on a folder');
    chmodSync(file, 0o754);
    assert.equal(executableBy(file, other.uid, other.gid), false, 'no execute bit for others');
    assert.equal(executableBy(file, other.uid, me.gid), true, 'the group\'s bits for its gid');
    assert.equal(executableBy(join(dir, 'missing'), me.uid, me.gid), false);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('pythonFor falls back to the system Python when the user cannot run the one found', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tcplab-py-'));
  try {
    // A Python in a folder only its owner may enter (a root's pyenv under /root, mode 700).
    const python = join(dir, 'python3');
    symlinkSync('/usr/bin/python3', python);
    chmodSync(dir, 0o700);
    assert.equal(realPython(python), python, 'Python names itself by the link it was started through');
    const other = { uid: 4_000_000, gid: 4_000_000 };
    const me = { uid: process.getuid!(), gid: process.getgid!() };
    assert.equal(pythonFor(python, me), realPython(python), 'its owner keeps it');
    assert.equal(pythonFor(python, other), realPython('/usr/bin/python3'), 'another user gets the system one');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

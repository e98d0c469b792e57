// lib/oci/config.ts: what a config.json becomes in nsbox's options, and what it refuses (naming the
// field). No container is started here: the runtime's own test (runtime.test.js) runs them.
'use strict';
const t = require('tap');
const { convertConfig } = require('../../dist/oci/config');

/** runc's `spec` output, without a terminal, with the given changes. */
function config(edit) {
  const caps = ['CAP_AUDIT_WRITE', 'CAP_KILL', 'CAP_NET_BIND_SERVICE'];
  const c = {
    ociVersion: '1.0.2',
    process: {
      terminal: false, user: { uid: 0, gid: 0 }, args: ['sh'], env: ['PATH=/usr/bin:/bin', 'TERM=xterm'], cwd: '/',
      capabilities: { bounding: caps, effective: caps, permitted: caps, ambient: caps },
      rlimits: [{ type: 'RLIMIT_NOFILE', hard: 1024, soft: 1024 }], noNewPrivileges: true,
    },
    root: { path: 'rootfs', readonly: true },
    hostname: 'runc',
    mounts: [
      { destination: '/proc', type: 'proc', source: 'proc' },
      { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'] },
      { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', 'ro'] },
      { destination: '/sys/fs/cgroup', type: 'cgroup', source: 'cgroup', options: ['ro'] },
    ],
    linux: {
      resources: { devices: [{ allow: false, access: 'rwm' }] },
      namespaces: [{ type: 'pid' }, { type: 'network' }, { type: 'ipc' }, { type: 'uts' }, { type: 'mount' }],
      maskedPaths: ['/proc/kcore', '/sys/firmware'],
      readonlyPaths: ['/proc/sys', '/proc/sysrq-trigger'],
    },
  };
  if (edit) edit(c);
  return c;
}

t.test("runc's default spec becomes nsbox options with the same meaning", async (t) => {
  const r = convertConfig(config(), '/b');
  t.same(r.options.command, ['sh']);
  t.equal(r.options.rootfs, '/b/rootfs', 'root.path is relative to the bundle');
  t.equal(r.options.readonly, true);
  t.same(r.options.env, { PATH: '/usr/bin:/bin', TERM: 'xterm' });
  t.equal(r.options.hostname, 'runc');
  t.same(r.options.user, { uid: 0, gid: 0, groups: [] });
  t.equal(r.options.network, 'loopback', 'a new network namespace, lo up as runc has it');
  t.same(r.options.capabilities.add, ['CAP_AUDIT_WRITE', 'CAP_KILL', 'CAP_NET_BIND_SERVICE']);
  t.ok(r.options.capabilities.drop.includes('CAP_CHOWN'), "nsbox's default capabilities the config lacks are dropped");
  t.notOk(r.options.capabilities.drop.includes('CAP_KILL'));
  t.same(r.options.rlimits, { nofile: { soft: 1024, hard: 1024 } }, "nsbox's rlimits option");
  t.equal(r.noNewPrivileges, true);
  t.equal(r.sysfs, true);
  t.equal(r.tmp, false, 'no /tmp mount asked for');
  t.same(r.options.mounts, []);
  t.equal(r.options.seccomp, 'none', 'no linux.seccomp: no filter, as runc');
  t.ok(r.notes.some((n) => /ambient/.test(n)), 'ambient for uid 0 is noted');
  t.ok(r.notes.some((n) => /cgroup namespace/.test(n)));
});

t.test('binds, tmpfs mounts and resources are translated', async (t) => {
  const r = convertConfig(config((c) => {
    c.linux.namespaces = c.linux.namespaces.filter((n) => n.type !== 'network');
    c.mounts.push({ destination: '/data', type: 'bind', source: 'data', options: ['rbind', 'ro'] });
    c.mounts.push({ destination: '/tmp', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'size=64m', 'mode=1777'] });
    c.linux.resources = { memory: { limit: 256 << 20, swap: 512 << 20 }, cpu: { quota: 50000, period: 100000, shares: 2048, cpus: '0' }, pids: { limit: 64 }, blockIO: { weight: 300 } };
    c.process.user = { uid: 1000, gid: 100, additionalGids: [10] };
    c.process.capabilities = { bounding: [], effective: [], permitted: [] };
  }), '/b');
  t.equal(r.options.network, 'host', "no network namespace: the host's");
  t.same(r.options.mounts, [
    { type: 'bind', source: '/b/data', target: '/data', readonly: true },
    { type: 'tmpfs', target: '/tmp', size: '64M', mode: 0o1777 },
  ]);
  t.equal(r.tmp, true);
  t.same(r.options.limits, { memory: 256 << 20, swap: 256 << 20, cpu: 0.5, cpuWeight: 79, cpuset: '0', pids: 64, ioWeight: 300 });
  t.same(r.options.user, { uid: 1000, gid: 100, groups: [10] });
  const d = convertConfig(config((c) => { c.linux.resources = { cpu: { shares: 1024 } }; }), '/b');
  t.equal(d.options.limits, undefined, "cpu.shares 1024 (cgroup v1's default) asks for no limit");
});

t.test('what nsbox cannot honour is refused naming the field', async (t) => {
  const cases = [
    [(c) => { c.process.terminal = true; }, 'process.terminal'],
    [(c) => { c.process.capabilities.effective = ['CAP_KILL']; }, 'process.capabilities.effective'],
    [(c) => { c.process.capabilities.inheritable = ['CAP_KILL']; }, 'process.capabilities.inheritable'],
    [(c) => { c.process.user.uid = 1000; }, 'process.capabilities.ambient'],
    [(c) => { c.process.args = ['a', '', 'b']; }, 'process.args'],
    [(c) => { c.linux.namespaces.push({ type: 'network', path: '/proc/1/ns/net' }); }, 'linux.namespaces[5].path'],
    [(c) => { c.linux.namespaces = c.linux.namespaces.filter((n) => n.type !== 'pid'); }, 'linux.namespaces'],
    [(c) => { c.linux.sysctl = { 'net.ipv4.ip_forward': '1' }; }, 'linux.sysctl'],
    [(c) => { c.linux.uidMappings = [{ containerID: 0, hostID: 1000, size: 1 }]; }, 'linux.uidMappings'],
    [(c) => { c.linux.readonlyPaths = ['/proc/asound']; }, 'linux.readonlyPaths'],
    [(c) => { c.linux.resources.memory = { reservation: 1 }; }, 'linux.resources.memory.reservation'],
    [(c) => { c.linux.resources.devices.push({ allow: false, type: 'c', major: 1, minor: 3, access: 'rwm' }); }, 'linux.resources.devices[1]'],
    [(c) => { c.linux.rootfsPropagation = 'shared'; }, 'linux.rootfsPropagation'],
    [(c) => { c.mounts.push({ destination: '/m', type: 'bind', source: '/x', options: ['bind', 'noexec'] }); }, 'mounts[4].options'],
    [(c) => { c.domainname = 'nis'; }, 'domainname'],
    [(c) => { c.linux.personality = { domain: 'LINUX32' }; }, 'linux.personality'],
  ];
  for (const [edit, field] of cases) {
    t.throws(() => convertConfig(config(edit), '/b'), { code: /^(ENOTSUP|EINVAL)$/, step: 'oci.config', path: field }, field);
  }
});

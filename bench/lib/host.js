'use strict';
// Host facts for the benchmark's report, and the check that a run left nothing behind.
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const cp = require('node:child_process');

const { benchDir } = require('./rootfs');
const { which, V2_UNIFIED_HYBRID } = require('./peers');

async function hostInfo(nsbox) {
  const cpu = /^model name\s*:\s*(.*)$/m.exec(fs.readFileSync('/proc/cpuinfo', 'utf8'));
  let probe = null;
  try {
    probe = await nsbox.probe();
  } catch {
    /* older build */
  }
  const git = (args) => {
    try {
      return cp.execFileSync('git', args, { cwd: path.join(benchDir, '..'), stdio: ['ignore', 'pipe', 'ignore'] }).toString().trim();
    } catch {
      return null;
    }
  };
  const version = (bin, args = ['--version']) => {
    const exe = which(bin);
    if (!exe) return null;
    try {
      return cp.execFileSync(exe, args, { stdio: ['ignore', 'pipe', 'pipe'] }).toString().split('\n')[0].trim();
    } catch {
      return null;
    }
  };
  const mtime = (rel) => {
    try {
      return fs.statSync(path.join(benchDir, '..', rel)).mtime.toISOString();
    } catch {
      return null;
    }
  };
  return {
    date: new Date().toISOString(),
    build: { addon: mtime('build/Release/nsbox.node'), dist: mtime('dist/index.js'), forkClone: !!process.env.NSBOX_FORK_CLONE },
    nproc: os.availableParallelism ? os.availableParallelism() : os.cpus().length,
    cpuModel: cpu ? cpu[1].trim() : os.cpus()[0]?.model,
    kernel: `${os.release()} (${os.version()})`,
    node: process.version,
    memTotalMiB: Math.round(os.totalmem() / 1048576),
    loadavg: os.loadavg().map((x) => x.toFixed(2)).join(' '),
    cgroup: probe ? `${probe.cgroup.mode} (v2 at ${probe.cgroup.mountPoint})` : null,
    commit: git(['rev-parse', '--short', 'HEAD']),
    dirty: git(['status', '--porcelain', '--untracked-files=no']) ? 'yes (uncommitted changes in the tree)' : 'no',
    peers: {
      bwrap: version('bwrap'),
      crun: version('crun'),
      runc: version('runc'),
      'systemd-nspawn': version('systemd-nspawn'),
      nsenter: version('nsenter', ['-V']),
    },
  };
}

function leftovers(tag, mountLinesBefore) {
  const out = [];
  const nsboxBase = path.join(V2_UNIFIED_HYBRID, 'nsbox');
  for (const base of [nsboxBase, '/sys/fs/cgroup/nsbox']) {
    try {
      // App containers: <pid>.<n>; machines: m-[<hash>-]<name>, our names being nsb<pid>-<i>.
      const mine = new RegExp(`^(${process.pid}\\.\\d+|m-(.*-)?nsb${process.pid}-\\d+)$`);
      for (const n of fs.readdirSync(base)) if (mine.test(n)) out.push(`cgroup ${base}/${n}`);
    } catch {
      /* none */
    }
  }
  for (const d of ['/run/runc', '/run/crun']) {
    try {
      for (const n of fs.readdirSync(d)) if (n.startsWith(tag)) out.push(`${d}/${n}`);
    } catch {
      /* none */
    }
  }
  // runc's per-container cgroups in every hierarchy, and our nspawn slots.
  try {
    for (const h of fs.readdirSync('/sys/fs/cgroup')) {
      const d = path.join('/sys/fs/cgroup', h);
      try {
        for (const n of fs.readdirSync(d)) if (n.startsWith(tag)) out.push(`cgroup ${d}/${n}`);
      } catch {
        /* a file */
      }
    }
  } catch {
    /* no cgroupfs */
  }
  for (const e of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const st = fs.readFileSync(`/proc/${e}/stat`, 'utf8');
      const rest = st.slice(st.lastIndexOf(')') + 2).split(' ');
      if (Number(rest[1]) === process.pid) out.push(`child process ${e} (${st.slice(st.indexOf('(') + 1, st.lastIndexOf(')'))}, state ${rest[0]})`);
    } catch {
      /* gone */
    }
  }
  const mountLines = fs.readFileSync('/proc/self/mountinfo', 'utf8').trim().split('\n').length;
  if (mountLines !== mountLinesBefore) out.push(`mount table has ${mountLines} entries, ${mountLinesBefore} before`);
  return out;
}

module.exports = { hostInfo, leftovers };

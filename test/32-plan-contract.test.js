// The plan contract, field by field, across its three copies: `NativePlan` in lib/native.ts, the
// keys BuildPlan reads in native/glue/plan_reader.cc, and `struct Plan` in native/core/plan.h. A
// field added on one side only fails here. Names map by case (cgroupFd <-> cgroup_fd); the few
// that do not are listed below with why, and so are the Plan members the glue fills itself.
'use strict';
const t = require('tap');
const fs = require('node:fs');
const path = require('node:path');
const ts = require('typescript');

const root = path.join(__dirname, '..');
const read = (f) => fs.readFileSync(path.join(root, f), 'utf8');

/** NativePlan's fields: name -> { type, optional } (the TypeScript compiler's own parse). */
function tsFields() {
  const src = ts.createSourceFile('native.ts', read('lib/native.ts'), ts.ScriptTarget.Latest, true);
  const out = new Map();
  ts.forEachChild(src, (n) => {
    if (!ts.isInterfaceDeclaration(n) || n.name.text !== 'NativePlan') return;
    for (const m of n.members) {
      if (!ts.isPropertySignature(m)) continue;
      out.set(m.name.getText(src), { type: m.type.getText(src).replace(/\s+/g, ' '), optional: !!m.questionToken });
    }
  });
  return out;
}

/** The keys BuildPlan (and StatusRead, and net.cc's BuildNetPlan for `net`) read: name -> how. */
function cxxKeys() {
  const src = read('native/glue/plan_reader.cc');
  const body = src.slice(src.indexOf('bool BuildPlan(Napi::Object js'), src.indexOf('namespace {', src.indexOf('int StatusRead(')));
  const out = new Map();
  for (const m of body.matchAll(/\b(GetInt|GetBool|GetString|GetStringArray|Read)\(js, "(\w+)"(?:, st, [^,]+, (true|false))?/g)) {
    const how = m[1] === 'GetString' ? (m[3] === 'true' ? 'nstring' : 'string') : m[1];
    if (!out.has(m[2])) out.set(m[2], how);
  }
  for (const m of body.matchAll(/plan\.Get\("(\w+)"\)/g)) out.set(m[1], 'Read');
  if (/js\.Get\("net"\)/.test(read('native/glue/net.cc'))) out.set('net', 'Read');
  return out;
}

/** struct Plan's members: name -> C++ type. */
function planMembers() {
  const src = read('native/core/plan.h');
  const body = src.slice(src.indexOf('struct Plan {'), src.indexOf('};', src.indexOf('struct Plan {')));
  const out = new Map();
  for (const line of body.split('\n').slice(1)) {
    const code = line.replace(/\/\/.*$/, '').trim();
    const m = /^((?:const |volatile )?[\w:]+(?: const)?\s*\**(?:\s*const\s*\*)?)\s*(\w+)(\[\d+\])?\s*(?:=[^;]*)?;$/.exec(code);
    if (m) out.set(m[2], m[1].replace(/\s+/g, ' ').trim() + (m[3] ?? ''));
  }
  return out;
}

// JS keys that are not a Plan member of the same name, and where they go.
const NOT_A_MEMBER = {
  devicePolicy: 'device_prog_fd', // true: the glue loads the shared program; a number: a program fd lib/ loaded (devices)
  cgroupMkdir: null, // PlanStorage: made by spawnAsync's worker, then cgroup_fd
  cgroupBase: null,
  opsCompiled: 'ops', // an id of a compiled ops list instead of ops
  opsAfter: 'ops', // appended to ops (or the compiled list) into PlanStorage's joined list
  netnsReserve: null, // PlanStorage: may take net_fd from the reserve
  ipcnsReserve: null, // likewise ipc_fd
  mntTemplate: null, // likewise mnt_template_fd
  statusRead: null, // the parent's end, for the exit watcher
  usernsSyncWriteFd: 'userns_sync_wfd',
  pathDirs: 'path_dirs_joined',
  net: 'net_msgs', // net.cc: net_host_sock, net_msgs, n_net_msgs, net_peer
};
// Plan members no JS key names: filled by the glue or the spawner.
const FILLED_NATIVELY = new Set([
  'device_prog_fd', 'mnt_template_fd', 'net_fd', 'ipc_fd', 'err_fd',
  'n_ops', 'n_rlimits', 'n_groups', 'n_candidates', 'seccomp_len', 'tramp_argv', 'enter_pid_out',
  'enter_report_fd', 'net_host_sock', 'n_net_msgs', 'net_peer', 'init_argv', 'path_dirs_joined', 'userns_sync_wfd',
  'fault_node_pid', 'fault_err_rfd',
]);
const snake = (k) => k.replace(/[A-Z]/g, (c) => '_' + c.toLowerCase());

/** Whether a TypeScript type and how the glue reads it agree. */
function readAgrees(type, how) {
  switch (how) {
    case 'GetInt': return type === 'number';
    case 'GetBool': return type === 'boolean';
    case 'string': return type === 'string';
    case 'nstring': return type === 'string | null' || type === 'string';
    case 'GetStringArray': return type === 'string[]';
    case 'Read': return true; // checked by hand in BuildPlan (arrays, buffers, optional fields)
    default: return false;
  }
}

/** Whether a TypeScript type and a Plan member's C++ type agree. */
function memberAgrees(type, cxx) {
  if (/^(bool)$/.test(cxx)) return type === 'boolean';
  if (/^(int|int32_t|uint16_t|uint32_t|uint64_t|size_t|unsigned long)$/.test(cxx)) return type === 'number' || type === 'string'; // capsKeep: a decimal string
  if (/^const char ?\*$/.test(cxx)) return type === 'string' || type === 'string | null';
  if (/char ?\* const ?\*|const char ?\* const ?\*|^char ?\*\*$/.test(cxx)) return type === 'string[]';
  if (/\[\d+\]$/.test(cxx)) return /^\[number(, number)*\]$/.test(type);
  if (/^const (Op|Rlimit|uint32_t|void) ?\*$/.test(cxx)) return /\[\]|Array<|Buffer/.test(type);
  return false;
}

t.test('NativePlan, BuildPlan and struct Plan name the same fields, with agreeing types', async (t) => {
  const tsf = tsFields();
  const keys = cxxKeys();
  const members = planMembers();
  t.ok(tsf.size > 40 && keys.size > 40 && members.size > 40, `parsed ${tsf.size} TS fields, ${keys.size} keys, ${members.size} members`);
  const problems = [];
  for (const [k, { type, optional }] of tsf) {
    if (!keys.has(k)) problems.push(`NativePlan.${k} is not read by BuildPlan (native/glue/plan_reader.cc)`);
    else if (!readAgrees(type, keys.get(k))) problems.push(`NativePlan.${k}: ${type}, but BuildPlan reads it with ${keys.get(k)}`);
    // (pathDirs is read only with cmdFd: required then.)
    if (k !== 'pathDirs' && (keys.get(k) === 'GetInt' || keys.get(k) === 'GetBool' || keys.get(k) === 'string')) {
      if (optional) problems.push(`NativePlan.${k} is optional, but BuildPlan requires it`);
    }
    const member = k in NOT_A_MEMBER ? NOT_A_MEMBER[k] : snake(k);
    if (member === null) continue;
    if (!members.has(member)) problems.push(`NativePlan.${k} has no struct Plan member ${member} (native/core/plan.h)`);
    else if (!(k in NOT_A_MEMBER) && !memberAgrees(type, members.get(member))) problems.push(`NativePlan.${k}: ${type}, but Plan::${member} is ${members.get(member)}`);
  }
  for (const k of keys.keys()) if (!tsf.has(k)) problems.push(`BuildPlan reads "${k}", which NativePlan (lib/native.ts) does not have`);
  const named = new Set([...tsf.keys()].map((k) => (k in NOT_A_MEMBER ? NOT_A_MEMBER[k] : snake(k))));
  for (const m of members.keys()) {
    if (!named.has(m) && !FILLED_NATIVELY.has(m)) problems.push(`struct Plan member ${m} is neither a NativePlan field nor filled natively`);
  }
  for (const m of FILLED_NATIVELY) if (!members.has(m)) problems.push(`${m} is listed as filled natively but struct Plan has no such member`);
  t.same(problems, [], 'no field on one side only');
});

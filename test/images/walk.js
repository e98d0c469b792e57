'use strict';
// node walk.js ROOT: prints the tree under ROOT as JSON, one entry per path (sorted): type, mode,
// owner, size and content hash (files), link target (symlinks), device numbers, xattrs. Run inside
// a private mount namespace over the overlay of an image's layers, and over `umoci unpack`'s rootfs.
const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');

const { fsat } = require(path.join(__dirname, '../../build/Release/nsbox.node'));
const root = process.argv[2];
const out = [];
function xattrs(p) {
  const names = fsat.llistxattr(p);
  if (!Array.isArray(names)) return {};
  const o = {};
  for (const n of names.sort()) {
    const v = fsat.lgetxattr(p, n);
    o[n] = Buffer.isBuffer(v) ? v.toString('hex') : null;
  }
  return o;
}
function walk(rel) {
  const p = path.join(root, rel);
  const st = fs.lstatSync(p);
  const type = st.isDirectory() ? 'dir' : st.isFile() ? 'file' : st.isSymbolicLink() ? 'symlink' : st.isCharacterDevice() ? 'char' : st.isBlockDevice() ? 'block' : st.isFIFO() ? 'fifo' : 'other';
  const e = { path: rel || '.', type, mode: (st.mode & 0o7777).toString(8), uid: st.uid, gid: st.gid, xattrs: xattrs(p) };
  if (type === 'file') {
    e.size = st.size;
    e.sha256 = crypto.createHash('sha256').update(fs.readFileSync(p)).digest('hex');
  }
  if (type === 'symlink') {
    e.link = fs.readlinkSync(p);
    delete e.mode; // a symlink's mode is always 0777
  }
  if (type === 'char' || type === 'block') e.rdev = st.rdev;
  out.push(e);
  if (type === 'dir') for (const n of fs.readdirSync(p).sort()) walk(rel ? `${rel}/${n}` : n);
}
walk('');
process.stdout.write(JSON.stringify(out));

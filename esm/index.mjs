// ESM entry: the CommonJS build re-exported under named bindings.
import nsbox from '../dist/index.js';

export const {
  run, spawn, Container, probe, NsboxError, Machine, createPool, Pool, removeBridge,
  pull, images, removeImage, pruneImages, importImage,
} = nsbox;
export default nsbox;

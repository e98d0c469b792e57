// images/index.ts: the image store's public functions (docs/images.md) and the internal
// imageRoot/leaseImage that a container start uses.
export { pull, images, removeImage, pruneImages, imageRoot, leaseImage, DEFAULT_MAX_IMAGE_SIZE } from './api';
export type { ImageInfo, ImageLayer, ImageRoot, PullOptions, StoreOptions, Progress, Credentials } from './api';
export { importImage } from './import';
export type { ImportOptions } from './import';

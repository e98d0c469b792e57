// index.ts: the public surface of nsbox. Only exports; see types.ts for the contract.
export { run, spawn, Container } from './app';
export type { RunResultWithCounts } from './app';
export { probe } from './probe';
export { NsboxError } from './errors';
export type { SeccompOption } from './seccomp';
export type {
  AppOptions,
  CgroupMode,
  DeviceMapping,
  ExitInfo,
  HostReport,
  Limits,
  Mount,
  NetworkMode,
  NetworkOptions,
  NetworkReport,
  PortMapping,
  ProbeTrial,
  Pressure,
  PressureFigures,
  RunResult,
  Stats,
  StdioMode,
  User,
} from './types';
export { Machine } from './machine';
export type { MachineInfo, MachineState } from './machine';
export type { MachineExecOptions, MachineOptions } from './machine-options';
export { createPool, Pool } from './pool';
export type { PoolOptions, PoolRunOptions } from './pool';
export { removeBridge } from './network';
export { pull, images, removeImage, pruneImages, importImage } from './images';
export type { ImageInfo, ImageLayer, PullOptions, ImportOptions, StoreOptions, Progress as PullProgress, Credentials as RegistryCredentials } from './images';

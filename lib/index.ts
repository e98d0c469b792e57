// index.ts: the public surface of nsbox. Only exports; see types.ts for the contract.
export { run, spawn, Container } from './app';
export type { RunResultWithCounts } from './app';
export { probe } from './probe';
export { NsboxError } from './errors';
export type { NsboxErrorCode, NsboxErrnoCode, NsboxImageErrorCode, NsboxErrorFields } from './errors';
export type { SeccompOption } from './seccomp';
export type {
  AppOptions,
  BindMount,
  CapabilitiesOption,
  CgroupMode,
  ContainerEvents,
  DeviceMapping,
  ExitInfo,
  HostReport,
  IdMapEntry,
  ImageRunOptions,
  Limits,
  Mount,
  NetworkMode,
  ProcMode,
  NetworkOptions,
  NetworkReport,
  OutputEncoding,
  PortMapping,
  ProbeTrial,
  Pressure,
  PressureFigures,
  RlimitAmount,
  RlimitName,
  Rlimits,
  RlimitValue,
  RunOptions,
  RunResult,
  Stats,
  StdioMode,
  TmpfsMount,
  User,
  UsernsOption,
} from './types';
export { Machine } from './machine';
export type { MachineInfo, MachineState } from './machine';
export type { MachineExecOptions, MachineOptions, MachineRunOptions } from './machine-options';
export { createPool, Pool } from './pool';
export type { PoolOptions, PoolRunOptions } from './pool';
export { removeBridge } from './network';
export { pull, images, removeImage, pruneImages, importImage } from './images';
export type { ImageInfo, ImageLayer, PullOptions, ImportOptions, StoreOptions, Progress as PullProgress, Credentials as RegistryCredentials } from './images';

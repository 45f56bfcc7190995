/**
 * clawbox's library API. Grouped by what a platform calling clawbox needs; everything else is internal.
 */

// Running tools in sandboxes.
export { runSandbox, type RunOptions, type RunResult } from '../runner/sandbox.js';
export { verifySandbox, type CheckResult } from '../runner/verify.js';
export { buildImages, SANDBOX_IMAGE, GATEWAY_IMAGE, type BuiltImage, type BuildOptions } from '../runner/images.js';
export { collectGarbage, sweepLeftovers, type GcReport } from '../runner/gc.js';

// Config: one schema, loaded with key paths and line numbers in every error.
export { loadConfig, parseConfig, DEFAULT_CONFIG_PATH, type ConfigSource } from './config/load.js';
export type { ClawboxConfig, SandboxConfig, GatewayConfig, ToolConfig } from './config/schema.js';
export { ClawboxError, type ErrorCode } from './errors.js';

// The gateway on its own (what `clawbox proxy` runs), and its pure policy.
export { startGateway, type GatewayOptions, type RunningGateway } from '../proxy/gateway.js';
export { compilePolicy } from './policy/policy.js';
export type { Policy, Decision, RuleId, Channel } from './policy/types.js';
export type { PolicyConfig } from './policy/config.js';
export { parseHost } from './net/host.js';

// The audit trail's events.
export { AUDIT_SCHEMA_VERSION, type AuditEvent, type DecisionEvent, type CloseEvent, type RunEvent } from './audit/types.js';

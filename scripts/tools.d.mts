// Types for tools.mjs (plain JavaScript so it runs without a build step), for TypeScript callers.

/** .cache/tools of the repository. */
export declare const TOOLS_DIR: string;

/** Pinned versions of every validator and schema source. */
export declare const VERSIONS: Readonly<{
  kubeconform: string;
  prometheus: string;
  kubernetes: string;
  prometheusOperator: string;
  composeGo: string;
  hadolint: string;
  kustomize: string;
  opa: string;
}>;

/** The unpacked module in Go's module cache (`go mod download -json`). */
export declare function goModuleDir(module: string, version: string): Promise<string>;
/** Path of kubeconform (`go install`, cached in .cache/tools/go). */
export declare function ensureKubeconform(): Promise<string>;
/** Path of promtool (`go install`, cached in .cache/tools/go). */
export declare function ensurePromtool(): Promise<string>;
/** Path of opa (`go install` with CGO_ENABLED=0, cached in .cache/tools/go). */
export declare function ensureOpa(): Promise<string>;
/** Path of kustomize (`go install`, cached in .cache/tools/go). */
export declare function ensureKustomize(): Promise<string>;
/** Path of scripts/pss-check built (`pss-check LEVEL FILE...`: Pod Security Standards of k8s.io/pod-security-admission). */
export declare function ensurePssCheck(): Promise<string>;
/** bin/ of the Python virtualenv with openapi2jsonschema, PyYAML and hadolint. */
export declare function ensurePythonTools(): Promise<string>;
/** Path of hadolint. */
export declare function ensureHadolint(): Promise<string>;
/** Directory holding `v<version>-standalone-strict/` Kubernetes JSON schemas. */
export declare function ensureKubernetesSchemas(version?: string): Promise<string>;
/** Directory holding `podmonitor-monitoring.coreos.com-v1.json`. */
export declare function ensureCrdSchemas(): Promise<string>;
/** Path of compose-spec.json from compose-go. */
export declare function ensureComposeSchema(): Promise<string>;

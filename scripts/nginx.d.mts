// Types for nginx.mjs (plain JavaScript so it runs without a build step), for TypeScript callers.

/** The path of an nginx binary with the auth_request module (NGINX_BIN, or the Debian package unpacked into .cache/nginx). */
export declare function ensureNginx(): string;

export interface RunningNginx {
  errorLog: () => string;
  stop: () => Promise<void>;
}

/** nginx in the foreground with `httpBlock` inside `http {}`; pid, temp paths and logs under `dir`. */
export declare function startNginx(options: { dir: string; httpBlock: string; port: number }): Promise<RunningNginx>;

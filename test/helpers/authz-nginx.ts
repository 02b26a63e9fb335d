/**
 * The nginx `server` block of README "killswitch authz": a session manager behind `auth_request`
 * asking `killswitch authz`, refusals passed on from `x-killswitch-refusal`. One copy, so the tests
 * exercise the configuration the README gives.
 */
export function authzServerBlock(o: { nginxPort: number; authzPort: number; appPort: number; subrequestHeaders?: string }): string {
  return `
  server {
    listen 127.0.0.1:${o.nginxPort};
    location / {
      auth_request /_killswitch;
      auth_request_set $killswitch_refusal $upstream_http_x_killswitch_refusal;
      error_page 403 = @killswitch_refused;
      error_page 500 = @killswitch_error;
      proxy_pass http://127.0.0.1:${o.appPort};
    }
    location = /_killswitch {
      internal;
      proxy_pass http://127.0.0.1:${o.authzPort};
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      ${o.subrequestHeaders ?? ''}
    }
    location @killswitch_refused { default_type application/json; return 403 $killswitch_refusal; }
    location @killswitch_error {
      default_type application/json;
      if ($killswitch_refusal ~ '"error":"IDENTITY_INVALID"') { return 400 $killswitch_refusal; }
      return 503 '{"error":"KILL_SWITCH_UNAVAILABLE","detail":"the kill switch cannot vouch for this identity now"}';
    }
  }`;
}

# An Envoy ext_authz policy for agent tool calls (OPA-Envoy input shape). Agents may call the tools
# under /tools/ with GET or POST; the admin tools are refused to everyone. Each decision OPA makes
# here is logged and uploaded to the kill switch (opa-config.yaml), which blocks an identity whose
# calls are denied too often (docs/opa.md).
package envoy.authz

default allow := false

allow if {
	input.attributes.request.http.method in {"GET", "POST"}
	startswith(input.attributes.request.http.path, "/tools/")
	not startswith(input.attributes.request.http.path, "/tools/admin/")
}
